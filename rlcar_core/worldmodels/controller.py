"""Linear controller (C): a = squash(W [z, h] + b), searched by CMA-ES as one flat vector.

Squashing gives the CarRacing action ranges: steer in [-1, 1] (tanh), gas and brake in [0, 1]
(sigmoid), so any parameter vector CMA-ES proposes yields a valid action.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.worldmodels.config import ControllerConfig

ACTION_DIM = 3  # steer, gas, brake


class ControllerParams(NamedTuple):
    weight: jax.Array  # (z_dim + hidden_size, 3)
    bias: jax.Array  # (3,)


def controller_input_size(config: ControllerConfig) -> int:
    return config.z_dim + config.hidden_size


def num_controller_params(config: ControllerConfig) -> int:
    return (controller_input_size(config) + 1) * ACTION_DIM


def zero_controller_params(config: ControllerConfig) -> ControllerParams:
    """All-zero weights: steer 0, half gas, half brake. CMA-ES starts from here, as in the paper."""
    return ControllerParams(
        weight=jnp.zeros((controller_input_size(config), ACTION_DIM), jnp.float32),
        bias=jnp.zeros((ACTION_DIM,), jnp.float32),
    )


def params_to_vector(params: ControllerParams) -> jax.Array:
    return jnp.concatenate([params.weight.reshape(-1), params.bias])


def vector_to_params(vector: jax.Array, config: ControllerConfig) -> ControllerParams:
    """Inverse of `params_to_vector`; works under jit and vmap (static slicing only)."""
    num_weights = controller_input_size(config) * ACTION_DIM
    if vector.shape[-1] != num_weights + ACTION_DIM:
        raise ValueError(
            f"controller vector has {vector.shape[-1]} entries, config needs {num_weights + ACTION_DIM}"
        )
    weight = vector[..., :num_weights].reshape(
        vector.shape[:-1] + (controller_input_size(config), ACTION_DIM)
    )
    return ControllerParams(weight=weight, bias=vector[..., num_weights:])


def squash_action(raw: jax.Array) -> jax.Array:
    steer = jnp.tanh(raw[..., 0])
    gas = jax.nn.sigmoid(raw[..., 1])
    brake = jax.nn.sigmoid(raw[..., 2])
    return jnp.stack([steer, gas, brake], axis=-1)


def controller_action(params: ControllerParams, latent: jax.Array, hidden: jax.Array) -> jax.Array:
    """latent (..., z_dim), hidden (..., hidden_size) -> action (..., 3)."""
    features = jnp.concatenate([latent, hidden], axis=-1)
    return squash_action(features @ params.weight + params.bias)
