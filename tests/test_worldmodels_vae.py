import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.errors import RlcarError
from rlcar_core.loop.keys import stream_base
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.supervised import keyed_train_step
from rlcar_core.worldmodels.vae import (
    VAEOutput,
    init_vae_state,
    make_vae,
    make_vae_evaluate,
    make_vae_update,
    vae_loss,
)

# Parameter init is many threefry draws, which XLA:CPU's optimising backend compiles very slowly;
# unoptimised code is plenty fast for a one-off init.
FAST_COMPILE = {"compiler_options": {"xla_backend_optimization_level": 0}}
SMALL = VAEConfig(z_dim=8, encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8), learning_rate=2e-3)


def _frames(batch_size, seed=0):
    # Smooth colour blobs: learnable structure, unlike uniform noise.
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:64, 0:64] / 64.0
    centres = rng.uniform(0.2, 0.8, size=(batch_size, 2, 1, 1))
    blob = np.exp(-((ys - centres[:, 0]) ** 2 + (xs - centres[:, 1]) ** 2) * 20.0)
    colours = rng.uniform(0, 1, size=(batch_size, 1, 1, 3))
    return (blob[..., None] * colours * 255).astype(np.uint8)


def test_default_architecture_shapes_without_compute():
    config = VAEConfig()
    vae = make_vae(config)
    images = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.uint8)
    params = jax.eval_shape(vae.init, jax.random.PRNGKey(0), images)
    assert params["vae/~encode/conv2_d_3"]["w"].shape == (4, 4, 128, 256)
    assert params["vae/~decode/conv2_d_transpose_3"]["w"].shape == (6, 6, 3, 32)
    output = jax.eval_shape(vae.apply.forward, params, images, jax.random.PRNGKey(1))
    assert isinstance(output, VAEOutput)
    assert output.reconstruction.shape == (2, 64, 64, 3)
    assert output.mean.shape == output.log_var.shape == output.latent.shape == (2, 32)


@pytest.mark.parametrize(
    ("kernel", "size", "input_channels", "output_channels"),
    [(4, 64, 3, 5), (4, 31, 4, 6), (4, 6, 8, 4), (2, 9, 3, 3)],
)
def test_strided_conv_equals_haikus_conv2d_with_its_parameters(kernel, size, input_channels, output_channels):
    """Outputs, gradients and freshly drawn parameters: haiku's layer and ours are interchangeable."""
    import haiku as hk

    from rlcar_core.worldmodels.conv import StridedConv2D

    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size, input_channels)), jnp.float32)
    theirs = hk.without_apply_rng(
        hk.transform(lambda x: hk.Conv2D(output_channels, kernel, stride=2, padding="VALID")(x))
    )
    ours = hk.without_apply_rng(
        hk.transform(lambda x: StridedConv2D(output_channels, kernel, name="conv2_d")(x))
    )
    _assert_interchangeable(theirs, ours, x)


@pytest.mark.parametrize(
    ("kernel", "size", "input_channels", "output_channels"),
    [(5, 1, 16, 8), (5, 5, 8, 4), (6, 13, 8, 4), (6, 30, 4, 3), (4, 7, 3, 5), (3, 4, 2, 2)],
)
def test_transposed_conv_equals_haikus_conv2d_transpose_with_its_parameters(
    kernel, size, input_channels, output_channels
):
    import haiku as hk

    from rlcar_core.worldmodels.conv import TransposedConv2D

    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, size, size, input_channels)), jnp.float32)
    theirs = hk.without_apply_rng(
        hk.transform(lambda x: hk.Conv2DTranspose(output_channels, kernel, stride=2, padding="VALID")(x))
    )
    ours = hk.without_apply_rng(
        hk.transform(lambda x: TransposedConv2D(output_channels, kernel, name="conv2_d_transpose")(x))
    )
    _assert_interchangeable(theirs, ours, x)


def _assert_interchangeable(theirs, ours, x):
    params = theirs.init(jax.random.PRNGKey(3), x)
    # The same names, shapes and initial values...
    assert jax.tree.map(np.shape, ours.init(jax.random.PRNGKey(3), x)) == jax.tree.map(np.shape, params)
    jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.PRNGKey(3), x), params)
    # ... and the same function of them, gradients included.
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)

    def loss(apply):
        return lambda params, x: jnp.sum(jnp.sin(apply(params, x)))

    ours_grads = jax.grad(loss(ours.apply), argnums=(0, 1))(params, x)
    theirs_grads = jax.grad(loss(theirs.apply), argnums=(0, 1))(params, x)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), ours_grads, theirs_grads
    )


def test_small_vae_outputs():
    vae = make_vae(SMALL)
    images = jnp.asarray(_frames(3))
    params = jax.jit(vae.init, **FAST_COMPILE)(jax.random.PRNGKey(0), images)
    output = jax.jit(vae.apply.forward)(params, images, jax.random.PRNGKey(1))
    assert output.reconstruction.dtype == jnp.float32
    assert output.reconstruction.shape == (3, 64, 64, 3)
    assert float(output.reconstruction.min()) >= 0.0 and float(output.reconstruction.max()) <= 1.0
    encode = jax.jit(vae.apply.encode)
    mean, log_var = encode(params, images)
    assert mean.shape == log_var.shape == (3, 8)
    assert jax.jit(vae.apply.decode)(params, mean).shape == (3, 64, 64, 3)
    # uint8 and pre-scaled float frames encode identically.
    float_mean, _ = encode(params, images.astype(jnp.float32) / 255.0)
    np.testing.assert_allclose(mean, float_mean, rtol=1e-5, atol=1e-5)


def test_kl_below_tolerance_gives_no_kl_gradient():
    images = jnp.zeros((2, 64, 64, 3), jnp.float32)

    def loss_of(mean):
        output = VAEOutput(jnp.zeros_like(images), mean, jnp.zeros_like(mean), mean)
        return vae_loss(output, images, kl_tolerance=0.5).loss

    small_mean = jnp.full((2, 4), 0.1)  # KL = 0.02 nats, under the 2-nat floor
    assert float(loss_of(small_mean)) == pytest.approx(0.5 * 4)
    assert float(jnp.abs(jax.grad(loss_of)(small_mean)).max()) == 0.0
    assert float(jnp.abs(jax.grad(loss_of)(jnp.full((2, 4), 3.0))).max()) > 0.0


def test_vae_loss_falls_on_fixed_batch():
    images = jnp.asarray(_frames(8))
    state = jax.jit(init_vae_state, static_argnums=0, **FAST_COMPILE)(SMALL, jax.random.PRNGKey(0))
    train_step = keyed_train_step(make_vae_update(SMALL))
    evaluate = jax.jit(make_vae_evaluate(SMALL))
    before = float(evaluate(state.params, images, jax.random.PRNGKey(5))["loss"])
    # Keys come from the loop kit's stream (seed, stream) folded with the step: nothing to checkpoint.
    stream = stream_base(0, 0)
    for _ in range(100):
        state, metrics = train_step(state, images, stream)
    after = float(evaluate(state.params, images, jax.random.PRNGKey(5))["loss"])
    assert int(state.step) == 100
    assert set(metrics) == {"loss", "reconstruction_loss", "kl_loss", "grad_norm"}
    assert np.isfinite(after) and after < 0.5 * before


@pytest.mark.parametrize("config", [SMALL, MDNRNNConfig(hidden_size=16), ControllerConfig(hidden_size=3)])
def test_configs_round_trip_through_dicts(config):
    data = config.to_dict()
    as_json_lists = {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}
    assert type(config).from_dict(as_json_lists) == config
    with pytest.raises(RlcarError, match="unknown"):
        type(config).from_dict({**data, "typo_field": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.z_dim = 3
