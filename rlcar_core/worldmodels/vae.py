"""ConvVAE (V): compresses a 64x64x3 frame into a small latent z and decodes it back; its loss and
its pure update.

Architecture of Ha & Schmidhuber (2018): four stride-2 convolutions (kernel 4, VALID) take
64 -> 31 -> 14 -> 6 -> 2, so the flattened code is 2*2*256 = 1024 wide; the decoder maps z to
a 1x1x1024 map and four stride-2 transposed convolutions (kernels 5, 5, 6, 6) grow it
1 -> 5 -> 13 -> 30 -> 64 (both computed as in `conv.py`, which XLA's CPU backend runs ~3x faster
than haiku's own layers, with the same parameters). The objective is pixel reconstruction plus a KL
term that is free below a tolerance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from rlcar_core.worldmodels.config import VAEConfig
from rlcar_core.worldmodels.conv import StridedConv2D, TransposedConv2D
from rlcar_core.worldmodels.supervised import Metrics, TrainState, make_supervised_update

IMAGE_SHAPE = (64, 64, 3)
_ENCODER_KERNEL = 4
_DECODER_KERNELS = (5, 5, 6, 6)
_DECODER_INPUT_WIDTH = 1024


class VAEOutput(NamedTuple):
    reconstruction: jax.Array  # (B, 64, 64, 3) float32 in [0, 1]
    mean: jax.Array  # (B, z_dim)
    log_var: jax.Array  # (B, z_dim)
    latent: jax.Array  # (B, z_dim), a reparameterised sample of q(z | x)


class VAEFunctions(NamedTuple):
    """Apply functions of the transformed VAE: `vae.apply.encode(params, images)` etc."""

    encode: Callable  # (params, images) -> (mean, log_var)
    decode: Callable  # (params, latent) -> reconstruction
    forward: Callable  # (params, images, key) -> VAEOutput


def images_to_float(images: jax.Array) -> jax.Array:
    """uint8 frames -> float32 in [0, 1]; float frames are assumed to be scaled already."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def sample_latent(mean: jax.Array, log_var: jax.Array, key: jax.Array) -> jax.Array:
    """Reparameterised draw z = mean + sigma * eps, so gradients flow into mean and log_var."""
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * noise


class ConvVAE(hk.Module):
    def __init__(self, config: VAEConfig, name: str | None = None):
        super().__init__(name=name)
        if len(config.decoder_channels) != len(_DECODER_KERNELS) - 1:
            raise ValueError(
                f"decoder_channels needs {len(_DECODER_KERNELS) - 1} entries (the last layer is RGB), "
                f"got {config.decoder_channels}"
            )
        self._config = config

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden = images_to_float(images)
        for index, channels in enumerate(self._config.encoder_channels):
            # Named as haiku names its own Conv2D layers, so older checkpoints load unchanged.
            name = "conv2_d" + (f"_{index}" if index else "")
            hidden = jax.nn.relu(StridedConv2D(channels, _ENCODER_KERNEL, name=name)(hidden))
        hidden = hk.Flatten()(hidden)
        mean = hk.Linear(self._config.z_dim, name="mean")(hidden)
        log_var = hk.Linear(self._config.z_dim, name="log_var")(hidden)
        return mean, log_var

    def decode(self, latent: jax.Array) -> jax.Array:
        hidden = hk.Linear(_DECODER_INPUT_WIDTH, name="decoder_input")(latent)
        hidden = hidden.reshape(hidden.shape[:-1] + (1, 1, _DECODER_INPUT_WIDTH))
        channels = (*self._config.decoder_channels, IMAGE_SHAPE[-1])
        for index, (width, kernel) in enumerate(zip(channels, _DECODER_KERNELS, strict=True)):
            name = "conv2_d_transpose" + (f"_{index}" if index else "")
            hidden = TransposedConv2D(width, kernel, name=name)(hidden)
            if index < len(channels) - 1:
                hidden = jax.nn.relu(hidden)
        return jax.nn.sigmoid(hidden)

    def __call__(self, images: jax.Array, key: jax.Array) -> VAEOutput:
        mean, log_var = self.encode(images)
        latent = sample_latent(mean, log_var, key)
        return VAEOutput(self.decode(latent), mean, log_var, latent)


def make_vae(config: VAEConfig) -> hk.MultiTransformed:
    """`init(key, images) -> params`; `apply` is a `VAEFunctions` of pure functions of params."""

    def build():
        vae = ConvVAE(config, name="vae")

        def init(images):
            mean, _ = vae.encode(images)
            return vae.decode(mean)

        return init, VAEFunctions(encode=vae.encode, decode=vae.decode, forward=vae)

    return hk.without_apply_rng(hk.multi_transform(build))


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


def make_vae_optimizer(config: VAEConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


def init_vae_state(config: VAEConfig, key: jax.Array) -> TrainState:
    vae = make_vae(config)
    params = vae.init(key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))
    return TrainState(params, make_vae_optimizer(config).init(params), jnp.zeros((), jnp.int32))


def _make_loss_fn(config: VAEConfig):
    vae = make_vae(config)

    def loss_fn(params, images, key):
        losses = vae_loss(vae.apply.forward(params, images, key), images, config.kl_tolerance)
        return losses.loss, losses

    return loss_fn


def make_vae_update(config: VAEConfig) -> Callable:
    """`update(state, images, key) -> (state, metrics)`; images are uint8 or [0, 1] float frames."""
    return make_supervised_update(_make_loss_fn(config), make_vae_optimizer(config))


def make_vae_evaluate(config: VAEConfig) -> Callable:
    """`evaluate(params, images, key) -> metrics` with the training losses, for validation batches."""
    loss_fn = _make_loss_fn(config)

    def evaluate(params: hk.Params, images: jax.Array, key: jax.Array) -> Metrics:
        _, losses = loss_fn(params, images, key)
        return losses._asdict()

    return evaluate


@functools.cache
def vae_validation_fn(config: VAEConfig) -> Callable:
    """Jitted `(params, frames) -> (mse per frame, KL per frame, reconstructions)` from the posterior mean,
    so validation error does not depend on sampling noise. Cached: one compile per model shape."""
    vae = make_vae(config)

    def validation(params: hk.Params, frames: jax.Array):
        mean, log_var = vae.apply.encode(params, frames)
        reconstruction = vae.apply.decode(params, mean)
        mse = jnp.mean(jnp.square(reconstruction - images_to_float(frames)), axis=(1, 2, 3))
        kl = -0.5 * jnp.sum(1.0 + log_var - jnp.square(mean) - jnp.exp(log_var), axis=-1)
        return mse, kl, reconstruction

    return jax.jit(validation)


@functools.cache
def encoder_fn(config: VAEConfig) -> Callable:
    """Jitted `(params, frames) -> (mean, log_var)`; cached so every user shares one compile."""
    vae = make_vae(config)
    return jax.jit(lambda params, frames: vae.apply.encode(params, frames))
