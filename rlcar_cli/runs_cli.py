"""`rlcar runs`: the run directories, their checkpoints and best results, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlcar_cli.options import Json
from rlcar_cli.output import emit_json, stderr_console, user_errors


def runs_command(
    root: Annotated[Path, typer.Option("--root", help="Folder to look for runs in.")] = Path("runs"),
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only runs of this kind: dreamer, worldmodels or play.")
    ] = None,
    json_out: Json = False,
) -> None:
    """List runs: kind, env, episodes and env steps, best held-out progress, newest checkpoints."""
    with user_errors():
        from rlcar_core.apps.runs import list_runs

        runs = list_runs(root, kind)
    if json_out:
        emit_json([run.to_json() for run in runs])
    else:
        print_runs_table(runs, root)


def _checkpoint_cell(run) -> str:
    parts = []
    for model, found in run.checkpoints.items():
        newest = ", ".join(found.newest) or "-"
        best = f"; best {found.best}" if found.best else ""
        damaged = f"; {len(found.damaged)} damaged" if found.damaged else ""
        parts.append(f"{model}: {newest}{best}{damaged}")
    return "\n".join(parts) or "-"


def _kind_cell(run) -> str:
    return f"{run.kind}\n[dim]shipped[/]" if run.shipped else run.kind


def _best_cell(run) -> str:
    best = "-" if run.best_progress is None else f"{run.best_progress:.3f}"
    if run.best_progress_checkpoint:
        best += f" ({run.best_progress_checkpoint})"
    score = (run.shipped or {}).get("score")
    if isinstance(score, dict) and isinstance(score.get("return_mean"), int | float):
        # A shipped agent's score row: the return beside the progress, as `rlcar eval` measured it.
        best += f"\nreturn {score['return_mean']:.1f}"
        if isinstance(score.get("episodes"), int):
            best += f" ({score['episodes']} ep.)"
    return best


def print_runs_table(runs, root: Path) -> None:
    from rich.table import Table

    console = stderr_console()
    if not runs:
        console.print(f"no runs under {root}")
        return
    table = Table(title=f"runs under {root}")
    for column, justify in (
        ("run", "left"),
        ("kind", "left"),
        ("env / obs", "left"),
        ("episodes", "right"),
        ("env steps", "right"),
        ("best progress", "right"),
        ("checkpoints (newest first)", "left"),
        ("modified", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for run in runs:
        table.add_row(
            run.path + (f"\n[yellow]in use: {run.in_use_by}[/]" if run.in_use_by else ""),
            _kind_cell(run),
            " / ".join(part for part in (run.env, run.obs) if part) or "-",
            "-" if run.episodes is None else f"{run.episodes:,}",
            "-" if run.env_steps is None else f"{run.env_steps:,}",
            _best_cell(run),
            _checkpoint_cell(run),
            run.modified.replace("T", " "),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_command)
