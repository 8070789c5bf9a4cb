"""Pure training and evaluation steps for the MDN-RNN."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from rlcar_core.worldmodels.config import MDNRNNConfig
from rlcar_core.worldmodels.mdnrnn import (
    MDNRNNOutput,
    init_mdnrnn_params,
    initial_rnn_state,
    make_mdnrnn,
    mixture_log_prob,
)
from rlcar_core.worldmodels.training_state import TrainingState

Metrics = dict[str, jax.Array]


class MDNRNNBatch(NamedTuple):
    """Fixed-length sequences in latent space, batch-major."""

    latents: jax.Array  # (B, T + 1, z): z_0 .. z_T; the last one is only a target
    actions: jax.Array  # (B, T, A)
    rewards: jax.Array  # (B, T)
    terminated: jax.Array  # (B, T); truncation is not a world event, so it is not a done target
    mask: jax.Array  # (B, T), 1 for real steps, 0 for padding past an episode's end


class MDNRNNLoss(NamedTuple):
    loss: jax.Array
    latent_nll: jax.Array  # per latent dimension, so it reads the same for any z_dim
    reward_mse: jax.Array
    done_bce: jax.Array


UpdateFn = Callable[[TrainingState, MDNRNNBatch, jax.Array], tuple[TrainingState, Metrics]]
EvaluateFn = Callable[[hk.Params, MDNRNNBatch], Metrics]


def mdnrnn_loss(output: MDNRNNOutput, batch: MDNRNNBatch, config: MDNRNNConfig) -> MDNRNNLoss:
    mask = batch.mask.astype(jnp.float32)
    num_steps = jnp.maximum(jnp.sum(mask), 1.0)

    def masked_mean(per_step):
        return jnp.sum(per_step * mask) / num_steps

    latent_nll = masked_mean(-jnp.mean(mixture_log_prob(output, batch.latents[:, 1:]), axis=-1))
    reward_mse = masked_mean(jnp.square(output.reward - batch.rewards))
    done_bce = masked_mean(
        optax.sigmoid_binary_cross_entropy(output.done_logit, batch.terminated.astype(jnp.float32))
    )
    loss = latent_nll + config.reward_loss_weight * reward_mse + config.done_loss_weight * done_bce
    return MDNRNNLoss(loss, latent_nll, reward_mse, done_bce)


def make_mdnrnn_optimizer(config: MDNRNNConfig) -> optax.GradientTransformation:
    # LSTMs trained by BPTT occasionally produce gradient spikes; clipping keeps one bad batch from
    # undoing training.
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optax.adam(config.learning_rate))


def init_mdnrnn_state(config: MDNRNNConfig, key: jax.Array) -> TrainingState:
    params_key, rng = jax.random.split(key)
    params = init_mdnrnn_params(config, params_key)
    opt_state = make_mdnrnn_optimizer(config).init(params)
    return TrainingState(params, opt_state, rng, jnp.zeros((), jnp.int32))


def _make_loss_fn(config: MDNRNNConfig):
    rnn = make_mdnrnn(config)

    def loss_fn(params, batch: MDNRNNBatch):
        state = initial_rnn_state(config, batch.actions.shape[0])
        output, _ = rnn.apply.unroll(params, batch.latents[:, :-1], batch.actions, state)
        losses = mdnrnn_loss(output, batch, config)
        return losses.loss, losses

    return loss_fn


def make_mdnrnn_update(config: MDNRNNConfig) -> UpdateFn:
    """`update(state, batch, key) -> (state, metrics)`. The step is deterministic; `key` is accepted so
    every World Models update has one signature (and for future input noise)."""
    loss_fn = _make_loss_fn(config)
    optimizer = make_mdnrnn_optimizer(config)

    def update(state: TrainingState, batch: MDNRNNBatch, key: jax.Array) -> tuple[TrainingState, Metrics]:
        del key
        grads, losses = jax.grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**losses._asdict(), "grad_norm": optax.tree.norm(grads)}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return update


def make_mdnrnn_evaluate(config: MDNRNNConfig) -> EvaluateFn:
    loss_fn = _make_loss_fn(config)

    def evaluate(params: hk.Params, batch: MDNRNNBatch) -> Metrics:
        _, losses = loss_fn(params, batch)
        return losses._asdict()

    return evaluate
