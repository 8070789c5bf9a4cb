"""What V and M share: their train state, their Adam update, and their loop on the loop kit.

Both are fitted by gradient descent on batches from the run's dataset; only the loss, the batches and
the validation differ, and those arrive as arguments. The loop is `rlcar_core.loop` put together:
the `Checkpointer` resumes (falling back past damaged steps), stops on a NaN keeping the last good
checkpoint and saves on Ctrl-C; the `MetricsLogger` writes `<model>/<name>` records; random keys are
`stream_key(seed, UPDATE_STREAM, step)`, folded inside the jitted step and never checkpointed.

Batches are read ahead by a background thread (`io.data.prefetch`), which also places each one on
the devices, so the update never waits on the disk. Given a mesh (`--devices`), the batch is split
over its devices, the train state is replicated, and `jax.jit` with those shardings compiles one
global step whose gradient all-reduce XLA inserts (see `loop.mesh`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import optax
from jax.sharding import Mesh

from rlcar_core.io.data.prefetch import Prefetcher
from rlcar_core.loop import mesh as meshes
from rlcar_core.loop.checkpointer import Checkpointer
from rlcar_core.loop.keys import stream_base
from rlcar_core.loop.metrics import MetricsLogger
from rlcar_core.loop.schedule import Every
from rlcar_core.loop.stop import StopFlag

Metrics = dict[str, jax.Array]
StepCallback = Callable[[dict[str, Any]], None]
UPDATE_STREAM = 0  # the loop-kit key stream of the updates (other draws use numpy generators)


class TrainState(NamedTuple):
    """What V and M checkpoint: no key, since keys are folded from the seed and `step`."""

    params: optax.Params
    opt_state: optax.OptState
    step: jax.Array  # () int32, updates done


def make_supervised_update(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """`update(state, batch, key) -> (state, metrics)` for `loss_fn(params, batch, key) -> (loss, aux)`
    where `aux` is a NamedTuple of the loss terms; metrics are those terms plus the gradient norm."""

    def update(state: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, Metrics]:
        grads, losses = jax.grad(loss_fn, has_aux=True)(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**losses._asdict(), "grad_norm": optax.tree.norm(grads)}
        return TrainState(params, opt_state, state.step + 1), metrics

    return update


def keyed_train_step(update: Callable) -> Callable:
    """Jitted `train_step(state, batch, stream) -> (state, metrics)`: the update's key is folded from the
    stream's base key (`stream_base(seed, UPDATE_STREAM)`) and the state's step, inside the one call."""

    def train_step(state: TrainState, batch: Any, stream: jax.Array):
        return update(state, batch, jax.random.fold_in(stream, state.step))

    return jax.jit(train_step)


def training_mesh(devices: int | None, batch_size: int) -> Mesh:
    """The mesh `fit` shards batches over: `devices` local devices (None: all), checked to split
    `batch_size` evenly (one clear line otherwise); call it before opening a training session."""
    mesh = meshes.data_mesh(devices)
    meshes.split_evenly(batch_size, mesh.devices.size, "--batch-size")
    return mesh


@functools.cache
def sharded_train_step(train_step: Callable, mesh: Mesh) -> Callable:
    """`train_step` as one global step over `mesh`: batch split along its first axis, state, key and
    metrics replicated. Cached, so a model shape compiles once per mesh."""
    replicated = meshes.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(replicated, meshes.batch_sharded(mesh), replicated),
        out_shardings=(replicated, replicated),
    )


@dataclasses.dataclass(frozen=True)
class Schedule:
    total_steps: int  # train until the state's step counter reaches this (a resumed run continues)
    eval_every: int  # validate and checkpoint this often, and always at the end
    log_every: int  # fetch, check and log the training metrics this often


def fit(
    *,
    stage: str,
    ckpt: Checkpointer,
    log: MetricsLogger,
    stop: StopFlag,
    state: TrainState,
    train_step: Callable,
    seed: int,
    batches: Iterator[Any],
    validate: Callable[[Any], dict[str, float]],
    best_metric: str,
    saved_config: dict[str, Any],
    schedule: Schedule,
    items_per_batch: int,
    on_step: StepCallback | None = None,
    mesh: Mesh | None = None,
) -> dict[str, Any]:
    """Run `train_step` (from `keyed_train_step`) over `batches` up to `schedule.total_steps`.

    `batches` are read ahead in a background thread, stopped and joined however the loop ends. With
    a `mesh` (from `training_mesh`) every batch is split over its devices and the state replicated.

    Every `eval_every` steps and at the end: `validate(params)` and a checkpoint ranked by
    `validation[best_metric]`. A NaN raises TrainingDiverged (the last good checkpoint kept); a stop
    request saves the current state and raises TrainingInterrupted.
    """
    model = log.trainer  # the `<model>/` prefix of every logged value
    step = start_step = int(state.step)
    stream = stream_base(seed, UPDATE_STREAM)
    evaluate_every, log_every = Every(schedule.eval_every), Every(schedule.log_every)
    validation: dict[str, float] = {}
    train_metrics: dict[str, float] = {}
    started = time.perf_counter()
    window_start, window_step = started, step

    def report(record: dict[str, Any]) -> None:
        if on_step is not None:
            on_step({**record, "total_steps": schedule.total_steps})

    place_batch = None
    if mesh is not None:
        state = meshes.replicate(mesh, state)
        train_step = sharded_train_step(train_step, mesh)
        stream = meshes.replicate(mesh, stream)
        place_batch = functools.partial(meshes.shard_batch, mesh)
    if step >= schedule.total_steps:
        # Already trained this far: report the checkpoint's validation instead of training.
        validation = validate(state.params)
    # The prefetch thread starts only when there is training to do, and is joined however it ends.
    with Prefetcher(batches if step < schedule.total_steps else iter(()), transform=place_batch) as ahead:
        while step < schedule.total_steps and not stop.requested:
            state, metrics = train_step(state, next(ahead), stream)
            step += 1
            last = step == schedule.total_steps
            where = f"step {step}"
            if log_every.due(step) or evaluate_every.due(step) or last:
                train_metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
                ckpt.check_finite({f"{model}/loss": train_metrics["loss"]}, where=where, step=step)
                now = time.perf_counter()
                rate = (step - window_step) * items_per_batch / max(now - window_start, 1e-9)
                window_start, window_step = now, step
                values = {f"{model}/{name}": value for name, value in train_metrics.items()}
                report(log.log("train", step, {**values, f"{model}/items_per_second": rate}))
            if evaluate_every.due(step) or last:
                ckpt.check_params(state.params, where=where, step=step)
                validation = validate(state.params)
                ckpt.check_finite({f"{model}/{best_metric}": validation[best_metric]}, where=where, step=step)
                report(log.log("eval", step, {f"{model}/{n}": v for n, v in validation.items()}))
                ckpt.save(step, state, saved_config, metrics=validation, best_metric=validation[best_metric])
    if stop.requested and step < schedule.total_steps:
        raise ckpt.interrupted(step, state, saved_config, where=f"{stage} step {step}")
    ckpt.wait()
    return {
        "stage": stage,
        "step": step,
        "total_steps": schedule.total_steps,
        "resumed_from": start_step if start_step > 0 else None,
        "train": train_metrics,
        "validation": validation,
        "checkpoint": ckpt.path(ckpt.store.latest_step()),
        "best_checkpoint": ckpt.path(ckpt.store.best_step()),
        "wall_seconds": time.perf_counter() - started,
    }
