"""ConvVAE objective: pixel reconstruction plus a KL term that is free below a tolerance."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.worldmodels.vae import VAEOutput, images_to_float


class VAELoss(NamedTuple):
    loss: jax.Array
    reconstruction_loss: jax.Array
    kl_loss: jax.Array  # before the tolerance floor, so progress stays visible in the logs


def vae_loss(output: VAEOutput, images: jax.Array, kl_tolerance: float) -> VAELoss:
    """Sum of squared pixel errors and KL(q(z|x) || N(0, I)), each summed per frame, batch-averaged."""
    targets = images_to_float(images)
    squared_error = jnp.square(output.reconstruction - targets)
    reconstruction = jnp.sum(squared_error, axis=(-3, -2, -1))
    kl = -0.5 * jnp.sum(1.0 + output.log_var - jnp.square(output.mean) - jnp.exp(output.log_var), axis=-1)
    # Per frame, as in the paper: a frame whose KL is already under the budget gives no gradient to
    # squeeze it further, while frames above it are still pulled toward the prior.
    kl_floor = kl_tolerance * output.mean.shape[-1]
    clipped_kl = jnp.maximum(kl, kl_floor)
    return VAELoss(
        loss=jnp.mean(reconstruction + clipped_kl),
        reconstruction_loss=jnp.mean(reconstruction),
        kl_loss=jnp.mean(kl),
    )
