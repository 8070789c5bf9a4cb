"""Acting in an environment with a trained DreamerV3 agent, plus the actor <-> env action mapping.

`DreamerPolicy` is the batched driver (the `envs.drivers.Policy` protocol) that training evaluates on
held-out tracks and that `agents.dreamer` loads for eval, play and export-video.

The actor works in [-1, 1]^3 for every dimension; the car expects [steer -1..1, gas 0..1, brake 0..1].
Replay stores actor-space actions (what `policy_step` returns), and only the env sees
`to_env_action(action)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.dreamer.config import DEFAULT_ACTIONS, DreamerConfig, check_actions
from rlcar_core.dreamer.networks import (
    LatentState,
    actor_network,
    features,
    latent_noise,
    world_model_network,
)
from rlcar_core.dreamer.prng import fast_key
from rlcar_core.dreamer.train_state import AgentParams
from rlcar_core.envs.drivers import select_obs
from rlcar_core.errors import RlcarError


class PolicyCarry(NamedTuple):
    """What the agent remembers between env steps: its latent state and the action it last sent."""

    latent: LatentState
    prev_action: jax.Array


def initial_carry(batch_size: int, config: DreamerConfig) -> PolicyCarry:
    """Zeros; the first `policy_step` must get `is_first=True`, which swaps in the learned start state."""
    return PolicyCarry(
        latent=LatentState(
            deter=jnp.zeros((batch_size, config.deter_size), jnp.float32),
            stoch=jnp.zeros((batch_size, config.stoch_size, config.stoch_classes), jnp.float32),
        ),
        prev_action=jnp.zeros((batch_size, config.action_dim), jnp.float32),
    )


def filter_observation(
    params: AgentParams,
    carry: PolicyCarry,
    obs: jax.Array,
    is_first: jax.Array,
    key: jax.Array,
    config: DreamerConfig,
):
    """The policy's filtering step: `obs` into the world model's posterior given the carry, with the
    posterior's draw taken from `key`. Returns (the world model's obs step, the key left for the
    action), so whatever else filters frames (serve's latent view) sees the very z the agent sees."""
    world_model = world_model_network(config)
    latent_key, action_key = jax.random.split(fast_key(key))
    embed = world_model.apply.encode(params.world_model, obs)
    noise = latent_noise(latent_key, carry.prev_action.shape[:-1], config)
    step = world_model.apply.obs_step(
        params.world_model, carry.latent, carry.prev_action, embed, is_first, noise
    )
    return step, action_key


def policy_step(
    params: AgentParams,
    carry: PolicyCarry,
    obs: jax.Array,
    is_first: jax.Array,
    key: jax.Array,
    config: DreamerConfig,
    actions: str = DEFAULT_ACTIONS,
) -> tuple[jax.Array, PolicyCarry]:
    """Filters `obs` into the latent state and picks an action in [-1, 1]^A.

    Works on a batch (leading axis) or, under `jax.vmap`, on single envs. `actions` is an
    `ACTION_CHOICES` choice: "sample" draws from the actor (collection, and evaluation by default),
    "mode" takes its mode, "mean" the average clipped sample (`ActionDistribution.clipped_mean`).
    `config` and `actions` are static under jit. Store the returned action with the *next*
    observation in replay.
    """
    step, action_key = filter_observation(params, carry, obs, is_first, key, config)
    dist = actor_network(config).apply(params.actor, features(step.posterior))
    action = dist.act(actions, action_key)
    return action, PolicyCarry(latent=step.posterior, prev_action=action)


def to_env_action(action):
    """Actor space [-1, 1]^3 to the car's [steer -1..1, gas 0..1, brake 0..1]: gas/brake = (a + 1) / 2.

    Accepts numpy arrays (returns numpy, for Gymnasium) or JAX arrays (stays traceable under jit).
    """
    xp = np if isinstance(action, np.ndarray) else jnp
    action = xp.clip(action, -1.0, 1.0)
    pedals = (action[..., 1:] + 1.0) / 2.0
    return xp.concatenate([action[..., :1], pedals], axis=-1)


def from_env_action(env_action):
    """Inverse of `to_env_action`, e.g. to train the world model on human or scripted driving."""
    xp = np if isinstance(env_action, np.ndarray) else jnp
    steer = xp.clip(env_action[..., :1], -1.0, 1.0)
    pedals = xp.clip(env_action[..., 1:], 0.0, 1.0) * 2.0 - 1.0
    return xp.concatenate([steer, pedals], axis=-1)


@functools.cache
def jitted_policy(config: DreamerConfig, actions: str = DEFAULT_ACTIONS) -> Callable:
    """`(params, carry, obs, is_first, key) -> (actor action, carry)`, compiled once per config and
    choice (`ACTION_CHOICES`) so training, its evaluations and every agent of the process share the
    compilation."""
    return jax.jit(functools.partial(policy_step, config=config, actions=check_actions(actions)))


def on_default_device(tree):
    """The arrays of `tree` committed to the default device.

    jit compiles separately for committed and uncommitted arguments; checkpoints restore committed
    arrays and every jitted output is committed, so fresh inputs (initial carries, fresh parameters)
    are committed too and each function compiles once.
    """
    return jax.device_put(tree, jax.local_devices()[0])


class DreamerPolicy:
    """Filters each car's observations through the RSSM and acts on the latent state.

    The RSSM carry is kept per car between `act` calls; the first `act` after `reset` (or after
    `reset_where` for the cars it names) tells the model that a new episode starts. `actions` is how
    the actor picks (`ACTION_CHOICES`); samples come from a key stream that `reset` restarts, so a
    batch of episodes is repeatable under `seed` either way.
    """

    name = "dreamer"

    def __init__(
        self,
        config: DreamerConfig,
        params: AgentParams,
        seed: int = 0,
        actions: str = DEFAULT_ACTIONS,
        camera=None,
    ):
        self.config = config
        # The RLCar camera its run trained with (a CameraSpec; None: today's, or CarRacing-v3's own):
        # whoever builds an env for this agent films with it (`envs.heldout.run_episodes` and others).
        self.camera = camera
        self.obs_kind = config.obs_kind
        self.actions = check_actions(actions)
        self.params = on_default_device(params)
        self._policy = jitted_policy(config, self.actions)
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
