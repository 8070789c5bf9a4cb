"""The DreamerV3 agent of a run directory, for eval, play, export-video and evaluation during training."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from rlcar_core.agents.base import select_obs
from rlcar_core.dreamer.checkpoints import load_saved_agent
from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.policy import PolicyCarry, initial_carry, policy_step, to_env_action
from rlcar_core.dreamer.train_state import AgentParams
from rlcar_core.errors import RlcarError


@functools.cache
def jitted_policy(config: DreamerConfig, explore: bool) -> Callable:
    """`(params, carry, obs, is_first, key) -> (actor action, carry)`, compiled once per config and
    mode so training, its evaluations and every agent of the process share the compilation."""
    return jax.jit(functools.partial(policy_step, config=config, explore=explore))


def on_default_device(tree):
    """The arrays of `tree` committed to the default device.

    jit compiles separately for committed and uncommitted arguments; checkpoints restore committed
    arrays and every jitted output is committed, so fresh inputs (initial carries, fresh parameters)
    are committed too and each function compiles once.
    """
    return jax.device_put(tree, jax.devices()[0])


class DreamerAgent:
    """Filters each car's observations through the RSSM and acts on the latent state.

    The RSSM carry is kept per car between `act` calls; the first `act` after `reset` (or after
    `reset_where` for the cars it names) tells the model that a new episode starts. Acting uses the
    actor's mode unless `explore`, so evaluation is repeatable.
    """

    name = "dreamer"

    def __init__(self, config: DreamerConfig, params: AgentParams, seed: int = 0, explore: bool = False):
        self.config = config
        self.obs_kind = config.obs_kind
        self.params = on_default_device(params)
        self._policy = jitted_policy(config, explore)
        self._base_key = jax.random.key(seed)
        self._calls = 0
        self._carry: PolicyCarry | None = None
        self._is_first: np.ndarray | None = None

    def reset(self, num_envs: int) -> None:
        # Restarting the key stream too makes a batch of episodes repeatable from `reset` on.
        self._calls = 0
        self._carry = on_default_device(initial_carry(num_envs, self.config))
        self._is_first = np.ones(num_envs, bool)

    def reset_where(self, restarted: np.ndarray) -> None:
        if self._is_first is not None:
            self._is_first |= np.asarray(restarted, bool)

    def act(self, obs) -> np.ndarray:
        obs = np.asarray(select_obs(obs, self.obs_kind))
        expected = tuple(self.config.obs_shape)
        if obs.shape[1:] != expected:
            raise RlcarError(
                f"the dreamer agent was trained on {self.obs_kind} observations of shape {expected}, "
                f"got a batch of shape {obs.shape}"
            )
        if self._carry is None or self._is_first.shape[0] != obs.shape[0]:
            self.reset(obs.shape[0])
        key = jax.random.fold_in(self._base_key, self._calls)
        self._calls += 1
        action, self._carry = self._policy(self.params, self._carry, obs, self._is_first, key)
        self._is_first = np.zeros_like(self._is_first)
        return to_env_action(np.asarray(action)).astype(np.float32)


def load_dreamer_agent(run_dir: Path, checkpoint: str, env_name: str, seed: int) -> DreamerAgent:
    """The actor of checkpoint `checkpoint` (best, latest, epN or a path) of `run_dir`."""
    saved = load_saved_agent(run_dir, checkpoint)
    if saved.env != env_name:
        raise RlcarError(
            f"the DreamerV3 agent in {run_dir} was trained on {saved.env}; pass --env {saved.env}"
        )
    return DreamerAgent(saved.config, saved.params, seed)
