"""DreamerV3 numerics: symlog, two-hot, unimix, lambda-returns, return normalisation, KL balancing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.math import (
    init_return_norm,
    lambda_returns,
    return_scale,
    symexp,
    symexp_twohot_log_prob,
    symexp_twohot_mean,
    symlog,
    symlog_bins,
    twohot_decode,
    twohot_encode,
    twohot_expectation,
    unimix_logits,
    update_return_norm,
)
from rlcar_core.dreamer.world_model import kl_balance_loss, reconstruction_loss
from rlcar_core.errors import RlcarError

BINS = symlog_bins(255, -20.0, 20.0)
# Eager JAX compiles every primitive on first use; jitting the helpers once keeps the tests fast.
symlog, symexp = jax.jit(symlog), jax.jit(symexp)
twohot_encode, twohot_decode = jax.jit(twohot_encode), jax.jit(twohot_decode)
symexp_twohot_mean, symexp_twohot_log_prob = jax.jit(symexp_twohot_mean), jax.jit(symexp_twohot_log_prob)
unimix_logits = jax.jit(unimix_logits, static_argnums=1)
kl_balance_loss = jax.jit(kl_balance_loss, static_argnums=(2, 3, 4))
finite_floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, 16, elements=finite_floats))
def test_symexp_inverts_symlog(x):
    roundtrip = np.asarray(symexp(symlog(jnp.asarray(x))))
    np.testing.assert_allclose(roundtrip, x, rtol=1e-4, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, 16, elements=st.floats(-15.0, 15.0, width=32)))
def test_symlog_inverts_symexp(x):
    np.testing.assert_allclose(np.asarray(symlog(symexp(jnp.asarray(x)))), x, rtol=1e-4, atol=1e-5)


def test_symlog_is_odd_monotone_and_identity_near_zero():
    x = jnp.linspace(-100.0, 100.0, 1001)
    y = symlog(x)
    assert jnp.all(jnp.diff(y) > 0)
    np.testing.assert_allclose(symlog(-x), -y, atol=1e-6)
    assert float(symlog(jnp.float32(1e-4))) == pytest.approx(1e-4, rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, 32, elements=st.floats(-20.0, 20.0, width=32)))
def test_twohot_round_trip_in_symlog_space(x):
    encoded = twohot_encode(jnp.asarray(x), BINS)
    np.testing.assert_allclose(np.asarray(encoded.sum(-1)), 1.0, atol=1e-5)
    assert int(jnp.max(jnp.sum(encoded > 0, axis=-1))) <= 2
    np.testing.assert_allclose(np.asarray(twohot_decode(encoded, BINS)), x, atol=1e-4)


def test_twohot_round_trip_in_original_space_and_clipping():
    values = jnp.array([-1234.5, -3.0, -0.25, 0.0, 0.01, 1.0, 7.5, 4.4e4])
    encoded = twohot_encode(symlog(values), BINS)
    # A head whose softmax equals the two-hot target predicts the value back.
    logits = jnp.log(encoded + 1e-30)
    np.testing.assert_allclose(np.asarray(symexp_twohot_mean(logits, BINS)), values, rtol=1e-3, atol=1e-5)
    # Beyond the bin range everything lands on the edge bin.
    edge = twohot_encode(jnp.array([25.0, -25.0]), BINS)
    assert float(edge[0, -1]) == pytest.approx(1.0)
    assert float(edge[1, 0]) == pytest.approx(1.0)


def test_twohot_log_prob_prefers_the_target():
    target = jnp.array(3.0)
    right = jnp.log(twohot_encode(symlog(target), BINS) + 1e-8)
    wrong = jnp.log(twohot_encode(symlog(jnp.array(-3.0)), BINS) + 1e-8)
    assert symexp_twohot_log_prob(right, target, BINS) > symexp_twohot_log_prob(wrong, target, BINS)
    # Zero logits (the zero-initialised head) predict exactly zero.
    assert float(symexp_twohot_mean(jnp.zeros(255), BINS)) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (4, 32), elements=st.floats(-1e4, 1e4, width=32)))
def test_unimix_floors_every_probability(logits):
    probs = jax.nn.softmax(unimix_logits(jnp.asarray(logits), 0.01), axis=-1)
    assert float(probs.min()) >= 0.01 / 32 * (1 - 1e-4)
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-5)


def test_lambda_returns_match_hand_computed_three_steps():
    rewards = jnp.array([1.0, 2.0, 3.0])
    discounts = jnp.array([0.9, 0.9, 0.9])
    values = jnp.array([0.5, 1.0, 2.0, 4.0])
    # R3 = 4; R2 = 3 + .9 (.5*4 + .5*4) = 6.6; R1 = 2 + .9 (.5*2 + .5*6.6) = 5.87;
    # R0 = 1 + .9 (.5*1 + .5*5.87) = 4.0915.
    returns = lambda_returns(rewards, discounts, values, 0.5)
    np.testing.assert_allclose(np.asarray(returns), [4.0915, 5.87, 6.6], rtol=1e-5)
    # A terminal transition (discount 0) cuts the bootstrap: R1 = 2, R0 = 1 + .9 (.5*1 + .5*2).
    cut = lambda_returns(rewards, jnp.array([0.9, 0.0, 0.9]), values, 0.5)
    np.testing.assert_allclose(np.asarray(cut[:2]), [2.35, 2.0], rtol=1e-5)
    # lambda = 0 is one-step TD, lambda = 1 the discounted Monte-Carlo return plus bootstrap.
    np.testing.assert_allclose(np.asarray(lambda_returns(rewards, discounts, values, 0.0)), [1.9, 3.8, 6.6])
    np.testing.assert_allclose(
        np.asarray(lambda_returns(rewards, discounts, values, 1.0))[0],
        1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 4,
        rtol=1e-6,
    )


def test_lambda_returns_keep_batch_axes():
    returns = lambda_returns(jnp.ones((15, 7)), jnp.full((15, 7), 0.99), jnp.zeros((16, 7)), 0.95)
    assert returns.shape == (15, 7)


def test_return_normaliser_tracks_percentiles_by_ema_with_floor():
    returns = jnp.arange(101, dtype=jnp.float32)  # 5th percentile 5, 95th percentile 95.
    state = update_return_norm(init_return_norm(), returns, 0.99, 5.0, 95.0)
    assert float(state.low) == pytest.approx(0.05, rel=1e-5)
    assert float(state.high) == pytest.approx(0.95, rel=1e-5)
    # The range is still below 1, so the floor applies.
    assert float(return_scale(state, 1.0)) == 1.0
    for _ in range(199):
        state = update_return_norm(state, returns, 0.99, 5.0, 95.0)
    expected_weight = 1 - 0.99**200
    assert float(state.high) == pytest.approx(95 * expected_weight, rel=1e-4)
    assert float(return_scale(state, 1.0)) == pytest.approx(90 * expected_weight, rel=1e-4)
    # Tiny returns never get amplified.
    small = init_return_norm()
    for _ in range(50):
        small = update_return_norm(small, returns * 1e-3, 0.9, 5.0, 95.0)
    assert float(return_scale(small, 1.0)) == 1.0


def _logits(seed, scale):
    return scale * jax.random.normal(jax.random.key(seed), (2, 8, 8))


def test_kl_below_free_bits_is_constant_with_zero_gradient():
    posterior, prior = _logits(0, 0.1), _logits(1, 0.1)
    losses = kl_balance_loss(posterior, prior, free_bits=1.0, dyn_scale=0.5, rep_scale=0.1)
    assert float(losses.kl.max()) < 1.0
    np.testing.assert_allclose(np.asarray(losses.total), 0.6, rtol=1e-6)

    def total(post, pri):
        return kl_balance_loss(post, pri, 1.0, 0.5, 0.1).total.sum()

    grads = jax.grad(total, argnums=(0, 1))(posterior, prior)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in grads)


def test_kl_balancing_routes_gradients_through_stop_gradient():
    posterior, prior = _logits(2, 3.0), _logits(3, 3.0)
    assert float(kl_balance_loss(posterior, prior, 1.0, 0.5, 0.1).kl.min()) > 1.0

    def term(name):
        return lambda post, pri: getattr(kl_balance_loss(post, pri, 1.0, 0.5, 0.1), name).sum()

    dyn_post, dyn_prior = jax.grad(term("dyn"), argnums=(0, 1))(posterior, prior)
    rep_post, rep_prior = jax.grad(term("rep"), argnums=(0, 1))(posterior, prior)
    # The dynamics loss trains only the prior, the representation loss only the posterior.
    assert float(jnp.abs(dyn_post).max()) == 0.0 and float(jnp.abs(dyn_prior).max()) > 0.0
    assert float(jnp.abs(rep_prior).max()) == 0.0 and float(jnp.abs(rep_post).max()) > 0.0
    # Both terms have the value of the same KL; the total weighs them 0.5 and 0.1.
    losses = kl_balance_loss(posterior, prior, 1.0, 0.5, 0.1)
    np.testing.assert_allclose(np.asarray(losses.dyn), np.asarray(losses.rep), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(losses.total), 0.6 * np.asarray(losses.kl), rtol=1e-5)


def _pixel_config(recon_focus):
    return DreamerConfig.preset("tiny", obs_kind="pixels", obs_shape=(8, 8, 3), recon_focus=recon_focus)


def test_unfocused_reconstruction_loss_is_the_plain_squared_error():
    prediction = jax.random.normal(jax.random.key(4), (2, 3, 8, 8, 3))
    target = jax.random.normal(jax.random.key(5), (2, 3, 8, 8, 3))
    got = reconstruction_loss(prediction, target, _pixel_config(0.0))
    np.testing.assert_allclose(
        got.weighted, jnp.sum(jnp.square(prediction - target), axis=(2, 3, 4)), rtol=1e-6
    )
    np.testing.assert_array_equal(got.weighted, got.plain)


@pytest.mark.parametrize("recon_focus", [0.5, 1.0])
def test_focused_reconstruction_loss_weights_pixels_by_their_error(recon_focus):
    # One badly reconstructed pixel (a small object the decoder missed) among well-drawn ones.
    target = jnp.zeros((1, 1, 8, 8, 3))
    prediction = jnp.full_like(target, 0.01).at[0, 0, 2, 5].set(0.6)
    config = _pixel_config(recon_focus)
    grads = jax.grad(lambda p: reconstruction_loss(p, target, config).weighted.sum())(prediction)
    plain = jax.grad(lambda p: reconstruction_loss(p, target, config).plain.sum())(prediction)
    # The weights average 1 over a frame: the missed pixel pulls harder than under plain MSE, the
    # rest less, and the weights themselves carry no gradient.
    per_pixel = jnp.sum(jnp.square(prediction - target), axis=-1)
    relative = per_pixel / per_pixel.mean()
    weights = (1.0 - recon_focus) + recon_focus * relative
    np.testing.assert_allclose(float(weights.mean()), 1.0, rtol=1e-5)
    np.testing.assert_allclose(grads, plain * weights[..., None], rtol=1e-5)
    assert float(grads[0, 0, 2, 5, 0]) > 10 * float(plain[0, 0, 2, 5, 0])


def test_recon_focus_outside_zero_to_one_is_refused():
    with pytest.raises(RlcarError, match="recon_focus"):
        _pixel_config(1.5)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (3, 255), elements=st.floats(-30.0, 30.0, width=32)))
@example(np.pad(np.full((1, 1), 17.0, np.float32), ((0, 2), (0, 254))))  # failed CI at stop 17
def test_twohot_expectation_is_the_softmax_expectation_with_the_same_gradient(logits):
    bins = symlog_bins(255, -20.0, 20.0)

    def reference(x):
        return twohot_decode(jax.nn.softmax(x, axis=-1), bins)

    np.testing.assert_allclose(twohot_expectation(logits, bins), reference(logits), rtol=1e-5, atol=1e-5)
    weights = jnp.array([1.0, -2.0, 0.5])
    got = jax.grad(lambda x: jnp.sum(weights * twohot_expectation(x, bins)))(logits)
    # The exact gradient, weights * p * (bins - E), in float64. A saturated softmax (logit 17 among
    # zeros) makes float32 subtract two numbers near the edge bin, 20, so both float32 versions are
    # only good to a few dozen ulps of the largest bin: a 3000-case search found at most 15.
    probs = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    bins64 = np.asarray(bins, np.float64)
    expectation = probs @ bins64
    exact = np.asarray(weights, np.float64)[:, None] * probs * (bins64[None] - expectation[:, None])
    rounding = 64 * np.finfo(np.float32).eps * float(np.abs(bins64).max()) * float(np.abs(weights).max())
    np.testing.assert_allclose(got, exact, rtol=1e-3, atol=rounding)
