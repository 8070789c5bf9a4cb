"""Ctrl-C and SIGTERM as a flag checked at safe points, never as an exception thrown into JAX or orbax.

A KeyboardInterrupt raised by Python's default handler can land anywhere: inside an orbax save
thread, inside a JAX garbage-collection callback (where it is swallowed), or while XLA tears down,
which ends in a segfault. Under `graceful_stop()` the first signal only sets a flag; the loop checks it
between steps, saves, closes its managers and exits 130. A second signal means "now": it raises
KeyboardInterrupt at once, as a user pressing Ctrl-C twice expects.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Set by SIGINT/SIGTERM; `requested` is what a loop checks between steps."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def request(self, signal_number: int = signal.SIGINT) -> None:
        self.signal_number = signal_number

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number else "none"


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopFlag]:
    """Install flag-setting handlers for SIGINT and SIGTERM for the duration of the block.

    Off the main thread (signal handlers can only be installed there) the flag is returned unarmed,
    so a trainer started from a web server's worker thread still runs; it is then stopped through
    `flag.request()`.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_signal(signal_number, frame):  # noqa: ARG001 - the signal API's signature
        if flag.requested:
            raise KeyboardInterrupt
        flag.request(signal_number)

    previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
