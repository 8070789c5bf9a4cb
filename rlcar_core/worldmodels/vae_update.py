"""Pure training and evaluation steps for the ConvVAE."""

from __future__ import annotations

from collections.abc import Callable

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from rlcar_core.worldmodels.config import VAEConfig
from rlcar_core.worldmodels.training_state import TrainingState
from rlcar_core.worldmodels.vae import IMAGE_SHAPE, make_vae
from rlcar_core.worldmodels.vae_loss import vae_loss

Metrics = dict[str, jax.Array]
UpdateFn = Callable[[TrainingState, jax.Array, jax.Array], tuple[TrainingState, Metrics]]
EvaluateFn = Callable[[hk.Params, jax.Array, jax.Array], Metrics]


def make_vae_optimizer(config: VAEConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


def init_vae_state(config: VAEConfig, key: jax.Array) -> TrainingState:
    params_key, rng = jax.random.split(key)
    vae = make_vae(config)
    params = vae.init(params_key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))
    opt_state = make_vae_optimizer(config).init(params)
    return TrainingState(params, opt_state, rng, jnp.zeros((), jnp.int32))


def _make_loss_fn(config: VAEConfig):
    vae = make_vae(config)

    def loss_fn(params, images, key):
        losses = vae_loss(vae.apply.forward(params, images, key), images, config.kl_tolerance)
        return losses.loss, losses

    return loss_fn


def make_vae_update(config: VAEConfig) -> UpdateFn:
    """`update(state, images, key) -> (state, metrics)`; images are uint8 or [0, 1] float frames."""
    loss_fn = _make_loss_fn(config)
    optimizer = make_vae_optimizer(config)

    def update(state: TrainingState, images: jax.Array, key: jax.Array) -> tuple[TrainingState, Metrics]:
        grads, losses = jax.grad(loss_fn, has_aux=True)(state.params, images, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**losses._asdict(), "grad_norm": optax.tree.norm(grads)}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return update


def make_vae_evaluate(config: VAEConfig) -> EvaluateFn:
    """`evaluate(params, images, key) -> metrics` with the training losses, for validation batches."""
    loss_fn = _make_loss_fn(config)

    def evaluate(params: hk.Params, images: jax.Array, key: jax.Array) -> Metrics:
        _, losses = loss_fn(params, images, key)
        return losses._asdict()

    return evaluate
