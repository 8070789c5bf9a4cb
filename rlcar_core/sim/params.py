"""Environment parameters: an immutable pytree passed to every ``reset``/``step`` (gymnax style)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.sim.bank import TrackBank

# Ray directions relative to the car's heading; denser ahead, where the driving decisions are.
DEFAULT_RAY_ANGLES_DEG = (-90.0, -60.0, -40.0, -25.0, -12.0, -5.0, 0.0, 5.0, 12.0, 25.0, 40.0, 60.0, 90.0)
RAY_RANGE = 40.0  # metres


class CarParams(NamedTuple):
    """A bicycle model with a friction limit: what grip cannot hold turns into a slide (drift)."""

    wheelbase: float = 2.6
    car_radius: float = 1.2  # collision radius around the car's centre
    max_steer: float = 0.5  # rad at full lock
    steer_response: float = 12.0  # 1/s: how fast the wheels follow the steering command
    engine_accel: float = 9.0  # m/s^2 at standstill, fading to zero at max_speed
    max_speed: float = 30.0
    brake_decel: float = 16.0
    rolling_decel: float = 0.6
    road_grip: float = 12.0  # lateral acceleration the tyres hold on tarmac, m/s^2
    grass_grip: float = 5.0
    grass_decel: float = 5.0  # extra drag on the grass
    grass_engine: float = 0.5  # fraction of engine power that reaches the ground on grass
    yaw_grip_margin: float = 1.6  # how far the body may rotate beyond what grip holds: oversteer


class EnvParams(NamedTuple):
    bank: TrackBank
    car: CarParams = CarParams()
    ray_angles: jax.Array = jnp.deg2rad(jnp.asarray(DEFAULT_RAY_ANGLES_DEG, jnp.float32))
    ray_range: float = RAY_RANGE
    dt: float = 0.1
    max_steps: int = 1000
    progress_reward: float = 100.0  # reward for one whole lap
    time_penalty: float = 0.05  # per step: going fast pays
    crash_penalty: float = 20.0
    start_jitter: float = 1.0  # metres of lateral jitter at reset; heading jitter scales with it
    # The camera's frame size is static, so it is the simulator's (`RLCar(camera_size=...)`); all of the
    # camera's settings together are a `rlcar_core.sim.camera_spec.CameraSpec`.
    camera_resolution: float = 0.6  # metres per camera pixel
    camera_forward_rows: int = 48  # rows of the image (64 by default) that lie ahead of the car


def ray_angles_from_degrees(degrees) -> jax.Array:
    return jnp.deg2rad(jnp.asarray(np.asarray(degrees, np.float32)))
