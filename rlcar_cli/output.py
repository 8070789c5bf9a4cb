"""How commands talk: Rich on stderr for people, one JSON document on stdout for scripts, exit codes.

Nothing here imports JAX: ``rlcar --help`` must answer instantly.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import typer

EXIT_RUNTIME_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def print_error(message: str) -> None:
    # One line, no traceback: scripts grep it, people read it.
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    sys.stderr.write(f"error: {first_line}\n")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy and JAX scalars
        return _json_value(value.item())
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def emit_json(document: dict) -> None:
    sys.stdout.write(json.dumps(_json_value(document)) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's user-facing errors into one line on stderr and exit code 2."""
    from rlcar_core.errors import RlcarError

    try:
        yield
    except RlcarError as error:
        print_error(str(error))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


@contextlib.contextmanager
def training_outcomes() -> Iterator[None]:
    """For training commands: bad input -> exit 2; a diverged loss -> exit 1 (the last good checkpoint is
    kept); Ctrl-C -> exit 130 after the state was saved."""
    from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted

    with user_errors():
        try:
            yield
        except TrainingDiverged as error:
            print_error(str(error))
            raise typer.Exit(EXIT_RUNTIME_FAILURE) from None
        except TrainingInterrupted as error:
            print_error(str(error))
            raise typer.Exit(EXIT_INTERRUPTED) from None


def show_progress(flag: bool | None) -> bool:
    """Progress bars appear on a terminal unless --no-progress; --progress forces them."""
    return sys.stderr.isatty() if flag is None else flag


def make_progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        disable=not enabled,
        transient=False,
    )
