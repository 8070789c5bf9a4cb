"""DreamerV3 networks: RSSM shapes for sensors and pixels, decoding, dreaming, and the env policy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.dreamer import (
    DreamerConfig,
    decode_observation,
    from_env_action,
    imagine_with_actions,
    init_training_state,
    initial_carry,
    observe,
    policy_step,
    to_env_action,
)
from rlcar_core.dreamer.train_state import example_obs

B, T = 2, 3


def _observe_and_decode(config: DreamerConfig):
    params = init_training_state(config, jax.random.key(0)).params

    @jax.jit
    def run(world_model_params, obs, action, is_first, key):
        observe_key, dream_key = jax.random.split(key)
        out = observe(world_model_params, obs, action, is_first, observe_key, config)
        start = jax.tree.map(lambda x: x[:, -1], out.posterior)
        dream = imagine_with_actions(
            world_model_params, start, jnp.zeros((B, 4, config.action_dim)), dream_key, config
        )
        return out, decode_observation(world_model_params, out.features, config), dream

    obs = example_obs(config, (B, T))
    is_first = jnp.zeros((B, T), bool).at[:, 0].set(True)
    return run(params.world_model, obs, jnp.zeros((B, T, 3)), is_first, jax.random.key(1))


@pytest.mark.parametrize(
    "obs_kind, obs_shape", [("sensors", (17,)), ("pixels", (64, 64, 3))], ids=["sensors", "pixels"]
)
def test_rssm_shapes(obs_kind, obs_shape):
    config = DreamerConfig.preset("tiny", obs_kind=obs_kind, obs_shape=obs_shape, model_lr=1e-3)
    out, decoded, dream = _observe_and_decode(config)
    assert out.posterior.deter.shape == (B, T, 64)
    assert out.posterior.stoch.shape == (B, T, 8, 8)
    assert out.posterior_logits.shape == out.prior_logits.shape == (B, T, 8, 8)
    assert out.features.shape == (B, T, config.feature_size) == (B, T, 64 + 64)
    # Latents are one-hot per group.
    np.testing.assert_allclose(np.asarray(out.posterior.stoch.sum(-1)), 1.0)
    assert set(np.unique(np.asarray(out.posterior.stoch))) <= {0.0, 1.0}
    assert decoded.shape == (B, T) + obs_shape
    assert decoded.dtype == (jnp.uint8 if obs_kind == "pixels" else jnp.float32)
    assert dream.deter.shape == (B, 4, 64) and dream.stoch.shape == (B, 4, 8, 8)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves((out, dream)))


# Equal to test_dreamer_update's config so compiled initialisation is shared within a test session.
SENSOR_CONFIG = DreamerConfig.preset("tiny", obs_shape=(17,), model_lr=1e-3)


@functools.cache
def _jitted_policy(actions: str):
    return jax.jit(functools.partial(policy_step, config=SENSOR_CONFIG, actions=actions))


def test_policy_step_shapes_bounds_and_determinism():
    params = init_training_state(SENSOR_CONFIG, jax.random.key(0)).params
    num_envs = 5
    carry = initial_carry(num_envs, SENSOR_CONFIG)
    obs = 50.0 * jax.random.normal(jax.random.key(1), (num_envs, 17))
    is_first = jnp.ones(num_envs, bool)
    explore = _jitted_policy("sample")
    action, new_carry = explore(params, carry, obs, is_first, jax.random.key(2))
    assert action.shape == (num_envs, 3) and action.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(action) <= 1.0))
    assert jax.tree.map(jnp.shape, new_carry) == jax.tree.map(jnp.shape, carry)
    np.testing.assert_array_equal(new_carry.prev_action, action)
    again, _ = explore(params, carry, obs, is_first, jax.random.key(2))
    np.testing.assert_array_equal(action, again)

    # Rolling on with the carry (no reset) keeps shapes; the greedy policy is the actor mean.
    greedy = _jitted_policy("mode")
    for step in range(3):
        action, new_carry = greedy(params, new_carry, obs, jnp.zeros(num_envs, bool), jax.random.key(step))
        assert action.shape == (num_envs, 3) and bool(jnp.all(jnp.abs(action) <= 1.0))


def test_policy_step_vmaps_over_single_envs():
    params = init_training_state(SENSOR_CONFIG, jax.random.key(0)).params
    num_envs = 3
    single_carry = jax.tree.map(lambda x: x[0], initial_carry(1, SENSOR_CONFIG))
    carries = jax.tree.map(lambda x: jnp.stack([x] * num_envs), single_carry)
    vmapped = jax.jit(
        jax.vmap(
            functools.partial(policy_step, config=SENSOR_CONFIG, actions="sample"),
            in_axes=(None, 0, 0, 0, 0),
        )
    )
    keys = jax.random.split(jax.random.key(3), num_envs)
    action, carry = vmapped(params, carries, jnp.zeros((num_envs, 17)), jnp.ones(num_envs, bool), keys)
    assert action.shape == (num_envs, 3) and carry.latent.stoch.shape == (num_envs, 8, 8)
    assert bool(jnp.all(jnp.abs(action) <= 1.0))


def test_env_action_mapping():
    actor_action = np.array([[-1.0, -1.0, 1.0], [0.5, 0.0, -1.0], [3.0, 2.0, -7.0]], np.float32)
    env_action = to_env_action(actor_action)
    assert isinstance(env_action, np.ndarray)
    np.testing.assert_allclose(env_action, [[-1.0, 0.0, 1.0], [0.5, 0.5, 0.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(from_env_action(env_action[:2]), actor_action[:2])
    traced = jax.jit(to_env_action)(jnp.asarray(actor_action))
    np.testing.assert_allclose(np.asarray(traced), env_action)


def test_clipped_mean_is_the_average_clipped_sample_and_leaves_the_mode_at_a_saturated_bound():
    from rlcar_core.dreamer.distributions import ActionDistribution

    mean = jnp.array([0.0, 0.5, 1.0, -1.0, 0.9, 0.99])
    std = jnp.array([0.1, 0.2, 0.4, 0.3, 1.0, 0.1])
    dist = ActionDistribution(mean=mean, std=std)
    noise = jax.random.normal(jax.random.key(0), (400_000, mean.shape[0]))
    samples = jnp.clip(mean + std * noise, -1.0, 1.0)
    np.testing.assert_allclose(dist.clipped_mean(), samples.mean(axis=0), atol=3e-3)
    # Inside the bounds with a small std it is the mode; at a bound the std moves it inwards
    # (1 - std * 0.3989 for a mean of exactly 1), while the mode stays at the bound.
    np.testing.assert_allclose(dist.clipped_mean()[:2], mean[:2], atol=1e-3)
    np.testing.assert_allclose(dist.clipped_mean()[2], 1.0 - 0.4 * 0.398942, rtol=1e-5)
    np.testing.assert_allclose(dist.clipped_mean()[3], -1.0 + 0.3 * 0.398942, rtol=1e-5)
    assert bool(jnp.all(jnp.abs(dist.clipped_mean()) <= 1.0))


def test_each_action_choice_acts_in_bounds_and_mean_is_the_deterministic_clipped_mean():
    from rlcar_core.dreamer.config import ACTION_CHOICES
    from rlcar_core.dreamer.distributions import ActionDistribution

    assert ACTION_CHOICES == ("sample", "mode", "mean")
    dist = ActionDistribution(mean=jnp.array([[0.999, -0.2, 0.5]]), std=jnp.array([[0.8, 0.1, 0.3]]))
    keys = jax.random.key(0), jax.random.key(1)
    samples = [dist.act("sample", key) for key in keys]
    assert not np.array_equal(samples[0], samples[1])
    for choice in ACTION_CHOICES:
        assert bool(jnp.all(jnp.abs(dist.act(choice, keys[0])) <= 1.0))
    np.testing.assert_array_equal(dist.act("mode", keys[0]), dist.mean)
    np.testing.assert_array_equal(dist.act("mean", keys[0]), dist.act("mean", keys[1]))
    np.testing.assert_allclose(dist.act("mean", keys[0]), dist.clipped_mean())
    # At a saturated mean the std steers: the mean action is well inside the mode's full lock.
    assert float(dist.act("mean", keys[0])[0, 0]) < 0.7

    params = init_training_state(SENSOR_CONFIG, jax.random.key(0)).params
    carry = initial_carry(2, SENSOR_CONFIG)
    obs = jax.random.normal(jax.random.key(1), (2, 17))
    action, new_carry = _jitted_policy("mean")(params, carry, obs, jnp.ones(2, bool), jax.random.key(2))
    assert action.shape == (2, 3) and bool(jnp.all(jnp.abs(action) <= 1.0))
    np.testing.assert_array_equal(new_carry.prev_action, action)


@pytest.mark.parametrize("output_channels, with_bias", [(8, False), (3, True)])  # four convolutions; one
def test_upsample_equals_haikus_transposed_convolution(output_channels, with_bias):
    """Same parameters (names, shapes, initial values) and the same outputs and gradients as
    hk.Conv2DTranspose(kernel 4, stride 2, SAME), so checkpoints are interchangeable."""
    import haiku as hk

    from rlcar_core.dreamer.upsample import Upsample2x

    def transposed(x):
        return hk.Conv2DTranspose(output_channels, 4, stride=2, with_bias=with_bias, name="deconv_0")(x)

    def upsample(x):
        return Upsample2x(output_channels, with_bias=with_bias, name="deconv_0")(x)

    reference = hk.without_apply_rng(hk.transform(transposed))
    ours = hk.without_apply_rng(hk.transform(upsample))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 8, 8, 16)), jnp.float32)
    params = reference.init(jax.random.key(1), x)
    assert jax.tree.all(
        jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, ours.init(jax.random.key(1), x))
    )
    params = jax.tree.map(lambda leaf: leaf + 0.1, params)  # a non-zero bias too
    out = ours.apply(params, x)
    assert out.shape == (3, 16, 16, output_channels)
    np.testing.assert_allclose(out, reference.apply(params, x), atol=1e-5)
    loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f.apply(p, x)))  # noqa: E731
    ours_grads = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    reference_grads = jax.grad(loss(reference), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(reference_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_latent_noise_bits_give_exactly_jax_random_gumbel():
    # The RSSM samples from bits (so XLA cannot fuse the float maths into the generator); the noise
    # must stay the very values jax.random.gumbel draws for the same key.
    from rlcar_core.dreamer.networks import gumbel_from_bits, latent_noise
    from rlcar_core.dreamer.prng import fast_key

    config = DreamerConfig.preset("tiny")
    for key in (jax.random.key(0), fast_key(jax.random.key(1))):
        bits = latent_noise(key, (5, 3), config)
        assert bits.dtype == jnp.uint32 and bits.shape == (5, 3, config.stoch_size, config.stoch_classes)
        expected = jax.random.gumbel(key, bits.shape)
        np.testing.assert_array_equal(np.asarray(jax.jit(gumbel_from_bits)(bits)), np.asarray(expected))
