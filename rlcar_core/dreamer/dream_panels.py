"""Drawing one observation as a picture, so real and dreamed observations can sit side by side.

Pixels are enlarged; sensor readings are drawn from the car's point of view: each ray as a line from
the car as long as the distance it reads, and the other sensors (speed, slide, heading error, lateral
offset, steering) as bars underneath.
"""

from __future__ import annotations

import numpy as np

from rlcar_core.render.hud import array_from_surface, pygame_module, with_hud
from rlcar_core.sim.env import EXTRA_SENSORS
from rlcar_core.sim.params import DEFAULT_RAY_ANGLES_DEG, RAY_RANGE

PANEL_SIZE = 256
GAP = 4
HUD_BAND = 8 + 20 * 5 + 8  # room for five HUD lines
_CAR = (PANEL_SIZE // 2, 180)  # the car's position in a sensor panel, facing up
_OBSTACLE = (240, 150, 20)  # the obstacles' colour on the track
_RAY_PIXELS = 160  # a ray at full range is this long
_BAR_TOP = 200


def pixel_panel(frame: np.ndarray) -> np.ndarray:
    scale = PANEL_SIZE // frame.shape[0]
    return np.repeat(np.repeat(np.asarray(frame, np.uint8), scale, axis=0), scale, axis=1)


def sensor_panel(sensors: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Rays (metres, then the extra sensors, as in `RLCar.sensors`) seen from above."""
    pg = pygame_module()
    surface = pg.Surface((PANEL_SIZE, PANEL_SIZE))
    surface.fill((24, 24, 28))
    sensors = np.nan_to_num(np.asarray(sensors, np.float64))
    num_rays = len(DEFAULT_RAY_ANGLES_DEG)
    angles = np.deg2rad(np.asarray(DEFAULT_RAY_ANGLES_DEG))
    lengths = np.clip(sensors[:num_rays] / RAY_RANGE, 0.0, 1.0) * _RAY_PIXELS
    # Positive angles point to the car's left, which is the screen's left when the car faces up.
    ends_x = _CAR[0] - lengths * np.sin(angles)
    ends_y = _CAR[1] - lengths * np.cos(angles)
    for end_x, end_y in zip(ends_x, ends_y, strict=True):
        pg.draw.line(surface, colour, _CAR, (int(end_x), int(end_y)), 2)
        pg.draw.circle(surface, (255, 255, 255), (int(end_x), int(end_y)), 3)
    # Obstacle rays (after the extras) mark the obstacles they meet; at full range they met none.
    obstacle_rays = sensors[num_rays + len(EXTRA_SENSORS) : 2 * num_rays + len(EXTRA_SENSORS)]
    for angle, distance in zip(angles[: len(obstacle_rays)], obstacle_rays, strict=True):
        if distance < 0.99 * RAY_RANGE:
            length = max(distance, 0.0) / RAY_RANGE * _RAY_PIXELS
            centre = (int(_CAR[0] - length * np.sin(angle)), int(_CAR[1] - length * np.cos(angle)))
            pg.draw.circle(surface, _OBSTACLE, centre, 5)
    pg.draw.rect(surface, (230, 60, 60), pg.Rect(_CAR[0] - 5, _CAR[1] - 8, 10, 16))
    extras = sensors[num_rays : num_rays + len(EXTRA_SENSORS)]
    bar_width = PANEL_SIZE // max(len(extras), 1)
    for index, value in enumerate(np.clip(extras, -1.0, 1.0)):
        centre_x = index * bar_width + bar_width // 2
        height = int(abs(value) * 24)
        top = _BAR_TOP + 28 - (height if value > 0 else 0)
        pg.draw.rect(surface, colour, pg.Rect(centre_x - 6, top, 12, max(height, 1)))
        pg.draw.line(surface, (90, 90, 90), (centre_x - 10, _BAR_TOP + 28), (centre_x + 10, _BAR_TOP + 28))
    return array_from_surface(surface)


def observation_panel(obs: np.ndarray, obs_kind: str, colour: tuple[int, int, int]) -> np.ndarray:
    return pixel_panel(obs) if obs_kind == "pixels" else sensor_panel(obs, colour)


def side_by_side(left: np.ndarray, right: np.ndarray, hud: dict[str, str]) -> np.ndarray:
    """Two panels with a white gap between them, under a band that holds the HUD (so it hides neither)."""
    gap = np.full((left.shape[0], GAP, 3), 255, np.uint8)
    panels = np.concatenate([left, gap, right], axis=1)
    band = np.zeros((HUD_BAND, panels.shape[1], 3), np.uint8)
    return with_hud(np.concatenate([band, panels], axis=0), hud)
