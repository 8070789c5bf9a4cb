"""The learner side of train-dreamer: replay windows in, K updates per jitted call, metrics out.

What is learned is fixed by the update number u alone: update u trains on the windows drawn with
`np.random.default_rng([seed, u])` and the key `stream_key(seed, UPDATE_STREAM, u)`, whether it runs
alone (`updates_per_call=1`, the path before fusing) or as step k of a `lax.scan` over K updates in one
call. Fusing only removes K - 1 dispatches and host round trips (the metrics of all K updates come
back together, for the NaN check and the logs). Pixel models are not fused (see `Learner.__init__`).

Data parallel: the batch is split over the devices of a `loop.mesh` mesh and the training state is
replicated; the jitted call is one global step whose gradient all-reduce XLA inserts. The cars, and
so the replay's streams, are split the same way: each device's part of the batch is drawn from its own
block of streams (with its own seed `[seed, u, device]`). With one device this is exactly the
single-device learner. Across processes (`loop.distributed`), each process holds only its own cars'
replay and draws its devices' parts.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.replay import ReplayBuffer
from rlcar_core.dreamer.train_state import TrainingState
from rlcar_core.dreamer.update import update
from rlcar_core.loop import mesh as meshes

# Key streams derived from the seed (see rlcar_core.loop.keys); train.py collects on stream 0.
UPDATE_STREAM = 1
# The updates one collection step of train-dreamer's CPU defaults owes (8 cars x ratio 64 / (8 x 16)).
DEFAULT_UPDATES_PER_CALL = 4

Metrics = dict[str, float]


def update_key(seed: int, counter: jax.Array) -> jax.Array:
    """`loop.keys.stream_key(seed, UPDATE_STREAM, counter)`, traceable inside jit."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), UPDATE_STREAM), counter)


def _single(state, batch, counter, *, config: DreamerConfig, seed: int):
    return update(state, batch, update_key(seed, counter), config=config)


def _fused(state, batches, counters, *, config: DreamerConfig, seed: int):
    def body(state, inputs):
        batch, counter = inputs
        return update(state, batch, update_key(seed, counter), config=config)

    return jax.lax.scan(body, state, (batches, counters))


@functools.cache
def compiled_step(config: DreamerConfig, seed: int, mesh: Mesh, fused: bool, donate: bool):
    """One jitted learner step per (config, seed, mesh, kind), shared by every Learner in the process."""
    state_sharding = meshes.replicated(mesh)
    batch_sharding = meshes.batch_sharded(mesh, axis=1 if fused else 0)
    function = functools.partial(_fused if fused else _single, config=config, seed=seed)
    return jax.jit(
        function,
        in_shardings=(state_sharding, batch_sharding, state_sharding),
        out_shardings=(state_sharding, state_sharding),
        donate_argnums=(0,) if donate else (),
        compiler_options=cpu_compiler_options(mesh),
    )


def cpu_compiler_options(mesh: Mesh) -> dict[str, str] | None:
    """XLA options for the learner step on a CPU (None elsewhere).

    XLA's CPU backend hands fusions of dots, reductions and elementwise ops to YNNPACK by default; for
    the pixel models' convolution gradients and norms that ran 1.27x slower than its own kernels
    (tiny pixels, 678 -> 862 replayed steps/s on 2 cores) and made no difference to sensor models.
    """
    if mesh.devices.flat[0].platform != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": ""}


class Learner:
    """Draws the replay windows of updates u, u+1, ... and runs them, K per jitted call."""

    def __init__(
        self,
        config: DreamerConfig,
        batch_size: int,
        batch_length: int,
        seed: int,
        mesh: Mesh | None = None,
        fused: bool | None = None,
        donate: bool = False,
    ):
        self.config, self.seed = config, seed
        self.batch_size, self.batch_length = batch_size, batch_length
        self.mesh = mesh if mesh is not None else meshes.data_mesh(1)
        self.num_shards = self.mesh.devices.size
        self.local_shards = meshes.local_device_count(self.mesh)
        self.first_shard = jax.process_index() * self.local_shards
        self.shard_batch_size = meshes.split_evenly(batch_size, self.num_shards, "--batch-size")
        # XLA's CPU backend runs convolutions inside a loop body (the K-scan) about 5x slower than at
        # the top level, so pixel models run one update per call; sensor models gain ~1.4x from fusing.
        self.fused = config.obs_kind != "pixels" if fused is None else fused
        self.donate = donate

    def place(self, state: TrainingState) -> TrainingState:
        """The training state replicated over the mesh (what `train` takes and returns)."""
        return meshes.replicate(self.mesh, state)

    def sample(self, replay: ReplayBuffer, update_index: int) -> dict[str, np.ndarray]:
        """This process's rows of update `update_index`'s batch (all rows with one process)."""
        if self.num_shards == 1:
            rng = np.random.default_rng([self.seed, update_index])
            return replay.sample(self.batch_size, self.batch_length, rng)
        per_device = meshes.split_evenly(replay.num_streams, self.local_shards, "the cars of each process")
        parts = []
        for local in range(self.local_shards):
            rng = np.random.default_rng([self.seed, update_index, self.first_shard + local])
            streams = slice(local * per_device, (local + 1) * per_device)
            parts.append(replay.sample(self.shard_batch_size, self.batch_length, rng, streams))
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def can_sample(self, replay: ReplayBuffer) -> bool:
        """Every device's block of streams holds a window (with one device: the replay does)."""
        if self.local_shards == 1:
            return replay.can_sample(self.batch_length)
        per_device = replay.num_streams // self.local_shards
        windows = replay.windows_per_stream(self.batch_length)
        return all(windows[d * per_device : (d + 1) * per_device].sum() > 0 for d in range(self.local_shards))

    def train(
        self, state: TrainingState, replay: ReplayBuffer, first_update: int, count: int
    ) -> tuple[TrainingState, list[Metrics]]:
        """Runs updates `first_update` .. `first_update + count - 1`; returns the new state and each
        update's metrics as floats (the state is replaced even when a loss is not finite: check the
        metrics before keeping it)."""
        if not self.fused:
            metrics_list = []
            for index in range(first_update, first_update + count):
                state, metrics = self._call(state, self.sample(replay, index), np.int32(index))
                metrics_list.append(_floats(meshes.fetch(metrics)))
            return state, metrics_list
        local = [self.sample(replay, index) for index in range(first_update, first_update + count)]
        batches = {name: np.stack([batch[name] for batch in local]) for name in local[0]}
        counters = np.arange(first_update, first_update + count, dtype=np.int32)
        state, metrics = self._call(state, batches, counters)
        stacked = meshes.fetch(metrics)
        return state, [_floats({name: values[k] for name, values in stacked.items()}) for k in range(count)]

    def _call(self, state, batch, counters):
        step = compiled_step(self.config, self.seed, self.mesh, self.fused, self.donate)
        batch = meshes.shard_batch(self.mesh, batch, axis=1 if self.fused else 0)
        counters = meshes.replicate(self.mesh, counters)
        return step(state, batch, counters)

    def flops_per_update(self, state: TrainingState, replay: ReplayBuffer) -> float:
        """XLA's cost analysis of one update with its scans unrolled (a loop body counts once)."""
        import dataclasses

        unrolled = dataclasses.replace(self.config, scan_unroll=0)
        batch = meshes.shard_batch(self.mesh, self.sample(replay, 0))
        function = functools.partial(_single, config=unrolled, seed=self.seed)
        counter = meshes.replicate(self.mesh, np.int32(0))
        compiled = jax.jit(function).lower(state, batch, counter).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, list):
            analysis = analysis[0]
        # Per device under data parallelism: the whole update is num_shards times that.
        return float(analysis.get("flops", float("nan"))) * self.num_shards


def _floats(metrics: Mapping[str, np.ndarray]) -> Metrics:
    return {name: float(value) for name, value in metrics.items()}
