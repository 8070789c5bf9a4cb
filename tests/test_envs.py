"""Gymnasium integration: registration, env checker, batched vector env, CarRacing-v3 adapter."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlcar_core  # noqa: F401  (registers rlcar/RLCar-v0)
from rlcar_core.envs import ENV_ID, ENV_NAMES, EnvName, make_env
from rlcar_core.envs.names import frames_per_second
from rlcar_core.envs.rlcar_gym import RENDER_FPS
from rlcar_core.envs.rlcar_vector import RLCarVectorEnv
from rlcar_core.errors import RlcarError
from rlcar_core.render.panel import PANEL_WIDTH
from rlcar_core.render.topdown import FRAME_SIZE
from rlcar_core.sim.params import EnvParams


# "both" is the sensors and pixels spaces side by side: checked in the full suite only.
@pytest.mark.parametrize("obs", ["sensors", "pixels", pytest.param("both", marks=pytest.mark.slow)])
def test_env_checker_passes(obs):
    env = gym.make(ENV_ID, obs=obs, num_tracks=2, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape[0] >= 256 and frame.shape[2] == 3
    env.close()


def test_reset_seed_is_deterministic_and_track_can_be_chosen():
    env = gym.make(ENV_ID, obs="sensors", num_tracks=2)
    a, info_a = env.reset(seed=11, options={"track_id": 1})
    b, info_b = env.reset(seed=11, options={"track_id": 1})
    np.testing.assert_array_equal(a, b)
    assert int(info_a["track_id"]) == 1


def test_make_vec_is_one_batched_env_with_next_step_autoreset():
    env = gym.make_vec(ENV_ID, num_envs=4, obs="sensors", num_tracks=2, max_steps=3)
    assert isinstance(env, RLCarVectorEnv)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, env.single_observation_space.shape[0])
    action = np.tile([0.0, 1.0, 0.0], (4, 1)).astype(np.float32)
    truncations = []
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(action)
        truncations.append(truncated.copy())
    assert not truncations[0].any() and truncations[2].all()
    obs, reward, terminated, truncated, info = env.step(action)  # the step after the end resets
    np.testing.assert_array_equal(reward, 0.0)
    assert not terminated.any() and not truncated.any()
    np.testing.assert_array_equal(info["time"], 0)
    assert info["_time"].all()
    obs, reward, *_ = env.step(action)
    assert (reward != 0).all()


def test_out_of_range_track_id_is_a_clear_error():
    env = make_env("rlcar", obs="sensors", num_tracks=2)
    with pytest.raises(RlcarError, match="track_id"):
        env.reset(seed=0, options={"track_id": 5})


def test_vector_env_seeds_and_track_options():
    env = make_env("rlcar", obs="sensors", num_envs=3, num_tracks=3)
    a, info = env.reset(seed=[1, 2, 3], options={"track_id": [2, 1, 0]})
    b, _ = env.reset(seed=[1, 2, 3], options={"track_id": [2, 1, 0]})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(info["track_id"], [2, 1, 0])


def test_vector_env_resets_only_the_masked_cars():
    env = make_env("rlcar", obs="sensors", num_envs=3, num_tracks=3)
    env.reset(seed=[1, 2, 3], options={"track_id": [2, 1, 0]})
    drive = np.tile([0.0, 1.0, 0.0], (3, 1)).astype(np.float32)
    for _ in range(5):
        moved, *_, moved_info = env.step(drive)
    mask = np.array([False, True, False])
    obs, info = env.reset(seed=[None, 7, None], options={"track_id": [0, 2, 0], "reset_mask": mask})
    # The kept cars carry on where they were; the reset one starts afresh on its new track, exactly as
    # a full reset with its seed and track starts it.
    np.testing.assert_array_equal(obs[~mask], moved[~mask])
    np.testing.assert_array_equal(info["time"], [5, 0, 5])
    np.testing.assert_array_equal(info["track_id"], [2, 2, 0])
    fresh, _ = make_env("rlcar", obs="sensors", num_envs=3, num_tracks=3).reset(
        seed=[7, 7, 7], options={"track_id": 2}
    )
    np.testing.assert_allclose(obs[1], fresh[0], rtol=1e-6)
    stepped, *_ = env.step(drive)
    assert not np.array_equal(stepped[1], obs[1])
    with pytest.raises(RlcarError, match="reset_mask"):
        env.reset(options={"reset_mask": [True, False]})
    with pytest.raises(RlcarError, match="without it first"):
        make_env("rlcar", obs="sensors", num_envs=3, num_tracks=3).reset(options={"reset_mask": mask})


@pytest.mark.parametrize(
    ("name", "obs", "message"),
    [
        ("gta", "pixels", "unknown env"),
        ("rlcar", "lidar", "unknown observation"),
        ("carracing", "sensors", "only pixel"),
    ],
)
def test_make_env_rejects_bad_requests(name, obs, message):
    with pytest.raises(RlcarError, match=message):
        make_env(name, obs=obs)


def test_carracing_adapter_crops_and_resizes():
    env = make_env("carracing", obs="pixels")
    obs, info = env.reset(seed=3)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert env.observation_space.contains(obs)
    assert {"progress", "lap_complete", "crashed"} <= set(info)
    env.close()


def test_human_render_mode_draws_the_track_in_a_real_window():
    """SDL's dummy driver gives a real pygame window without a display: `render()` returns None and
    the window's own pixels show the track view beside the panel."""
    env = gym.make(ENV_ID, obs="sensors", num_tracks=1, render_mode="human")
    env.reset(seed=0)
    env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert env.render() is None
    window = env.unwrapped._renderer.window
    pixels = window.pygame.surfarray.array3d(window.screen).transpose(1, 0, 2)
    assert pixels.shape == (FRAME_SIZE, FRAME_SIZE + PANEL_WIDTH, 3)
    view = pixels[:, :FRAME_SIZE]
    assert (view.max(axis=-1) > 40).mean() > 0.95, "the track view is drawn, not black"
    assert (view[..., 1] > view[..., 0] + 30).mean() > 0.3, "grass is green"
    env.close()


def test_env_names_carry_their_facts():
    assert [str(name) for name in EnvName] == list(ENV_NAMES) == ["rlcar", "carracing"]
    assert EnvName.RLCAR == "rlcar" and f"{EnvName.CARRACING}" == "carracing"
    assert json.dumps({"env": EnvName.RLCAR}) == '{"env": "rlcar"}'
    # One step length per env; the frame rate and the gym metadata follow from it.
    assert EnvName.RLCAR.step_seconds == EnvParams._field_defaults["dt"]
    assert frames_per_second("rlcar") == 10 and frames_per_second("carracing") == 50
    assert RENDER_FPS == EnvName.RLCAR.frames_per_second
    assert EnvName.RLCAR.has_track_bank and not EnvName.CARRACING.has_track_bank
    assert (EnvName.RLCAR.default_obs, EnvName.CARRACING.default_obs) == ("sensors", "pixels")
    with pytest.raises(RlcarError, match="unknown env 'nope'; choose one of rlcar, carracing"):
        EnvName.parse("nope")


@pytest.mark.parametrize(
    "action, message",
    [
        (None, "got None"),
        (0.5, "shape \\(3,\\)"),
        (np.zeros(2), "got shape \\(2,\\)"),
        (np.zeros((1, 3)), "got shape \\(1, 3\\)"),
        ("left", "action must be numbers"),
    ],
)
def test_a_bad_action_is_a_clear_value_error(action, message):
    env = gym.make("rlcar/RLCar-v0", num_tracks=1, max_steps=5, disable_env_checker=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)
    # Non-finite numbers are not an API error: the simulator clips them and stays finite.
    obs, reward, *_ = env.step(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert np.isfinite(obs).all() and np.isfinite(reward)


@pytest.mark.parametrize(
    "seed, options, message",
    [
        (2**70, None, "seed must be an integer in \\[0, 2\\*\\*63\\)"),
        (-1, None, "seed must be an integer"),
        ("7", None, "seed must be a non-negative integer"),
        (0, [1, 2], "options must be a dict"),
        (0, {"track_id": 9}, "track_id must be an index"),
        (0, {"track_id": [0, 0]}, "track_id must be one track index"),  # was a TypeError inside JAX
    ],
)
def test_bad_reset_arguments_are_clear_value_errors(seed, options, message):
    env = gym.make("rlcar/RLCar-v0", num_tracks=1, max_steps=5, disable_env_checker=True)
    with pytest.raises(ValueError, match=message):
        env.reset(seed=seed, options=options)


def test_max_steps_below_one_is_refused_for_single_and_vector_envs():
    for max_steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="max_steps must be an integer of at least 1"):
            gym.make("rlcar/RLCar-v0", num_tracks=1, max_steps=max_steps)
    with pytest.raises(ValueError, match="max_steps"):
        gym.make_vec("rlcar/RLCar-v0", num_envs=2, num_tracks=1, max_steps=0)


def test_vector_env_wants_one_action_per_car():
    env = gym.make_vec("rlcar/RLCar-v0", num_envs=2, num_tracks=1, max_steps=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape \\(2, 3\\)"):
        env.step(np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="seed must be"):
        env.reset(seed=[0, 2**70])


def test_bad_constructor_arguments_are_value_errors_and_a_vector_seed_may_be_none():
    # Issue 26: rlcar's own error class for these, where Gymnasium's envs raise ValueError.
    for maker in (gym.make, lambda *args, **kwargs: gym.make_vec(*args, num_envs=2, **kwargs)):
        with pytest.raises(ValueError, match="unknown observation kind 'lidar'"):
            maker("rlcar/RLCar-v0", obs="lidar")
        with pytest.raises(ValueError, match="unknown track split 'test'"):
            maker("rlcar/RLCar-v0", tracks="test")
    env = gym.make_vec("rlcar/RLCar-v0", num_envs=3, num_tracks=2, max_steps=5)
    first, _ = env.reset(seed=[None, 1, 2])  # Gymnasium allows None: that car is seeded at random
    again, _ = env.reset(seed=[None, 1, 2])
    np.testing.assert_array_equal(first[1:], again[1:])
