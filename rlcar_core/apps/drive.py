"""One car on one held-out track with frames on demand: what ``play`` and ``export-video`` share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlcar_core.envs.carracing import HUD_ROWS
from rlcar_core.envs.factory import check_env_request
from rlcar_core.envs.heldout import one_track_env, reset_on_track, track_seed_for
from rlcar_core.envs.names import EnvName
from rlcar_core.render.motion import CarPose

CARRACING_INTRO_SECONDS = 1.0  # CarRacing-v3 zooms in from far away during its first second
CARRACING_STATE_ROWS = 96  # its observation is 96 rows high, of which HUD_ROWS show the road


def how_it_ended(info: dict) -> str:
    """How an episode that just ended ended, from its last step's info: "lap", "crash" or "time"."""
    return "lap" if info.get("lap_complete") else "crash" if info.get("crashed") else "time"


class DrivingSession:
    def __init__(
        self,
        env_name: str,
        obs_kind: str,
        track: int,
        max_steps: int,
        seed: int,
        render: bool = True,
        camera=None,
    ):
        """`camera`: RLCar's CameraSpec, the one the driving agent was trained with (its `camera`);
        None: today's."""
        name = EnvName.parse(env_name)
        obs_kind = obs_kind if name.has_sensors else "pixels"
        self.env_name = check_env_request(name, obs_kind)
        self.track_seed = track_seed_for(name, track)
        self.seed = seed
        self.camera = camera
        self.render = render
        self.renderer = None
        # CarRacing-v3 draws its own view (Box2D); RLCar's is drawn here from the simulator's state.
        render_mode = "rgb_array" if render and name is EnvName.CARRACING else None
        self.env = one_track_env(name, obs_kind, self.track_seed, max_steps, render_mode, camera)
        self.episode_return = 0.0
        self.steps = 0
        self.distance = 0.0  # metres driven this episode
        self.info: dict[str, Any] = {}
        self.obs = None

    @property
    def step_seconds(self) -> float:
        return self.env_name.step_seconds

    def reset(self):
        self.episode_return, self.steps, self.distance = 0.0, 0, 0.0
        self.obs, self.info = reset_on_track(self.env, self.env_name, self.track_seed, self.seed)
        return self.obs

    def step(self, action):
        self.obs, reward, terminated, truncated, self.info = self.env.step(np.asarray(action, np.float32))
        self.episode_return += float(reward)
        self.steps += 1
        self.distance += (self._speed() or 0.0) * self.step_seconds
        return self.obs, reward, terminated, truncated, self.info

    def pose(self) -> CarPose | None:
        """The car's pose on the top-down view (RLCar only; None for CarRacing-v3)."""
        if self.env_name is not EnvName.RLCAR:
            return None
        from rlcar_core.render.topdown import pose_of

        return pose_of(self.env.unwrapped.state)

    @property
    def in_intro(self) -> bool:
        """CarRacing-v3's zoom-in intro is still playing: its frames show the track from far away."""
        return self.env_name is EnvName.CARRACING and float(self.env.unwrapped.t) < CARRACING_INTRO_SECONDS

    def hud(self, mode: str | None = None) -> dict[str, str]:
        lines = {"driver": mode} if mode else {}
        speed = self._speed()
        if speed is not None:
            lines["speed"] = f"{speed * 3.6:.1f} km/h"
        lines["progress"] = f"{100 * float(self.info.get('progress', 0.0)):.1f} %"
        lines["time"] = f"{self.steps * self.step_seconds:.1f} s"
        lines["return"] = f"{round(self.episode_return, 1) + 0.0:.1f}"  # + 0.0: never "-0.0"
        return lines

    def lap_banner(self) -> str | None:
        """What marks a finished lap on screen, or None."""
        if not bool(self.info.get("lap_complete", False)):
            return None
        return f"LAP  {self.steps * self.step_seconds:.1f} s"

    @property
    def speed(self) -> float | None:
        """The car's speed in m/s (None before the first CarRacing-v3 step builds the car)."""
        return self._speed()

    def _speed(self) -> float | None:
        if "speed" in self.info:
            return float(self.info["speed"])
        if self.env_name is EnvName.CARRACING:  # no step yet: the adapter's scale, not Box2D's units
            from rlcar_core.envs.carracing import car_speed_metres_per_second

            return car_speed_metres_per_second(self.env.unwrapped)
        return None

    def warm_up(self) -> None:
        """Compile what the first frame needs (safe off the main thread: no pygame)."""
        if self.env_name is EnvName.RLCAR:
            unwrapped = self.env.unwrapped
            self._renderer().warm_up(unwrapped.state)

    def _renderer(self):
        if self.renderer is None:
            from rlcar_core.render.topdown import TopDownRenderer

            self.renderer = TopDownRenderer(self.env.unwrapped.params)
        return self.renderer

    def surface(
        self,
        hud: dict[str, str],
        pose: CarPose | None = None,
        keys: Sequence[str] = (),
        banner: str | None = None,
    ):
        """The frame as a pygame surface: the view, then the panel with camera, HUD and ``keys``."""
        if self.env_name is EnvName.RLCAR:  # the top-down renderer draws the JAX simulator's state
            unwrapped = self.env.unwrapped
            return self._renderer().draw_surface(unwrapped.sim, unwrapped.state, hud, pose, keys, banner)
        from rlcar_core.render.hud import surface_from_array
        from rlcar_core.render.panel import compose

        # CarRacing's own bottom bar (speed, wheels, score) disagrees with our HUD: crop it away.
        view = np.asarray(self.env.render())
        view = view[: round(view.shape[0] * HUD_ROWS / CARRACING_STATE_ROWS)]
        return compose(surface_from_array(view), self.obs, hud, keys, banner)

    def frame(self, *overlay: Any, **named_overlay: Any) -> np.ndarray:
        """`surface(hud, pose, keys, banner)` as an (H, W, 3) uint8 array."""
        from rlcar_core.render.hud import array_from_surface

        return array_from_surface(self.surface(*overlay, **named_overlay))

    def close(self) -> None:
        self.env.close()
