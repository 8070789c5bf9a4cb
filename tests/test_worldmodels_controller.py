import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.worldmodels.config import ControllerConfig
from rlcar_core.worldmodels.controller import (
    ControllerParams,
    controller_action,
    num_controller_params,
    params_to_vector,
    vector_to_params,
    zero_controller_params,
)

SMALL = ControllerConfig(z_dim=4, hidden_size=6)


def test_paper_sized_controller_has_867_parameters():
    assert num_controller_params(ControllerConfig()) == (32 + 256) * 3 + 3 == 867


def test_vector_round_trip_and_batched_unflatten():
    vectors = jnp.asarray(
        np.random.default_rng(0).normal(size=(5, num_controller_params(SMALL))), jnp.float32
    )
    params = jax.jit(jax.vmap(lambda v: vector_to_params(v, SMALL)))(vectors)
    assert isinstance(params, ControllerParams)
    assert params.weight.shape == (5, 10, 3) and params.bias.shape == (5, 3)
    np.testing.assert_array_equal(jax.vmap(params_to_vector)(params), vectors)
    with pytest.raises(ValueError, match="needs 33"):
        vector_to_params(jnp.zeros(7), SMALL)


def test_actions_stay_in_carracing_ranges():
    # numpy for test inputs: every eager jax.random call is a separate (slow) XLA:CPU compile.
    rng = np.random.default_rng(1)
    vector = jnp.asarray(50.0 * rng.normal(size=num_controller_params(SMALL)), jnp.float32)
    latent = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
    hidden = jnp.asarray(rng.normal(size=(64, 6)), jnp.float32)
    action = jax.jit(controller_action)(vector_to_params(vector, SMALL), latent, hidden)
    assert action.shape == (64, 3) and action.dtype == jnp.float32
    assert float(action[:, 0].min()) >= -1.0 and float(action[:, 0].max()) <= 1.0
    assert float(action[:, 1:].min()) >= 0.0 and float(action[:, 1:].max()) <= 1.0
    neutral = controller_action(zero_controller_params(SMALL), latent[:1], hidden[:1])
    np.testing.assert_allclose(neutral, [[0.0, 0.5, 0.5]])
