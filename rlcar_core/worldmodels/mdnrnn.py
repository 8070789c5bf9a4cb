"""MDN-RNN (M): an LSTM over [z_t, a_t] whose output parameterises p(z_{t+1}) as a mixture of
Gaussians per latent dimension, plus a reward head and a done head; its loss and its pure update.

Alignment: the step that consumes (z_t, a_t) predicts z_{t+1}, the reward r_t the environment
paid for a_t and whether a_t ended the episode. The controller acting at time t sees the LSTM
hidden state *before* (z_t, a_t) are consumed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from rlcar_core.worldmodels.config import MDNRNNConfig
from rlcar_core.worldmodels.supervised import Metrics, TrainState, make_supervised_update

# Re-exported so callers can build and read recurrent states without importing haiku.
LSTMState = hk.LSTMState


class MDNRNNOutput(NamedTuple):
    """Prediction for the next step; mixture arrays are (..., z_dim, num_mixtures)."""

    mixture_logits: jax.Array  # unnormalised log mixture weights
    means: jax.Array
    log_stds: jax.Array
    reward: jax.Array  # (...,)
    done_logit: jax.Array  # (...,), logit of P(episode ends after this step)


class MDNRNNFunctions(NamedTuple):
    """Apply functions of the transformed MDN-RNN: `rnn.apply.step(params, ...)` etc."""

    # (params, latents (B, T, z), actions (B, T, A), state) -> (MDNRNNOutput (B, T, ...), state)
    unroll: Callable
    # (params, latent (B, z), action (B, A), state) -> (MDNRNNOutput (B, ...), state)
    step: Callable


def initial_rnn_state(config: MDNRNNConfig, batch_size: int) -> LSTMState:
    zeros = jnp.zeros((batch_size, config.hidden_size), jnp.float32)
    return LSTMState(hidden=zeros, cell=zeros)


class MDNRNN(hk.Module):
    def __init__(self, config: MDNRNNConfig, name: str | None = None):
        super().__init__(name=name)
        self._config = config
        self._lstm = hk.LSTM(config.hidden_size, name="lstm")
        self._mixture_head = hk.Linear(config.z_dim * config.num_mixtures * 3, name="mixture_head")
        self._reward_head = hk.Linear(1, name="reward_head")
        self._done_head = hk.Linear(1, name="done_head")

    def _heads(self, hidden: jax.Array) -> MDNRNNOutput:
        config = self._config
        mixture = self._mixture_head(hidden)
        mixture = mixture.reshape(hidden.shape[:-1] + (config.z_dim, 3 * config.num_mixtures))
        logits, means, log_stds = jnp.split(mixture, 3, axis=-1)
        reward = self._reward_head(hidden)[..., 0]
        done_logit = self._done_head(hidden)[..., 0]
        return MDNRNNOutput(logits, means, log_stds, reward, done_logit)

    def step(self, latent, action, state: LSTMState) -> tuple[MDNRNNOutput, LSTMState]:
        hidden, state = self._lstm(jnp.concatenate([latent, action], axis=-1), state)
        return self._heads(hidden), state

    def unroll(self, latents, actions, state: LSTMState) -> tuple[MDNRNNOutput, LSTMState]:
        inputs = jnp.concatenate([latents, actions], axis=-1)
        hiddens, state = hk.dynamic_unroll(self._lstm, inputs, state, time_major=False)
        return self._heads(hiddens), state


def make_mdnrnn(config: MDNRNNConfig) -> hk.MultiTransformed:
    """`init(key, latents (B, T, z), actions (B, T, A), state) -> params`; `apply` is MDNRNNFunctions."""

    def build():
        rnn = MDNRNN(config, name="mdnrnn")
        return rnn.unroll, MDNRNNFunctions(unroll=rnn.unroll, step=rnn.step)

    return hk.without_apply_rng(hk.multi_transform(build))


def init_mdnrnn_params(config: MDNRNNConfig, key: jax.Array) -> hk.Params:
    latents = jnp.zeros((1, 1, config.z_dim), jnp.float32)
    actions = jnp.zeros((1, 1, config.action_dim), jnp.float32)
    return make_mdnrnn(config).init(key, latents, actions, initial_rnn_state(config, 1))


def mixture_log_prob(output: MDNRNNOutput, latents: jax.Array) -> jax.Array:
    """log p(latents) under the predicted mixtures, per latent dimension: shape latents.shape."""
    log_weights = jax.nn.log_softmax(output.mixture_logits, axis=-1)
    standardized = (latents[..., None] - output.means) * jnp.exp(-output.log_stds)
    log_normal = -0.5 * jnp.square(standardized) - output.log_stds - 0.5 * jnp.log(2.0 * jnp.pi)
    return jax.nn.logsumexp(log_weights + log_normal, axis=-1)


def sample_next_latent(output: MDNRNNOutput, key: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """Draw z_{t+1}; temperature sharpens (<1) or flattens (>1) the mixture weights and scales the
    variance, as in the paper, to make the dream harder than reality."""
    component_key, noise_key = jax.random.split(key)
    component = jax.random.categorical(component_key, output.mixture_logits / temperature, axis=-1)

    def pick(values):
        return jnp.take_along_axis(values, component[..., None], axis=-1)[..., 0]

    noise = jax.random.normal(noise_key, component.shape, output.means.dtype)
    return pick(output.means) + jnp.exp(pick(output.log_stds)) * jnp.sqrt(temperature) * noise


def sample_done(output: MDNRNNOutput, key: jax.Array) -> jax.Array:
    return jax.random.bernoulli(key, jax.nn.sigmoid(output.done_logit))


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


def init_mdnrnn_state(config: MDNRNNConfig, key: jax.Array) -> TrainState:
    params = init_mdnrnn_params(config, key)
    return TrainState(params, make_mdnrnn_optimizer(config).init(params), jnp.zeros((), jnp.int32))


def _make_loss_fn(config: MDNRNNConfig):
    rnn = make_mdnrnn(config)

    def loss_fn(params, batch: MDNRNNBatch, key=None):
        del key  # the loss is deterministic given the batch
        state = initial_rnn_state(config, batch.actions.shape[0])
        output, _ = rnn.apply.unroll(params, batch.latents[:, :-1], batch.actions, state)
        losses = mdnrnn_loss(output, batch, config)
        return losses.loss, losses

    return loss_fn


def make_mdnrnn_update(config: MDNRNNConfig) -> Callable:
    """`update(state, batch, key) -> (state, metrics)`. The step is deterministic; `key` is accepted so
    every World Models update has one signature."""
    return make_supervised_update(_make_loss_fn(config), make_mdnrnn_optimizer(config))


def make_mdnrnn_evaluate(config: MDNRNNConfig) -> Callable:
    loss_fn = _make_loss_fn(config)

    def evaluate(params: hk.Params, batch: MDNRNNBatch) -> Metrics:
        _, losses = loss_fn(params, batch)
        return losses._asdict()

    return evaluate
