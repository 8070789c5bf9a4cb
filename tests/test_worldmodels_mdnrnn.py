import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.worldmodels.config import MDNRNNConfig
from rlcar_core.worldmodels.mdnrnn import (
    MDNRNNBatch,
    MDNRNNOutput,
    init_mdnrnn_params,
    init_mdnrnn_state,
    initial_rnn_state,
    make_mdnrnn,
    make_mdnrnn_evaluate,
    make_mdnrnn_update,
    mixture_log_prob,
    sample_next_latent,
)

# Parameter init is many threefry draws, which XLA:CPU's optimising backend compiles very slowly.
FAST_COMPILE = {"compiler_options": {"xla_backend_optimization_level": 0}}
SMALL = MDNRNNConfig(z_dim=4, hidden_size=32, num_mixtures=3, learning_rate=1e-2)


def _batch(batch_size=4, steps=12, seed=0):
    """Latents that follow a simple action-driven rule, so the RNN has something to learn."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(batch_size, steps, 3)).astype(np.float32)
    latents = np.zeros((batch_size, steps + 1, 4), np.float32)
    latents[:, 0] = rng.normal(size=(batch_size, 4))
    for t in range(steps):
        latents[:, t + 1] = 0.8 * latents[:, t] + 0.5 * actions[:, t, :1]
    rewards = actions[:, :, 1] - actions[:, :, 2]
    terminated = np.zeros((batch_size, steps), bool)
    terminated[:, -1] = True
    mask = np.ones((batch_size, steps), bool)
    return MDNRNNBatch(*(jnp.asarray(x) for x in (latents, actions, rewards, terminated, mask)))


@pytest.fixture(scope="module")
def params():
    return jax.jit(init_mdnrnn_params, static_argnums=0, **FAST_COMPILE)(SMALL, jax.random.PRNGKey(0))


def test_unroll_shapes_and_step_agree(params):
    rnn = make_mdnrnn(SMALL)
    batch = _batch()
    state = initial_rnn_state(SMALL, 4)
    output, final_state = jax.jit(rnn.apply.unroll)(params, batch.latents[:, :-1], batch.actions, state)
    assert isinstance(output, MDNRNNOutput)
    assert output.mixture_logits.shape == output.means.shape == output.log_stds.shape == (4, 12, 4, 3)
    assert output.reward.shape == output.done_logit.shape == (4, 12)
    assert final_state.hidden.shape == final_state.cell.shape == (4, 32)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(output))

    def run_steps(params, latents, actions, state):
        def body(state, inputs):
            prediction, state = rnn.apply.step(params, *inputs, state)
            return state, prediction

        inputs = (jnp.swapaxes(latents, 0, 1), jnp.swapaxes(actions, 0, 1))
        state, predictions = jax.lax.scan(body, state, inputs)
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), predictions), state

    stepped, stepped_state = jax.jit(run_steps)(params, batch.latents[:, :-1], batch.actions, state)
    np.testing.assert_allclose(stepped.means, output.means, atol=1e-5)
    np.testing.assert_allclose(stepped_state.hidden, final_state.hidden, atol=1e-5)


def test_single_gaussian_log_prob_matches_closed_form():
    output = MDNRNNOutput(
        mixture_logits=jnp.zeros((2, 1)),
        means=jnp.array([[0.5], [-1.0]]),
        log_stds=jnp.log(jnp.array([[2.0], [0.5]])),
        reward=jnp.zeros(()),
        done_logit=jnp.zeros(()),
    )
    z = jnp.array([1.0, 0.0])
    expected = -0.5 * ((z - output.means[:, 0]) / jnp.exp(output.log_stds[:, 0])) ** 2
    expected = expected - output.log_stds[:, 0] - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(jax.jit(mixture_log_prob)(output, z), expected, rtol=1e-6)


def test_low_temperature_sampling_picks_the_dominant_component():
    output = MDNRNNOutput(
        mixture_logits=jnp.tile(jnp.array([0.0, 3.0, 0.0]), (5, 1)),
        means=jnp.tile(jnp.array([-5.0, 2.0, 5.0]), (5, 1)),
        log_stds=jnp.full((5, 3), -1.0),
        reward=jnp.zeros(()),
        done_logit=jnp.zeros(()),
    )
    sample = jax.jit(sample_next_latent)(output, jax.random.PRNGKey(0), 1e-4)
    assert sample.shape == (5,)
    np.testing.assert_allclose(sample, 2.0, atol=1e-2)


def test_mdnrnn_loss_falls_and_padding_is_ignored():
    state = jax.jit(init_mdnrnn_state, static_argnums=0, **FAST_COMPILE)(SMALL, jax.random.PRNGKey(1))
    batch = _batch()
    update = jax.jit(make_mdnrnn_update(SMALL))
    evaluate = jax.jit(make_mdnrnn_evaluate(SMALL))
    before = evaluate(state.params, batch)
    key = jax.random.PRNGKey(2)
    for _ in range(100):
        state, metrics = update(state, batch, key)
    after = evaluate(state.params, batch)
    assert set(metrics) == {"loss", "latent_nll", "reward_mse", "done_bce", "grad_norm"}
    assert np.isfinite(float(after["loss"]))
    assert float(after["loss"]) < float(before["loss"]) - 1.0
    assert float(after["reward_mse"]) < 0.5 * float(before["reward_mse"])

    # Garbage on masked-out steps must not change the loss.
    half_mask = batch.mask.at[:, 6:].set(False)
    clean = batch._replace(mask=half_mask)
    noisy = clean._replace(rewards=batch.rewards.at[:, 6:].set(1e3), latents=batch.latents.at[:, 8:].set(1e3))
    np.testing.assert_allclose(
        evaluate(state.params, clean)["loss"], evaluate(state.params, noisy)["loss"], rtol=1e-6
    )
