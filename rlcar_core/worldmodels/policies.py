"""Who drives while `rlcar collect` records: smooth random exploration, uniform noise, the heuristic
driver, or the run's own trained World Models agent.

Every policy is an `Agent` (batched `act`) plus `reset_where(mask)`, which forgets the memory of the
cars whose episode just restarted, since the vector env restarts cars one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rlcar_core.agents import make_agent
from rlcar_core.agents.base import Agent, select_obs
from rlcar_core.errors import RlcarError
from rlcar_core.sim.car import ACTION_HIGH, ACTION_LOW

COLLECT_POLICIES = ("brownian", "random", "heuristic", "checkpoint")


class ExplorationPolicy(Agent, Protocol):
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

    def __init__(self, agent: Agent):
        self._agent = agent
        self.name = agent.name
        self.obs_kind = agent.obs_kind

    def reset(self, num_envs: int) -> None:
        self._agent.reset(num_envs)

    def reset_where(self, restarted: np.ndarray) -> None:
        del restarted

    def act(self, obs) -> np.ndarray:
        return self._agent.act(obs)


def make_exploration_policy(
    name: str, env_name: str, seed: int, run_dir: Path, checkpoint: str = "best"
) -> ExplorationPolicy:
    if name not in COLLECT_POLICIES:
        raise RlcarError(f"unknown policy {name!r}; choose one of {', '.join(COLLECT_POLICIES)}")
    if name == "brownian":
        return BrownianPolicy(seed)
    if name == "random":
        from rlcar_core.agents.builtin import RandomAgent

        return Memoryless(RandomAgent(seed, obs_kind="pixels"))
    if name == "heuristic":
        if env_name != "rlcar":
            raise RlcarError(
                "--policy heuristic reads RLCar's ray sensors; CarRacing-v3 has none (use brownian or random)"
            )
        return Memoryless(make_agent("heuristic", env_name, seed))
    from rlcar_core.agents.worldmodel import load_worldmodel_agent

    return load_worldmodel_agent(run_dir, checkpoint, env_name, seed)
