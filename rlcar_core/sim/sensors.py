"""Ray sensors: distances to the road edge or an obstacle, by sphere tracing the free-space map, and
distances to the obstacles alone, by intersecting each ray with the obstacles' circles."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.sim.bank import TrackBank
from rlcar_core.sim.geometry import gather_map, map_flat_index

# A fixed number of steps keeps shapes static under vmap; sphere tracing converges in a few steps on
# open road and only grazing rays along an edge stop short, which under-reports (never over-reports).
RAY_MARCH_STEPS = 14
CONVERGED = 0.05  # metres: closer than this to an edge, the ray has hit it


def ray_directions(heading: jax.Array, angles: jax.Array) -> jax.Array:
    """Unit vectors (R, 2) of rays at `angles` from the car's heading."""
    return jnp.stack([jnp.cos(heading + angles), jnp.sin(heading + angles)], axis=-1)


class RayFan(NamedTuple):
    """The car's rays: both sensor sets (road edge, obstacles) cast the same fan."""

    origin: jax.Array  # (2,) the car's position
    directions: jax.Array  # (R, 2) unit vectors
    max_range: float


def ray_fan(position: jax.Array, heading: jax.Array, angles: jax.Array, max_range) -> RayFan:
    return RayFan(position, ray_directions(heading, angles), max_range)


def cast_rays(bank: TrackBank, track_id: jax.Array, fan: RayFan) -> jax.Array:
    """Distance in metres along each ray (R,) before leaving the drivable area, capped at its range."""

    def march(_, travelled):
        points = fan.origin + travelled[:, None] * fan.directions
        clearance = gather_map(bank.free_space, map_flat_index(bank, track_id, points)).astype(jnp.float32)
        step = jnp.where(clearance > CONVERGED, clearance, 0.0)
        return jnp.minimum(travelled + step, fan.max_range)

    start = jnp.zeros(fan.directions.shape[:1], jnp.float32)
    return jax.lax.fori_loop(0, RAY_MARCH_STEPS, march, start, unroll=True)


# An obstacle counts as seen when its circle lies no further along the ray than where the ray stopped
# (sphere tracing stops up to CONVERGED short, and grazing rays a little more).
OCCLUSION_SLACK = 1.0  # metres


def _square_hits(fan: RayFan, to_centre, half_side, headings) -> tuple[jax.Array, jax.Array]:
    """Entry distance and hit flag (R, K) of each ray on each square obstacle (slab method in the
    square's own frame: sides along and across the road)."""
    cos, sin = jnp.cos(headings), jnp.sin(headings)  # (K,)
    # The ray's origin and direction in each square's frame, its centre at 0.
    origin = jnp.stack(
        [-(to_centre[:, 0] * cos + to_centre[:, 1] * sin), to_centre[:, 0] * sin - to_centre[:, 1] * cos], -1
    )
    dx, dy = fan.directions[:, None, 0], fan.directions[:, None, 1]  # (R, 1)
    direction = jnp.stack([dx * cos + dy * sin, -dx * sin + dy * cos], -1)  # (R, K, 2)
    safe = jnp.where(jnp.abs(direction) < 1e-9, 1e-9, direction)
    low = (-half_side[:, None] - origin) / safe  # (R, K, 2)
    high = (half_side[:, None] - origin) / safe
    enter = jnp.max(jnp.minimum(low, high), axis=-1)
    leave = jnp.min(jnp.maximum(low, high), axis=-1)
    return jnp.maximum(enter, 0.0), (leave >= enter) & (leave >= 0.0)


def obstacle_rays(bank: TrackBank, track_id: jax.Array, fan: RayFan, ray_distances: jax.Array) -> jax.Array:
    """Distance in metres along each ray (R,) to the obstacle it hits, or the fan's range when it hits the
    road edge first or nothing at all.

    The road-edge rays alone cannot tell an obstacle (a crash) from the road's edge (grass, which is
    allowed); this second set of rays can. ``ray_distances`` are `cast_rays`' for the same rays.
    """
    to_centre = bank.obstacles[track_id] - fan.origin  # (K, 2)
    radius = bank.obstacle_radii[track_id]  # (K,)
    along = fan.directions @ to_centre.T  # (R, K): closest approach of each ray to each centre
    miss_squared = jnp.sum(jnp.square(to_centre), axis=-1)[None] - jnp.square(along)
    half_chord_squared = jnp.square(radius)[None] - miss_squared
    half_chord = jnp.sqrt(jnp.maximum(half_chord_squared, 0.0))
    # Inside a circle (a crash) the obstacle is at distance 0; behind the car it is not hit.
    entry = jnp.maximum(along - half_chord, 0.0)
    hit = (half_chord_squared >= 0.0) & (along + half_chord >= 0.0)
    square_entry, square_hit = _square_hits(fan, to_centre, radius, bank.obstacle_headings[track_id])
    entry = jnp.where(bank.obstacle_square, square_entry, entry)
    hit = jnp.where(bank.obstacle_square, square_hit, hit)
    distance = jnp.min(jnp.where(hit, entry, fan.max_range), axis=-1)
    visible = distance <= ray_distances + OCCLUSION_SLACK
    return jnp.minimum(jnp.where(visible, distance, fan.max_range), fan.max_range)
