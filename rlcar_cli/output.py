"""How commands talk: what a command produced (its table, listing or summary) on stdout, as a table
for people or, with --json, as one JSON document for scripts; progress, warnings and errors on stderr
(Rich); exit codes. So `rlcar runs | wc -l` counts lines of the listing, and a progress bar never
lands in a file the results are redirected to.

The error boundary lives here: every failure leaves as ONE line on stderr and an exit code.

=========================================  ====  ==============================================
what went wrong                            exit  the line
=========================================  ====  ==============================================
bad input (RlcarError, e.g. a bad name)    2     the error's own message
a path that is a file, not a folder, or    2     ``cannot write <path>: not a directory``
  is a folder, not a file (ENOTDIR,
  EEXIST, EISDIR, ENOENT)
read-only or forbidden place (EROFS,       2     ``cannot write <path>: read-only file system``
  EACCES, EPERM): the user chose the
  place, so it is bad input: another
  --run-dir / -o fixes it
disk full (ENOSPC, or TensorStore's        1     ``no space left on <path> (needs about N MB);
  RESOURCE_EXHAUSTED); <path> is the file,            nothing was lost``, or ``(N MB free there)``
  or else the run's --run-dir
JAX backend missing (JAX_PLATFORMS=gpu,    2     ``JAX backend 'gpu' is not available here; run
  cuda, tpu on a CPU machine)                        on the CPU with JAX_PLATFORMS=cpu``
training diverged                          1     the loop's message (last good checkpoint kept)
Ctrl-C / SIGTERM (no "error:": asked for)  130   ``interrupted`` or the loop's message
anything else                              1     ``internal error: <type>: <msg> (run with
                                                      RLCAR_DEBUG=1 for the traceback)``
=========================================  ====  ==============================================

With ``RLCAR_DEBUG=1`` unexpected errors keep their traceback. Nothing here imports JAX: ``rlcar --help``
must answer instantly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

import typer

from rlcar_cli import interrupts

EXIT_RUNTIME_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEBUG_VARIABLE = "RLCAR_DEBUG"

_PATH_ERRNOS = {
    errno.ENOTDIR: "not a directory",
    errno.EEXIST: "a file is in the way",
    errno.EISDIR: "it is a directory",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "a symbolic link loop",
}
_DENIED_ERRNOS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
_NO_SPACE = re.compile(
    r"No space left on device|RESOURCE_EXHAUSTED.*(?:space|disk|write)|ENOSPC", re.IGNORECASE
)
_QUOTED_PATH = re.compile(r"""(?:local file|file|path)\s*["']?(/[^"'\s\]]+)""")
_JAX_BACKEND = re.compile(r"Unable to initialize backend '([^']+)'|Unknown backend:? '?([\w-]+)'?")


def stderr_console():
    """Rich on stderr. Off a terminal (piped to a file or a CI log) lines are never wrapped, so a file
    path in a message stays on one line and can be copied or grepped."""
    from rich.console import Console

    if sys.stderr.isatty():
        return Console(stderr=True)
    return Console(stderr=True, soft_wrap=True, width=max(200, shutil.get_terminal_size().columns))


def stdout_console():
    """Rich on stdout, for results. Its width: the terminal's; piped, $COLUMNS when set, else the width
    of the terminal the user watches (stderr's: `rlcar runs | head` fits it), else (a file, a CI log)
    wide enough that no row wraps, so each stays one greppable line."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    width = os.environ.get("COLUMNS", "")
    if width.isdigit() and int(width) > 0:
        return Console(width=int(width))
    if sys.stderr.isatty():
        return Console(width=shutil.get_terminal_size().columns)
    return Console(width=WIDE_OUTPUT)


WIDE_OUTPUT = 240  # columns of results written to a file: wide enough for every table's full width


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a `fitted_table`. `keep`: the higher, the longer it stays when the terminal is
    narrow (the lowest goes first); `wrap`: its cells may break between words; `least`: the narrowest
    it may get (default: its longest word), for cells whose phrases should not break ("0.611 (ep180)")."""

    header: str
    justify: str = "left"
    keep: int = 0
    wrap: bool = True
    least: int | None = None


GAP = 2  # spaces between the columns of a fitted table


def fitted_table(title: str, columns: list[Column], rows: list[list[str]], width: int):
    """A Rich table (cells in Rich markup) that fits `width` columns without cutting a word letter by
    letter: columns that cannot fit go, least kept first (the caption says which), then wrapping
    columns narrow toward their longest word. Rich's own fitting squeezes every column alike, which
    folds paths and numbers mid-word ("pretrai/ned")."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [[Text.from_markup(cell) for cell in row] for row in rows]

    def lines(index: int) -> list[str]:
        found = columns[index].header.splitlines()
        for row in cells:
            found += row[index].plain.splitlines()
        return found or [""]

    natural = [max(len(line) for line in lines(i)) for i in range(len(columns))]
    least = [
        natural[i]
        if not column.wrap
        else min(
            natural[i], column.least or max(len(word) for line in lines(i) for word in line.split() or [""])
        )
        for i, column in enumerate(columns)
    ]
    kept = list(range(len(columns)))

    def needed(widths: list[int]) -> int:
        return sum(widths[i] for i in kept) + GAP * (len(kept) - 1)

    while len(kept) > 1 and needed(least) > width:
        # the least kept goes; of equals, the rightmost
        kept.remove(min(reversed(kept), key=lambda i: columns[i].keep))
    # Then the least kept columns narrow first, each straight to its least width, so one column wraps
    # at its phrase boundaries instead of every column wrapping a little, mid-phrase.
    widths = list(natural)
    for i in sorted(kept, key=lambda i: columns[i].keep):
        widths[i] = max(least[i], widths[i] - max(0, needed(widths) - width))
    dropped = [columns[i].header.split(" (")[0] for i in range(len(columns)) if i not in kept]
    table = Table(
        title=title,
        title_justify="left",
        caption=f"hidden at this width: {', '.join(dropped)}; --json has all" if dropped else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),
    )
    for i in kept:
        column = columns[i]
        table.add_column(
            column.header,
            justify=column.justify,
            width=widths[i],
            no_wrap=not column.wrap,
            overflow="ellipsis" if not column.wrap else "fold",
        )
    for row in cells:
        table.add_row(*(row[i] for i in kept))
    return table


def print_result(renderable, console=None) -> None:
    """A result (table, listing, summary line) on stdout. Off a terminal each line loses Rich's padding
    to the table's width: trailing spaces in a file or a pipe only get in the way of diff and grep."""
    console = console or stdout_console()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    lines = captured.get().splitlines()
    sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))
    sys.stdout.flush()


def print_error(message: str) -> None:
    # One line, no traceback: scripts grep it, people read it.
    text = str(message).strip()
    first_line = text.splitlines()[0] if text else "unknown error"
    sys.stderr.write(f"error: {first_line}\n")
    sys.stderr.flush()


def print_stopped(message: str) -> None:
    """The one line of a stop the user asked for (Ctrl-C, SIGTERM): what was kept and how to resume,
    without the "error:" of a failure."""
    text = str(message).strip()
    sys.stderr.write((text.splitlines()[0] if text else "interrupted") + "\n")
    sys.stderr.flush()


def emit_json(document: Any) -> None:
    from rlcar_core.io.jsonable import to_json_value

    sys.stdout.write(json.dumps(to_json_value(document), allow_nan=False) + "\n")
    sys.stdout.flush()


# -- the error boundary ------------------------------------------------------------------------


def _megabytes(size: int) -> str:
    return f"{max(1, round(size / 1e6))} MB"


def _free_size(size: int) -> str:
    return f"{round(size / 1e3)} KB" if size < 1e6 else _megabytes(size)


# Orbax writes a step into `<step>.orbax-checkpoint-tmp*/...`: the message names the step folder the
# user knows (our own atomic writes already name the final file).
_TEMP_PART = re.compile(r"\.orbax-checkpoint-tmp.*$")


def _run_path() -> str | None:
    """The command line's --run-dir: what a disk-full error that names no file (a failed write, some
    TensorStore errors) names instead."""
    arguments = sys.argv[1:]
    for position, argument in enumerate(arguments):
        if argument == "--run-dir" and position + 1 < len(arguments):
            return arguments[position + 1] or None
        if argument.startswith("--run-dir="):
            return argument.split("=", 1)[1] or None
    return None


def _free_bytes(path: str) -> int | None:
    """Free space on the file system that holds `path` (its nearest existing folder: a failed write's
    temp folder is often gone by now), or None when that cannot be read."""
    candidate = os.path.abspath(path)
    while True:
        try:
            return shutil.disk_usage(candidate).free
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(candidate)
            if parent == candidate:
                return None
            candidate = parent
        except OSError:
            return None


def _no_space_message(path: str | None, needed: int | None) -> str:
    """Name the file (or else the run folder) and the free space of the file system it is on, never
    that of the current folder, which may be another disk."""
    path = _TEMP_PART.sub("", path) if path else _run_path()
    where = path or "the disk"
    if needed:
        detail = f"needs about {_megabytes(needed)}"
    elif path and (free := _free_bytes(path)) is not None:
        detail = f"{_free_size(free)} free there"
    else:
        return f"no space left on {where}; nothing was lost"
    return f"no space left on {where} ({detail}); nothing was lost"


def describe_os_error(error: OSError) -> tuple[str, int]:
    """(one line, exit code) for a failed file operation, naming the path."""
    path = error.filename if error.filename is not None else getattr(error, "path", None)
    path = os.fspath(path) if path is not None else None
    where = path if path else "a file"
    if error.errno == errno.ENOSPC:
        return _no_space_message(path, getattr(error, "needed_bytes", None)), EXIT_RUNTIME_FAILURE
    if error.errno in _DENIED_ERRNOS:
        return f"cannot write {where}: {_DENIED_ERRNOS[error.errno]}", EXIT_BAD_INPUT
    if error.errno in _PATH_ERRNOS:
        return f"cannot use {where}: {_PATH_ERRNOS[error.errno]}", EXIT_BAD_INPUT
    reason = error.strerror or str(error) or type(error).__name__
    return f"{where}: {reason.lower()}", EXIT_RUNTIME_FAILURE


def _jax_backend_message(text: str) -> str | None:
    match = _JAX_BACKEND.search(text)
    if not match:
        return None
    requested = os.environ.get("JAX_PLATFORMS") or match.group(1) or match.group(2)
    return f"JAX backend {requested!r} is not available here; run on the CPU with JAX_PLATFORMS=cpu"


def _raised_in_jax(error: BaseException) -> bool:
    """The innermost frame of the traceback is JAX's or jaxlib's own code."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    filename = trace.tb_frame.f_code.co_filename if trace is not None else ""
    return f"{os.sep}jax{os.sep}" in filename or f"{os.sep}jaxlib{os.sep}" in filename


def _jax_platform_failure(error: BaseException) -> str | None:
    """JAX_PLATFORMS naming a platform JAX knows but this machine lacks (JAX_PLATFORMS=cuda with no
    CUDA plugin) fails inside JAX with a bare AssertionError, not the RuntimeError 'gpu' or 'tpu' gets."""
    requested = os.environ.get("JAX_PLATFORMS", "")
    if not requested or "jax" not in sys.modules:
        return None
    if isinstance(error, AssertionError) and _raised_in_jax(error):
        return f"JAX backend {requested!r} is not available here; run on the CPU with JAX_PLATFORMS=cpu"
    return None


def _loaded(module: str, name: str) -> type | None:
    # An exception class from a module only if that module is already imported: importing it here
    # would load JAX just to report an error.
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def describe_failure(error: BaseException) -> tuple[str, int]:
    """(one line, exit code) for any exception a command lets out; see the table in the module doc."""
    from rlcar_core.errors import RlcarError

    diverged = _loaded("rlcar_core.loop.outcomes", "TrainingDiverged")
    if isinstance(error, RlcarError):
        return str(error), EXIT_BAD_INPUT
    if diverged is not None and isinstance(error, diverged):
        return str(error), EXIT_RUNTIME_FAILURE
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "interrupted", EXIT_INTERRUPTED
    if isinstance(error, OSError) and error.errno is not None:
        return describe_os_error(error)
    text = str(error)
    if _NO_SPACE.search(text):
        path = _QUOTED_PATH.search(text)
        return _no_space_message(path.group(1) if path else None, None), EXIT_RUNTIME_FAILURE
    if isinstance(error, RuntimeError) and (message := _jax_backend_message(text)):
        return message, EXIT_BAD_INPUT
    if message := _jax_platform_failure(error):
        return message, EXIT_BAD_INPUT
    summary = " ".join(text.split())[:300] or "(no message)"
    return (
        f"internal error: {type(error).__name__}: {summary} (run with {DEBUG_VARIABLE}=1 for the traceback)",
        EXIT_RUNTIME_FAILURE,
    )


def _passes_through(error: BaseException) -> bool:
    """Exits that already carry their code (typer.Exit, click's usage errors, sys.exit)."""
    import click

    return isinstance(error, SystemExit | click.exceptions.Exit | click.ClickException | click.Abort)


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Every failure inside the block -> one line on stderr and its exit code (see the module doc)."""
    try:
        yield
    except BaseException as error:
        if _passes_through(error):
            raise
        message, code = describe_failure(error)
        if debugging() and code == EXIT_RUNTIME_FAILURE and message.startswith("internal error"):
            raise
        if code == EXIT_INTERRUPTED:
            print_stopped(message)  # the user asked for it: not an error
        else:
            print_error(message)
        raise typer.Exit(code) from None


# Training commands once needed their own boundary for divergence and Ctrl-C; `user_errors` now
# covers both. The name stays so existing commands keep working.
training_outcomes = user_errors


def close_checkpoint_stores() -> None:
    """Close orbax managers left open (only if checkpoints were used at all), before the interpreter
    shuts down, so orbax never schedules work after it ("cannot schedule new futures ...")."""
    checkpoint = sys.modules.get("rlcar_core.io.checkpoint")
    if checkpoint is not None:
        checkpoint.close_open_stores()


# -- progress ----------------------------------------------------------------------------------


def show_progress(flag: bool | None) -> bool:
    """Progress bars appear on a terminal unless --no-progress; --progress forces them."""
    return sys.stderr.isatty() if flag is None else flag


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def steady_eta_column():
    """An ETA from the rate measured after warm-up: the first item (which pays for JIT compilation)
    is left out, so the estimate is neither wildly long at the start nor "0:00:01" with 20 s to go."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SteadyEtaColumn(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self._warm: dict[Any, tuple[float, float]] = {}  # task id -> (time, completed) after warm-up

        def render(self, task) -> Text:
            if task.finished:
                return Text("done", style="progress.remaining")
            now = time.monotonic()
            if task.completed <= 0 or task.total is None:
                return Text("eta -:--:--", style="progress.remaining")
            start = self._warm.setdefault(task.id, (now, task.completed))
            done_since, elapsed = task.completed - start[1], now - start[0]
            if done_since <= 0 or elapsed <= 0:
                return Text("eta -:--:--", style="progress.remaining")
            remaining = (task.total - task.completed) * elapsed / done_since
            return Text(f"eta {_format_seconds(remaining)}", style="progress.remaining")

    return SteadyEtaColumn()


PROGRESS_MARGIN = 3  # columns a progress line leaves free on a terminal


def progress_console():
    """The stderr console progress bars draw on. On a terminal their line stops short of the last
    columns: the "^C" a terminal echoes at the cursor would otherwise wrap a full-width line, and the
    bar's next redraw would leave a stale copy of it above (the progress line printed twice)."""
    console = stderr_console()
    if console.is_terminal:
        console.width = max(20, console.width - PROGRESS_MARGIN)
    return console


def make_progress(enabled: bool, *, console=None):
    """The progress bar every command uses: description, bar, done/total, a status field, elapsed time
    and the warm-up-aware ETA. Add tasks with `status=""` (or a short string)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        steady_eta_column(),
        console=console or progress_console(),
        disable=not enabled,
        transient=False,
    )


# -- the process boundary ----------------------------------------------------------------------


class Outcome:
    """The exit code `finish_cleanly` settles on."""

    def __init__(self) -> None:
        self.code = EXIT_RUNTIME_FAILURE


@contextlib.contextmanager
def finish_cleanly() -> Iterator[Outcome]:
    """The console entry point's safety net: an exception no command caught becomes one line and its
    exit code, and open checkpoint stores are closed (waiting for their saves) before the process
    ends, so no orbax shutdown traceback follows the last line."""
    outcome = Outcome()
    try:
        with user_errors():
            try:
                yield outcome
            finally:
                # Waits for background checkpoint saves: a Ctrl-C here is acted on after them.
                with interrupts.deferred():
                    close_checkpoint_stores()
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", None)
        outcome.code = code if isinstance(code, int) else getattr(done, "code", EXIT_RUNTIME_FAILURE)


def quiet_library_logs() -> None:
    """Keep a command's stderr to its own lines.

    - absl (orbax, JAX) records such as 'Metadata file does not exist' for a damaged step, which the
      checkpoint store already reports in its one line;
    - 'Event loop is closed' errors that TensorStore reads still in flight raise from their own threads
      after a failed restore (already reported as CheckpointDamaged), which Python would print as
      tracebacks, at any moment, through the unraisable hook.
    """
    import logging

    if debugging():
        return  # RLCAR_DEBUG=1: everything, as the libraries print it
    # Orbax logs a failed background save (e.g. a full disk) at ERROR level with a page of TensorStore
    # spec; the same failure reaches the boundary as an exception and becomes one line there.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    previous = sys.unraisablehook

    def unraisable(record) -> None:
        if isinstance(record.exc_value, RuntimeError) and "Event loop is closed" in str(record.exc_value):
            return
        previous(record)

    sys.unraisablehook = unraisable
