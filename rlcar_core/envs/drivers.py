"""Drivers any part of rlcar can use: the policy protocol, uniform random actions and smooth random
exploration. They read no run directory and no model, so trainers (collection, DreamerV3's prefill) take
them from here without importing the agents built on top of the algorithms.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from rlcar_core.sim.car import ACTION_HIGH, ACTION_LOW


class Policy(Protocol):
    name: str
    obs_kind: str  # the observation it reads: "sensors" or "pixels"

    def reset(self, num_envs: int) -> None:
        """Forget any memory; called at the start of a batch of episodes."""

    def act(self, obs: Any) -> np.ndarray:
        """(N, 3) float32 [steer, gas, brake] for a batch of N observations."""


def select_obs(obs: Any, obs_kind: str) -> Any:
    """The part of an observation a policy reads (envs created with ``obs="both"`` return a dict)."""
    return obs[obs_kind] if isinstance(obs, dict) else obs


class RandomAgent:
    """Uniform random actions: works on every env and observation."""

    name = "random"

    def __init__(self, seed: int = 0, obs_kind: str = "sensors"):
        self._rng = np.random.default_rng(seed)
        self.obs_kind = obs_kind  # it ignores what it sees, so take the cheapest observation

    def reset(self, num_envs: int) -> None:
        del num_envs

    def act(self, obs) -> np.ndarray:
        batch = np.asarray(select_obs(obs, self.obs_kind)).shape[0]
        return self._rng.uniform(ACTION_LOW, ACTION_HIGH, size=(batch, 3)).astype(np.float32)


class ExplorationPolicy(Policy, Protocol):
    def reset_where(self, restarted: np.ndarray) -> None:
        """Forget the memory of the cars where `restarted` (N,) is True."""


class BrownianPolicy:
    """Smooth random driving: each action dimension follows its own Ornstein-Uhlenbeck process.

    Uniform noise flips the steering every step, so the car jitters in place and the data never shows
    a sustained turn or a car leaving the road; a mean-reverting random walk holds a steering angle for
    about a second, drives forward on average (gas around `mean[1]`) and brakes only now and then.
    """

    name = "brownian"
    obs_kind = "pixels"

    def __init__(
        self,
        seed: int,
        mean: tuple[float, float, float] = (0.0, 0.6, -0.5),
        reversion: float = 0.15,  # per step: how fast each value is pulled back to `mean`
        noise: float = 0.3,  # per step standard deviation of the random kicks
    ):
        self._rng = np.random.default_rng(seed)
        self._mean = np.asarray(mean, np.float64)
        self._reversion = reversion
        self._noise = noise
        # The process's stationary spread, so restarted cars start mid-process, not at the mean.
        self._spread = noise / np.sqrt(1.0 - (1.0 - reversion) ** 2)
        self._state = np.zeros((0, 3))

    def _fresh(self, count: int) -> np.ndarray:
        return self._mean + self._spread * self._rng.standard_normal((count, 3))

    def reset(self, num_envs: int) -> None:
        self._state = self._fresh(num_envs)

    def reset_where(self, restarted: np.ndarray) -> None:
        restarted = np.asarray(restarted, bool)
        self._state[restarted] = self._fresh(int(restarted.sum()))

    def act(self, obs) -> np.ndarray:
        batch = np.asarray(select_obs(obs, self.obs_kind)).shape[0]
        if self._state.shape[0] != batch:
            self.reset(batch)
        kicks = self._noise * self._rng.standard_normal(self._state.shape)
        self._state = self._state + self._reversion * (self._mean - self._state) + kicks
        return np.clip(self._state, ACTION_LOW, ACTION_HIGH).astype(np.float32)


class Memoryless:
    """An agent that keeps no memory between steps (random, heuristic) as an ExplorationPolicy."""

    def __init__(self, agent: Policy):
        self._agent = agent
        self.name = agent.name
        self.obs_kind = agent.obs_kind

    def reset(self, num_envs: int) -> None:
        self._agent.reset(num_envs)

    def reset_where(self, restarted: np.ndarray) -> None:
        del restarted

    def act(self, obs) -> np.ndarray:
        return self._agent.act(obs)
