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
import os
from collections.abc import Iterator
from pathlib import Path

from rlcar_core.io.runs import RunDir
from rlcar_core.loop.stop import StopFlag, graceful_stop


def _is_temp_name(name: str) -> bool:
    # `.tmp-*` (io.atomic) and `.<name>.<random>.tmp` / `.<name>.tmp-<pid>` (older writers).
    return name.startswith(".tmp-") or (name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name))


def sweep_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove temp files killed writers left in a run (call only under its writer lock).

    Uses io's sweep when it has one (it also knows about orphan rollout files); otherwise removes
    temp-named files in the run folder and its direct sub-folders (data/, videos/, checkpoints/...).
    Orbax cleans its own `*.orbax-checkpoint-tmp*` folders.
    """
    try:
        from rlcar_core.io.runs import sweep_temp_files as io_sweep
    except ImportError:
        io_sweep = None
    if io_sweep is not None:
        return io_sweep(run_dir)
    root = Path(run_dir)
    folders = [root] + [path for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
    checkpoints = root / "checkpoints"
    if checkpoints.is_dir():
        folders += [path for path in checkpoints.iterdir() if path.is_dir()]
    removed = []
    for folder in folders:
        for path in folder.iterdir():
            if _is_temp_name(path.name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def writer_session(run: RunDir, command: str, owner: bool = True) -> Iterator[StopFlag]:
    """Hold `run`'s writer lock, sweep leftovers, and turn Ctrl-C into the yielded flag.

    `owner=False` (every process but the first of a distributed run, which holds the lock for all of
    them): no lock and no sweep, only the flag."""
    if not owner:
        with graceful_stop() as stop:
            yield stop
        return
    with run.writer_lock(command):
        sweep_temp_files(run.path)
        with graceful_stop() as stop:
            yield stop
