"""World-model learning: filter a replayed sequence through the RSSM and score its predictions.

Data convention (shared with `replay` and `policy`): index t of a sequence holds obs_t together with
the action a_{t-1} that led to it, the reward r_t received on arriving at obs_t, `is_first[t]` (obs_t
starts an episode; its action and reward are then zeros) and `is_terminal[t]` (obs_t ends the episode
by termination, not truncation). The RSSM therefore reads action[t] as its "previous action" at t.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.distributions import categorical_entropy, categorical_kl
from rlcar_core.dreamer.math import (
    symexp,
    symexp_twohot_log_prob,
    symexp_twohot_mean,
    symlog,
    symlog_bins,
)
from rlcar_core.dreamer.networks import (
    LatentState,
    features,
    latent_noise,
    preprocess_pixels,
    world_model_network,
)


class KLLosses(NamedTuple):
    """Per-step KL terms; `total` is what the world model minimises."""

    total: jax.Array
    dyn: jax.Array
    rep: jax.Array
    kl: jax.Array


def kl_balance_loss(
    posterior_logits: jax.Array,
    prior_logits: jax.Array,
    free_bits: float,
    dyn_scale: float,
    rep_scale: float,
) -> KLLosses:
    """DreamerV3's balanced KL with free bits, per step (leading axes are kept).

    The dynamics term trains the prior towards a frozen posterior, the representation term trains
    the posterior towards a frozen prior (weighted less, so representations are not dragged towards
    a poor prior). Clipping each below `free_bits` nats removes the gradient once the KL is already
    small, which stops the model from collapsing its latents to match the prior.
    """
    sg = jax.lax.stop_gradient
    dyn = jnp.maximum(free_bits, categorical_kl(sg(posterior_logits), prior_logits))
    rep = jnp.maximum(free_bits, categorical_kl(posterior_logits, sg(prior_logits)))
    kl = sg(categorical_kl(posterior_logits, prior_logits))
    return KLLosses(total=dyn_scale * dyn + rep_scale * rep, dyn=dyn, rep=rep, kl=kl)


class ObserveOutput(NamedTuple):
    """Filtered latents of a (B, T) sequence."""

    posterior: LatentState
    posterior_logits: jax.Array
    prior_logits: jax.Array
    features: jax.Array


def observe(
    params,
    obs: jax.Array,
    prev_action: jax.Array,
    is_first: jax.Array,
    key: jax.Array,
    config: DreamerConfig,
    start: LatentState | None = None,
) -> ObserveOutput:
    """Runs the RSSM posterior over (B, T) inputs, starting from `start` or the learned initial state."""
    network = world_model_network(config)
    embed = network.apply.encode(params, obs)
    batch_size, length = embed.shape[:2]
    if start is None:
        initial = network.apply.initial_state(params)
        start = LatentState(
            deter=jnp.broadcast_to(initial.deter, (batch_size,) + initial.deter.shape),
            stoch=jnp.broadcast_to(initial.stoch, (batch_size,) + initial.stoch.shape),
        )

    def step(prev, inputs):
        action, step_embed, step_is_first, noise = inputs
        out = network.apply.obs_step(params, prev, action, step_embed, step_is_first, noise)
        return out.posterior, out

    time_major = (
        jnp.swapaxes(prev_action.astype(jnp.float32), 0, 1),
        jnp.swapaxes(embed, 0, 1),
        jnp.swapaxes(is_first, 0, 1),
        latent_noise(key, (length, batch_size), config),
    )
    _, outs = jax.lax.scan(step, start, time_major, unroll=config.unroll)
    outs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outs)
    return ObserveOutput(
        posterior=outs.posterior,
        posterior_logits=outs.posterior_logits,
        prior_logits=outs.prior_logits,
        features=features(outs.posterior),
    )


class WorldModelOutput(NamedTuple):
    observed: ObserveOutput
    metrics: dict[str, jax.Array]


def reconstruction_target(obs: jax.Array, config: DreamerConfig) -> jax.Array:
    """Decoder target: symlog sensors (scale-free regression) or centred pixels (plain MSE, as in the paper)."""
    if config.obs_kind == "sensors":
        return symlog(obs.astype(jnp.float32))
    return preprocess_pixels(obs)


class ReconstructionLoss(NamedTuple):
    """Per-step (B, T) squared error summed over the observation: what the model minimises, and plain."""

    weighted: jax.Array
    plain: jax.Array


def reconstruction_loss(
    prediction: jax.Array, target: jax.Array, config: DreamerConfig
) -> ReconstructionLoss:
    """The error weighted as `config.recon_focus` says: (1 - f) + f * e^p / mean(e^p) over the frame, for
    a pixel's squared error e (`weighted` is `plain` when f = 0).

    A pixel's channels share one weight. The weights come from the stopped-gradient error, so they
    only say where the decoder should look, and they fall back to uniform as the errors even out.
    """
    squared = jnp.square(prediction - target)
    if config.obs_kind == "pixels":
        squared = jnp.sum(squared, axis=-1)
    unit_axes = tuple(range(2, squared.ndim))
    plain = jnp.sum(squared, axis=unit_axes)
    if config.recon_focus == 0.0:
        return ReconstructionLoss(weighted=plain, plain=plain)
    error = jax.lax.stop_gradient(squared) ** config.recon_focus_power
    relative = error / (jnp.mean(error, axis=unit_axes, keepdims=True) + 1e-12)
    weights = (1.0 - config.recon_focus) + config.recon_focus * relative
    return ReconstructionLoss(weighted=jnp.sum(weights * squared, axis=unit_axes), plain=plain)


def decode_observation(params, feat: jax.Array, config: DreamerConfig) -> jax.Array:
    """Decoder output mapped back to observation space: float sensors or uint8 pixels."""
    prediction = world_model_network(config).apply.decode(params, feat)
    if config.obs_kind == "sensors":
        return symexp(prediction)
    return jnp.clip(jnp.round((prediction + 0.5) * 255.0), 0, 255).astype(jnp.uint8)


def world_model_loss(
    params, batch: dict[str, jax.Array], key: jax.Array, config: DreamerConfig
) -> tuple[jax.Array, WorldModelOutput]:
    """Mean over (B, T) of reconstruction + reward + continue + balanced KL losses."""
    network = world_model_network(config)
    # Sequences always start from the learned initial state, so their first step must reset.
    is_first = jnp.asarray(batch["is_first"]).astype(bool).at[:, 0].set(True)
    observed = observe(params, batch["obs"], batch["action"], is_first, key, config)
    feat = observed.features

    target = reconstruction_target(batch["obs"], config)
    prediction = network.apply.decode(params, feat)
    recon = reconstruction_loss(prediction, target, config)

    bins = symlog_bins(config.num_bins, config.bins_low, config.bins_high)
    reward = jnp.asarray(batch["reward"], jnp.float32)
    reward_logits = network.apply.reward_logits(params, feat)
    reward_loss = -symexp_twohot_log_prob(reward_logits, reward, bins)

    continues = 1.0 - jnp.asarray(batch["is_terminal"], jnp.float32)
    continue_logit = network.apply.continue_logit(params, feat)
    continue_loss = -(
        continues * jax.nn.log_sigmoid(continue_logit)
        + (1.0 - continues) * jax.nn.log_sigmoid(-continue_logit)
    )

    kl = kl_balance_loss(
        observed.posterior_logits,
        observed.prior_logits,
        config.free_bits,
        config.dyn_scale,
        config.rep_scale,
    )
    per_step = (
        config.recon_scale * recon.weighted
        + config.reward_scale * reward_loss
        + config.continue_scale * continue_loss
        + kl.total
    )
    loss = jnp.mean(per_step)

    reward_prediction = symexp_twohot_mean(reward_logits, bins)
    metrics = {
        "wm/loss": loss,
        # Unweighted, so runs with and without recon_focus compare on the same scale.
        "wm/recon_loss": jnp.mean(recon.plain),
        "wm/reward_loss": jnp.mean(reward_loss),
        "wm/continue_loss": jnp.mean(continue_loss),
        "wm/dyn_loss": jnp.mean(kl.dyn),
        "wm/rep_loss": jnp.mean(kl.rep),
        "wm/kl": jnp.mean(kl.kl),
        "wm/prior_entropy": jnp.mean(categorical_entropy(observed.prior_logits)),
        "wm/posterior_entropy": jnp.mean(categorical_entropy(observed.posterior_logits)),
        "wm/reward_abs_error": jnp.mean(jnp.abs(reward_prediction - reward)),
        "wm/continue_accuracy": jnp.mean(((continue_logit > 0) == (continues > 0.5)).astype(jnp.float32)),
    }
    return loss, WorldModelOutput(observed=observed, metrics=metrics)


def imagine_with_actions(
    params, start: LatentState, actions: jax.Array, key: jax.Array, config: DreamerConfig
) -> LatentState:
    """Open-loop prior rollout from `start` (batch B) under given actions (B, H, A); returns (B, H) states.

    This is the "dream" of the world model: e.g. observe real frames, then decode these states.
    """
    network = world_model_network(config)

    def step(prev, inputs):
        action, noise = inputs
        out = network.apply.img_step(params, prev, action, noise)
        return out.prior, out.prior

    batch_size, horizon = actions.shape[:2]
    time_major = (
        jnp.swapaxes(actions.astype(jnp.float32), 0, 1),
        latent_noise(key, (horizon, batch_size), config),
    )
    _, states = jax.lax.scan(step, start, time_major)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), states)
