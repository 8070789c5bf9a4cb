"""The World Models agent (V + M + C) of a run directory, for eval, play, export-video and collect."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from rlcar_core.agents.base import select_obs
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.controller import jitted_policy_step
from rlcar_core.worldmodels.mdnrnn import LSTMState, initial_rnn_state
from rlcar_core.worldmodels.storage import WorldModel, load_world_model


class WorldModelAgent:
    """Drives from pixels: encodes each frame, acts on [z, h], then advances h with (z, a).

    The LSTM state is kept per car between `act` calls; `reset` clears all of it and `reset_where`
    clears the cars whose episode restarted. With `action_noise` > 0 (collecting with the current
    controller, the iterative procedure) each action gets Gaussian noise of that std, clipped to the
    action box, drawn from `seed`; h then follows the noisy action, the one the car took.
    """

    name = "worldmodel"
    obs_kind = "pixels"

    def __init__(self, model: WorldModel, action_noise: float = 0.0, seed: int = 0):
        self.model = model
        # The RLCar camera its data was collected with (None on CarRacing-v3): the envs built for it
        # film with it (`envs.heldout.run_episodes` and others).
        self.camera = model.camera
        self.action_noise = float(action_noise)
        self._rng = np.random.default_rng(seed)
        self._step = jitted_policy_step(model.vae_config, model.rnn_config, model.controller_config)
        self._rnn_state: LSTMState | None = None
        self._vectors: np.ndarray | None = None

    def reset(self, num_envs: int) -> None:
        self._rnn_state = initial_rnn_state(self.model.rnn_config, num_envs)
        # The one controller, tiled: the jitted step takes one controller per car.
        self._vectors = np.repeat(self.model.policy[None], num_envs, axis=0)

    def reset_where(self, restarted: np.ndarray) -> None:
        if self._rnn_state is None:
            return
        keep = ~np.asarray(restarted, bool)[:, None]
        self._rnn_state = jax.tree.map(lambda values: np.asarray(values) * keep, self._rnn_state)

    def act(self, obs) -> np.ndarray:
        frames = np.asarray(select_obs(obs, self.obs_kind))
        if frames.ndim != 4:
            raise RlcarError(
                f"the worldmodel agent needs a batch of frames (N, 64, 64, 3), got {frames.shape}"
            )
        if self._rnn_state is None or self._vectors.shape[0] != frames.shape[0]:
            self.reset(frames.shape[0])
        noise = None
        if self.action_noise > 0:
            noise = (self.action_noise * self._rng.standard_normal((len(frames), 3))).astype(np.float32)
        actions, self._rnn_state = self._step(
            self.model.params, self._vectors, frames, self._rnn_state, noise
        )
        return np.asarray(actions, np.float32)


def load_worldmodel_agent(
    run_dir: Path, checkpoint: str, env_name: str, seed: int, action_noise: float = 0.0
) -> WorldModelAgent:
    """The controller checkpoint `checkpoint` (best, latest, epN) of `run_dir` with its VAE and MDN-RNN;
    deterministic unless `action_noise` > 0 (then `seed` draws the noise)."""
    run = RunDir(run_dir)
    if not run.exists() and not Path(checkpoint).is_dir():
        raise RlcarError(f"no run directory at {run_dir}")
    model = load_world_model(run, checkpoint)
    if model.env != env_name:
        raise RlcarError(f"the world model in {run_dir} was trained on {model.env}; pass --env {model.env}")
    return WorldModelAgent(model, action_noise, seed)
