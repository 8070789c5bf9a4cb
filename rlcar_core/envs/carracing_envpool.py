"""CarRacing-v3 on EnvPool's C++ port: a Gymnasium vector env that hands the rest of rlcar what
`SyncVectorEnv` over `make_carracing` does (64x64 uint8 frames without the HUD, info `progress`,
`lap_complete`, `crashed`, next-step autoreset, env i seeded with seed + i), ~15x faster.

EnvPool's info has only `env_id` and `elapsed_step`, so the rest is derived from the reward, whose
rules both implementations share: each frame costs 0.1, each new tile pays 1000 / tiles, and leaving
the playfield ends the episode with a reward of exactly -100 (which replaces that frame's reward).
Hence progress = (tile rewards so far) / 1000, a crash is an end with reward -100, and a lap is a
termination without it. The same seed draws a different track than Gymnasium's (EnvPool generates
tracks with std::mt19937, Gymnasium with NumPy); evaluation always runs Gymnasium's own env. The cars
themselves differ more than the tests' statistics show: a DreamerV3 agent trained here drives
EnvPool's tracks (238-277) but not Gymnasium's (-30 to 0), so rlcar's benchmarks train on Gymnasium's.

`envpool` is optional (`pip install "rlcar[envpool]"`) and imported only when a pool is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from rlcar_core.envs.carracing import HudCropResize, observation_space
from rlcar_core.errors import RlcarError, require_at_least

TASK_ID = "CarRacing-v3"
FRAME_COST = 0.1  # reward CarRacing takes every frame
OFF_PLAYFIELD_REWARD = -100.0  # the reward of the frame that leaves the playfield (ends the episode)
LAP_REWARD = 1000.0  # what all of a track's tiles pay together


def import_envpool():
    try:
        import envpool
    except ImportError:
        raise RlcarError(
            'the EnvPool backend needs the envpool package: pip install "rlcar[envpool]"'
        ) from None
    return envpool


class EnvPoolCarRacing(gym.vector.VectorEnv):
    """`num_envs` CarRacing-v3 cars in one EnvPool; also steps a subset of them (`step_envs`) so
    that `VectorActionRepeat` can stop a car at the end of its episode."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, max_steps: int = 1000, num_threads: int | None = None):
        require_at_least("--num-envs", num_envs, 1)
        require_at_least("--max-steps", max_steps, 1)
        self._envpool = import_envpool()
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.num_threads = num_threads
        self.single_observation_space = observation_space()
        self.single_action_space = gym.spaces.Box(
            np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32), dtype=np.float32
        )
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._pool = None
        self._resize = HudCropResize(96, 96)
        self._tile_reward = np.zeros(num_envs, np.float64)  # tile rewards of each car's episode so far
        self._resetting = np.zeros(num_envs, bool)  # cars whose last step ended an episode

    def _make_pool(self, seeds: Sequence[int]):
        if self._pool is not None:
            self._pool.close()
        kwargs = {} if self.num_threads is None else {"num_threads": self.num_threads}
        self._pool = self._envpool.make(
            TASK_ID,
            env_type="gymnasium",
            num_envs=self.num_envs,
            seed=int(seeds[0]),
            env_seed=[int(seed) for seed in seeds],
            max_episode_steps=self.max_steps,
            **kwargs,
        )

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        del options
        if seed is not None or self._pool is None:
            if seed is None:
                seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
            # EnvPool fixes its seeds when the pool is made: a seeded reset makes a new pool.
            seeds = [seed + index for index in range(self.num_envs)] if np.isscalar(seed) else list(seed)
            if len(seeds) != self.num_envs:
                raise RlcarError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
            self._make_pool(seeds)
        frames, _ = self._pool.reset()
        self._tile_reward[:] = 0.0
        self._resetting[:] = False
        nothing = np.zeros(self.num_envs, bool)
        return self._resize(frames), self._info(np.zeros(self.num_envs, np.float32), nothing, nothing)

    def step(self, actions):
        return self.step_envs(actions, np.arange(self.num_envs))

    def step_envs(self, actions, env_ids: np.ndarray):
        """`step` for the cars `env_ids` only; the others stay where they are."""
        if self._pool is None:
            raise RuntimeError("call reset before step")
        env_ids = np.asarray(env_ids, np.int32)
        actions = np.clip(
            np.asarray(actions, np.float32).reshape(len(env_ids), 3),
            self.single_action_space.low,
            self.single_action_space.high,
        )
        frames, reward, terminated, truncated, raw_info = self._pool.step(actions, env_ids)
        # Put the rows in the order of `env_ids` (the pool says which car each row is).
        answered = np.asarray(raw_info["env_id"])
        by_id = np.argsort(answered)
        order = by_id[np.searchsorted(answered[by_id], env_ids)]
        frames, reward = frames[order], np.asarray(reward, np.float64)[order]
        terminated, truncated = np.asarray(terminated, bool)[order], np.asarray(truncated, bool)[order]
        resetting = self._resetting[env_ids]  # these cars' step was the autoreset: a fresh episode
        ended = terminated | truncated
        crashed = ended & (reward == OFF_PLAYFIELD_REWARD) & ~resetting
        tile_reward = np.where(
            resetting, 0.0, self._tile_reward[env_ids] + np.where(crashed, 0.0, reward + FRAME_COST)
        )
        self._tile_reward[env_ids] = tile_reward
        self._resetting[env_ids] = ended
        progress = np.clip(tile_reward / LAP_REWARD, 0.0, 1.0).astype(np.float32)
        lap_complete = terminated & ~crashed
        return (
            self._resize(frames),
            reward,
            terminated,
            truncated,
            self._info(progress, lap_complete, crashed),
        )

    @staticmethod
    def _info(progress: np.ndarray, lap_complete: np.ndarray, crashed: np.ndarray) -> dict:
        """A vector info as `SyncVectorEnv` builds it: one array per key and a `_key` mask."""
        info = {"progress": progress, "lap_complete": lap_complete, "crashed": crashed}
        return {**info, **{f"_{key}": np.ones(len(progress), bool) for key in info}}

    def close_extras(self, **kwargs):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def make_carracing_envpool(num_envs: int, max_steps: int = 1000) -> EnvPoolCarRacing:
    return EnvPoolCarRacing(num_envs, max_steps)
