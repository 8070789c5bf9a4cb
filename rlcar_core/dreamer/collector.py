"""Experience for DreamerV3: the exploring actor drives a batched vector env, one replay step per car.

The env uses Gymnasium's next-step autoreset: the step that ends an episode returns its final
observation (stored with `is_terminal` when it terminated), and the following step ignores the action
and returns the first observation of a new episode with reward 0. That first observation is stored
with `is_first`, a zero action and a zero reward, which is exactly the replay convention of
`rlcar_core.dreamer.replay`.

An episode budget makes the cars stop collecting once enough episodes are under way: a car whose
episode would exceed the budget stops counting (its steps stay out of replay and out of the step
count), so a run of N episodes ends at exactly N whatever the number of cars.

Under action repeat (an env whose info reports `frames`) one step is several env frames: episode
lengths and `frames_stepped` count frames, while `stepped` still counts decisions (replay steps).

`patience` (frames, training only; 0: never) ends a car's episode after that many frames in a row
without a positive reward, as World Models' in-env search does (`worldmodels.train_controller`): on
CarRacing-v3 a car parked or spinning on the grass earns -0.1 a frame from there on, and the rest of
its 1000 frames teach little. The episode ends as a truncation (not terminal: the world model must
not learn that the grass ends episodes), and the car's next step is its reset, stored like an
autoreset step (`is_first`, no action, no reward, no frames). The env did not end that episode, so it
steps the car once more before the reset (`reset_mask`, which needs Gymnasium's vector envs); that
step's frames are thrown away and not counted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import jax
import numpy as np

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.policy import (
    from_env_action,
    initial_carry,
    jitted_policy,
    on_default_device,
    to_env_action,
)
from rlcar_core.dreamer.train_state import AgentParams


class FinishedEpisode(NamedTuple):
    episode_return: float
    progress: float
    length: int
    lap_complete: bool
    crashed: bool
    ended_early: bool = False  # by `patience`: frames in a row without a reward


def _replay_step(obs, is_first, action, reward, is_terminal) -> dict[str, np.ndarray]:
    """One replay step per car; a first step carries no action and no reward."""
    return {
        "obs": np.asarray(obs),
        "action": np.where(is_first[:, None], 0.0, action).astype(np.float32),
        "reward": np.where(is_first, 0.0, reward).astype(np.float32),
        "is_first": np.asarray(is_first, bool),
        "is_terminal": np.asarray(is_terminal, bool),
    }


class Collector:
    """Holds what the cars currently see and remember; `step` advances every car by one env step."""

    def __init__(self, env: gym.vector.VectorEnv, config: DreamerConfig, patience: int = 0):
        self.env = env
        self.config = config
        self.patience = patience
        self.num_envs = env.num_envs
        self._policy = jitted_policy(config, "sample")
        self._carry = on_default_device(initial_carry(self.num_envs, config))
        self._step: dict[str, np.ndarray] = {}
        self._last_done = np.zeros(self.num_envs, bool)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._counted = np.ones(self.num_envs, bool)  # cars whose current episode is within the budget
        self._recording = np.ones(self.num_envs, bool)  # cars whose current step belongs in replay
        self._budget = self._started = 0
        # Env frames each car's last step took, when the env repeats actions (None: one per step).
        self._frames: np.ndarray | None = None
        self._unrewarded = np.zeros(self.num_envs, np.int64)  # frames since the car's last reward
        self._action = np.zeros((self.num_envs, config.action_dim), np.float32)  # sent by begin_step
        self._restart = np.zeros(self.num_envs, bool)  # episodes `patience` ended: the next step resets

    def reset(self, seed: int, episode_budget: int | None = None) -> None:
        """Start a fresh episode in every car; at most `episode_budget` episodes count from here on."""
        obs, _ = self.env.reset(seed=seed)
        nothing = np.zeros(self.num_envs, bool)
        zero_action = np.zeros((self.num_envs, self.config.action_dim), np.float32)
        self._step = _replay_step(obs, ~nothing, zero_action, np.zeros(self.num_envs), nothing)
        self._last_done[:] = False
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._unrewarded[:] = 0
        self._restart[:] = False
        self._budget = self.num_envs * 2**40 if episode_budget is None else episode_budget
        self._started = min(self.num_envs, self._budget)
        self._counted = np.arange(self.num_envs) < self._started
        self._recording = self._counted.copy()

    @property
    def recording(self) -> np.ndarray:
        """(N,) bool: the cars whose `current_step` belongs in replay (the budget's cars, including a
        car whose counted episode just ended, until its final observation is stored)."""
        return self._recording

    @property
    def current_step(self) -> dict[str, np.ndarray]:
        """The replay step every car is at now (obs, previous action, reward, is_first, is_terminal)."""
        return self._step

    def step(
        self, params: AgentParams, key: jax.Array, env_action: np.ndarray | None = None
    ) -> list[FinishedEpisode]:
        """Act on the current observations, step the env and move to the next replay step.

        `env_action` (N, 3), e.g. from an exploration policy during prefill, replaces the actor's
        choice; the actor still filters the observation so its memory stays current.
        """
        self.begin_step(params, key, env_action)
        return self.end_step()

    @property
    def overlaps(self) -> bool:
        """Whether the env steps in the background between `begin_step` and `end_step` (worker
        processes: Gymnasium's AsyncVectorEnv), so the caller can train meanwhile."""
        return hasattr(self.env, "step_async") and hasattr(self.env, "step_wait")

    def begin_step(self, params: AgentParams, key: jax.Array, env_action: np.ndarray | None = None) -> None:
        """The first half of `step`: act, and send the actions to the env (which steps them in the
        background where it `overlaps`). `stepped` already counts this step's decisions."""
        current = self._step
        self._recording = self._counted.copy()  # the caller stored `current` already
        action, self._carry = self._policy(params, self._carry, current["obs"], current["is_first"], key)
        action = np.asarray(action, np.float32)
        if env_action is not None:
            action = from_env_action(np.asarray(env_action, np.float32))
            self._carry = self._carry._replace(prev_action=on_default_device(action))
        self._action = action
        if self.overlaps:
            self.env.step_async(to_env_action(action))

    def end_step(self) -> list[FinishedEpisode]:
        """The second half of `step`: the env's results, and the next replay step."""
        action = self._action
        if self.overlaps:
            obs, reward, terminated, truncated, info = self.env.step_wait()
        else:
            obs, reward, terminated, truncated, info = self.env.step(to_env_action(action))
        terminated, truncated = np.array(terminated, bool), np.array(truncated, bool)
        reward = np.array(reward, np.float64)
        self._frames = np.array(info["frames"], np.int64) if "frames" in info else None
        restart, self._restart = self._restart, np.zeros(self.num_envs, bool)
        if restart.any():  # episodes `patience` ended: this step is their reset, as an autoreset's
            obs = self._reset_cars(obs, restart)
            reward[restart], terminated[restart], truncated[restart] = 0.0, False, False
            if self._frames is not None:
                self._frames[restart] = 0
        # Cars whose previous step ended an episode were reset by this step: a first step.
        is_first = self._last_done.copy()
        self._step = _replay_step(obs, is_first, action, reward, terminated & ~is_first)
        frames = 1 if self._frames is None else self._frames
        self._returns = np.where(is_first, 0.0, self._returns + reward)
        self._lengths = np.where(is_first, 0, self._lengths + frames)
        done = (terminated | truncated) & ~is_first
        impatient = np.zeros(self.num_envs, bool)
        if self.patience > 0:
            self._unrewarded = np.where(is_first | (reward > 0), 0, self._unrewarded + frames)
            impatient = (self._unrewarded >= self.patience) & ~done & ~is_first
            done |= impatient
            self._restart = impatient
        finished = []
        for index in np.flatnonzero(done & self._counted):
            finished.append(self._finished(index, info)._replace(ended_early=bool(impatient[index])))
            if self._started < self._budget:
                self._started += 1  # the car's next episode still counts
            else:
                self._counted[index] = False
        self._last_done = done
        return finished

    def _reset_cars(self, obs: np.ndarray, cars: np.ndarray) -> np.ndarray:
        """`obs` with the first observations of a new episode in the rows of `cars` (reset now)."""
        fresh, _ = self.env.reset(options={"reset_mask": cars.copy()})
        rows = cars.reshape((-1,) + (1,) * (np.ndim(obs) - 1))
        return np.where(rows, np.asarray(fresh), np.asarray(obs))

    @property
    def stepped(self) -> int:
        """How many counted cars the last `step` advanced: the replay steps (decisions) it adds."""
        return int(self._recording.sum())

    @property
    def frames_stepped(self) -> int:
        """The env frames the last `step` took over the counted cars: `stepped` without action
        repeat (every step, an autoreset one included, counts one as it always has); with it, the
        frames the env reports (an autoreset step takes none)."""
        if self._frames is None:
            return self.stepped
        return int(self._frames[self._recording].sum())

    def _finished(self, index: int, info: dict[str, Any]) -> FinishedEpisode:
        def value(name: str, default: float) -> float:
            return float(np.asarray(info[name])[index]) if name in info else default

        return FinishedEpisode(
            episode_return=float(self._returns[index]),
            progress=value("progress", 0.0),
            length=int(self._lengths[index]),
            lap_complete=bool(value("lap_complete", 0.0)),
            crashed=bool(value("crashed", 0.0)),
        )
