"""Gymnasium's ``CarRacing-v3`` seen through rlcar's conventions: 64x64 pixels without the HUD."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

HUD_ROWS = 84  # CarRacing draws its speed and steering bars below this row
OUTPUT_SIZE = 64
# CarRacing's Box2D world states no unit, and read as metres its car tops 95 units/s on a straight:
# ~350 km/h. Its wheels give a scale: they are 2 * WHEEL_R * SIZE = 2 * 27 * 0.02 = 1.08 units across
# (gymnasium/envs/box2d/car_dynamics.py), where a road car's tyre is about 0.65 m, so a unit is about
# 0.6 m. The rest then agrees: the hull (250 * SIZE = 5 units long) is a 3 m small car, and the road
# (2 * TRACK_WIDTH = 80 / SCALE = 13.3 units, car_racing.py) an 8 m two-lane road. Full gas on a
# straight then reads ~200 km/h, and a good lap averages ~120 km/h.
TYRE_DIAMETER_METRES = 0.65
WHEEL_DIAMETER_UNITS = 2 * 27 * 0.02
METRES_PER_UNIT = TYRE_DIAMETER_METRES / WHEEL_DIAMETER_UNITS


def _bilinear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    low = np.clip(np.floor(centres).astype(int), 0, source - 1)
    high = np.clip(low + 1, 0, source - 1)
    return low, high, np.clip(centres - low, 0.0, 1.0).astype(np.float32)


class HudCropResize:
    """CarRacing's frame without the HUD, resized to 64x64 (bilinear), for one frame (H, W, 3) or a
    batch (..., H, W, 3): the Gymnasium adapter and the EnvPool backend share it, so both hand the
    model the same pixels for the same frame."""

    def __init__(self, height: int, width: int):
        self._rows = _bilinear_taps(min(HUD_ROWS, height), OUTPUT_SIZE)
        self._cols = _bilinear_taps(width, OUTPUT_SIZE)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        image = np.asarray(frames)[..., :HUD_ROWS, :, :].astype(np.float32)
        (r0, r1, rw), (c0, c1, cw) = self._rows, self._cols
        rows = image[..., r0, :, :] * (1 - rw)[:, None, None] + image[..., r1, :, :] * rw[:, None, None]
        out = rows[..., c0, :] * (1 - cw)[:, None] + rows[..., c1, :] * cw[:, None]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def observation_space() -> spaces.Box:
    """One adapted observation: 64x64 RGB."""
    return spaces.Box(0, 255, (OUTPUT_SIZE, OUTPUT_SIZE, 3), dtype=np.uint8)


class CarRacingAdapter(gym.ObservationWrapper):
    """Crops the HUD, resizes to 64x64 (bilinear) and reports rlcar's ``progress``/``lap_complete``/
    ``crashed`` and ``speed`` (m/s, see ``METRES_PER_UNIT``) in ``info``. Actions are the same ``[steer, gas, brake]`` as RLCar's."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._resize = HudCropResize(*env.observation_space.shape[:2])
        self.observation_space = observation_space()

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self._resize(observation)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(np.asarray(action, np.float32))
        return obs, reward, terminated, truncated, self._annotate(info, terminated)

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        return obs, self._annotate(info, False)

    def _annotate(self, info: dict, terminated: bool) -> dict:
        car_racing = self.env.unwrapped
        tiles = max(len(getattr(car_racing, "track", [])), 1)
        lap_complete = bool(info.get("lap_finished", False))
        return {
            **info,
            "progress": np.float32(min(getattr(car_racing, "tile_visited_count", 0) / tiles, 1.0)),
            "lap_complete": lap_complete,
            "crashed": bool(terminated and not lap_complete),
            "speed": np.float32(car_speed_metres_per_second(car_racing)),
        }


def car_speed_metres_per_second(car_racing) -> float:
    """The hull's speed (what Gymnasium's own speed bar shows, in world units/s) in m/s; 0 before
    the first reset builds the car."""
    car = getattr(car_racing, "car", None)
    if car is None or getattr(car, "hull", None) is None:
        return 0.0
    return float(np.linalg.norm(car.hull.linearVelocity)) * METRES_PER_UNIT


def make_carracing(render_mode: str | None = None, max_steps: int = 1000) -> gym.Env:
    env = gym.make("CarRacing-v3", continuous=True, render_mode=render_mode, max_episode_steps=max_steps)
    return CarRacingAdapter(env)
