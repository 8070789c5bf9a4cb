"""TensorBoard event files beside ``metrics.jsonl``, so ``tensorboard --logdir runs`` shows every run.

Written with tensorboardX (no TensorFlow). The metrics logger hands each record it appends to
``metrics.jsonl`` to :meth:`TensorBoardWriter.write` as well; numbers become scalars, the rest is skipped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

# Fields that say where a record sits, not what was measured.
COUNTER_FIELDS = ("kind", "trainer", "env_steps", "episode", "step", "time", "episodes_total")


def scalar_tag(kind: str | None, name: str) -> str:
    """``wm/loss`` stays as it is; ``progress_mean`` of an ``eval`` record becomes ``eval/progress_mean``."""
    return name if "/" in name or not kind else f"{kind}/{name}"


def record_step(record: dict[str, Any], fallback: int) -> int:
    """The x axis: env steps when the record has them (every trainer's common clock), else its own step."""
    for field in ("env_steps", "step", "episode"):
        value = record.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return int(value)
    return fallback


def record_scalars(record: dict[str, Any]) -> dict[str, float]:
    kind = record.get("kind") if isinstance(record.get("kind"), str) else None
    scalars = {}
    for name, value in record.items():
        if name in COUNTER_FIELDS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            scalars[scalar_tag(kind, name)] = float(value)
    return scalars


class TensorBoardWriter:
    """Appends one run's metrics records to a TensorBoard event file in ``run_dir``.

    The event file is created on the first write, so a run that logs nothing gets none.
    """

    def __init__(self, run_dir: str | os.PathLike, flush_secs: int = 5):
        self.run_dir = Path(run_dir)
        self.flush_secs = flush_secs
        self._writer = None
        self._writes = 0

    def write(self, record: dict[str, Any]) -> None:
        scalars = record_scalars(record)
        self._writes += 1
        if not scalars:
            return
        if self._writer is None:
            from tensorboardX import SummaryWriter

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(logdir=str(self.run_dir), flush_secs=self.flush_secs)
        step = record_step(record, self._writes)
        wall_time = record.get("time") if isinstance(record.get("time"), float) else None
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=step, walltime=wall_time)
        # Records come a few per second at most, and a trainer may be killed at any moment.
        self._writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
