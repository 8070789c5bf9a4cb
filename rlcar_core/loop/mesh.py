"""Data parallelism on JAX's own sharding: one `Mesh` axis over devices, the batch split along it,
parameters and optimiser state replicated. `jax.jit` then compiles one global step and XLA inserts
the gradient all-reduce where the replicated parameters meet the sharded batch (no pmap, no
hand-written collectives). The same helpers work over one process's local devices and over every
process's devices after `jax.distributed.initialize` (see `loop.distributed`).

    mesh = data_mesh(devices=None)                       # every device of every process
    state = replicate(mesh, state)                       # params, optimiser state: a copy per device
    batch = shard_batch(mesh, local_batch, axis=0)       # this process's rows of the global batch
    state, metrics = jax.jit(update)(state, batch, key)  # one global step
    metrics = fetch(metrics)                             # numpy, readable on every process
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlcar_core.errors import RlcarError

DATA_AXIS = "data"


def data_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh over `devices` local devices of every process (None: all of them).

    Devices are ordered process by process, so process p's local devices hold a contiguous block of
    the global batch: the block `shard_batch` gives it.
    """
    local = jax.local_device_count()
    if devices is None:
        devices = local
    if not 1 <= devices <= local:
        raise RlcarError(
            f"--devices must be between 1 and {local} (this process's local devices), got {devices}"
        )
    chosen = []
    for process in range(jax.process_count()):
        mine = sorted(
            (device for device in jax.devices() if device.process_index == process), key=lambda d: d.id
        )
        chosen += mine[:devices]
    return Mesh(np.asarray(chosen), (DATA_AXIS,))


def local_device_count(mesh: Mesh) -> int:
    """How many of the mesh's devices this process drives."""
    return sum(device.process_index == jax.process_index() for device in mesh.devices.flat)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split along `axis` over the mesh's data axis (axis 1 for stacked (K, B, ...) batches)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def replicate(mesh: Mesh, tree: Any) -> Any:
    """A copy of `tree` on every device of the mesh (every process passes the same values)."""
    sharding = replicated(mesh)

    def place(leaf):
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(fetch_leaf(leaf)))

    return jax.tree.map(place, tree)


def shard_batch(mesh: Mesh, local_tree: Any, axis: int = 0) -> Any:
    """Global arrays split along `axis`, built from this process's part of every leaf (its rows,
    which its local devices hold). With one process the part is the whole batch."""
    sharding = batch_sharded(mesh, axis)
    processes = jax.process_count()

    def place(leaf):
        leaf = np.asarray(leaf)
        global_shape = leaf.shape[:axis] + (leaf.shape[axis] * processes,) + leaf.shape[axis + 1 :]
        return jax.make_array_from_process_local_data(sharding, leaf, global_shape)

    return jax.tree.map(place, local_tree)


def fetch_leaf(leaf: Any) -> Any:
    """A numpy copy of a replicated (or fully addressable) array, readable on any process."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return np.asarray(leaf.addressable_data(0))
    return np.asarray(jax.device_get(leaf))


def fetch(tree: Any) -> Any:
    return jax.tree.map(fetch_leaf, tree)


def local_copy(tree: Any, device: jax.Device | None = None) -> Any:
    """A replicated tree as plain single-device arrays (for a policy jitted on one local device)."""
    device = device or jax.local_devices()[0]

    def one(leaf):
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
            for shard in leaf.addressable_shards:
                if shard.device == device:
                    return shard.data
            return jax.device_put(shard.data, device)
        return leaf

    return jax.tree.map(one, tree)


def split_evenly(total: int, parts: int, what: str) -> int:
    """`total / parts`, or one clear line when it does not divide."""
    if total % parts:
        raise RlcarError(f"{what} ({total}) must be a multiple of the device count ({parts})")
    return total // parts
