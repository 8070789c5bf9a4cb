import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig
from rlcar_core.worldmodels.controller import num_controller_params, vector_to_params
from rlcar_core.worldmodels.dream import DreamRollout, dream_returns, make_dream_fitness, make_dream_rollout
from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_params

FAST_COMPILE = {"compiler_options": {"xla_backend_optimization_level": 0}}
RNN = MDNRNNConfig(z_dim=4, hidden_size=16, num_mixtures=2)
CONTROLLER = ControllerConfig(z_dim=4, hidden_size=16)
HORIZON = 7


@pytest.fixture(scope="module")
def rnn_params():
    return jax.jit(init_mdnrnn_params, static_argnums=0, **FAST_COMPILE)(RNN, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def rollout():
    return jax.jit(make_dream_rollout(RNN, CONTROLLER, HORIZON))


def _normal(seed, shape):
    # numpy for test inputs: every eager jax.random call is a separate (slow) XLA:CPU compile.
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _controller(seed):
    return vector_to_params(_normal(seed, (num_controller_params(CONTROLLER),)), CONTROLLER)


def test_dream_rollout_shapes_and_masks(rnn_params, rollout):
    start = _normal(1, (3, 4))
    dream = rollout(rnn_params, _controller(2), start, 1.15, jax.random.PRNGKey(3))
    assert isinstance(dream, DreamRollout)
    assert dream.latents.shape == (3, HORIZON + 1, 4)
    assert dream.actions.shape == (3, HORIZON, 3)
    assert dream.rewards.shape == dream.dones.shape == dream.alive.shape == (3, HORIZON)
    assert dream.dones.dtype == jnp.bool_
    np.testing.assert_array_equal(dream.latents[:, 0], start)
    alive = np.asarray(dream.alive)
    assert np.all(np.diff(alive, axis=1) <= 0) and np.all(alive[:, 0] == 1)
    # A step is alive exactly when no earlier step ended the dream.
    ended_before = np.cumsum(np.asarray(dream.dones), axis=1) - np.asarray(dream.dones) > 0
    np.testing.assert_array_equal(alive, 1.0 - ended_before)
    np.testing.assert_allclose(dream_returns(dream), np.sum(dream.rewards * alive, axis=1), rtol=1e-6)


def test_dream_is_deterministic_under_a_key(rnn_params, rollout):
    start = jnp.zeros((2, 4))
    params = _controller(4)
    first = rollout(rnn_params, params, start, 1.0, jax.random.PRNGKey(5))
    again = rollout(rnn_params, params, start, 1.0, jax.random.PRNGKey(5))
    other = rollout(rnn_params, params, start, 1.0, jax.random.PRNGKey(6))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.latents[:, 1:], other.latents[:, 1:])


def test_dream_fitness_scores_a_population_in_one_call(rnn_params):
    fitness = jax.jit(make_dream_fitness(RNN, CONTROLLER, HORIZON))
    candidates = _normal(7, (5, num_controller_params(CONTROLLER)))
    start = _normal(8, (2, 4))
    scores = fitness(rnn_params, candidates, start, 1.15, jax.random.PRNGKey(9))
    assert scores.shape == (5,) and np.all(np.isfinite(scores))
    np.testing.assert_array_equal(scores, fitness(rnn_params, candidates, start, 1.15, jax.random.PRNGKey(9)))


def test_dream_rollout_and_fitness_with_a_hidden_layer_controller(rnn_params):
    controller = ControllerConfig(z_dim=4, hidden_size=16, hidden_units=6)
    size = num_controller_params(controller)
    start = _normal(10, (3, 4))
    dream = jax.jit(make_dream_rollout(RNN, controller, HORIZON), **FAST_COMPILE)(
        rnn_params, vector_to_params(_normal(11, (size,)), controller), start, 1.15, jax.random.PRNGKey(12)
    )
    assert dream.latents.shape == (3, HORIZON + 1, 4) and dream.actions.shape == (3, HORIZON, 3)
    assert np.all(np.abs(np.asarray(dream.actions[..., 0])) <= 1.0)
    scores = jax.jit(make_dream_fitness(RNN, controller, HORIZON), **FAST_COMPILE)(
        rnn_params, _normal(13, (4, size)), start, 1.15, jax.random.PRNGKey(14)
    )
    assert scores.shape == (4,) and np.all(np.isfinite(scores))


def test_mismatched_controller_is_rejected():
    with pytest.raises(ValueError, match="hidden_size"):
        make_dream_rollout(RNN, ControllerConfig(z_dim=4, hidden_size=8), HORIZON)
