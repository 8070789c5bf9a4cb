"""DreamerV3 learner step: it jits, stays finite, and fits a fixed batch; plus the config contract."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.dreamer import DreamerConfig, LatentState, init_training_state, make_update
from rlcar_core.dreamer.behavior import actor_loss
from rlcar_core.dreamer.math import init_return_norm
from rlcar_core.errors import RlcarError

# A higher world-model learning rate than the paper's makes the loss drop visible within 150 steps.
# (test_dreamer_networks uses the same config so compiled initialisation is shared.)
CONFIG = DreamerConfig.preset("tiny", obs_shape=(17,), model_lr=1e-3)
B, T = 4, 12


def _synthetic_batch(seed: int = 0) -> dict[str, np.ndarray]:
    """Smooth, learnable sensor sequences (sines) with rewards read off the observation."""
    rng = np.random.default_rng(seed)
    time = np.arange(T)[None, :, None]
    phase = rng.uniform(0.0, 6.0, (B, 1, 1))
    frequency = 0.1 * np.arange(1, 18)[None, None, :]
    obs = (3.0 * np.sin(phase + frequency * time)).astype(np.float32)
    is_first = np.zeros((B, T), bool)
    is_first[:, 0] = True
    is_terminal = np.zeros((B, T), bool)
    is_terminal[0, -1] = True
    return {
        "obs": obs,
        "action": rng.uniform(-1.0, 1.0, (B, T, 3)).astype(np.float32),
        "reward": obs[..., 0].copy(),
        "is_first": is_first,
        "is_terminal": is_terminal,
    }


@pytest.fixture(scope="module")
def jitted_update():
    # One compiled update shared by the tests below (compiling is the expensive part on a CPU).
    return jax.jit(make_update(CONFIG))


def test_update_jits_and_returns_finite_metrics(jitted_update):
    state = init_training_state(CONFIG, jax.random.key(0))
    new_state, metrics = jitted_update(state, _synthetic_batch(), jax.random.key(1))
    metrics = jax.device_get(metrics)
    for name in (
        "wm/loss",
        "wm/kl",
        "actor/loss",
        "actor/entropy",
        "critic/loss",
        "imagine/return_scale",
        "actor/mean_saturated",
        "actor/mode_sample_gap",
        "actor/pre_tanh_abs",
        "actor/mean_limit_penalty",
    ):
        assert name in metrics
    assert all(np.isfinite(value) for value in metrics.values()), metrics
    assert int(new_state.step) == 1
    assert metrics["imagine/return_scale"] >= 1.0
    assert 0.0 <= metrics["actor/mean_saturated"] <= 1.0 and metrics["actor/mode_sample_gap"] >= 0.0
    # Every module moved, and the slow critic trails the critic.
    for before, after in zip(state.params, new_state.params, strict=True):
        assert any(
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
        )
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_world_model_loss_falls_on_a_fixed_batch(jitted_update):
    state = init_training_state(CONFIG, jax.random.key(0))
    batch = _synthetic_batch()
    losses = []
    for key in jax.random.split(jax.random.key(2), 150):
        state, metrics = jitted_update(state, batch, key)
        losses.append(metrics["wm/loss"])
    losses = np.asarray(jax.device_get(losses))
    assert np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.5 * losses[:3].mean(), losses[[0, 1, 2, 50, 100, 149]]


def test_reinforce_actor_gradient_is_finite_and_nonzero():
    # Same parameter shapes as CONFIG, so the parameters come from its compiled initialiser.
    config = dataclasses.replace(CONFIG, actor_grad="reinforce", horizon=4)
    params = init_training_state(CONFIG, jax.random.key(0)).params
    num_starts = 8
    latent_key, grad_key = jax.random.split(jax.random.key(3))
    start = LatentState(
        deter=jnp.tanh(jax.random.normal(latent_key, (num_starts, config.deter_size))),
        stoch=jax.nn.one_hot(jnp.arange(num_starts * config.stoch_size).reshape(num_starts, -1) % 8, 8),
    )

    def loss(actor_params):
        return actor_loss(
            actor_params,
            params.world_model,
            params.critic,
            init_return_norm(),
            start,
            jnp.ones(num_starts),
            grad_key,
            config,
        )[0]

    grads = jax.tree.leaves(jax.jit(jax.grad(loss))(params.actor))
    assert all(bool(jnp.isfinite(g).all()) for g in grads)
    assert any(float(jnp.abs(g).max()) > 0.0 for g in grads)


@pytest.mark.parametrize("imagined_continue", ["mode", "prob"])
def test_imagined_continues_are_the_continue_heads_mode_or_probability(imagined_continue):
    from rlcar_core.dreamer.behavior import imagine

    config = dataclasses.replace(CONFIG, imagined_continue=imagined_continue, horizon=3)
    params = init_training_state(CONFIG, jax.random.key(0)).params
    num_starts = 6
    start = LatentState(
        deter=jnp.tanh(jax.random.normal(jax.random.key(1), (num_starts, config.deter_size))),
        stoch=jax.nn.one_hot(jnp.zeros((num_starts, config.stoch_size), int), config.stoch_classes),
    )
    start_continue = jnp.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    trajectory = imagine(params.world_model, params.actor, start, start_continue, jax.random.key(2), config)
    continues = np.asarray(trajectory.continues)
    np.testing.assert_array_equal(continues[0], start_continue)
    if imagined_continue == "mode":
        assert set(np.unique(continues[1:])) <= {0.0, 1.0}
    else:
        assert np.all((continues[1:] > 0.0) & (continues[1:] < 1.0))
    # A start that was terminal weighs nothing, whatever the model imagines after it.
    assert np.all(np.asarray(trajectory.weights)[:, 3] == 0.0)


def test_config_presets_and_json_round_trip():
    tiny = DreamerConfig.preset("tiny")
    assert (tiny.deter_size, tiny.stoch_size, tiny.stoch_classes, tiny.hidden_size, tiny.cnn_depth) == (
        64,
        8,
        8,
        64,
        8,
    )
    assert DreamerConfig.preset("small").deter_size < DreamerConfig.preset("medium").deter_size
    pixels = DreamerConfig.preset("small", obs_kind="pixels", obs_shape=[64, 64, 3])
    assert pixels.obs_shape == (64, 64, 3)
    restored = DreamerConfig.from_dict(json.loads(json.dumps(pixels.to_dict())))
    assert restored == pixels and hash(restored) == hash(pixels)
    with pytest.raises(RlcarError, match="preset"):
        DreamerConfig.preset("huge")
    with pytest.raises(RlcarError, match="unknown"):
        DreamerConfig.from_dict({**tiny.to_dict(), "learning_rate": 1.0})
    with pytest.raises(RlcarError, match="obs_kind"):
        DreamerConfig(obs_kind="lidar")
    with pytest.raises(RlcarError, match="square"):
        DreamerConfig(obs_kind="pixels", obs_shape=(60, 60, 3))


def _nonzero_heads(params, key):
    """The zero-initialised reward and critic outputs would make every return 0 and hide gradient bugs."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)]
    )


def test_the_batched_dynamics_gradient_equals_backprop_through_every_imagined_step():
    # actor_loss_and_grads takes the actor's weight gradient in one batched pass after the backward
    # loop; plain autodiff takes it inside the loop at every step. The chain rule makes them equal.
    from rlcar_core.dreamer.behavior import actor_loss_and_grads

    config = dataclasses.replace(CONFIG, horizon=5)
    params = init_training_state(CONFIG, jax.random.key(0)).params
    world_model = _nonzero_heads(params.world_model, jax.random.key(7))
    critic = _nonzero_heads(params.critic, jax.random.key(8))
    num_starts = 8
    start = LatentState(
        deter=jnp.tanh(jax.random.normal(jax.random.key(1), (num_starts, config.deter_size))),
        stoch=jax.nn.one_hot(jnp.arange(num_starts * config.stoch_size).reshape(num_starts, -1) % 8, 8),
    )
    args = (world_model, critic, init_return_norm(), start, jnp.ones(num_starts), jax.random.key(2), config)
    (loss, output), grads = jax.jit(lambda a: actor_loss_and_grads(a, *args))(params.actor)
    (expected_loss, expected_output), expected = jax.jit(
        lambda a: jax.value_and_grad(actor_loss, has_aux=True)(a, *args)
    )(params.actor)

    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(output.returns, expected_output.returns, rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        assert float(jnp.abs(want).max()) > 0.0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(jnp.abs(want).max()))


@pytest.fixture(scope="module")
def toy_actor_training():
    """Trains the real actor network with its per-step loss on a toy "dynamics" advantage,
    -(clip(action) - target)^2 per dimension, at a high learning rate so a few hundred steps do what
    tens of thousands do in a run: first a target past the bound pushes the means there, then the
    target moves inside. Returns `train(limit) -> (dist after the push, dist after the move)`."""
    from rlcar_core.dreamer.behavior import actor_per_step_loss
    from rlcar_core.dreamer.distributions import bound_action
    from rlcar_core.dreamer.networks import actor_network
    from rlcar_core.dreamer.optim import actor_optimizer

    base = dataclasses.replace(CONFIG, actor_lr=1e-2)
    features = jax.random.normal(jax.random.key(0), (64, base.feature_size))
    actor = actor_network(base)

    def train(limit: float, push_steps: int = 150, move_steps: int = 250):
        config = dataclasses.replace(base, actor_mean_limit=limit)
        optimizer = actor_optimizer(config)

        @jax.jit
        def step(params, opt_state, key, target):
            def loss(params):
                dist = actor.apply(params, features)
                actions = dist.sample_from_noise(jax.random.normal(key, dist.mean.shape))
                advantage = -jnp.sum(jnp.square(bound_action(actions) - target), axis=-1)
                return jnp.mean(actor_per_step_loss(dist, actions, advantage, config))

            updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
            return jax.tree.map(jnp.add, params, updates), opt_state

        params = actor.init(jax.random.key(1), features)
        opt_state = optimizer.init(params)
        for index in range(push_steps):
            params, opt_state = step(params, opt_state, jax.random.key(index), 2.0)
        pushed = actor.apply(params, features)
        for index in range(move_steps):
            params, opt_state = step(params, opt_state, jax.random.key(10_000 + index), 0.3)
        return pushed, actor.apply(params, features)

    return train


def test_a_saturated_actor_mean_stays_at_the_bound_and_the_mean_limit_keeps_it_trainable(toy_actor_training):
    """Issue 28's mode drift, in miniature. The paper's actor (limit 0) drives its pre-tanh means deep
    into tanh's tail, where their gradient is gone: once the best action moves to 0.3, the mode still
    sits at the bound. With `actor_mean_limit` the means stop at the limit and follow the target."""
    pushed, moved = toy_actor_training(0.0)
    assert float(jnp.min(pushed.mean)) > 0.999 and float(jnp.min(pushed.pre_tanh)) > 3.8
    assert float(jnp.min(moved.mean)) > 0.99  # stuck: the mode still steers at full lock

    pushed, moved = toy_actor_training(0.98)
    assert float(jnp.max(pushed.mean)) < 0.985 and float(jnp.max(pushed.pre_tanh)) < np.arctanh(0.985)
    # The mode follows the target (Adam's noisy steps at this rate leave each state within 0.2).
    assert abs(float(jnp.mean(moved.mean)) - 0.3) < 0.05 and float(jnp.max(jnp.abs(moved.mean - 0.3))) < 0.2
    assert abs(float(jnp.mean(moved.clipped_mean())) - 0.3) < 0.05


def test_the_mean_limit_penalises_only_pre_tanh_means_past_it_and_is_off_by_default():
    from rlcar_core.dreamer.behavior import mean_limit_penalty
    from rlcar_core.dreamer.distributions import ActionDistribution

    assert DreamerConfig().actor_mean_limit == 0.0
    pre_tanh = jnp.array([[0.5, -2.0, 4.0], [0.0, 0.0, -np.arctanh(0.9) - 1.0]])
    dist = ActionDistribution(mean=jnp.tanh(pre_tanh), std=jnp.ones_like(pre_tanh), pre_tanh=pre_tanh)
    np.testing.assert_array_equal(mean_limit_penalty(dist, 0.0), [0.0, 0.0])
    bound = np.arctanh(0.9)
    expected = [(2.0 - bound) ** 2 + (4.0 - bound) ** 2, 1.0]
    np.testing.assert_allclose(mean_limit_penalty(dist, 0.9), expected, rtol=1e-5)
    for bad in (-0.1, 1.0):
        with pytest.raises(RlcarError, match="actor_mean_limit"):
            dataclasses.replace(CONFIG, actor_mean_limit=bad)


def test_the_mean_limit_reaches_the_actors_dynamics_gradient():
    from rlcar_core.dreamer.behavior import actor_loss_and_grads

    params = _nonzero_heads(init_training_state(CONFIG, jax.random.key(0)).params, jax.random.key(5))
    num_starts = 6
    start = LatentState(
        deter=jnp.tanh(jax.random.normal(jax.random.key(1), (num_starts, CONFIG.deter_size))),
        stoch=jax.nn.one_hot(jnp.zeros((num_starts, CONFIG.stoch_size), int), CONFIG.stoch_classes),
    )
    results = {}
    for limit in (0.0, 0.01):  # 0.01: every mean of the (perturbed) actor is past it
        config = dataclasses.replace(CONFIG, horizon=3, actor_mean_limit=limit)
        args = (params.world_model, params.critic, init_return_norm(), start, jnp.ones(num_starts))
        (_, output), grads = actor_loss_and_grads(params.actor, *args, jax.random.key(2), config)
        results[limit] = output.metrics, grads
    assert float(results[0.0][0]["actor/mean_limit_penalty"]) == 0.0
    assert float(results[0.01][0]["actor/mean_limit_penalty"]) > 0.0
    assert float(results[0.01][0]["actor/pre_tanh_abs"]) == float(results[0.0][0]["actor/pre_tanh_abs"])
    differences = [
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(results[0.0][1]), jax.tree.leaves(results[0.01][1]), strict=True)
    ]
    assert max(differences) > 0.0 and all(np.isfinite(differences))
