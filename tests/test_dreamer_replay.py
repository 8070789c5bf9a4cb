"""DreamerV3 replay: shapes, is_first, ring wrap-around, determinism, save/load."""

import numpy as np
import pytest

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.replay import ReplayBuffer, align_episode, replay_spec

CONFIG = DreamerConfig.preset("tiny", obs_shape=(5,))


def _step(counter: np.ndarray, episode_length: int) -> dict[str, np.ndarray]:
    """One step per stream whose obs records a global step counter, so windows are checkable."""
    num_streams = len(counter)
    local = counter % 1000
    return {
        "obs": np.repeat(counter[:, None], 5, axis=1).astype(np.float32),
        "action": np.full((num_streams, 3), 0.5, np.float32),
        "reward": np.ones(num_streams, np.float32),
        "is_first": local % episode_length == 0,
        "is_terminal": local % episode_length == episode_length - 1,
    }


def _filled(capacity=64, num_streams=2, steps=50, episode_length=7) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity, replay_spec(CONFIG), num_streams=num_streams)
    for t in range(steps):
        # Stream s records counters t + 1000 s so samples reveal their stream.
        buffer.add(_step(np.arange(num_streams) * 1000 + t, episode_length))
    return buffer


def test_sample_shapes_dtypes_and_first_flags():
    buffer = _filled()
    batch = buffer.sample(6, 10, np.random.default_rng(0))
    assert batch["obs"].shape == (6, 10, 5) and batch["obs"].dtype == np.float32
    assert batch["action"].shape == (6, 10, 3)
    assert batch["reward"].shape == (6, 10)
    assert batch["is_first"].dtype == bool and batch["is_terminal"].shape == (6, 10)
    assert batch["is_first"][:, 0].all()
    counters = batch["obs"][..., 0].astype(int)
    # Windows are consecutive steps of one stream, and episode starts inside them are flagged.
    assert (np.diff(counters, axis=1) == 1).all()
    np.testing.assert_array_equal(batch["is_first"][:, 1:], (counters[:, 1:] % 1000) % 7 == 0)


def test_windows_stay_inside_the_newest_data_after_wrap_around():
    buffer = _filled(capacity=40, num_streams=2, steps=100)
    assert len(buffer) == 40
    batch = buffer.sample(200, 8, np.random.default_rng(1))
    counters = batch["obs"][..., 0].astype(int) % 1000
    assert (np.diff(counters, axis=1) == 1).all()  # never across the write position
    assert counters.min() >= 80  # only the newest 20 steps per stream survive
    assert counters.max() == 99


def test_sampling_is_deterministic_under_a_seed():
    buffer = _filled()
    first = buffer.sample(8, 6, np.random.default_rng(42))
    again = buffer.sample(8, 6, np.random.default_rng(42))
    other = buffer.sample(8, 6, np.random.default_rng(43))
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["obs"], other["obs"])


def test_save_load_round_trip(tmp_path):
    buffer = _filled(capacity=40, steps=73)
    path = tmp_path / "replay.npz"
    buffer.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["replay.npz"]  # no temp file left behind
    restored = ReplayBuffer.load(path)
    assert len(restored) == len(buffer) and restored.capacity == buffer.capacity
    assert restored.num_streams == buffer.num_streams and restored.spec == buffer.spec
    expected = buffer.sample(16, 5, np.random.default_rng(7))
    actual = restored.sample(16, 5, np.random.default_rng(7))
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name])
    # Overwriting an existing file goes through the same atomic rename.
    restored.add(_step(np.array([500, 1500]), 7))
    restored.save(path)
    assert len(ReplayBuffer.load(path)) == len(restored)


def test_pixel_obs_are_stored_as_uint8():
    config = DreamerConfig.preset("tiny", obs_kind="pixels", obs_shape=(16, 16, 3))
    buffer = ReplayBuffer(32, replay_spec(config))
    episode = align_episode(
        np.full((9, 16, 16, 3), 200, np.uint8),
        np.zeros((8, 3), np.float32),
        np.zeros(8, np.float32),
        np.zeros(8, bool),
    )
    buffer.add_episode(episode)
    batch = buffer.sample(2, 4, np.random.default_rng(0))
    assert batch["obs"].dtype == np.uint8 and batch["obs"].shape == (2, 4, 16, 16, 3)


def test_align_episode_uses_the_previous_action_convention():
    obs = np.arange(4, dtype=np.float32)[:, None].repeat(5, axis=1)  # obs_0..obs_3
    action = np.array([[0.1] * 3, [0.2] * 3, [0.3] * 3], np.float32)  # a_t taken at obs_t
    reward = np.array([1.0, 2.0, 3.0], np.float32)
    terminated = np.array([False, False, True])
    steps = align_episode(obs, action, reward, terminated)
    np.testing.assert_allclose(steps["action"][:, 0], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(steps["reward"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(steps["is_first"], [True, False, False, False])
    np.testing.assert_array_equal(steps["is_terminal"], [False, False, False, True])
    # Without the final observation the last transition is dropped.
    assert len(align_episode(obs[:3], action, reward, terminated)["obs"]) == 3
    with pytest.raises(ValueError):
        align_episode(obs[:2], action, reward, terminated)


def test_add_episode_longer_than_capacity_keeps_the_newest_steps():
    buffer = ReplayBuffer(10, replay_spec(CONFIG))
    length = 25
    episode = align_episode(
        np.arange(length + 1, dtype=np.float32)[:, None].repeat(5, axis=1),
        np.zeros((length, 3), np.float32),
        np.zeros(length, np.float32),
        np.zeros(length, bool),
    )
    buffer.add_episode(episode)
    batch = buffer.sample(20, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(batch["obs"][0, :, 0], np.arange(16, 26))


def test_errors_are_clear():
    buffer = ReplayBuffer(16, replay_spec(CONFIG), num_streams=2)
    with pytest.raises(ValueError, match="no window"):
        buffer.sample(1, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="keys"):
        buffer.add({"obs": np.zeros((2, 5))})
    bad = _step(np.arange(2), 7)
    bad["obs"] = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="obs"):
        buffer.add(bad)


def test_add_with_a_mask_skips_the_streams_that_stopped_collecting():
    spec = {"x": ((), np.dtype(np.float32))}
    buffer = ReplayBuffer(capacity=8, spec=spec, num_streams=2)
    buffer.add({"x": np.array([1.0, 2.0], np.float32)})
    buffer.add({"x": np.array([3.0, 4.0], np.float32)}, mask=np.array([True, False]))
    assert len(buffer) == 3
    np.testing.assert_array_equal(buffer._stream_in_order("x", 0), [1.0, 3.0])
    np.testing.assert_array_equal(buffer._stream_in_order("x", 1), [2.0])
