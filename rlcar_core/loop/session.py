"""The frame of every training run: the run's writer lock, a sweep of leftover temp files, and Ctrl-C
as a flag.

    with writer_session(run, "train-vae") as stop:
        ...                                      # the trainer's loop
        while step < total and not stop.requested:
            ...
        if stop.requested:
            raise checkpointer.interrupted(...)

The lock (`RunDir.writer_lock`) makes a second writer of the same run exit 2 (`RunInUse`) for the whole
run; temp files are swept only under the lock, because a live writer's temp file looks the same as a
dead one's. Inside the block SIGINT/SIGTERM only set `stop.requested` (see `stop.graceful_stop`); a
second Ctrl-C raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rlcar_core.io.runs import RunDir
from rlcar_core.loop.stop import StopFlag, graceful_stop


@contextlib.contextmanager
def writer_session(run: RunDir, command: str, owner: bool = True) -> Iterator[StopFlag]:
    """Hold `run`'s writer lock (which sweeps leftovers once held), and turn Ctrl-C into the yielded flag.

    `owner=False` (every process but the first of a distributed run, which holds the lock for all of
    them): no lock and no sweep, only the flag."""
    lock = run.writer_lock(command) if owner else contextlib.nullcontext()
    with lock, graceful_stop() as stop:
        yield stop
