"""Ray sensors: distances to the road edge or an obstacle, by sphere tracing the free-space map."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlcar_core.sim.bank import TrackBank
from rlcar_core.sim.geometry import gather_map, map_flat_index

# A fixed number of steps keeps shapes static under vmap; sphere tracing converges in a few steps on
# open road and only grazing rays along an edge stop short, which under-reports (never over-reports).
RAY_MARCH_STEPS = 14
CONVERGED = 0.05  # metres: closer than this to an edge, the ray has hit it


def cast_rays(
    bank: TrackBank,
    track_id: jax.Array,
    position: jax.Array,
    heading: jax.Array,
    angles: jax.Array,
    max_range,
) -> jax.Array:
    """Distance in metres along each ray (R,) before leaving the drivable area, capped at ``max_range``."""
    directions = jnp.stack([jnp.cos(heading + angles), jnp.sin(heading + angles)], axis=-1)

    def march(_, travelled):
        points = position + travelled[:, None] * directions
        clearance = gather_map(bank.free_space, map_flat_index(bank, track_id, points)).astype(jnp.float32)
        step = jnp.where(clearance > CONVERGED, clearance, 0.0)
        return jnp.minimum(travelled + step, max_range)

    return jax.lax.fori_loop(0, RAY_MARCH_STEPS, march, jnp.zeros(angles.shape, jnp.float32), unroll=True)
