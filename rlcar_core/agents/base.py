"""What every driver offers to ``eval``, ``play`` and ``export-video``: batched actions from observations."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Agent(Protocol):
    name: str
    obs_kind: str  # the observation it reads: "sensors" or "pixels"

    def reset(self, num_envs: int) -> None:
        """Forget any memory; called at the start of a batch of episodes."""

    def act(self, obs: Any) -> np.ndarray:
        """(N, 3) float32 [steer, gas, brake] for a batch of N observations."""


def select_obs(obs: Any, obs_kind: str) -> Any:
    """The part of an observation an agent reads (envs created with ``obs="both"`` return a dict)."""
    return obs[obs_kind] if isinstance(obs, dict) else obs
