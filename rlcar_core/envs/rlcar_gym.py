"""``rlcar/RLCar-v0``: the JAX simulator behind the single-environment Gymnasium API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from rlcar_core.envs.checks import (
    checked_action,
    checked_env_kind,
    checked_max_steps,
    checked_options,
    checked_seed,
    checked_single_track_id,
)
from rlcar_core.envs.names import EnvName
from rlcar_core.envs.spaces import action_space, observation_space
from rlcar_core.envs.tracks import camera_spec, check_track_ids, make_track_bank
from rlcar_core.sim.camera_spec import CameraSpec
from rlcar_core.sim.env import RLCar

RENDER_FPS = EnvName.RLCAR.frames_per_second  # one frame per simulator step


# Module-level, with the (hashable) simulator static: every env with the same observation kind and bank
# shapes reuses one compilation instead of compiling its own.
_reset = jax.jit(RLCar.reset, static_argnums=0)
_step = jax.jit(RLCar.step, static_argnums=0)


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def info_to_numpy(info: dict[str, jax.Array]) -> dict[str, Any]:
    return {name: np.asarray(value) for name, value in jax.device_get(info).items()}


class RLCarGymEnv(gym.Env):
    """One car. ``obs`` picks ``sensors``, ``pixels`` or ``both`` (a dict); ``tracks`` picks the training
    tracks or the held-out ``eval`` ones; ``reset(options={"track_id": i})`` picks a track of the bank."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        obs: str = "sensors",
        render_mode: str | None = None,
        tracks: str = "train",
        num_tracks: int | None = None,
        track_seeds: Sequence[int] | None = None,
        max_steps: int = 1000,
        camera: CameraSpec | Mapping[str, Any] | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        max_steps = checked_max_steps(max_steps)
        checked_env_kind(obs, tracks, track_seeds)
        self.camera = camera_spec(camera)
        self.sim = RLCar(obs, camera_size=self.camera.size)
        self.params = self.sim.default_params(
            make_track_bank(tracks, num_tracks, track_seeds, self.camera),
            max_steps=max_steps,
            **self.camera.env_overrides(),
        )
        num_rays = int(self.params.ray_angles.shape[0])
        self.observation_space = observation_space(
            obs, num_rays, float(self.params.ray_range), self.camera.size
        )
        self.action_space = action_space()
        self.render_mode = render_mode
        self._key: jax.Array | None = None
        self.state = None
        self._renderer = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed, options = checked_seed(seed), checked_options(options)
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = jax.random.PRNGKey(_seed_from(self.np_random) if seed is None else seed)
        self._key, reset_key = jax.random.split(self._key)
        track_id = checked_single_track_id(options.get("track_id", -1))
        check_track_ids(track_id, self.params.bank.num_tracks)
        obs, self.state = _reset(self.sim, reset_key, self.params, track_id)
        info = info_to_numpy(self.sim.info(self.state))
        if self.render_mode == "human":
            self.render()
        return jax.device_get(obs), info

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = checked_action(action, self.action_space.shape)
        self._key, step_key = jax.random.split(self._key)
        obs, self.state, reward, terminated, truncated, info = _step(
            self.sim, step_key, self.state, action, self.params
        )
        obs, reward, terminated, truncated, info = jax.device_get((obs, reward, terminated, truncated, info))
        if self.render_mode == "human":
            self.render()
        return obs, float(reward), bool(terminated), bool(truncated), info_to_numpy(info)

    def render(self):
        if self.render_mode is None or self.state is None:
            return None
        if self._renderer is None:
            from rlcar_core.render.topdown import TopDownRenderer

            self._renderer = TopDownRenderer(self.params, window=self.render_mode == "human", fps=RENDER_FPS)
        frame = self._renderer.draw(self.sim, self.state)
        return frame if self.render_mode == "rgb_array" else None

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
