"""Real-environment episodes of many flat controllers at once: one car per (controller, track) pair,
all stepped by the vector env and one jitted policy step. Used to score CMA-ES candidates in the env
and to evaluate the search mean on training tracks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rlcar_core.envs import make_env
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.mdnrnn import initial_rnn_state
from rlcar_core.worldmodels.policy_step import jitted_policy_step
from rlcar_core.worldmodels.saved_models import WorldModelParams


class RolloutScores(NamedTuple):
    episode_return: np.ndarray  # (K,) one per (controller, track) pair
    progress: np.ndarray  # (K,) lap fraction reached


class EnvRollouts:
    """`run(vectors (K, n), tracks (K,), seed)` plays one episode per row, in waves of `num_envs` cars.

    `tracks` are indices into the RLCar training-track bank, or CarRacing-v3 reset seeds (which pick
    the track). Cars share `seed` for their start jitter, so candidates on the same track face the
    same start: common random numbers make CMA-ES's comparisons less noisy.
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int,
        max_steps: int,
        configs: tuple[VAEConfig, MDNRNNConfig, ControllerConfig],
        num_tracks: int | None = None,
    ):
        self.env_name = env_name
        self.num_envs = num_envs
        if env_name == "rlcar":
            self.env = make_env(
                "rlcar",
                obs="pixels",
                num_envs=num_envs,
                tracks="train",
                num_tracks=num_tracks,
                max_steps=max_steps,
            )
            self.num_tracks = int(self.env.unwrapped.params.bank.num_tracks)
        else:
            self.env = make_env("carracing", obs="pixels", num_envs=num_envs, max_steps=max_steps)
            self.num_tracks = None  # every reset seed is a new track
        self._rnn_config = configs[1]
        self._policy_step = jitted_policy_step(*configs)

    def run(
        self, params: WorldModelParams, vectors: np.ndarray, tracks: np.ndarray, seed: int
    ) -> RolloutScores:
        vectors = np.asarray(vectors, np.float32)
        tracks = np.asarray(tracks, np.int64)
        returns, progress = [], []
        for first in range(0, len(vectors), self.num_envs):
            wave_vectors = vectors[first : first + self.num_envs]
            wave_tracks = tracks[first : first + self.num_envs]
            count = len(wave_vectors)
            pad = self.num_envs - count  # the last wave is padded with copies of its last row
            wave_vectors = np.concatenate([wave_vectors, np.repeat(wave_vectors[-1:], pad, axis=0)])
            wave_tracks = np.concatenate([wave_tracks, np.repeat(wave_tracks[-1:], pad)])
            wave = self._run_wave(params, wave_vectors, wave_tracks, seed + first)
            returns.append(wave.episode_return[:count])
            progress.append(wave.progress[:count])
        return RolloutScores(np.concatenate(returns), np.concatenate(progress))

    def _run_wave(self, params: WorldModelParams, vectors, tracks, seed: int) -> RolloutScores:
        if self.env_name == "rlcar":
            obs, _ = self.env.reset(seed=seed, options={"track_id": tracks})
        else:
            obs, _ = self.env.reset(seed=[int(track) for track in tracks])
        rnn_state = initial_rnn_state(self._rnn_config, self.num_envs)
        running = np.ones(self.num_envs, bool)
        episode_return = np.zeros(self.num_envs)
        progress = np.zeros(self.num_envs)
        while running.any():
            actions, rnn_state = self._policy_step(params, vectors, obs, rnn_state)
            obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
            episode_return += np.where(running, reward, 0.0)
            progress = np.where(running, info["progress"], progress)
            running &= ~(terminated | truncated)
        return RolloutScores(episode_return, progress)

    def close(self) -> None:
        self.env.close()
