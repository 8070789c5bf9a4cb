"""The functional JAX simulator: shapes, determinism, physics invariants, rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcar_core.sim.bank import unpack_colour
from rlcar_core.sim.camera import CAMERA_SIZE
from rlcar_core.sim.car import sanitize_action
from rlcar_core.sim.env import EXTRA_SENSORS, RLCar, observation_shape, sensor_bounds

SENSORS, BOTH = RLCar("sensors"), RLCar("both")
reset = jax.jit(RLCar.reset, static_argnums=0)
step = jax.jit(RLCar.step, static_argnums=0)


@pytest.fixture(scope="module")
def params(small_bank):
    return SENSORS.default_params(small_bank)


def rollout(env, params, key, actions):
    obs, state = reset(env, key, params, 0)
    out = []
    for i, action in enumerate(actions):
        obs, state, reward, terminated, truncated, info = step(
            env, jax.random.fold_in(key, i), state, action, params
        )
        out.append((obs, reward, terminated, truncated))
    return state, out


def test_observation_shapes_and_dtypes(params):
    obs, state = reset(BOTH, jax.random.PRNGKey(0), params, -1)
    num_rays = params.ray_angles.shape[0]
    assert obs["sensors"].shape == observation_shape("sensors", num_rays)["sensors"]
    assert obs["sensors"].dtype == jnp.float32
    assert obs["pixels"].shape == (CAMERA_SIZE, CAMERA_SIZE, 3) and obs["pixels"].dtype == jnp.uint8
    obs, state, reward, terminated, truncated, info = step(
        BOTH, jax.random.PRNGKey(1), state, jnp.zeros(3), params
    )
    assert reward.dtype == jnp.float32 and terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert set(info) >= {"progress", "lap_complete", "crashed"}


def test_same_key_same_rollout(params):
    actions = [jnp.array([0.3, 1.0, 0.0])] * 10
    state_a, out_a = rollout(SENSORS, params, jax.random.PRNGKey(3), actions)
    state_b, out_b = rollout(SENSORS, params, jax.random.PRNGKey(3), actions)
    jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
    jax.tree.map(np.testing.assert_array_equal, out_a, out_b)
    _, start_a = reset(SENSORS, jax.random.PRNGKey(3), params, -1)
    _, start_b = reset(SENSORS, jax.random.PRNGKey(4), params, -1)
    assert not np.array_equal(start_a.car.position, start_b.car.position)


def test_vmap_runs_many_cars(params):
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    # Jitted: an eager vmap runs the simulator op by op, which takes ten times longer.
    obs, state = jax.jit(jax.vmap(SENSORS.reset, in_axes=(0, None)))(keys, params)
    actions = jnp.tile(jnp.array([0.0, 1.0, 0.0]), (64, 1))
    vmapped_step = jax.jit(jax.vmap(SENSORS.step, in_axes=(0, 0, 0, None)))
    obs, state, reward, *_ = vmapped_step(keys, state, actions, params)
    assert obs.shape == (64, 2 * params.ray_angles.shape[0] + 5) and reward.shape == (64,)


def test_bad_actions_are_clipped_not_propagated():
    bad = jnp.array([[jnp.nan, jnp.inf, -jnp.inf], [5.0, -3.0, 2.0], [-jnp.inf, jnp.nan, jnp.nan]])
    clean = jax.vmap(sanitize_action)(bad)
    assert bool(jnp.all(jnp.isfinite(clean)))
    np.testing.assert_allclose(clean, [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])


action_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32), st.floats(min_value=-2, max_value=2, width=32)
)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(action_values, min_size=3, max_size=3), min_size=1, max_size=40), st.integers(0, 2**16)
)
def test_state_stays_finite_for_any_actions(params, actions, seed):
    obs, state = reset(SENSORS, jax.random.PRNGKey(seed), params, -1)
    low, high = sensor_bounds(params.ray_angles.shape[0])
    for i, action in enumerate(actions):
        obs, state, reward, *_ = step(
            SENSORS, jax.random.PRNGKey(i), state, jnp.asarray(action, jnp.float32), params
        )
        leaves = [np.asarray(x) for x in jax.tree.leaves(state)] + [np.asarray(obs), np.asarray(reward)]
        assert all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(x.dtype, np.floating))
        assert np.all(np.asarray(obs) >= low) and np.all(np.asarray(obs) <= high)
        assert float(jnp.linalg.norm(state.car.velocity)) <= params.car.max_speed + 1e-3


def test_standing_still_costs_the_time_penalty(params):
    _, out = rollout(SENSORS, params, jax.random.PRNGKey(0), [jnp.array([0.0, 0.0, 1.0])] * 3)
    for _, reward, terminated, truncated in out:
        assert float(reward) == pytest.approx(-params.time_penalty, abs=1e-6)
        assert not bool(terminated) and not bool(truncated)


def test_truncates_at_max_steps(small_bank):
    params = SENSORS.default_params(small_bank, max_steps=4)
    _, out = rollout(SENSORS, params, jax.random.PRNGKey(0), [jnp.zeros(3)] * 4)
    assert [bool(t) for *_, t in out] == [False, False, False, True]


def test_hitting_an_obstacle_crashes(params):
    obs, state = reset(SENSORS, jax.random.PRNGKey(0), params, 0)
    obstacle = params.bank.obstacles[0, 0]
    car = state.car._replace(position=obstacle + jnp.array([0.5, 0.0]))
    obs, state, reward, terminated, _, info = step(
        SENSORS, jax.random.PRNGKey(0), state._replace(car=car), jnp.zeros(3), params
    )
    assert bool(info["crashed"]) and bool(terminated)
    assert float(reward) < -params.crash_penalty / 2


def test_shortcuts_across_the_infield_earn_nothing(params):
    obs, state = reset(SENSORS, jax.random.PRNGKey(0), params, 0)
    far_along = params.bank.centreline[0, 200]  # ~40% of a lap away
    car = state.car._replace(position=far_along)
    _, state, reward, *_ = step(SENSORS, jax.random.PRNGKey(0), state._replace(car=car), jnp.zeros(3), params)
    max_advance = 1.5 * params.car.max_speed * params.dt / float(params.bank.length[0])
    assert float(state.progress) <= max_advance + 1e-6


def test_obstacle_rays_see_the_obstacle_ahead_and_only_obstacles(params):
    obs, state = reset(SENSORS, jax.random.PRNGKey(0), params, 0)
    num_rays = params.ray_angles.shape[0]
    obstacle_rays = slice(num_rays + len(EXTRA_SENSORS), None)
    obstacle, radius = np.asarray(params.bank.obstacles[0, 0]), float(params.bank.obstacle_radii[0, 0])
    centreline = np.asarray(params.bank.centreline[0])
    nearest = int(np.argmin(np.linalg.norm(centreline - obstacle, axis=-1)))
    gaps = np.linalg.norm(centreline[nearest - np.arange(60)] - obstacle, axis=-1)
    # On the road, about twelve metres before the obstacle, facing its centre.
    position = centreline[nearest - int(np.argmin(np.abs(gaps - 12.0)))]
    offset = obstacle - position
    car = state.car._replace(
        position=jnp.asarray(position, jnp.float32),
        heading=jnp.float32(np.arctan2(offset[1], offset[0])),
    )
    sensors = np.asarray(jax.jit(RLCar.sensors)(state._replace(car=car), params))
    straight_ahead = int(np.argmin(np.abs(np.asarray(params.ray_angles))))
    expected = float(np.linalg.norm(offset)) - radius
    assert sensors[obstacle_rays][straight_ahead] == pytest.approx(expected, abs=0.05)
    assert sensors[:num_rays][straight_ahead] == pytest.approx(expected, abs=0.2)
    # The rays at right angles miss it, and whatever the road-edge rays meet there is not an obstacle.
    assert sensors[obstacle_rays][0] == params.ray_range and sensors[obstacle_rays][-1] == params.ray_range
    assert sensors[:num_rays][0] < params.ray_range


def test_rays_see_further_along_the_road_than_across_it(params):
    obs, state = reset(SENSORS, jax.random.PRNGKey(0), params, 0)
    num_rays = params.ray_angles.shape[0]
    rays = np.asarray(obs[:num_rays])
    straight_ahead = np.argmin(np.abs(np.asarray(params.ray_angles)))
    assert rays[straight_ahead] > rays[0] and rays[straight_ahead] > rays[-1]


def test_camera_shows_the_car_and_the_road(params):
    env = RLCar("pixels")
    obs, _ = reset(env, jax.random.PRNGKey(0), params, 0)
    image = np.asarray(obs)
    assert tuple(image[48, 32]) == (208, 32, 32), "the car is drawn at the camera's pivot"
    road = np.asarray(unpack_colour(jnp.asarray(np.uint32(0xFF6C6868))))
    assert (np.abs(image.astype(int) - road.astype(int)).sum(-1) == 0).mean() > 0.1, (
        "the car starts on the road"
    )
