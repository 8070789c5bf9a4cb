"""Action repeat: one decision drives the env for k frames, and every step says how many it used.

The wrappers sum the rewards of the repeated frames, stop early at a termination or truncation, and
put the frames they consumed in ``info["frames"]`` (0 for a reset, including the step of a vector
env that autoresets), so training loops count env frames rather than decisions. CarRacing-v3's own
1000-step limit counts frames: an episode is 1000 / k decisions.

The default k per env, and why: `rlcar_core.envs.backends.default_action_repeat`.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from rlcar_core.envs.backends import default_action_repeat
from rlcar_core.errors import require_at_least

FRAMES_KEY = "frames"

__all__ = ["ActionRepeat", "HeldActionPolicy", "VectorActionRepeat", "default_action_repeat"]


class ActionRepeat(gym.Wrapper):
    """Repeats each action `repeat` times on one env (see the module docstring)."""

    def __init__(self, env: gym.Env, repeat: int):
        require_at_least("--action-repeat", repeat, 1)
        super().__init__(env)
        self.repeat = repeat

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, FRAMES_KEY: 0}

    def step(self, action):
        total, frames = 0.0, 0
        while frames < self.repeat:
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            frames += 1
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, FRAMES_KEY: frames}


class SubsetSteppable(Protocol):
    """A vector env that can step some of its envs and leave the others where they are."""

    num_envs: int

    def step_envs(self, actions: np.ndarray, env_ids: np.ndarray) -> tuple:
        """`step` for the envs `env_ids` only: every result has len(env_ids) rows, in that order."""


class VectorActionRepeat(gym.vector.VectorWrapper):
    """Repeats each action `repeat` times on a vector env with next-step autoreset that can step a
    subset of its envs (`SubsetSteppable`, e.g. the EnvPool backend): an env stops at the end of its
    episode while the others finish their repeats, so no repeated action leaks into a new episode.
    A step that autoresets an env is only that reset (0 frames, reward 0), as without the wrapper."""

    def __init__(self, env: gym.vector.VectorEnv, repeat: int):
        require_at_least("--action-repeat", repeat, 1)
        if not hasattr(env, "step_envs"):
            raise TypeError(f"{type(env).__name__} cannot step a subset of its envs (step_envs)")
        super().__init__(env)
        self.repeat = repeat
        self._resetting = np.zeros(env.num_envs, bool)  # envs whose last step ended an episode

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._resetting[:] = False
        return obs, {**info, FRAMES_KEY: np.zeros(self.num_envs, np.int64)}

    def step(self, actions):
        actions = np.asarray(actions)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        obs, info = np.array(obs), dict(info)
        reward = np.asarray(reward, np.float64).copy()
        terminated, truncated = np.array(terminated, bool), np.array(truncated, bool)
        frames = np.where(self._resetting, 0, 1).astype(np.int64)
        active = ~self._resetting & ~(terminated | truncated)
        for _ in range(self.repeat - 1):
            env_ids = np.flatnonzero(active)
            if env_ids.size == 0:
                break
            sub_obs, sub_reward, sub_terminated, sub_truncated, sub_info = self.env.step_envs(
                actions[env_ids], env_ids
            )
            obs[env_ids] = sub_obs
            reward[env_ids] += sub_reward
            terminated[env_ids] = sub_terminated
            truncated[env_ids] = sub_truncated
            _merge_info(info, sub_info, env_ids)
            frames[env_ids] += 1
            active[env_ids] = ~(np.asarray(sub_terminated, bool) | np.asarray(sub_truncated, bool))
        self._resetting = terminated | truncated
        info[FRAMES_KEY] = frames
        return obs, reward, terminated, truncated, info


def _merge_info(info: dict[str, Any], sub_info: dict[str, Any], env_ids: np.ndarray) -> None:
    """Write the rows of `sub_info` (one per env of `env_ids`) into the vector info `info`."""
    for key, values in sub_info.items():
        if key in info and isinstance(values, np.ndarray) and isinstance(info[key], np.ndarray):
            merged = info[key].copy()
            merged[env_ids] = values
            info[key] = merged


class HeldActionPolicy:
    """A policy that decides every `repeat` frames and holds its action in between: on an env
    without action repeat (the held-out evaluation, always Gymnasium's own env) it drives exactly as
    it was trained on an env that repeats. All cars start together (a batch of episodes) and a car
    that finished is ignored by the caller, so one shared frame counter serves every car."""

    def __init__(self, policy, repeat: int):
        require_at_least("--action-repeat", repeat, 1)
        self.policy = policy
        self.repeat = repeat
        self.name = policy.name
        self.obs_kind = policy.obs_kind
        self.actions = getattr(policy, "actions", None)  # a DreamerV3 actor's sample or mode
        self._frame = 0
        self._action: np.ndarray | None = None

    def reset(self, num_envs: int) -> None:
        self.policy.reset(num_envs)
        self._frame = 0
        self._action = None

    def act(self, obs) -> np.ndarray:
        if self._action is None or self._frame % self.repeat == 0:
            self._action = np.asarray(self.policy.act(obs), np.float32)
        self._frame += 1
        return self._action
