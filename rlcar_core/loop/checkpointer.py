"""The checkpointer every trainer uses: resume from the newest checkpoint that restores, stop on a
NaN keeping the last good checkpoint, save on Ctrl-C. It wraps `rlcar_core.io.checkpoint.CheckpointStore`
and calls only its public methods.

How a trainer uses it::

    metrics = MetricsLogger(run, "vae")
    with Checkpointer(run.checkpoint_dir("vae"), "VAE", metrics=metrics, warn=on_warning) as ckpt:
        restored = ckpt.resume(jax.eval_shape(init_state, key))   # None for a new run
        state = restored.state if restored else init_state(key)
        while step < total and not stop.requested:
            state, losses = update(state, batch, stream_key(seed, UPDATE_STREAM, step))
            ckpt.check_finite({"vae/loss": losses["vae/loss"]}, where=f"step {step}")
            ...
            if every.crossed(before, step):
                ckpt.save(step, state, config, metrics={...}, best_metric=-val_loss)
        if stop.requested:
            raise ckpt.interrupted(step, state, config, where=f"step {step}")

- `resume` tries the newest step first. A step that fails to restore (a truncated TensorStore file,
  a deleted manifest) is reported through `warn` as `checkpoint ep10 is damaged (a file is truncated);
  resuming from ep5` and moved aside to `ep10.damaged`, so it is never `latest` or `best` again and its
  step number can be saved anew. If no step restores, nothing is moved (that is a model mismatch, not
  damage) and the newest step's error is raised.
- `check_finite` raises `TrainingDiverged` naming the value and the kept checkpoint; the trainer lets
  it propagate (the CLI exits 1). Nothing is saved after a NaN.
- `interrupted` saves the current state (if finite and not already saved under that step), waits for
  the async save, and returns `TrainingInterrupted` for the trainer to raise (the CLI exits 130).
- With a `MetricsLogger`, every checkpoint records the logger's count and `resume` drops the
  trainer's records written after the checkpoint it resumes, so no record is ever repeated.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from rlcar_core.io.checkpoint import CheckpointStore
from rlcar_core.loop.metrics import MetricsLogger
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted, all_finite

METRICS_RECORDS = "metrics_records"  # key in a checkpoint's metrics: the trainer's records so far
DAMAGED_SUFFIX = ".damaged"
Warn = Callable[[str], None]

# TensorStore / absl status codes in error texts, and what they mean for a file on disk.
_STATUS_MEANINGS = (
    ("OUT_OF_RANGE", "a file is truncated"),
    ("DATA_LOSS", "a file is corrupt"),
    ("NOT_FOUND", "a file is missing"),
    ("PERMISSION_DENIED", "a file cannot be read"),
    ("INVALID_ARGUMENT", "a file is unreadable"),
)
_MAX_REASON = 100


def short_reason(error: BaseException) -> str:
    """One short clause for why a checkpoint did not restore, instead of TensorStore's 2,000 characters."""
    if getattr(error, "reason", ""):  # io's CheckpointDamaged already names the cause on its own
        return error.reason
    text = str(error)
    for code, meaning in _STATUS_MEANINGS:
        if code in text:
            return f"{meaning}, {code}"
    if isinstance(error, FileNotFoundError):
        return "a file is missing"
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    first_line = re.sub(r"\s+\[tensorstore_spec.*", "", first_line)
    if len(first_line) > _MAX_REASON:
        first_line = first_line[: _MAX_REASON - 3] + "..."
    return f"{type(error).__name__}: {first_line}"


class Restored(NamedTuple):
    step: int
    state: Any
    metrics: dict[str, Any]  # as saved with the checkpoint: {"best_metric": ..., "metrics": {...}}


def _ignore(message: str) -> None:
    del message


class Checkpointer:
    """One model's checkpoints for one training run. Use it as a context manager (or call `close`):
    leaving waits for async saves and closes orbax's manager."""

    def __init__(
        self,
        directory: str | os.PathLike,
        what: str,
        *,
        metrics: MetricsLogger | None = None,
        warn: Warn | None = None,
        keep_last: int = 3,
        best_mode: str = "max",
        protect: Callable[[], Iterable[int]] | None = None,
    ):
        self.directory = Path(directory)
        self.what = what  # the model's name in messages, e.g. "DreamerV3", "VAE"
        self.metrics = metrics
        self.warn = warn or _ignore
        # `protect()`: steps never pruned (see CheckpointStore), e.g. those later stages were built on.
        self._store_options = {"keep_last": keep_last, "best_mode": best_mode, "protect": protect}
        self.store = CheckpointStore(self.directory, **self._store_options)
        self.last_saved: int | None = self.store.latest_step()

    # -- lifecycle ---------------------------------------------------------------------------

    def wait(self) -> None:
        self.store.wait()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- names -------------------------------------------------------------------------------

    def path(self, step: int | None) -> str | None:
        return None if step is None else str(self.store.directory / str(step))

    def best_metric(self) -> float | None:
        best = self.store.best_step()
        return None if best is None else self.store.metrics(best)["best_metric"]

    # -- resume ------------------------------------------------------------------------------

    def resume(self, abstract_state: Any) -> Restored | None:
        """Restore the newest checkpoint that restores (see the module docstring); None when there is none.
        Also truncates the trainer's metrics to that checkpoint (to none for a fresh start)."""
        failures: list[tuple[int, Exception]] = []
        restored: Restored | None = None
        for step in reversed(self.store.steps()):
            try:
                state = self.store.restore(step, abstract_state)
                saved = self.store.metrics(step)
            except Exception as error:  # noqa: BLE001 - orbax/TensorStore raise many kinds for a bad file
                failures.append((step, error))
                continue
            restored = Restored(step, state, saved)
            break
        if failures and restored is None:
            raise failures[0][1]  # nothing restores: a model mismatch, not damage; move nothing
        if failures:
            self._set_aside([step for step, _ in failures])
            for step, error in failures:
                self.warn(
                    f"checkpoint ep{step} is damaged ({short_reason(error)}); resuming from ep{restored.step}"
                )
        self.last_saved = None if restored is None else restored.step
        if self.metrics is not None:
            kept = 0 if restored is None else restored.metrics.get("metrics", {}).get(METRICS_RECORDS)
            self.metrics.resume(kept)
        return restored

    def _set_aside(self, steps: list[int]) -> None:
        """Rename damaged steps to `ep<N>.damaged` (orbax ignores the name) and reopen the store."""
        self.store.close()
        for step in steps:
            source = self.directory / str(step)
            target = self.directory / f"ep{step}{DAMAGED_SUFFIX}"
            counter = 1
            while target.exists():
                target = self.directory / f"ep{step}{DAMAGED_SUFFIX}-{counter}"
                counter += 1
            if source.exists():
                source.rename(target)
        self.store = CheckpointStore(self.directory, **self._store_options)

    # -- save --------------------------------------------------------------------------------

    def save(self, step: int, state: Any, config: dict[str, Any], **scores: Any) -> bool:
        """`CheckpointStore.save` (its `metrics=` and `best_metric=` are the `scores`) started
        asynchronously, stamped with the logger's record count; False (nothing written) if that step
        exists.

        Log the step's metrics records *before* saving: the checkpoint stamps the logger's count, and
        records after it are dropped when a run resumes from this checkpoint."""
        if step in self.store.steps():
            return False
        metrics = dict(scores.pop("metrics", None) or {})
        if self.metrics is not None:
            metrics[METRICS_RECORDS] = self.metrics.count
        self.store.save(step, state, config, metrics=metrics, **scores)
        self.last_saved = step
        return True

    # -- ways to stop ------------------------------------------------------------------------

    def kept(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was saved"
        return f"kept checkpoint ep{self.last_saved} in {self.store.directory}"

    def diverged(self, what: str, value: float, where: str, step: int | None = None) -> TrainingDiverged:
        """The error to raise when `what` became `value` at `where` (e.g. "update 120 (episode 4)");
        logs a `diverged` record at `step` (the trainer's x-axis) when a logger is attached."""
        self.store.wait()
        if self.metrics is not None and step is not None:
            self.metrics.log("diverged", step, {"what": what, "where": where})
        return TrainingDiverged(f"{self.what} {what} became {value} at {where}; {self.kept()}")

    def check_finite(self, values: dict[str, float], where: str, step: int | None = None) -> None:
        """Raise TrainingDiverged for the first non-finite value (losses, fetched to the host)."""
        for name, value in values.items():
            if not math.isfinite(float(value)):
                raise self.diverged(name, float(value), where, step)

    def check_params(self, params: Any, where: str, step: int | None = None) -> None:
        if not all_finite(params):
            raise self.diverged("parameters", math.nan, where, step)

    def interrupted(
        self,
        step: int,
        state: Any,
        config: dict[str, Any],
        *,
        where: str,
        metrics: dict[str, Any] | None = None,
        unsaved: str | None = None,
    ) -> TrainingInterrupted:
        """Save `state` as `step` unless that step exists or the state is not finite, wait, and return
        the TrainingInterrupted to raise. `unsaved` says what the checkpoint cannot hold (e.g. "the
        312 env steps since ep10 are not in it"), for the message."""
        if all_finite(state):
            self.save(step, state, config, metrics={**(metrics or {}), "interrupted": True})
        self.store.wait()
        if self.last_saved is None:
            kept = "no checkpoint was saved"
        else:
            kept = f"the run resumes from ep{self.last_saved} ({self.path(self.last_saved)})"
        lost = f"; {unsaved}" if unsaved else ""
        return TrainingInterrupted(
            f"interrupted at {where}; {kept}{lost}; run the same command again to resume"
        )
