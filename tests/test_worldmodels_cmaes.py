import numpy as np
import pytest

from rlcar_core.worldmodels.cmaes import GenerationStats, run_cmaes

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
