"""The built-in drivers: ``random`` (a lower bound) and ``heuristic`` (rays in, corridor planning)."""

from __future__ import annotations

import jax
import numpy as np

from rlcar_core.agents.base import select_obs
from rlcar_core.agents.heuristic import heuristic_action
from rlcar_core.sim.car import ACTION_HIGH, ACTION_LOW


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


_heuristic_batch = jax.jit(jax.vmap(heuristic_action))


class HeuristicAgent:
    name = "heuristic"
    obs_kind = "sensors"

    def reset(self, num_envs: int) -> None:
        del num_envs

    def act(self, obs) -> np.ndarray:
        return np.asarray(_heuristic_batch(np.asarray(select_obs(obs, self.obs_kind), np.float32)))
