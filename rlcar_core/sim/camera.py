"""The egocentric camera (64x64 by default): the colour map resampled around the car, heading up."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlcar_core.sim.bank import TrackBank, unpack_colour
from rlcar_core.sim.car import body_frame
from rlcar_core.sim.geometry import gather_map, map_flat_index

CAMERA_SIZE = 64
CAR_COLOUR = jnp.uint32(0xFF2020D0)  # RGBA bytes (208, 32, 32, 255)
CAR_HALF_LENGTH, CAR_HALF_WIDTH = 2.0, 1.0


def camera_offsets(resolution, forward_rows, size: int = CAMERA_SIZE) -> tuple[jax.Array, jax.Array]:
    """Metres ahead of and to the right of the car for every camera pixel (size, size)."""
    rows = jnp.arange(size, dtype=jnp.float32)[:, None]
    cols = jnp.arange(size, dtype=jnp.float32)[None, :]
    ahead = (forward_rows - rows - 0.5) * resolution
    right = (cols - size / 2 + 0.5) * resolution
    return jnp.broadcast_to(ahead, (size, size)), jnp.broadcast_to(right, (size, size))


def render_camera(
    bank: TrackBank,
    track_id: jax.Array,
    position: jax.Array,
    heading: jax.Array,
    resolution,
    forward_rows,
    size: int = CAMERA_SIZE,
) -> jax.Array:
    """(size, size, 3) uint8 view; one nearest-neighbour gather of a packed RGBA word per pixel. `size`
    is static (it is the frame's shape)."""
    ahead, right = camera_offsets(resolution, forward_rows, size)
    forward, left = body_frame(heading)
    points = position + ahead[..., None] * forward - right[..., None] * left
    packed = gather_map(bank.colour, map_flat_index(bank, track_id, points))
    on_car = (jnp.abs(ahead) < CAR_HALF_LENGTH) & (jnp.abs(right) < CAR_HALF_WIDTH)
    return unpack_colour(jnp.where(on_car, CAR_COLOUR, packed))
