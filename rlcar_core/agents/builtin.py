"""The built-in drivers: ``random`` (a lower bound) and ``heuristic`` (rays in, corridor planning)."""

from __future__ import annotations

import jax
import numpy as np

from rlcar_core.agents.heuristic import heuristic_action
from rlcar_core.envs.drivers import RandomAgent, select_obs  # noqa: F401 - RandomAgent re-exported

_heuristic_batch = jax.jit(jax.vmap(heuristic_action))


class HeuristicAgent:
    name = "heuristic"
    obs_kind = "sensors"

    def reset(self, num_envs: int) -> None:
        del num_envs

    def act(self, obs) -> np.ndarray:
        return np.asarray(_heuristic_batch(np.asarray(select_obs(obs, self.obs_kind), np.float32)))
