"""The loop V and M share: update, log, validate, checkpoint, and stop cleanly on NaN or Ctrl-C.

The loop owns the I/O of training (metrics.jsonl, checkpoints); the models' update and validation
functions stay pure and arrive as arguments.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax

from rlcar_core.io.checkpoint import CheckpointStore
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted, all_finite
from rlcar_core.worldmodels.training_state import TrainingState, split_rng

TrainStep = Callable[[TrainingState, Any], tuple[TrainingState, dict[str, jax.Array]]]
Validate = Callable[[Any], dict[str, float]]
StepCallback = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class Schedule:
    total_steps: int  # train until the state's step counter reaches this (a resumed run continues)
    eval_every: int  # validate and checkpoint this often, and always at the end
    log_every: int  # fetch, check and log the training metrics this often


def with_key_stream(update: Callable) -> TrainStep:
    """`update(state, batch, key)` -> `train_step(state, batch)` drawing its key from the state, so one
    jitted call does both and a resumed run continues the same key stream."""

    def train_step(state: TrainingState, batch):
        state, key = split_rng(state)
        return update(state, batch, key)

    return train_step


def checkpoint_path(store: CheckpointStore, step: int | None) -> str | None:
    return None if step is None else str(store.directory / str(step))


def _as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in jax.device_get(metrics).items()}


def train_supervised(
    *,
    stage: str,
    run: RunDir,
    store: CheckpointStore,
    state: TrainingState,
    train_step: TrainStep,
    batches: Iterator[Any],
    validate: Validate,
    best_metric: str,
    saved_config: dict[str, Any],
    schedule: Schedule,
    items_per_batch: int,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Run `train_step` (already jitted) over `batches` up to `schedule.total_steps`.

    Every `eval_every` steps and at the end: `validate(params)` and a checkpoint ranked by
    `validation[best_metric]` (lower is better). Raises TrainingDiverged on a non-finite loss, keeping
    the last good checkpoint, and TrainingInterrupted on Ctrl-C after saving the current state.
    """
    step = int(state.step)
    start_step = step
    last_saved = store.latest_step()
    validation: dict[str, float] = {}
    train_metrics: dict[str, float] = {}
    started = time.perf_counter()
    window_start, window_step = started, step

    def report(record: dict[str, Any]) -> None:
        run.append_metrics({"stage": stage, "step": step, "time": time.time(), **record})
        if on_step is not None:
            on_step({"step": step, "total_steps": schedule.total_steps, **record})

    def diverged(what: str, value: float) -> TrainingDiverged:
        kept = f"kept checkpoint ep{last_saved}" if last_saved is not None else "no checkpoint was saved"
        return TrainingDiverged(f"{stage} {what} became {value} at step {step}; {kept} in {store.directory}")

    try:
        if step >= schedule.total_steps:
            # Already trained this far: report the checkpoint's validation instead of training.
            validation = validate(state.params)
        while step < schedule.total_steps:
            state, metrics = train_step(state, next(batches))
            step += 1
            is_eval = step % schedule.eval_every == 0 or step == schedule.total_steps
            if step % schedule.log_every == 0 or is_eval:
                train_metrics = _as_floats(metrics)
                if not math.isfinite(train_metrics["loss"]):
                    raise diverged("loss", train_metrics["loss"])
                now = time.perf_counter()
                rate = (step - window_step) * items_per_batch / max(now - window_start, 1e-9)
                window_start, window_step = now, step
                report({"kind": "train", **train_metrics, "items_per_second": rate})
            if is_eval:
                if not all_finite(state.params):
                    raise diverged("parameters", float("nan"))
                validation = validate(state.params)
                if not math.isfinite(validation[best_metric]):
                    raise diverged(best_metric, validation[best_metric])
                report({"kind": "validation", **validation})
                store.save(step, state, saved_config, metrics=validation, best_metric=validation[best_metric])
                last_saved = step
    except KeyboardInterrupt:
        step = int(state.step)  # the state's own counter: Ctrl-C may land between an update and `step += 1`
        if step != last_saved and all_finite(state.params):
            store.save(step, state, saved_config, metrics={"interrupted": True})
            last_saved = step
        store.wait()
        raise TrainingInterrupted(
            f"interrupted at {stage} step {step}; saved {checkpoint_path(store, last_saved)}; "
            "run the same command again to resume"
        ) from None
    store.wait()
    return {
        "stage": stage,
        "step": step,
        "total_steps": schedule.total_steps,
        "resumed_from": start_step if start_step > 0 else None,
        "train": train_metrics,
        "validation": validation,
        "checkpoint": checkpoint_path(store, store.latest_step()),
        "best_checkpoint": checkpoint_path(store, store.best_step()),
        "wall_seconds": time.perf_counter() - started,
    }
