"""Ctrl-C and SIGTERM from the CLI process's first moment until a command's own graceful stop takes over.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be. While
JAX, jaxlib or orbax are importing or compiling that is the worst place: jaxlib aborts
(``nanobind::python_error``), XLA's teardown segfaults, a JAX garbage-collection callback swallows the
exception (the command then runs to the end with exit 0), or a 40-line traceback is printed. So the CLI
never lets a signal raise:

- while ``rlcar_cli.main`` is being imported, a signal is only recorded (this module imports nothing
  heavy, so it is armed within milliseconds of the process start);
- from the first line of ``main()`` until a command enters ``rlcar_core.loop.stop.graceful_stop`` (which
  installs its own flag-setting handler and restores this one afterwards), a signal, or one recorded
  during the import, ends the process at once: one ``interrupted`` line and exit code 130, through
  ``os._exit`` so that no half-imported extension module runs Python code or destructors again. Nothing
  has been trained yet at that point, and every file the CLI writes is written atomically;
- inside ``deferred()`` (the final wait for checkpoint saves) a signal is recorded and acted on after it,
  so Ctrl-C never cuts a save short;
- once ``main()`` has its exit code (``finished``), a signal while the interpreter shuts down ends the
  process with that code, instead of a KeyboardInterrupt thrown into XLA's teardown;
- inside a graceful stop the first signal is acknowledged at once on stderr ("stopping at the next safe
  point…"): the stop itself waits for the loop's next safe point, which can be half a minute away
  during a compilation, and silence there invites a second Ctrl-C.

A watcher thread reads the signal wake-up pipe, so the exit (and the acknowledgement) is immediate even
while the main thread is inside a long C call (an XLA compilation) that runs no Python handler until
it returns.

A stop the user asked for is not an error: its line carries no ``error:`` prefix.

Only ``os``, ``signal``, ``sys`` and ``threading`` are imported here: arming must cost nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130

_IMPORTING = "importing"  # rlcar_cli.main is loading: record only (this may not be the CLI process)
_COMMAND = "command"  # inside main(), before a graceful stop: exit 130 at once
_DEFERRED = "deferred"  # a block that must not be cut short: record, act after it
_DONE = "done"  # main() has returned its exit code: a signal now only ends the process with it

_phase: str | None = None  # None: not armed (a library user who imported rlcar_cli)
_pending: int | None = None
_previous: dict[int, object] = {}
_exit_code = EXIT_INTERRUPTED
_exiting = threading.Lock()
_wakeup: tuple[int, int] | None = None  # (read end, write end) of the wake-up pipe
_acknowledged: object = None  # the graceful stop's handler whose first signal was acknowledged
STOPPING = "stopping at the next safe point… (Ctrl-C again to stop at once)"


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def exit_interrupted() -> None:
    """One line, exit 130, now (after main() returned: its own exit code, silently). Raw writes: the
    signal may have interrupted a write to sys.stderr, and a second write into the same buffered stream
    would raise 'reentrant call'."""
    if not _exiting.acquire(blocking=False):
        return  # the other path (handler or watcher) is already exiting
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    with contextlib.suppress(BaseException):
        sys.stderr.flush()
    if _phase == _DONE:
        os._exit(_exit_code)
    with contextlib.suppress(OSError):
        # A progress bar on a terminal hides the cursor; os._exit skips Rich's cleanup that shows it.
        os.write(2, (b"\x1b[?25h\n" if os.isatty(2) else b"") + b"interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def acknowledge_stop() -> None:
    """The first Ctrl-C of a graceful stop, said at once. Raw writes from the watcher thread: on a
    terminal the line first clears the progress bar's line (and the "^C" the terminal echoed into it),
    so the bar's next refresh draws below the message instead of leaving a stale copy above it."""
    clear = b"\r\x1b[2K" if os.isatty(2) else b""
    with contextlib.suppress(OSError):
        os.write(2, clear + STOPPING.encode() + b"\n")


def _on_signal(signal_number, frame) -> None:  # noqa: ARG001 - the signal API's signature
    global _pending
    if _phase in (_COMMAND, _DONE):
        exit_interrupted()
    else:  # importing or deferred: the decision comes later
        _pending = signal_number


def _install() -> None:
    global _previous
    installed = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    if all(handler is _on_signal for handler in installed.values()):
        return
    _previous = installed
    for number in STOP_SIGNALS:
        signal.signal(number, _on_signal)


def arm_for_import() -> None:
    """Top of ``rlcar_cli.main``: record signals while the CLI's modules load (about 0.3 s)."""
    global _phase
    if _on_main_thread() and _phase is None:
        _install()
        _phase = _IMPORTING


def imported() -> None:
    """Bottom of ``rlcar_cli.main``: give the previous handlers back, so importing the CLI (tests, the
    web server) changes nothing. ``main()`` arms again a few microseconds later; a signal recorded
    during the import stays pending for it."""
    global _phase
    if _phase == _IMPORTING and _on_main_thread():
        for number, handler in _previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        _phase = None


def _watch(read_end: int) -> None:
    global _acknowledged
    while True:
        try:
            received = os.read(read_end, 64)
        except OSError:
            return
        if not received:
            return
        for number in received:
            if _phase not in (_COMMAND, _DONE) or number not in STOP_SIGNALS:
                continue
            handler = signal.getsignal(number)
            if handler is _on_signal:
                exit_interrupted()
            elif _phase == _COMMAND and callable(handler) and handler is not _acknowledged:
                # A graceful stop's handler sets its flag (now, or when the main thread's C call
                # returns); the user hears at once that the stop is on its way. Once per stop.
                _acknowledged = handler
                acknowledge_stop()


def _start_watcher() -> None:
    global _wakeup
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(read_end)
        os.close(write_end)
        return
    _wakeup = (read_end, write_end)
    threading.Thread(target=_watch, args=(read_end,), name="rlcar-interrupts", daemon=True).start()


def take_over() -> None:
    """First line of ``main()``: from here a signal outside a graceful stop ends the command with 130."""
    global _phase
    if not _on_main_thread():
        return
    _install()
    _phase = _COMMAND
    if _wakeup is None:
        _start_watcher()
    if _pending is not None:  # Ctrl-C while the CLI was still importing
        exit_interrupted()


def finished(code: int) -> None:
    """End of ``main()``: the command is done and has said so. A signal while the interpreter shuts
    down (JAX and orbax threads can take a moment) ends the process with the command's own exit code
    rather than a KeyboardInterrupt raised into XLA's teardown."""
    global _phase, _exit_code
    if _phase is not None:
        _phase, _exit_code = _DONE, code


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block no signal may cut short (waiting for checkpoint saves to finish): a signal is recorded and
    acted on after the block (exit 130). Outside ``main()`` it does nothing."""
    global _phase
    if _phase != _COMMAND or not _on_main_thread():
        yield
        return
    _phase = _DEFERRED
    try:
        yield
    finally:
        _phase = _COMMAND
        if _pending is not None:
            exit_interrupted()


def pending_signal() -> int | None:
    """The signal recorded while importing or in a deferred block, if any."""
    return _pending
