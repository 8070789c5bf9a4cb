"""Top-down frames of an RLCar episode: the whole track, the car, its rays, its camera and a HUD.

Used by ``render_mode="rgb_array"|"human"``, ``play`` and ``export-video``. Frames are numpy RGB arrays;
with ``window=True`` they are also shown in a pygame window.
"""

from __future__ import annotations

import jax
import numpy as np

from rlcar_core.render.hud import array_from_surface, draw_hud, pygame_module, surface_from_array
from rlcar_core.sim.bank import unpack_colour
from rlcar_core.sim.car import body_frame
from rlcar_core.sim.env import EnvState, RLCar
from rlcar_core.sim.params import EnvParams

FRAME_SIZE = 640
INSET_SCALE = 2
CAR_LENGTH, CAR_WIDTH = 4.0, 2.0
_sensors = jax.jit(RLCar.sensors)
_pixels = jax.jit(RLCar.pixels)


class TopDownRenderer:
    """Frames of one environment's track bank; ``window=True`` also shows them (Gymnasium's "human")."""

    def __init__(self, params: EnvParams, window: bool = False, fps: int = 10, size: int = FRAME_SIZE):
        self.pygame = pygame_module()
        self.params = params
        self.size = size
        self.window = None
        if window:
            from rlcar_core.render.window import Window

            self.window = Window((size, size), fps=fps)
        self._backgrounds: dict[int, object] = {}
        self._half = float(params.bank.world_half_size)

    def _background(self, track_id: int):
        if track_id not in self._backgrounds:
            rgb = np.asarray(unpack_colour(self.params.bank.colour[track_id]))[::-1]  # y up on screen
            surface = surface_from_array(rgb)
            self._backgrounds[track_id] = self.pygame.transform.scale(surface, (self.size, self.size))
        return self._backgrounds[track_id]

    def to_screen(self, points: np.ndarray) -> np.ndarray:
        scale = self.size / (2 * self._half)
        return np.stack(
            [(points[..., 0] + self._half) * scale, self.size - (points[..., 1] + self._half) * scale], -1
        )

    def draw(self, sim: RLCar, state: EnvState, hud: dict[str, str] | None = None) -> np.ndarray:
        """Render ``state``; ``hud`` lines default to speed, progress and lap time."""
        pg = self.pygame
        track_id = int(state.track_id)
        surface = self._background(track_id).copy()
        car = jax.device_get(state.car)
        position, heading = np.asarray(car.position), float(car.heading)

        sensors = np.asarray(_sensors(state, self.params))
        angles = np.asarray(self.params.ray_angles)
        rays = sensors[: len(angles)]
        ends = position + rays[:, None] * np.stack([np.cos(heading + angles), np.sin(heading + angles)], -1)
        start = self.to_screen(position).tolist()
        for end in self.to_screen(ends).tolist():
            pg.draw.line(surface, (255, 230, 90), start, end, 1)

        forward, left = (np.asarray(v) for v in body_frame(np.float32(heading)))
        corners = [
            position + sx * CAR_LENGTH / 2 * forward + sy * CAR_WIDTH / 2 * left
            for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))
        ]
        outline = self.to_screen(np.array(corners)).tolist()
        pg.draw.polygon(surface, (210, 30, 30), outline)
        pg.draw.polygon(surface, (20, 20, 20), outline, 1)

        camera = np.asarray(_pixels(state, self.params))
        inset = pg.transform.scale(surface_from_array(camera), (64 * INSET_SCALE,) * 2)
        inset_pos = (self.size - 64 * INSET_SCALE - 8, 8)
        surface.blit(inset, inset_pos)
        pg.draw.rect(surface, (255, 255, 255), (*inset_pos, 64 * INSET_SCALE, 64 * INSET_SCALE), 2)

        draw_hud(surface, hud if hud is not None else default_hud(state, self.params))
        frame = array_from_surface(surface)
        if self.window is not None:
            self.window.show(frame)
            self.window.poll()  # keeps the window responsive when nobody else reads its events
        return frame

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
            self.window = None


def default_hud(state: EnvState, params: EnvParams) -> dict[str, str]:
    speed = float(np.linalg.norm(np.asarray(state.car.velocity)))
    return {
        "speed": f"{speed * 3.6:5.1f} km/h",
        "progress": f"{100 * min(max(float(state.progress), 0.0), 1.0):5.1f} %",
        "lap time": f"{int(state.time) * float(params.dt):5.1f} s",
    }
