"""Scalar transforms and estimators from DreamerV3: symlog, two-hot, unimix, returns, normalisation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def symlog(x: jax.Array) -> jax.Array:
    """Compresses large magnitudes while staying the identity near zero and keeping the sign."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    """Inverse of `symlog`."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def symlog_bins(num_bins: int, low: float, high: float) -> jax.Array:
    """Bin centres in symlog space; an odd count puts one bin exactly on zero.

    Computed when tracing, so jitted code sees a constant: staged out, XLA re-derived the bins from an
    iota inside every fusion that reads them (about 1 ms per (15, 128, 255) head output on a CPU).
    """
    with jax.ensure_compile_time_eval():
        return jnp.linspace(low, high, num_bins, dtype=jnp.float32)


def twohot_encode(x: jax.Array, bins: jax.Array) -> jax.Array:
    """Spreads each value over its two neighbouring bins so that the weighted mean recovers it.

    `x` is in the same (symlog) space as `bins`; values outside the range land on the edge bin.
    """
    num_bins = bins.shape[0]
    x = x[..., None]
    below = jnp.clip(jnp.sum(bins <= x, axis=-1) - 1, 0, num_bins - 1)
    above = jnp.clip(num_bins - jnp.sum(bins > x, axis=-1), 0, num_bins - 1)
    x = x[..., 0]
    same = below == above
    # On an exact bin hit (or outside the range) both distances are 1 so the weight splits as 0.5 + 0.5
    # onto the same bin.
    distance_below = jnp.where(same, 1.0, jnp.abs(bins[below] - x))
    distance_above = jnp.where(same, 1.0, jnp.abs(bins[above] - x))
    total = distance_below + distance_above
    weight_below = distance_above / total
    weight_above = distance_below / total
    return (
        jax.nn.one_hot(below, num_bins) * weight_below[..., None]
        + jax.nn.one_hot(above, num_bins) * weight_above[..., None]
    )


def twohot_decode(probs: jax.Array, bins: jax.Array) -> jax.Array:
    """Expected value in symlog space of a distribution over `bins` (not yet mapped back by symexp)."""
    return jnp.sum(probs * bins, axis=-1)


def twohot_expectation(logits: jax.Array, bins: jax.Array) -> jax.Array:
    """`twohot_decode(softmax(logits), bins)` as one matrix-vector product over unnormalised probabilities.

    Same value (to rounding) and gradient, without materialising the normalised (..., num_bins)
    probabilities and the bins broadcast to their shape, which XLA kept for the backward pass: a
    third of the tiny sensors update's time on a CPU.
    """
    unnormalised = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    return jnp.dot(unnormalised, bins) / jnp.sum(unnormalised, axis=-1)


def symexp_twohot_mean(logits: jax.Array, bins: jax.Array) -> jax.Array:
    """Prediction in the original scale of a symexp two-hot head."""
    return symexp(twohot_expectation(logits, bins))


def symexp_twohot_log_prob(logits: jax.Array, target: jax.Array, bins: jax.Array) -> jax.Array:
    """Log-likelihood of `target` (original scale) under a symexp two-hot head; the loss is its negation.

    The cross-entropy against a two-hot target gives gradients whose size does not depend on the
    magnitude of the target, which is what makes one learning rate work across reward scales.
    """
    target_probs = jax.lax.stop_gradient(twohot_encode(symlog(target), bins))
    return jnp.sum(target_probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def unimix_logits(logits: jax.Array, mix: float) -> jax.Array:
    """Logits of a categorical that is (1 - mix) * softmax(logits) + mix * uniform.

    The floor of mix / K on every probability keeps KL terms and log-probs bounded, so a confident
    prior or posterior can never produce an infinite loss spike.
    """
    if mix <= 0.0:
        return logits
    num_classes = logits.shape[-1]
    probs = (1.0 - mix) * jax.nn.softmax(logits, axis=-1) + mix / num_classes
    return jnp.log(probs)


def lambda_returns(rewards: jax.Array, discounts: jax.Array, values: jax.Array, lambda_: float) -> jax.Array:
    """TD(lambda) returns along the leading (time) axis, bootstrapped from the last value.

    Shapes: `rewards[t]` and `discounts[t]` are the reward and discount * continue of the transition
    t -> t + 1 (length H); `values` has H + 1 entries v_0..v_H. Returns R_0..R_{H-1} with
    R_t = r_t + d_t * ((1 - lambda) * v_{t+1} + lambda * R_{t+1}) and R_H = v_H.
    """
    bootstrapped = rewards + discounts * (1.0 - lambda_) * values[1:]

    def backward(next_return, inputs):
        partial_return, discount = inputs
        current = partial_return + discount * lambda_ * next_return
        return current, current

    _, returns = jax.lax.scan(backward, values[-1], (bootstrapped, discounts), reverse=True)
    return returns


class ReturnNormState(NamedTuple):
    """EMA of the low and high percentiles of imagined returns."""

    low: jax.Array
    high: jax.Array


def init_return_norm() -> ReturnNormState:
    # Starting at zero (no debiasing) is harmless: the scale floor hides the early underestimate.
    return ReturnNormState(low=jnp.zeros((), jnp.float32), high=jnp.zeros((), jnp.float32))


def update_return_norm(
    state: ReturnNormState,
    returns: jax.Array,
    decay: float,
    low_percentile: float,
    high_percentile: float,
) -> ReturnNormState:
    """Tracks the return range by percentiles so rare outliers cannot blow up the scale."""
    returns = jax.lax.stop_gradient(returns).reshape(-1)
    low = jnp.percentile(returns, low_percentile)
    high = jnp.percentile(returns, high_percentile)
    return ReturnNormState(
        low=decay * state.low + (1.0 - decay) * low,
        high=decay * state.high + (1.0 - decay) * high,
    )


def return_scale(state: ReturnNormState, floor: float) -> jax.Array:
    """Divisor for advantages: the percentile range, but never below `floor` so that small returns
    (sparse or near-zero rewards) are not blown up into noise."""
    return jnp.maximum(floor, state.high - state.low)
