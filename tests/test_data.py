import json
import os

import numpy as np
import pytest

import rlcar_core.io.data.streams as streams
from rlcar_core.errors import RlcarError
from rlcar_core.io.data import (
    DatasetError,
    SequenceBatch,
    iterate_frames,
    iterate_sequences,
    load_episode,
    load_manifest,
    split_episodes,
    write_episode,
    write_episodes,
)

ENV = "rlcar/RLCar-v0"


def _episode(length, seed=0, frame_shape=(8, 8, 3)):
    rng = np.random.default_rng(seed)
    obs = np.zeros((length + 1, *frame_shape), np.uint8)
    obs[:, 0, 0, 0] = np.arange(length + 1) % 256  # frame index, to check alignment
    obs[:, 0, 0, 1] = seed  # episode id
    terminated = np.zeros(length, bool)
    terminated[-1] = True
    return {
        "obs": obs,
        "action": rng.uniform(-1, 1, (length, 3)),
        "reward": np.arange(length, dtype=np.float32),
        "terminated": terminated,
        "truncated": np.zeros(length, bool),
    }


def test_write_then_load_and_rerun_appends(tmp_path):
    data = tmp_path / "data"
    assert write_episode(data, _episode(5, seed=1), env_name=ENV) == "episode_000000.npz"
    assert write_episodes(data, [_episode(3, seed=2), _episode(4, seed=3)], env_name=ENV) == [
        "episode_000001.npz",
        "episode_000002.npz",
    ]
    manifest = load_manifest(data)
    assert manifest["env_name"] == ENV and manifest["num_episodes"] == 3
    assert manifest["total_steps"] == 12 and manifest["total_frames"] == 15
    assert manifest["obs_shape"] == [8, 8, 3] and manifest["action_dim"] == 3
    episode = load_episode(data / "episode_000001.npz")
    assert episode["obs"].shape == (4, 8, 8, 3) and episode["obs"].dtype == np.uint8
    assert episode["action"].dtype == np.float32 and episode["terminated"].dtype == bool
    with pytest.raises(DatasetError, match="holds rlcar/RLCar-v0 episodes"):
        write_episode(data, _episode(2), env_name="CarRacing-v3")
    with pytest.raises(ValueError, match="T \\+ 1"):
        bad = _episode(3)
        write_episode(data, {**bad, "obs": bad["obs"][:-1]}, env_name=ENV)


def test_failed_write_leaves_no_partial_file_and_temp_files_are_ignored(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_episode(data, _episode(3), env_name=ENV)
    manifest_before = (data / "manifest.json").read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_episode(data, _episode(4), env_name=ENV)
    monkeypatch.undo()
    assert not (data / "episode_000001.npz").exists()
    assert (data / "manifest.json").read_text() == manifest_before
    assert not [name for name in os.listdir(data) if name.endswith(".tmp")]

    # Leftovers of a killed writer: temp files and an unlisted episode. Neither is read, and the next
    # writer (holding the folder's lock, so they cannot be a live writer's) sweeps them away.
    leftovers = [".episode_000001.npz.abc.tmp", ".tmp-episode_000001.npz.1a2b.npz", "episode_000001.npz"]
    for name in leftovers:
        (data / name).write_bytes(b"partial")
    assert write_episode(data, _episode(2, seed=5), env_name=ENV) == "episode_000001.npz"
    assert sorted(os.listdir(data)) == [
        ".write.lock",
        "episode_000000.npz",
        "episode_000001.npz",
        "manifest.json",
    ]
    frames = list(
        iterate_frames(data, 2, np.random.default_rng(0), validation_fraction=0.0, drop_remainder=False)
    )
    assert sum(len(batch) for batch in frames) == 4 + 3


def test_missing_or_empty_dataset_is_a_one_line_error(tmp_path):
    for directory in (tmp_path / "nothing", tmp_path):
        with pytest.raises(DatasetError) as error:
            list(iterate_frames(directory, 4, np.random.default_rng(0)))
        assert "\n" not in str(error.value) and isinstance(error.value, RlcarError)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "rlcar-episodes-v1", "episodes": []}))
    with pytest.raises(DatasetError, match="no episodes"):
        load_manifest(tmp_path)


def test_validation_split_is_disjoint_stable_and_non_empty():
    names = [f"episode_{index:06d}.npz" for index in range(50)]
    train, validation = split_episodes(names, 0.2)
    assert set(train).isdisjoint(validation) and set(train) | set(validation) == set(names)
    assert 3 <= len(validation) <= 20
    # Appending episodes never moves an existing one between splits.
    more_train, more_validation = split_episodes(names + ["episode_000050.npz", "episode_000051.npz"], 0.2)
    assert set(validation) <= set(more_validation) and set(train) <= set(more_train)
    two_train, two_validation = split_episodes(names[:2], 0.1)
    assert len(two_train) == len(two_validation) == 1
    assert split_episodes(names, 0.0) == (names, [])


@pytest.fixture
def dataset(tmp_path):
    data = tmp_path / "data"
    write_episodes(data, [_episode(10 + index, seed=index) for index in range(12)], env_name=ENV)
    return data


def test_frames_stream_with_bounded_episode_loads(dataset, monkeypatch):
    loaded = []

    def counting_load(path, keys=("obs",)):
        loaded.append(path)
        return load_episode(path, keys)

    monkeypatch.setattr(streams, "load_episode", counting_load)
    batches = iterate_frames(
        dataset, 8, np.random.default_rng(0), validation_fraction=0.25, buffer_episodes=2
    )
    first = next(batches)
    assert first.shape == (8, 8, 8, 3) and first.dtype == np.uint8
    assert len(loaded) <= 2
    rest = list(batches)
    _, validation = split_episodes([f"episode_{index:06d}.npz" for index in range(12)], 0.25)
    train_paths = {path.name for path in loaded}
    assert train_paths.isdisjoint(validation) and len(loaded) == 12 - len(validation)
    assert all(batch.shape == (8, 8, 8, 3) for batch in rest)

    validation_frames = np.concatenate(
        list(
            iterate_frames(
                dataset,
                8,
                np.random.default_rng(0),
                split="validation",
                validation_fraction=0.25,
                drop_remainder=False,
            )
        )
    )
    expected = sum(10 + int(name[8:14]) + 1 for name in validation)
    assert len(validation_frames) == expected
    assert set(validation_frames[:, 0, 0, 1]) == {int(name[8:14]) for name in validation}


def test_sequences_are_aligned_padded_and_masked(tmp_path):
    data = tmp_path / "data"
    write_episodes(data, [_episode(9, seed=0), _episode(3, seed=1)], env_name=ENV)
    batches = list(
        iterate_sequences(data, 2, 4, np.random.default_rng(0), validation_fraction=0.0, drop_remainder=False)
    )
    windows = [
        SequenceBatch(*(field[index] for field in batch))
        for batch in batches
        for index in range(len(batch.mask))
    ]
    assert len(windows) == 9 // 4 + 1
    for window in windows:
        assert window.obs.shape == (5, 8, 8, 3) and window.action.shape == (4, 3)
        assert (
            window.reward.shape
            == window.terminated.shape
            == window.truncated.shape
            == window.mask.shape
            == (4,)
        )
        steps = int(window.mask.sum())
        first_frame = int(window.obs[0, 0, 0, 0])
        # obs[t] is the frame before action[t]: frame index equals the reward index (rewards are arange).
        np.testing.assert_array_equal(window.reward[:steps], np.arange(first_frame, first_frame + steps))
        np.testing.assert_array_equal(
            window.obs[: steps + 1, 0, 0, 0], np.arange(first_frame, first_frame + steps + 1)
        )
    short = [window for window in windows if window.obs[0, 0, 0, 1] == 1]
    assert len(short) == 1 and short[0].mask.tolist() == [True, True, True, False]
    assert short[0].terminated.tolist() == [False, False, True, False]
    assert not short[0].obs[4].any()


def test_sequence_stream_is_repeatable_and_batches_are_full(dataset):
    def first_batches(seed):
        stream = iterate_sequences(dataset, 4, 5, np.random.default_rng(seed), buffer_episodes=3, epochs=None)
        return [next(stream) for _ in range(6)]

    first, again = first_batches(1), first_batches(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        assert a.obs.shape == (4, 6, 8, 8, 3) and a.mask.all()
    with pytest.raises(DatasetError, match="fewer than one batch"):
        next(iterate_sequences(dataset, 500, 5, np.random.default_rng(0)))


def test_a_manifest_that_cannot_be_written_takes_the_batch_with_it(tmp_path, monkeypatch):
    import errno

    from rlcar_core.io.data import episodes as episodes_module

    data = tmp_path / "data"
    write_episode(data, _episode(3), env_name=ENV)

    def full_disk(path, value):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(episodes_module, "write_json_atomic", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_episodes(data, [_episode(2), _episode(4)], env_name=ENV)
    assert sorted(name for name in os.listdir(data) if name.startswith("episode_")) == ["episode_000000.npz"]
