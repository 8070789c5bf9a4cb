"""Everything one DreamerV3 learner step reads and writes, as one pytree (checkpoint it whole)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.math import ReturnNormState, init_return_norm
from rlcar_core.dreamer.networks import actor_network, critic_network, world_model_network
from rlcar_core.dreamer.optim import actor_optimizer, critic_optimizer, world_model_optimizer
from rlcar_core.dreamer.prng import fast_key


class AgentParams(NamedTuple):
    world_model: Any
    actor: Any
    critic: Any


class OptStates(NamedTuple):
    world_model: optax.OptState
    actor: optax.OptState
    critic: optax.OptState


class TrainingState(NamedTuple):
    params: AgentParams
    opt_states: OptStates
    slow_critic: Any  # EMA of the critic parameters.
    return_norm: ReturnNormState
    step: jax.Array  # int32 count of completed updates.


def example_obs(config: DreamerConfig, batch_shape: tuple[int, ...] = (1,)) -> jax.Array:
    """Zeros with the observation's shape and dtype (uint8 pixels, float32 sensors)."""
    dtype = jnp.uint8 if config.obs_kind == "pixels" else jnp.float32
    return jnp.zeros(batch_shape + tuple(config.obs_shape), dtype)


def init_agent_params(config: DreamerConfig, key: jax.Array) -> AgentParams:
    """Fresh world-model, actor and critic parameters, determined by `key`."""
    # Jitted because eager Haiku initialisation dispatches (and compiles) every op one by one; the
    # rbg key (`fast_key`) keeps the many per-parameter random draws cheap to compile.
    return _jitted_init_agent_params(config, key)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_init_agent_params(config: DreamerConfig, key: jax.Array) -> AgentParams:
    world_model_key, actor_key, critic_key = jax.random.split(fast_key(key), 3)
    world_model_params = world_model_network(config).init(
        world_model_key,
        example_obs(config),
        jnp.zeros((1, config.action_dim), jnp.float32),
        jnp.ones((1,), bool),
    )
    feat = jnp.zeros((1, config.feature_size), jnp.float32)
    actor_params = actor_network(config).init(actor_key, feat)
    critic_params = critic_network(config).init(critic_key, feat)
    return AgentParams(world_model=world_model_params, actor=actor_params, critic=critic_params)


@functools.partial(jax.jit, static_argnums=0)
def init_training_state(config: DreamerConfig, key: jax.Array) -> TrainingState:
    """Fresh parameters, optimiser states, slow critic (a copy of the critic) and normaliser."""
    params = _jitted_init_agent_params(config, key)
    opt_states = OptStates(
        world_model=world_model_optimizer(config).init(params.world_model),
        actor=actor_optimizer(config).init(params.actor),
        critic=critic_optimizer(config).init(params.critic),
    )
    return TrainingState(
        params=params,
        opt_states=opt_states,
        slow_critic=jax.tree.map(jnp.copy, params.critic),
        return_norm=init_return_norm(),
        step=jnp.zeros((), jnp.int32),
    )
