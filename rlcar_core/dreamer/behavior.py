"""Behaviour learning: actor and critic trained on trajectories imagined by a frozen world model.

Trajectory arrays are time-major: (H + 1, N, ...) for states, (H, N, ...) for actions, where N is the
number of start states (every replayed step of the batch).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.distributions import ActionDistribution, bound_action
from rlcar_core.dreamer.math import (
    ReturnNormState,
    lambda_returns,
    return_scale,
    symexp_twohot_log_prob,
    symexp_twohot_mean,
    symlog_bins,
    update_return_norm,
)
from rlcar_core.dreamer.networks import (
    LatentState,
    actor_network,
    critic_network,
    features,
    latent_noise,
    world_model_network,
)

# |tanh mean| above this counts as saturated: the pre-tanh mean is past 2.65 and tanh' below 0.02.
MEAN_SATURATED = 0.99
# The weight of `mean_limit_penalty` in the actor's per-step loss, where normalised advantages are
# O(1): the penalty's pull, 2 * excess, then outweighs the advantage's push past the bound, at most
# tanh'(bound) * |dA/da| ~ 0.04 |dA/da| at a bound of 0.98, once the excess is a few hundredths.
MEAN_LIMIT_WEIGHT = 1.0


def mean_limit_penalty(dist: ActionDistribution, limit: float) -> jax.Array:
    """(...,) sum over action dimensions of (|pre-tanh mean| - atanh(limit))^2 past that bound; zeros
    when `limit` is 0 (off). See `DreamerConfig.actor_mean_limit`."""
    if limit <= 0.0:
        return jnp.zeros(dist.mean.shape[:-1], dist.mean.dtype)
    excess = jax.nn.relu(jnp.abs(dist.pre_tanh) - math.atanh(limit))
    return jnp.sum(jnp.square(excess), axis=-1)


def actor_per_step_loss(
    dist: ActionDistribution, actions: jax.Array, advantage: jax.Array, config: DreamerConfig
) -> jax.Array:
    """(H, N) actor loss per imagined step, before the trajectory weights: minus the objective
    (the normalised advantage itself, which carries the "dynamics" gradient through `actions`, or
    REINFORCE's log-prob times a frozen advantage) and the entropy bonus, plus the mean's limit."""
    if config.actor_grad == "dynamics":
        objective = advantage
    else:
        objective = dist.log_prob(jax.lax.stop_gradient(actions)) * jax.lax.stop_gradient(advantage)
    penalty = MEAN_LIMIT_WEIGHT * mean_limit_penalty(dist, config.actor_mean_limit)
    return -(objective + config.actor_entropy * dist.entropy()) + penalty


class ImaginedTrajectory(NamedTuple):
    features: jax.Array  # (H + 1, N, F): start state then H imagined states.
    actions: jax.Array  # (H, N, A): raw actor samples, action[t] taken in state t.
    rewards: jax.Array  # (H, N): predicted reward of arriving in state t + 1.
    continues: jax.Array  # (H + 1, N): 1 if the episode goes on after state t (start: from data).
    weights: jax.Array  # (H + 1, N): discounted probability that state t is reached at all.


class ImaginationNoise(NamedTuple):
    """Everything random in one imagined rollout, drawn up front (outside the loop)."""

    action: jax.Array  # (H, N, A) standard normal, the actor's reparameterised samples.
    # (H, N, stoch_size, stoch_classes) uint32 bits for the prior's samples (`latent_noise`).
    latent: jax.Array


def imagination_noise(key: jax.Array, num_starts: int, config: DreamerConfig) -> ImaginationNoise:
    action_key, latent_key = jax.random.split(key)
    return ImaginationNoise(
        action=jax.random.normal(action_key, (config.horizon, num_starts, config.action_dim), jnp.float32),
        latent=latent_noise(latent_key, (config.horizon, num_starts), config),
    )


def actor_samples(actor_params, features_: jax.Array, standard_normal: jax.Array, config: DreamerConfig):
    """The actor's reparameterised samples in the given (frozen) states."""
    dist = actor_network(config).apply(actor_params, jax.lax.stop_gradient(features_))
    return dist.sample_from_noise(standard_normal)


def imagine(
    world_model_params,
    actor_params,
    start: LatentState,
    start_continue: jax.Array,
    key: jax.Array,
    config: DreamerConfig,
    *,
    noise: ImaginationNoise | None = None,
    action_offsets: jax.Array | None = None,
) -> ImaginedTrajectory:
    """Rolls the actor through the world model's prior for `config.horizon` steps from `start` (N,).

    With `action_offsets` (zeros, (H, N, A)) the loop reads the actor's parameters frozen and adds
    the offsets to its actions: the gradient with respect to the offsets is then the gradient with
    respect to the actions, and `actor_loss_and_grads` turns it into the actor's "dynamics" gradient
    with one batched pass over all imagined states instead of one small pass per step inside the
    backward loop (same gradient, a fraction of the loop's work).
    """
    world_model = world_model_network(config)
    num_starts = start.deter.shape[0]
    if noise is None:
        noise = imagination_noise(key, num_starts, config)
    loop_actor_params = actor_params if action_offsets is None else jax.lax.stop_gradient(actor_params)
    offsets = jnp.zeros_like(noise.action) if action_offsets is None else action_offsets

    def step(state, inputs):
        action_noise, latent_noise_t, offset = inputs
        # The actor reads a frozen state: gradients reach it through its action only, as in the paper.
        action = actor_samples(loop_actor_params, features(state), action_noise, config)
        if config.actor_grad == "reinforce":
            action = jax.lax.stop_gradient(action)
        elif action_offsets is not None:
            action = jax.lax.stop_gradient(action) + offset
        next_state = world_model.apply.img_step(
            world_model_params, state, bound_action(action), latent_noise_t
        )
        return next_state.prior, (next_state.prior, action)

    _, (states, actions) = jax.lax.scan(
        step, start, (noise.action, noise.latent, offsets), unroll=config.unroll
    )
    all_states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest], axis=0), start, states)
    feat = features(all_states)

    bins = symlog_bins(config.num_bins, config.bins_low, config.bins_high)
    rewards = symexp_twohot_mean(world_model.apply.reward_logits(world_model_params, feat[1:]), bins)
    continue_logit = world_model.apply.continue_logit(world_model_params, feat[1:])
    if config.imagined_continue == "prob":
        imagined_continue = jax.nn.sigmoid(continue_logit)
    else:
        imagined_continue = (continue_logit > 0).astype(jnp.float32)
    continues = jnp.concatenate([start_continue[None].astype(jnp.float32), imagined_continue], axis=0)
    weights = jax.lax.stop_gradient(jnp.cumprod(config.discount * continues, axis=0) / config.discount)
    return ImaginedTrajectory(
        features=feat, actions=actions, rewards=rewards, continues=continues, weights=weights
    )


class ActorOutput(NamedTuple):
    trajectory: ImaginedTrajectory
    returns: jax.Array  # (H, N) lambda-returns, the critic's regression target.
    return_norm: ReturnNormState
    metrics: dict[str, jax.Array]


def actor_loss(
    actor_params,
    world_model_params,
    critic_params,
    return_norm: ReturnNormState,
    start: LatentState,
    start_continue: jax.Array,
    key: jax.Array,
    config: DreamerConfig,
    *,
    noise: ImaginationNoise | None = None,
    action_offsets: jax.Array | None = None,
) -> tuple[jax.Array, ActorOutput]:
    """Maximises normalised lambda-returns plus a small entropy bonus over imagined trajectories."""
    sg = jax.lax.stop_gradient
    trajectory = imagine(
        world_model_params,
        actor_params,
        start,
        start_continue,
        key,
        config,
        noise=noise,
        action_offsets=action_offsets,
    )
    bins = symlog_bins(config.num_bins, config.bins_low, config.bins_high)
    critic = critic_network(config)
    values = symexp_twohot_mean(critic.apply(critic_params, trajectory.features), bins)
    returns = lambda_returns(
        trajectory.rewards,
        config.discount * trajectory.continues[1:],
        values,
        config.return_lambda,
    )
    new_return_norm = update_return_norm(
        return_norm,
        returns,
        config.return_norm_decay,
        config.return_norm_low_percentile,
        config.return_norm_high_percentile,
    )
    # Dividing by the return range (floored at 1) makes the entropy scale mean the same thing for
    # dense and sparse rewards without amplifying noise when returns are small.
    scale = return_scale(new_return_norm, config.return_norm_floor)
    advantage = (returns - values[:-1]) / scale

    dist = actor_network(config).apply(actor_params, sg(trajectory.features[:-1]))
    entropy = dist.entropy()
    per_step = actor_per_step_loss(dist, trajectory.actions, advantage, config)
    loss = config.actor_scale * jnp.mean(per_step * trajectory.weights[:-1])

    metrics = {
        "actor/loss": loss,
        "actor/entropy": jnp.mean(entropy),
        "actor/std": jnp.mean(dist.std),
        # The drift of issue 28: means saturated at a bound (tanh' < 0.02, so their gradient is all
        # but gone) and how far the mode then is from the action the samples give on average.
        "actor/mean_saturated": jnp.mean(jnp.abs(dist.mean) > MEAN_SATURATED),
        "actor/mode_sample_gap": jnp.mean(jnp.abs(jnp.clip(dist.mode(), -1.0, 1.0) - dist.clipped_mean())),
        # How deep in tanh's tails the means are (tanh' < 0.01 past 3), and what the limit costs.
        "actor/pre_tanh_abs": jnp.mean(jnp.abs(dist.pre_tanh)),
        "actor/mean_limit_penalty": jnp.mean(mean_limit_penalty(dist, config.actor_mean_limit)),
        "actor/action_abs_mean": jnp.mean(jnp.abs(bound_action(trajectory.actions))),
        "imagine/reward_mean": jnp.mean(trajectory.rewards),
        "imagine/continue_mean": jnp.mean(trajectory.continues[1:]),
        "imagine/return_mean": jnp.mean(returns),
        "imagine/value_mean": jnp.mean(values),
        "imagine/advantage_mean": jnp.mean(advantage),
        "imagine/return_scale": scale,
        "imagine/return_low": new_return_norm.low,
        "imagine/return_high": new_return_norm.high,
    }
    output = ActorOutput(
        trajectory=sg(trajectory), returns=sg(returns), return_norm=new_return_norm, metrics=metrics
    )
    return loss, output


def actor_loss_and_grads(
    actor_params,
    world_model_params,
    critic_params,
    return_norm: ReturnNormState,
    start: LatentState,
    start_continue: jax.Array,
    key: jax.Array,
    config: DreamerConfig,
) -> tuple[tuple[jax.Array, ActorOutput], object]:
    """`jax.value_and_grad(actor_loss, has_aux=True)` with the "dynamics" gradient taken the cheap way.

    Differentiating `actor_loss` directly backpropagates into the actor's weights at every imagined
    step, inside the backward loop. Here the loop only carries the gradient with respect to each
    action (through zero offsets, see `imagine`); the weights' part is then one batched pass of the
    actor over all H x N imagined states. By the chain rule the two are the same gradient.
    """
    args = (world_model_params, critic_params, return_norm, start, start_continue, key, config)
    if config.actor_grad != "dynamics":
        return jax.value_and_grad(actor_loss, has_aux=True)(actor_params, *args)
    noise = imagination_noise(key, start.deter.shape[0], config)

    def loss(params, offsets):
        return actor_loss(params, *args, noise=noise, action_offsets=offsets)

    value, pullback, output = jax.vjp(loss, actor_params, jnp.zeros_like(noise.action), has_aux=True)
    direct_grads, action_grads = pullback(jnp.ones_like(value))
    states = output.trajectory.features[:-1]
    _, sample_pullback = jax.vjp(
        lambda params: actor_samples(params, states, noise.action, config), actor_params
    )
    (dynamics_grads,) = sample_pullback(action_grads)
    return (value, output), jax.tree.map(jnp.add, direct_grads, dynamics_grads)


def critic_loss(
    critic_params,
    slow_critic_params,
    trajectory: ImaginedTrajectory,
    returns: jax.Array,
    config: DreamerConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Two-hot regression onto lambda-returns, regularised towards a slow EMA copy of the critic.

    The slow-critic term keeps the value function from chasing its own bootstrapped targets.
    """
    sg = jax.lax.stop_gradient
    critic = critic_network(config)
    bins = symlog_bins(config.num_bins, config.bins_low, config.bins_high)
    feat = sg(trajectory.features[:-1])
    logits = critic.apply(critic_params, feat)
    slow_values = sg(symexp_twohot_mean(critic.apply(slow_critic_params, feat), bins))
    return_nll = -symexp_twohot_log_prob(logits, sg(returns), bins)
    slow_nll = -symexp_twohot_log_prob(logits, slow_values, bins)
    per_step = return_nll + config.slow_critic_reg_scale * slow_nll
    loss = config.critic_scale * jnp.mean(per_step * sg(trajectory.weights[:-1]))
    metrics = {
        "critic/loss": loss,
        "critic/return_nll": jnp.mean(return_nll),
        "critic/slow_nll": jnp.mean(slow_nll),
        "critic/value_mean": jnp.mean(symexp_twohot_mean(logits, bins)),
    }
    return loss, metrics
