"""The 64x64 egocentric camera: the colour map resampled around the car, heading up."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlcar_core.sim.bank import TrackBank, unpack_colour
from rlcar_core.sim.car import body_frame
from rlcar_core.sim.geometry import gather_map, map_flat_index

CAMERA_SIZE = 64
CAR_COLOUR = jnp.uint32(0xFF2020D0)  # RGBA bytes (208, 32, 32, 255)
CAR_HALF_LENGTH, CAR_HALF_WIDTH = 2.0, 1.0


def camera_offsets(resolution, forward_rows) -> tuple[jax.Array, jax.Array]:
    """Metres ahead of and to the right of the car for every camera pixel (64, 64)."""
    rows = jnp.arange(CAMERA_SIZE, dtype=jnp.float32)[:, None]
    cols = jnp.arange(CAMERA_SIZE, dtype=jnp.float32)[None, :]
    ahead = (forward_rows - rows - 0.5) * resolution
    right = (cols - CAMERA_SIZE / 2 + 0.5) * resolution
    return jnp.broadcast_to(ahead, (CAMERA_SIZE, CAMERA_SIZE)), jnp.broadcast_to(
        right, (CAMERA_SIZE, CAMERA_SIZE)
    )


def render_camera(
    bank: TrackBank, track_id: jax.Array, position: jax.Array, heading: jax.Array, resolution, forward_rows
) -> jax.Array:
    """(64, 64, 3) uint8 view; one nearest-neighbour gather of a packed RGBA word per pixel."""
    ahead, right = camera_offsets(resolution, forward_rows)
    forward, left = body_frame(heading)
    points = position + ahead[..., None] * forward - right[..., None] * left
    packed = gather_map(bank.colour, map_flat_index(bank, track_id, points))
    on_car = (jnp.abs(ahead) < CAR_HALF_LENGTH) & (jnp.abs(right) < CAR_HALF_WIDTH)
    return unpack_colour(jnp.where(on_car, CAR_COLOUR, packed))
