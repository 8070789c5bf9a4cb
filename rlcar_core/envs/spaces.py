"""Gymnasium spaces of the RLCar environment."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from rlcar_core.sim.camera import CAMERA_SIZE
from rlcar_core.sim.car import ACTION_HIGH, ACTION_LOW
from rlcar_core.sim.env import sensor_bounds
from rlcar_core.sim.params import RAY_RANGE


def action_space() -> spaces.Box:
    return spaces.Box(np.array(ACTION_LOW, np.float32), np.array(ACTION_HIGH, np.float32), dtype=np.float32)


def observation_space(
    obs_kind: str, num_rays: int, ray_range: float = RAY_RANGE, camera_size: int = CAMERA_SIZE
) -> spaces.Space:
    low, high = sensor_bounds(num_rays, ray_range)
    sensors = spaces.Box(low, high, dtype=np.float32)
    pixels = spaces.Box(0, 255, (camera_size, camera_size, 3), dtype=np.uint8)
    if obs_kind == "sensors":
        return sensors
    if obs_kind == "pixels":
        return pixels
    return spaces.Dict({"sensors": sensors, "pixels": pixels})
