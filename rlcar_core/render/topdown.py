"""Top-down frames of an RLCar episode: the whole track, the car and its rays, with a side panel that
holds the car's camera and the HUD (so nothing covers the track).

Used by ``render_mode="rgb_array"|"human"``, ``play`` and ``export-video``. ``draw`` gives a numpy RGB
frame; ``draw_surface`` a pygame surface (the window blits it without a copy). ``pose`` draws the car
somewhere between two physics steps (see ``rlcar_core.render.motion``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rlcar_core.render.hud import array_from_surface, pygame_module, surface_from_array
from rlcar_core.render.motion import CarPose
from rlcar_core.render.panel import compose
from rlcar_core.sim.bank import unpack_colour
from rlcar_core.sim.car import body_frame
from rlcar_core.sim.env import EnvState, RLCar
from rlcar_core.sim.params import EnvParams

FRAME_SIZE = 640  # the track view; the side panel adds rlcar_core.render.panel.PANEL_WIDTH
CAR_LENGTH, CAR_WIDTH = 4.0, 2.0
_sensors = jax.jit(RLCar.sensors)
_pixels = jax.jit(RLCar.pixels)


def pose_of(state: EnvState) -> CarPose:
    car = jax.device_get(state.car)
    return CarPose(np.asarray(car.position, np.float64), float(car.heading))


class TopDownRenderer:
    """Frames of one environment's track bank; ``window=True`` also shows them (Gymnasium's "human")."""

    def __init__(
        self, params: EnvParams, window: bool = False, fps: int | None = None, size: int = FRAME_SIZE
    ):
        self.pygame = pygame_module()
        self.params = params
        self.size = size
        self.window = None
        if window:
            from rlcar_core.render.panel import PANEL_WIDTH
            from rlcar_core.render.window import Window

            # One frame per simulator step unless told otherwise: the sim's own dt sets the rate.
            fps = fps if fps is not None else round(1.0 / float(params.dt))
            self.window = Window((size + PANEL_WIDTH, size), fps=fps)
        self._backgrounds: dict[int, object] = {}
        self._half = float(params.bank.world_half_size)
        self._angles = np.asarray(params.ray_angles)
        self._seen: tuple[EnvState, np.ndarray, np.ndarray] | None = None  # last state, its rays, camera

    def warm_up(self, state: EnvState) -> None:
        """Compile the sensor and camera functions now (no pygame: safe off the main thread)."""
        jax.block_until_ready((_sensors(state, self.params), _pixels(state, self.params)))

    def _background(self, track_id: int):
        if track_id not in self._backgrounds:
            rgb = np.asarray(unpack_colour(self.params.bank.colour[track_id]))[::-1]  # y up on screen
            surface = surface_from_array(rgb)
            self._backgrounds[track_id] = self.pygame.transform.scale(surface, (self.size, self.size))
        return self._backgrounds[track_id]

    def _rays_and_camera(self, state: EnvState) -> tuple[np.ndarray, np.ndarray]:
        # Several frames are drawn per physics step; the rays and the camera change only per step.
        if self._seen is None or self._seen[0] is not state:
            rays = np.asarray(_sensors(state, self.params))[: len(self._angles)]
            self._seen = (state, rays, np.asarray(_pixels(state, self.params)))
        return self._seen[1], self._seen[2]

    def to_screen(self, points: np.ndarray) -> np.ndarray:
        scale = self.size / (2 * self._half)
        return np.stack(
            [(points[..., 0] + self._half) * scale, self.size - (points[..., 1] + self._half) * scale], -1
        )

    def draw_surface(
        self,
        sim: RLCar,
        state: EnvState,
        hud: dict[str, str] | None = None,
        pose: CarPose | None = None,
        keys: Sequence[str] = (),
        banner: str | None = None,
    ):
        """The frame as a pygame surface; ``hud`` lines default to speed, progress and time."""
        del sim  # the frame depends on the state and params only; kept for a stable signature
        pg = self.pygame
        view = self._background(int(state.track_id)).copy()
        position, heading = pose if pose is not None else pose_of(state)
        rays, camera = self._rays_and_camera(state)

        directions = np.stack([np.cos(heading + self._angles), np.sin(heading + self._angles)], -1)
        start = self.to_screen(position).tolist()
        for end in self.to_screen(position + rays[:, None] * directions).tolist():
            pg.draw.line(view, (255, 230, 90), start, end, 1)

        forward, left = (np.asarray(v) for v in body_frame(np.float32(heading)))
        corners = [
            position + sx * CAR_LENGTH / 2 * forward + sy * CAR_WIDTH / 2 * left
            for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))
        ]
        outline = self.to_screen(np.array(corners)).tolist()
        pg.draw.polygon(view, (210, 30, 30), outline)
        pg.draw.polygon(view, (20, 20, 20), outline, 1)
        lines = hud if hud is not None else default_hud(state, self.params)
        return compose(view, camera, lines, keys, banner)

    def draw(self, sim: RLCar, state: EnvState, *overlay: Any, **named_overlay: Any) -> np.ndarray:
        """The frame as an (H, W, 3) uint8 array; with a window, also shown there. `overlay`: what
        `draw_surface` takes after the state (hud, pose, keys, banner)."""
        surface = self.draw_surface(sim, state, *overlay, **named_overlay)
        if self.window is not None:
            self.window.show(surface)
            self.window.poll()  # keeps the window responsive when nobody else reads its events
        return array_from_surface(surface)

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
            self.window = None


def default_hud(state: EnvState, params: EnvParams) -> dict[str, str]:
    speed = float(np.linalg.norm(np.asarray(state.car.velocity)))
    return {
        "speed": f"{speed * 3.6:.1f} km/h",
        "progress": f"{100 * min(max(float(state.progress), 0.0), 1.0):.1f} %",
        "time": f"{int(state.time) * float(params.dt):.1f} s",
    }
