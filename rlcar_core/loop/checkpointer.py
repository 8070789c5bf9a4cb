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
  trainer's records written after the checkpoint it resumes, so no record is ever repeated
  (`resume(..., trim_metrics=False)` and `trim_metrics()` let a trainer decide after seeing the state).
- `save(..., replace=True)` replaces an existing step with a newer state of the same count (a run
  that stops between two episode ends still saves its newest state under that episode count). The
  old step folder is moved aside to `ep<N>.replaced` until the new one is committed, so a kill in
  between keeps one of the two; the next `Checkpointer` on the folder finishes or undoes the swap.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from rlcar_core.io.checkpoint import CheckpointDamaged, CheckpointStore
from rlcar_core.loop.metrics import MetricsLogger
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted, all_finite

METRICS_RECORDS = "metrics_records"  # key in a checkpoint's metrics: the trainer's records so far
DAMAGED_SUFFIX = ".damaged"
REPLACED_SUFFIX = ".replaced"  # a step being replaced by a newer state of the same count
_REPLACED_NAME = re.compile(r"^ep(\d+)" + re.escape(REPLACED_SUFFIX) + "$")
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

    def resume(self, abstract_state: Any, *, trim_metrics: bool = True) -> Restored | None:
        """Restore the newest checkpoint that restores (see the module docstring); None when there is none.
        Also truncates the trainer's metrics to that checkpoint (to none for a fresh start), unless
        `trim_metrics=False`: then the trainer calls `trim_metrics()` once it knows it will train on
        (a finished run that only reports keeps every record it has)."""
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
            # Nothing restores: move nothing. A model mismatch says so; when every step is damaged, the
            # message lists them all (the first failure's own message still named the older, untried
            # steps as intact).
            mismatch = [error for _, error in failures if not isinstance(error, CheckpointDamaged)]
            if mismatch:
                raise mismatch[0]
            listed = ", ".join(f"ep{step} ({short_reason(error)})" for step, error in failures)
            raise CheckpointDamaged(
                f"every {self.what} checkpoint in {self.store.shown} is damaged: {listed}; "
                "move them aside or delete them to start afresh"
            )
        if failures:
            self._set_aside([step for step, _ in failures])
            for step, error in failures:
                self.warn(
                    f"checkpoint ep{step} is damaged ({short_reason(error)}); resuming from ep{restored.step}"
                )
        self.last_saved = None if restored is None else restored.step
        self._resumed_records = (
            0 if restored is None else restored.metrics.get("metrics", {}).get(METRICS_RECORDS)
        )
        if trim_metrics:
            self.trim_metrics()
        return restored

    def trim_metrics(self) -> None:
        """Drop the trainer's records written after the checkpoint `resume` restored: the run goes on
        from that checkpoint and writes them again."""
        if self.metrics is not None:
            self.metrics.resume(self._resumed_records)

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

    def save(
        self, step: int, state: Any, config: dict[str, Any], *, replace: bool = False, **scores: Any
    ) -> bool:
        """`CheckpointStore.save` (its `metrics=` and `best_metric=` are the `scores`) started
        asynchronously, stamped with the logger's record count. If that step exists: False (nothing
        written), or with `replace=True` the step is replaced by this newer state (see the module
        docstring; that save is waited for).

        Log the step's metrics records *before* saving: the checkpoint stamps the logger's count, and
        records after it are dropped when a run resumes from this checkpoint."""
        metrics = dict(scores.pop("metrics", None) or {})
        if self.metrics is not None:
            metrics[METRICS_RECORDS] = self.metrics.count
        if step in self.store.steps():
            if not replace:
                return False
            self._replace(step, state, config, metrics=metrics, **scores)
        else:
            self.store.save(step, state, config, metrics=metrics, **scores)
        self.last_saved = step
        return True

    def _replace(self, step: int, state: Any, config: dict[str, Any], **scores: Any) -> None:
        """Swap step `step` for a newer state: the old folder moves aside (orbax ignores the name),
        the new one is saved and committed, then the old one is deleted. A kill at any point leaves
        the old or the new step, never neither (`_finish_replacements` sorts it out on the next open)."""
        was_best = self.store.best_step() == step
        old_best_metric = self.store.metrics(step)["best_metric"] if was_best else None
        self.store.close()
        aside = self.directory / f"ep{step}{REPLACED_SUFFIX}"
        source = self.directory / str(step)
        if aside.exists() and source.exists():  # stale: a swap whose newer step was committed
            shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):  # another process of the run moved it already
            source.rename(aside)
        _sync_processes(f"rlcar-replace-{step}")
        self.store = CheckpointStore(self.directory, **self._store_options)
        self.store.save(step, state, config, **scores)
        self.store.wait()
        shutil.rmtree(aside, ignore_errors=True)
        if was_best and self.store.best_step() != step:
            best = self.store.best_step()
            now = f"best is now ep{best}" if best is not None else "no checkpoint is ranked best now"
            self.warn(
                f"ep{step} held the best evaluation ({old_best_metric:.4g}); the newer {self.what} state "
                f"of the same count replaces it, so {now}"
            )

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


def _finish_replacements(directory: Path) -> None:
    """Complete or undo a replacement a kill interrupted (`Checkpointer.save(..., replace=True)`): the
    old step goes when its newer state was committed, and comes back when it was not."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        match = _REPLACED_NAME.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        committed = directory / match.group(1)  # orbax renames its temp folder to this when complete
        if committed.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):  # another process of the run restored it
                Path(entry.path).rename(committed)


def _sync_processes(name: str) -> None:
    """Wait for every process of a distributed run (a no-op with one): the store is reopened only
    once every process sees the step moved aside."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
