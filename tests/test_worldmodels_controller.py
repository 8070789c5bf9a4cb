import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.worldmodels.config import ControllerConfig
from rlcar_core.worldmodels.controller import (
    ControllerParams,
    GenerationStats,
    clip_action,
    controller_action,
    initial_controller_vector,
    num_controller_params,
    params_to_vector,
    run_cmaes,
    vector_to_params,
    zero_controller_params,
)

SMALL = ControllerConfig(z_dim=4, hidden_size=6)
SMALL_HIDDEN = ControllerConfig(z_dim=4, hidden_size=6, hidden_units=5)


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


def test_hidden_layer_sizes_and_vector_round_trip():
    # (10 inputs + 1) x 5 hidden units, then (5 + 1) x 3 outputs.
    assert num_controller_params(SMALL_HIDDEN) == 11 * 5 + 6 * 3 == 73
    assert num_controller_params(ControllerConfig(hidden_units=32)) == 289 * 32 + 33 * 3
    vectors = jnp.asarray(
        np.random.default_rng(0).normal(size=(2, num_controller_params(SMALL_HIDDEN))), jnp.float32
    )
    params = jax.jit(jax.vmap(lambda v: vector_to_params(v, SMALL_HIDDEN)))(vectors)
    assert params.hidden_weight.shape == (2, 10, 5) and params.hidden_bias.shape == (2, 5)
    assert params.weight.shape == (2, 5, 3) and params.bias.shape == (2, 3)
    np.testing.assert_array_equal(jax.vmap(params_to_vector)(params), vectors)
    # The linear controller keeps its layout (and so its old checkpoints): no hidden layer at all.
    linear = vector_to_params(jnp.zeros(num_controller_params(SMALL)), SMALL)
    assert linear.hidden_weight is None and linear.hidden_bias is None
    with pytest.raises(ValueError, match="needs 73"):
        vector_to_params(jnp.zeros(33), SMALL_HIDDEN)


@pytest.mark.parametrize("hidden_units", [0, 5])
def test_a_controller_on_z_alone_reads_no_h(hidden_units):
    """The paper's ablation of M: C sees V's code only, so h changes nothing."""
    z_only = ControllerConfig(z_dim=4, hidden_size=6, hidden_units=hidden_units, sees_hidden=False)
    # (z + bias) x 3 outputs; or (z + bias) x 5 hidden units, then (5 + bias) x 3 outputs.
    expected = (4 + 1) * 5 + (5 + 1) * 3 if hidden_units else (4 + 1) * 3
    assert num_controller_params(z_only) == expected
    assert num_controller_params(ControllerConfig(sees_hidden=False)) == 33 * 3
    rng = np.random.default_rng(3)
    params = vector_to_params(
        jnp.asarray(rng.normal(size=num_controller_params(z_only)), jnp.float32), z_only
    )
    latent = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
    hidden = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
    action = controller_action(params, latent, hidden)
    np.testing.assert_array_equal(action, controller_action(params, latent, 5.0 * hidden))
    assert not np.allclose(action, controller_action(params, -latent, hidden))
    # A controller on [z, h] does read h.
    full = vector_to_params(jnp.asarray(rng.normal(size=num_controller_params(SMALL)), jnp.float32), SMALL)
    assert not np.allclose(controller_action(full, latent, hidden), controller_action(full, latent, -hidden))


def test_hidden_layer_acts_through_tanh_and_starts_neutral():
    rng = np.random.default_rng(2)
    latent = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
    hidden = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
    params = vector_to_params(
        jnp.asarray(rng.normal(size=num_controller_params(SMALL_HIDDEN)), jnp.float32), SMALL_HIDDEN
    )
    features = jnp.tanh(jnp.concatenate([latent, hidden], -1) @ params.hidden_weight + params.hidden_bias)
    expected = features @ params.weight + params.bias
    action = controller_action(params, latent, hidden)
    np.testing.assert_allclose(action[:, 0], jnp.tanh(expected[:, 0]), rtol=1e-5, atol=1e-6)
    # A new search: random hidden weights (seeded), zero output layer, so the neutral action.
    start = initial_controller_vector(SMALL_HIDDEN, seed=3)
    np.testing.assert_array_equal(start, initial_controller_vector(SMALL_HIDDEN, seed=3))
    assert np.count_nonzero(start[: 10 * 5]) == 50 and not start[10 * 5 :].any()
    neutral = controller_action(vector_to_params(jnp.asarray(start), SMALL_HIDDEN), latent, hidden)
    np.testing.assert_allclose(neutral, np.tile([0.0, 0.5, 0.5], (8, 1)), atol=1e-6)
    assert not initial_controller_vector(SMALL, seed=3).any()  # the paper's linear C starts at zero


def test_noisy_actions_are_clipped_back_into_the_box():
    clipped = clip_action(jnp.asarray([[1.5, -0.2, 0.3], [-3.0, 2.0, 1.2]]))
    np.testing.assert_allclose(clipped, [[1.0, 0.0, 0.3], [-1.0, 1.0, 1.0]])


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


TARGET = np.array([1.0, -2.0, 0.5, 3.0])


def _negative_distance(candidates, generation):
    return -np.sum((candidates - TARGET) ** 2, axis=1)


def test_cmaes_improves_a_trivial_objective_and_reports_progress():
    seen = []
    result = run_cmaes(
        _negative_distance,
        np.zeros(4),
        generations=40,
        population_size=12,
        initial_sigma=1.0,
        seed=3,
        on_generation=seen.append,
    )
    assert [stats.generation for stats in seen] == list(range(40))
    assert all(isinstance(stats, GenerationStats) for stats in result.history)
    assert result.best_fitness > -1e-2 > result.history[0].max_fitness
    np.testing.assert_allclose(result.best_params, TARGET, atol=0.1)
    np.testing.assert_allclose(result.mean, TARGET, atol=0.1)
    best_so_far = [stats.best_fitness for stats in result.history]
    assert best_so_far == sorted(best_so_far)


def test_cmaes_is_seeded_and_leaves_numpy_global_state_alone():
    np.random.seed(123)
    expected_global_draw = np.random.rand()
    np.random.seed(123)
    first = run_cmaes(
        _negative_distance, np.zeros(4), generations=3, population_size=6, initial_sigma=0.5, seed=7
    )
    assert np.random.rand() == expected_global_draw
    second = run_cmaes(
        _negative_distance, np.zeros(4), generations=3, population_size=6, initial_sigma=0.5, seed=7
    )
    np.testing.assert_array_equal(first.best_params, second.best_params)


def test_diagonal_cmaes_also_solves_a_trivial_objective():
    # sep-CMA-ES, what large controllers (a hidden layer) search with.
    result = run_cmaes(
        _negative_distance,
        np.zeros(4),
        generations=60,
        population_size=12,
        initial_sigma=1.0,
        seed=3,
        diagonal=True,
    )
    np.testing.assert_allclose(result.mean, TARGET, atol=0.1)


def test_non_finite_fitness_ranks_last_and_wrong_shapes_fail():
    def sometimes_nan(candidates, generation):
        fitness = _negative_distance(candidates, generation)
        fitness[0] = np.nan
        return fitness

    result = run_cmaes(
        sometimes_nan, np.zeros(4), generations=5, population_size=8, initial_sigma=0.5, seed=0
    )
    assert np.isfinite(result.best_fitness)
    with pytest.raises(ValueError, match="3 fitness values for 8"):
        run_cmaes(
            lambda c, g: np.zeros(3), np.zeros(4), generations=1, population_size=8, initial_sigma=0.5, seed=0
        )


# -- in-env rollouts on CarRacing-v3 (worker processes, a queue of rows, early stops) -------------


def _tiny_world_model():
    from rlcar_core.worldmodels.config import MDNRNNConfig, VAEConfig
    from rlcar_core.worldmodels.controller import WorldModelParams
    from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_state
    from rlcar_core.worldmodels.vae import init_vae_state

    vae_config = VAEConfig(z_dim=4, encoder_channels=(4, 4, 8, 8), decoder_channels=(8, 4, 4))
    rnn_config = MDNRNNConfig(z_dim=4, hidden_size=6, num_mixtures=2)
    params = WorldModelParams(
        init_vae_state(vae_config, jax.random.key(0)).params,
        init_mdnrnn_state(rnn_config, jax.random.key(1)).params,
    )
    return (vae_config, rnn_config, SMALL), params


@pytest.mark.slow
def test_carracing_rollouts_score_rows_alike_on_any_number_of_cars_and_stop_hopeless_ones():
    from rlcar_core.worldmodels.train_controller import EnvRollouts

    configs, params = _tiny_world_model()
    vectors = np.random.default_rng(0).normal(0.0, 0.5, (5, num_controller_params(SMALL)))
    tracks = np.array([3, 3, 4, 4, 5])
    options = {"backend": "gymnasium", "action_repeat": 1}
    full, early = {}, {}
    for cars in (1, 3):  # one car in-process; three in worker processes, rows queued over them
        rollouts = EnvRollouts("carracing", cars, 60, configs, None, options)
        try:
            full[cars] = rollouts.run(params, vectors, tracks, seed=0)
            full_frames = rollouts.frames
            early[cars] = rollouts.run(params, vectors, tracks, seed=0, patience=10)
            early_frames = rollouts.frames - full_frames
        finally:
            rollouts.close()
        assert full_frames == 5 * 60  # every row drove its whole episode; idle cars are not counted
        assert early_frames < full_frames  # random controllers earn nothing for 10 frames somewhere
    # A row is its own episode on its own track, whichever car plays it and whenever it is queued.
    for scores in (full, early):
        np.testing.assert_allclose(scores[1].episode_return, scores[3].episode_return, rtol=1e-5)
        np.testing.assert_allclose(scores[1].progress, scores[3].progress, rtol=1e-5)


class _ScriptedCars:
    """A stand-in vector env of three cars with fixed rewards: car 0 earns every frame and finishes at
    frame 20, car 1 never earns (-0.1 a frame), car 2 earns every 5th frame; all truncate at frame 30.
    Each car keeps its own clock, so the same rules serve `_ScriptedPool`'s subsets."""

    def __init__(self, frame_shape):
        self.frame_shape = frame_shape

    def reset(self, seed=None, options=None):
        self.clock = np.zeros(3, int)
        self.stepped = 0  # car-steps taken, whichever way
        return np.zeros((3, *self.frame_shape), np.uint8), {}

    def step(self, actions):
        return self._advance(actions, np.arange(3))

    def _advance(self, actions, env_ids):
        assert len(actions) == len(env_ids)
        self.stepped += len(env_ids)
        self.clock[env_ids] += 1
        t = self.clock[env_ids]
        reward = np.where(env_ids == 0, 1.0, np.where((env_ids == 2) & (t % 5 == 0), 1.0, -0.1))
        terminated = (env_ids == 0) & (t >= 20)
        info = {"progress": (t / 30.0).astype(np.float32)}
        return np.zeros((len(env_ids), *self.frame_shape), np.uint8), reward, terminated, t >= 30, info

    def close(self):
        pass


class _ScriptedPool(_ScriptedCars):
    """The same cars as an EnvPool: a subset of them can step (`step_envs`)."""

    def step_envs(self, actions, env_ids):
        return self._advance(actions, env_ids)


def test_a_wave_drops_cars_that_go_patience_frames_unrewarded_and_ends_when_none_is_left():
    """EnvPool's cars play waves; patience ends a hopeless car's episode there too, so a wave of
    hopeless candidates costs `patience` frames instead of a whole episode."""
    from rlcar_core.worldmodels.train_controller import EnvRollouts

    configs, params = _tiny_world_model()
    rollouts = EnvRollouts("rlcar", 3, 30, configs)
    rollouts.env = _ScriptedCars(rollouts.env.observation_space.shape[1:])
    rollouts.queued = False  # the wave path, EnvPool's, on scripted cars
    vectors = np.zeros((3, num_controller_params(SMALL)))
    full = rollouts.run(params, vectors, np.zeros(3), seed=0)
    assert rollouts.frames == 20 + 30 + 30
    early = rollouts.run(params, vectors, np.zeros(3), seed=0, patience=6)
    assert rollouts.frames - 80 == 20 + 6 + 30  # car 2 never goes 6 frames unrewarded
    np.testing.assert_allclose(full.episode_return, [20.0, -3.0, 6 * 1.0 - 24 * 0.1])
    np.testing.assert_allclose(early.episode_return, [20.0, -0.6, 6 * 1.0 - 24 * 0.1])
    np.testing.assert_allclose(early.progress, [20 / 30, 6 / 30, 1.0])
    # An EnvPool-like env steps only the cars still playing, with the same scores.
    pool = _ScriptedPool(rollouts.env.frame_shape)
    rollouts.env = pool
    subset = rollouts.run(params, vectors, np.zeros(3), seed=0, patience=6)
    assert pool.stepped == 20 + 6 + 30
    np.testing.assert_allclose(subset.episode_return, early.episode_return)
    np.testing.assert_allclose(subset.progress, early.progress, rtol=1e-6)


def test_rlcar_rollouts_queue_rows_so_each_scores_alike_on_any_number_of_cars():
    """RLCar's cars work through the rows as a queue (a crashed car takes the next row at once): a
    row's score depends on its controller and track alone, not on which car plays it or when, and
    candidates on the same track start alike (common random numbers)."""
    from rlcar_core.worldmodels.train_controller import EnvRollouts

    configs, params = _tiny_world_model()
    rng = np.random.default_rng(0)
    vectors = rng.normal(0.0, 0.5, (6, num_controller_params(SMALL)))
    vectors[5] = vectors[0]  # the same candidate twice on the same track
    tracks = np.array([3, 3, 4, 4, 5, 3])
    scores = {}
    for cars in (1, 4):
        rollouts = EnvRollouts("rlcar", cars, 40, configs, num_tracks=8)
        assert rollouts.queued
        scores[cars] = rollouts.run(params, vectors, tracks, seed=11, patience=15)
        assert 0 < rollouts.frames <= 6 * 40
    np.testing.assert_allclose(scores[1].episode_return, scores[4].episode_return, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[1].progress, scores[4].progress, rtol=1e-5, atol=1e-6)
    assert scores[4].episode_return[5] == pytest.approx(scores[4].episode_return[0], abs=1e-6)
