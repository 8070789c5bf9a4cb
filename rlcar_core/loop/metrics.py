"""One metrics logger and one key scheme for every trainer's records in `<run>/metrics.jsonl`.

Every record is::

    {"trainer": "dreamer", "kind": "train", "step": 1200, "time": 1.7e9, "wm/loss": 3.2, ...}

- `trainer` names who wrote it (`dreamer`, `vae`, `rnn`, `controller`): several trainers share one
  run's file, and each resumes only its own records.
- `kind` says what the record is: `train` (averaged losses), `eval` (held-out results), `episode`,
  `checkpoint`, `diverged`, `generation`...
- `step` is the trainer's own x-axis (env steps for DreamerV3, updates for the VAE and the MDN-RNN,
  generations for the controller); `time` is Unix time.
- Losses and other values are named `<model>/<name>`: `wm/loss`, `actor/loss`, `vae/loss`,
  `rnn/loss`, `controller/return`.

Resume: the `Checkpointer` stamps each checkpoint with `MetricsLogger.count` (this trainer's records
so far, the checkpoint record included) and, when it resumes from that checkpoint, calls
`resume(count)`, which rewrites the file atomically without this trainer's later records. A resumed run
therefore never repeats a record; records of other trainers, and records from before this scheme
(no `trainer` key), are kept as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from rlcar_core.io.atomic import atomic_path
from rlcar_core.io.runs import RunDir
from rlcar_core.io.tensorboard import TensorBoardWriter


class MetricsLogger:
    """Appends one trainer's records to a run's metrics.jsonl (through `RunDir.append_metrics`).

    Use it as a context manager (or call `close`) for the trainer's lifetime: the TensorBoard event
    file has a writer thread of its own that keeps the file open, and flushing, until it is closed."""

    def __init__(
        self, run: RunDir, trainer: str, clock: Callable[[], float] = time.time, writes: bool = True
    ):
        """`writes=False`: count and return records without writing them (every process but the
        first of a distributed run, so that one process owns the file)."""
        self.run = run
        self.trainer = trainer
        self._clock = clock
        self.writes = writes
        self.count = sum(1 for record in run.iter_metrics() if self._is_mine(record))
        # The same records as TensorBoard scalars.
        self.tensorboard = TensorBoardWriter(run.path) if writes else None

    def close(self) -> None:
        """Close the TensorBoard event file; metrics.jsonl is never held open. A later `log` opens a
        new event file."""
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _is_mine(self, record: dict[str, Any]) -> bool:
        return record.get("trainer") == self.trainer

    def log(self, kind: str, step: int, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one record and return it (e.g. to show the same numbers as progress)."""
        record = {"trainer": self.trainer, "kind": kind, "step": int(step), "time": self._clock()}
        record.update(values or {})
        if self.writes:
            self._append(record)
            self.tensorboard.write(record)
        self.count += 1
        return record

    def _append(self, record: dict[str, Any]) -> None:
        """`RunDir.append_metrics`, whole records only: when the write fails part-way (a full disk
        takes the first 8 KB of a record and refuses the rest), the file is cut back to its size
        before it, so the error's 'nothing was lost' holds and no partial line is left behind."""
        path = self.run.metrics_path
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        try:
            self.run.append_metrics(record)
        except OSError as error:
            with contextlib.suppress(OSError):  # cutting a file back needs no free space
                if path.is_file() and path.stat().st_size > size:
                    os.truncate(path, size)
            if error.filename is None:  # a failed write names no file; the one-line message should
                error.filename = os.fspath(path)
            raise

    def resume(self, kept: int | None) -> int:
        """Keep only the first `kept` records of this trainer (None keeps them all); returns how many
        were dropped. The file is rewritten atomically, so a kill here loses nothing."""
        if not self.writes:  # the first process rewrites the file; follow its count
            self.count = self.count if kept is None else kept
            return 0
        if kept is None or kept >= self.count:
            return 0
        path = self.run.metrics_path
        lines, mine = [], 0
        # Bytes, decoded line by line (as `RunDir.iter_metrics` reads them): a line a killed run left
        # half-written, or damaged bytes, are dropped here, never a UnicodeDecodeError for the file.
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
                    continue
                if not isinstance(record, dict):
                    continue
                if self._is_mine(record):
                    mine += 1
                    if mine > kept:
                        continue
                lines.append(line if line.endswith(b"\n") else line + b"\n")
        with atomic_path(path) as temp:
            temp.write_bytes(b"".join(lines))
        dropped = self.count - kept
        self.count = kept
        return dropped
