"""`rlcar ship`: copy one checkpoint of a trained run into a small directory that ships with the project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlcar_cli.options import Json
from rlcar_cli.output import emit_json, stdout_console, user_errors


def ship_command(
    run_dir: Annotated[
        Path, typer.Argument(help="The trained run (DreamerV3 or World Models) to ship from.")
    ],
    dest: Annotated[
        Path | None,
        typer.Argument(help="The shipped directory to write (default: pretrained/<agent>-<env>-<obs>)."),
    ] = None,
    checkpoint: Annotated[
        str,
        typer.Option(
            "--checkpoint", help="The checkpoint to ship: best, latest, epN (World Models: the controller's)."
        ),
    ] = "best",
    score: Annotated[
        Path | None,
        typer.Option(
            "--score",
            help="`rlcar eval --json` output of this agent, run and checkpoint, kept on its card as its score.",
        ),
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="A line about the agent for its card.")] = None,
    float16: Annotated[
        bool, typer.Option("--float16", help="Store the weights as float16: half the size, slightly rounded.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace DEST if it is a shipped agent already.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Ship a trained agent: its one checkpoint (optimiser state zeroed) and config, plus an agent.json card, at most 10 MB."""
    with user_errors():
        from rlcar_core.apps.pretrained import load_score, ship_agent

        row = load_score(score) if score is not None else None
        card = ship_agent(run_dir, dest, checkpoint, score=row, notes=notes, force=force, float16=float16)
    if json_out:
        emit_json(card)
    else:
        stdout_console().print(
            f"shipped {card['agent']} {card['checkpoint']} of {run_dir} to {card['path']} "
            f"({card['size_bytes'] / 2**20:.1f} MB); try `rlcar eval --run-dir {card['path']}`",
            soft_wrap=True,
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("ship")(ship_command)
