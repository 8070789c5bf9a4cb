"""The two distributions DreamerV3 needs: grouped categorical latents and the bounded-normal actor."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def sample_onehot_straight_through(logits: jax.Array, gumbel_noise: jax.Array) -> jax.Array:
    """One-hot samples over the last axis whose gradient is that of the probabilities.

    Sampling is the Gumbel-max trick on noise of the same shape as `logits` (`jax.random.gumbel`; the
    RSSM passes `networks.gumbel_from_bits` of bits drawn for a whole sequence in one call outside
    `lax.scan`, which keeps the PRNG out of the loop body, much cheaper to compile and run). The forward value is the discrete sample;
    the backward pass pretends it was `probs`, the straight-through estimator that lets the world
    model and actor train through discrete latents.
    """
    probs = jax.nn.softmax(logits, axis=-1)
    sample = onehot_mode(logits + gumbel_noise)
    # Parenthesised so the forward value is exactly the one-hot sample (the bracket is exactly 0).
    return sample + (probs - jax.lax.stop_gradient(probs))


def onehot_mode(logits: jax.Array) -> jax.Array:
    return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1])


def categorical_kl(lhs_logits: jax.Array, rhs_logits: jax.Array) -> jax.Array:
    """KL(lhs || rhs) of independent categoricals over the last two axes (groups, classes), summed."""
    lhs_log_probs = jax.nn.log_softmax(lhs_logits, axis=-1)
    rhs_log_probs = jax.nn.log_softmax(rhs_logits, axis=-1)
    per_group = jnp.sum(jnp.exp(lhs_log_probs) * (lhs_log_probs - rhs_log_probs), axis=-1)
    return jnp.sum(per_group, axis=-1)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """Entropy of independent categoricals over the last two axes, summed over groups."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=(-2, -1))


class ActionDistribution(NamedTuple):
    """Diagonal normal with mean in [-1, 1] (tanh) and std in [min_std, max_std] (sigmoid).

    Samples can leave [-1, 1]; callers clip them (`bound_action`). This is DreamerV3's own continuous
    actor: unlike a tanh-squashed normal, its entropy is analytic and its log-prob never needs an
    atanh of a saturated action, so the entropy bonus (3e-4) and REINFORCE both stay well behaved.
    """

    mean: jax.Array
    std: jax.Array
    # The mean before its tanh (None where a distribution is built from a mean alone): what
    # `behavior.mean_limit_penalty` keeps out of tanh's flat tails, where the mean's gradient vanishes.
    pre_tanh: jax.Array | None = None

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_from_noise(jax.random.normal(key, self.mean.shape, self.mean.dtype))

    def sample_from_noise(self, standard_normal: jax.Array) -> jax.Array:
        # Reparameterised so that "dynamics" actor gradients can flow through the sample.
        return self.mean + self.std * standard_normal

    def mode(self) -> jax.Array:
        return self.mean

    def act(self, choice: str, key: jax.Array) -> jax.Array:
        """The action in [-1, 1]^A for a `config.ACTION_CHOICES` choice: a clipped sample, the clipped
        mode, or `clipped_mean` (deterministic, and where the sampling actor steers on average)."""
        if choice == "sample":
            action = self.sample(key)
        elif choice == "mean":
            action = self.clipped_mean()
        else:
            action = self.mode()
        return jnp.clip(action, -1.0, 1.0)

    def clipped_mean(self) -> jax.Array:
        """E[clip(a, -1, 1)]: the action the env gets on average when the actor samples (closed form).

        With the mean inside the bounds and a small std this is the mode. With the mean saturated at
        a bound it is not: clip(1 + std * noise) averages 1 - 0.4 * std for std <= 1, so a sampling
        actor can steer with its std while its mode sits at full lock (the CarRacing-v3 actor of
        issue 28 does, 64 % of its steering decisions). The gap to `mode` is logged while training
        as "actor/mode_sample_gap".
        """
        low = (-1.0 - self.mean) / self.std
        high = (1.0 - self.mean) / self.std
        cdf_low, cdf_high = jax.scipy.stats.norm.cdf(low), jax.scipy.stats.norm.cdf(high)
        pdf_low, pdf_high = jax.scipy.stats.norm.pdf(low), jax.scipy.stats.norm.pdf(high)
        inside = self.mean * (cdf_high - cdf_low) + self.std * (pdf_low - pdf_high)
        return inside + (1.0 - cdf_high) - cdf_low

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) / self.std
        return jnp.sum(-0.5 * jnp.square(z) - jnp.log(self.std) - 0.5 * _LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        return jnp.sum(0.5 + 0.5 * _LOG_2PI + jnp.log(self.std), axis=-1)


def bound_action(action: jax.Array) -> jax.Array:
    """Maps an actor sample into [-1, 1]^A exactly like clipping, but keeps a (scaled) gradient.

    Dividing by a stop-gradient magnitude gives the same forward value as `clip` while gradients of
    out-of-range samples still reach the actor when training through the dynamics.
    """
    return action / jax.lax.stop_gradient(jnp.maximum(1.0, jnp.abs(action)))
