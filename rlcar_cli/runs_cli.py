"""`rlcar runs`: the run directories, their checkpoints and best results, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rlcar_cli.options import Json
from rlcar_cli.output import (
    Column,
    emit_json,
    fitted_table,
    print_result,
    stderr_console,
    stdout_console,
    user_errors,
)


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


# What a narrow terminal keeps longest (highest `keep`): which run, what it is, how good it is.
RUN_COLUMNS = [
    Column("run", keep=9, wrap=False),  # a path to copy into --run-dir: never broken
    Column("kind", keep=8),
    Column("env / obs", keep=7, least=len("carracing /")),
    Column("best progress", justify="right", keep=6, least=len("0.000 (ep000)")),  # breaks only at "(20 ep.)"
    Column("env steps", justify="right", keep=5, wrap=False),
    Column("episodes", justify="right", keep=3, wrap=False),
    Column("checkpoints (newest first)", keep=2, wrap=False),  # one line per model
    Column("modified", keep=1, wrap=False),
]


def print_runs_table(runs, root: Path) -> None:
    """The listing, on stdout (a result, like `ls` or `docker ps`), fitted to the terminal's width."""
    console = stdout_console()
    if not runs:
        stderr_console().print(f"no runs under {root}", soft_wrap=True, highlight=False)
        return
    rows = [
        [
            escape(run.path) + (f"\n[yellow]in use: {escape(run.in_use_by)}[/]" if run.in_use_by else ""),
            _kind_cell(run),
            escape(" / ".join(part for part in (run.env, run.obs) if part) or "-"),
            _best_cell(run),
            "-" if run.env_steps is None else f"{run.env_steps:,}",
            "-" if run.episodes is None else f"{run.episodes:,}",
            escape(_checkpoint_cell(run)),
            run.modified.replace("T", " "),
        ]
        for run in runs
    ]
    print_result(fitted_table(f"runs under {root}", RUN_COLUMNS, rows, console.width), console)


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_command)
