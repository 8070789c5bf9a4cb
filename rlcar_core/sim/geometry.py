"""Where the car is relative to the track: map lookups, position along the lap, collisions."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.sim.bank import TrackBank, obstacle_distance


class TrackPosition(NamedTuple):
    arc: jax.Array  # metres along the centre line from the start line, in [0, length)
    lateral: jax.Array  # signed metres to the left of the centre line
    road_heading: jax.Array  # direction of travel of the road here, radians


def map_flat_index(bank: TrackBank, track_id: jax.Array, points: jax.Array) -> jax.Array:
    """Flat index into the (T, G, G) maps for world ``points`` (..., 2); outside points clamp to the border."""
    size = bank.map_size
    cells = jnp.floor((points + bank.world_half_size) / bank.map_resolution).astype(jnp.int32)
    cells = jnp.clip(cells, 0, size - 1)
    return (track_id * size + cells[..., 1]) * size + cells[..., 0]


def gather_map(map_stack: jax.Array, flat_index: jax.Array) -> jax.Array:
    # Indices are clamped by map_flat_index, so skip the bounds handling XLA would add.
    return map_stack.reshape(-1).at[flat_index].get(mode="promise_in_bounds")


def locate(bank: TrackBank, track_id: jax.Array, position: jax.Array) -> TrackPosition:
    """Project ``position`` onto the closer of the two centre-line segments around its nearest point."""
    n = bank.centreline.shape[1]
    nearest = gather_map(bank.nearest_index, map_flat_index(bank, track_id, position)).astype(jnp.int32)
    starts = jnp.stack([nearest - 1, nearest]) % n
    a = bank.centreline[track_id, starts]
    b = bank.centreline[track_id, (starts + 1) % n]
    ab = b - a
    t = jnp.clip(jnp.sum((position - a) * ab, -1) / jnp.maximum(jnp.sum(ab * ab, -1), 1e-9), 0.0, 1.0)
    foot = a + t[:, None] * ab
    dist = jnp.linalg.norm(position - foot, axis=-1)
    best = jnp.argmin(dist)
    spacing = bank.length[track_id] / n
    arc = jnp.mod((starts[best] + t[best]) * spacing, bank.length[track_id])
    direction = ab[best]
    offset = position - foot[best]
    lateral = (direction[0] * offset[1] - direction[1] * offset[0]) / jnp.maximum(
        jnp.linalg.norm(direction), 1e-9
    )
    return TrackPosition(arc, lateral, jnp.arctan2(direction[1], direction[0]))


def wrap_angle(angle: jax.Array) -> jax.Array:
    return jnp.mod(angle + jnp.pi, 2 * jnp.pi) - jnp.pi


def hits_obstacle(bank: TrackBank, track_id: jax.Array, position: jax.Array, car_radius: float) -> jax.Array:
    gap = obstacle_distance(
        position,
        bank.obstacles[track_id],
        bank.obstacle_radii[track_id],
        bank.obstacle_headings[track_id],
        bank.obstacle_square,
    )
    return jnp.any(gap < car_radius)


def off_map(bank: TrackBank, position: jax.Array, car_radius: float) -> jax.Array:
    return jnp.any(jnp.abs(position) > bank.world_half_size - car_radius)
