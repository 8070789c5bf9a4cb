"""Rollouts inside the world model: the controller drives the MDN-RNN's imagined latent world.

Everything is a pure function of (params, start latents, temperature, key), built with
`lax.scan`, so a whole CMA-ES population can be scored in one jitted, vmapped call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp

from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig
from rlcar_core.worldmodels.controller import ControllerParams, controller_action, vector_to_params
from rlcar_core.worldmodels.mdnrnn import initial_rnn_state, make_mdnrnn, sample_done, sample_next_latent


class DreamRollout(NamedTuple):
    latents: jax.Array  # (B, horizon + 1, z_dim); latents[:, 0] is the given start
    actions: jax.Array  # (B, horizon, 3)
    rewards: jax.Array  # (B, horizon), predicted reward of each step
    dones: jax.Array  # (B, horizon) bool, the dream ended at this step
    # (B, horizon) float: 1 up to and including the first done. The dream keeps running after a done
    # (shapes stay static under jit); this mask says which steps count.
    alive: jax.Array


DreamRolloutFn = Callable[[hk.Params, ControllerParams, jax.Array, jax.Array, jax.Array], DreamRollout]
DreamFitnessFn = Callable[[hk.Params, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def _check_compatible(rnn_config: MDNRNNConfig, controller_config: ControllerConfig) -> None:
    rnn_sizes = (rnn_config.z_dim, rnn_config.hidden_size)
    if rnn_sizes != (controller_config.z_dim, controller_config.hidden_size):
        raise ValueError(
            f"controller expects z_dim={controller_config.z_dim}, hidden_size={controller_config.hidden_size} "
            f"but the MDN-RNN has z_dim={rnn_config.z_dim}, hidden_size={rnn_config.hidden_size}"
        )


def make_dream_rollout(
    rnn_config: MDNRNNConfig, controller_config: ControllerConfig, horizon: int
) -> DreamRolloutFn:
    """`rollout(rnn_params, controller_params, start_latents (B, z), temperature, key) -> DreamRollout`."""
    _check_compatible(rnn_config, controller_config)
    rnn = make_mdnrnn(rnn_config)

    def rollout(rnn_params, controller_params, start_latents, temperature, key) -> DreamRollout:
        def step(carry, step_key):
            latent, rnn_state, alive = carry
            action = controller_action(controller_params, latent, rnn_state.hidden)
            prediction, rnn_state = rnn.apply.step(rnn_params, latent, action, rnn_state)
            latent_key, done_key = jax.random.split(step_key)
            next_latent = sample_next_latent(prediction, latent_key, temperature)
            done = sample_done(prediction, done_key)
            next_alive = alive * (1.0 - done.astype(alive.dtype))
            return (next_latent, rnn_state, next_alive), (next_latent, action, prediction.reward, done, alive)

        batch_size = start_latents.shape[0]
        carry = (
            start_latents,
            initial_rnn_state(rnn_config, batch_size),
            jnp.ones((batch_size,), jnp.float32),
        )
        _, (latents, actions, rewards, dones, alive) = jax.lax.scan(
            step, carry, jax.random.split(key, horizon)
        )
        latents = jnp.concatenate([start_latents[None], latents], axis=0)
        # scan stacks time first; callers index episodes first, like the rest of the code.
        return DreamRollout(*(jnp.swapaxes(x, 0, 1) for x in (latents, actions, rewards, dones, alive)))

    return rollout


def dream_returns(rollout: DreamRollout) -> jax.Array:
    """(B,) sum of predicted rewards up to each dream's first done."""
    return jnp.sum(rollout.rewards * rollout.alive, axis=-1)


def make_dream_fitness(
    rnn_config: MDNRNNConfig, controller_config: ControllerConfig, horizon: int
) -> DreamFitnessFn:
    """`fitness(rnn_params, candidates (P, n), start_latents (B, z), temperature, key) -> (P,)`:
    the mean dream return of each flat controller vector over the B start latents."""
    rollout = make_dream_rollout(rnn_config, controller_config, horizon)

    def candidate_fitness(rnn_params, vector, start_latents, temperature, key):
        params = vector_to_params(vector, controller_config)
        return jnp.mean(dream_returns(rollout(rnn_params, params, start_latents, temperature, key)))

    def fitness(rnn_params, candidates, start_latents, temperature, key):
        # Every candidate dreams with the same key (common random numbers): differences in fitness
        # then come from the controllers, not from luckier dream noise.
        return jax.vmap(candidate_fitness, in_axes=(None, 0, None, None, None))(
            rnn_params, candidates, start_latents, temperature, key
        )

    return fitness
