"""One car on one held-out track with frames on demand: what ``play`` and ``export-video`` share."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlcar_core.envs import make_env
from rlcar_core.envs.factory import STEP_SECONDS, check_env_request
from rlcar_core.envs.heldout import track_seed_for


class DrivingSession:
    def __init__(
        self, env_name: str, obs_kind: str, track: int, max_steps: int, seed: int, render: bool = True
    ):
        check_env_request(env_name, "pixels" if env_name == "carracing" else obs_kind)
        self.env_name = env_name
        self.track_seed = track_seed_for(env_name, track)
        self.seed = seed
        self.render = render
        if env_name == "rlcar":
            self.env = make_env("rlcar", obs=obs_kind, track_seeds=[self.track_seed], max_steps=max_steps)
            self.renderer = None
        else:
            self.env = make_env(
                "carracing", obs="pixels", max_steps=max_steps, render_mode="rgb_array" if render else None
            )
        self.episode_return = 0.0
        self.steps = 0
        self.info: dict[str, Any] = {}

    def reset(self):
        self.episode_return, self.steps = 0.0, 0
        if self.env_name == "rlcar":
            obs, self.info = self.env.reset(seed=self.seed, options={"track_id": 0})
        else:
            obs, self.info = self.env.reset(seed=self.track_seed)
        return obs

    def step(self, action):
        obs, reward, terminated, truncated, self.info = self.env.step(np.asarray(action, np.float32))
        self.episode_return += float(reward)
        self.steps += 1
        return obs, reward, terminated, truncated, self.info

    def hud(self, mode: str) -> dict[str, str]:
        speed = self._speed()
        lines = {"driver": mode}
        if speed is not None:
            lines["speed"] = f"{speed * 3.6:5.1f} km/h"
        lines["progress"] = f"{100 * float(self.info.get('progress', 0.0)):5.1f} %"
        lines["lap time"] = f"{self.steps * STEP_SECONDS[self.env_name]:5.1f} s"
        lines["return"] = f"{self.episode_return:7.1f}"
        return lines

    def _speed(self) -> float | None:
        if "speed" in self.info:
            return float(self.info["speed"])
        car = getattr(self.env.unwrapped, "car", None)
        if car is not None and getattr(car, "hull", None) is not None:
            return float(np.linalg.norm(car.hull.linearVelocity))
        return None

    def frame(self, hud: dict[str, str]) -> np.ndarray:
        if self.env_name == "rlcar":
            unwrapped = self.env.unwrapped
            if self.renderer is None:
                from rlcar_core.render.topdown import TopDownRenderer

                self.renderer = TopDownRenderer(unwrapped.params)
            return self.renderer.draw(unwrapped.sim, unwrapped.state, hud)
        from rlcar_core.render.hud import with_hud

        return with_hud(self.env.render(), hud)

    def close(self) -> None:
        self.env.close()
