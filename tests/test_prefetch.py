"""The read-ahead loader: the same batches as the plain one, and a thread that always ends."""

import numpy as np
import pytest

from rlcar_core.io.data import iterate_frames, iterate_sequences, write_episodes
from rlcar_core.io.data.prefetch import Prefetcher
from rlcar_core.io.data.streams import DecodedCache


def _episode(rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
    return {
        "obs": rng.integers(0, 256, (length + 1, 8, 8, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (length, 3)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "terminated": np.zeros(length, bool),
        "truncated": np.arange(length) == length - 1,
    }


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    write_episodes(tmp_path, [_episode(rng, length) for length in (30, 17, 25, 40, 12, 33)], env_name="rlcar")
    return tmp_path


def _frames(dataset, **options):
    return iterate_frames(dataset, 8, np.random.default_rng(3), epochs=3, buffer_episodes=2, **options)


def test_prefetched_batches_equal_the_plain_loaders_under_a_seed(dataset):
    plain = list(_frames(dataset, cache_bytes=0))
    with Prefetcher(_frames(dataset), depth=2) as ahead:
        prefetched = list(ahead)
    assert len(plain) == len(prefetched) > 10
    for a, b in zip(plain, prefetched, strict=True):
        np.testing.assert_array_equal(a, b)

    def windows(**options):
        return iterate_sequences(dataset, 3, 5, np.random.default_rng(4), epochs=2, **options)

    with Prefetcher(windows(), depth=3, transform=lambda batch: batch._asdict()) as ahead:
        prefetched = list(ahead)
    plain = list(windows(cache_bytes=0))
    assert len(plain) == len(prefetched) > 3
    for a, b in zip(plain, prefetched, strict=True):
        for name, value in a._asdict().items():
            np.testing.assert_array_equal(value, b[name])


def test_the_thread_joins_when_the_consumer_stops_early(dataset):
    endless = iterate_frames(dataset, 8, np.random.default_rng(0), epochs=None)
    with Prefetcher(endless, depth=2) as ahead:
        first = next(ahead)
        assert ahead.alive  # blocked on the full queue, waiting for room
    assert not ahead.alive and first.shape == (8, 8, 8, 3)
    with pytest.raises(StopIteration):
        next(ahead)  # closed: nothing more, no hang


def test_the_thread_joins_when_the_consumer_raises(dataset):
    endless = iterate_frames(dataset, 8, np.random.default_rng(0), epochs=None)
    ahead = Prefetcher(endless, depth=1)
    with pytest.raises(RuntimeError, match="update failed"), ahead:
        next(ahead)
        raise RuntimeError("update failed")
    assert not ahead.alive


def test_a_producer_error_reaches_the_consumer_after_the_good_batches():
    def failing():
        yield 1
        yield 2
        raise ValueError("shard damaged")

    with Prefetcher(failing(), depth=4) as ahead:
        assert [next(ahead), next(ahead)] == [1, 2]
        with pytest.raises(ValueError, match="shard damaged"):
            next(ahead)
        assert not ahead.alive


def test_the_decoded_cache_changes_no_batch_and_keeps_within_its_budget(dataset):
    uncached = list(_frames(dataset, cache_bytes=0))
    tight = list(_frames(dataset, cache_bytes=2000))  # room for a few episodes' frames only
    for a, b in zip(uncached, tight, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(uncached) == len(tight)

    cache = DecodedCache(budget_bytes=3000)
    files = sorted(dataset.glob("episode_*.npz"))
    first = [cache.load(path, keys=("obs",)) for path in files]
    again = [cache.load(path, keys=("obs",)) for path in files]
    assert 0 < cache.used_bytes <= 3000
    kept = [a is b for a, b in zip(first, again, strict=True)]
    assert any(kept) and not all(kept)  # what fits is kept, the rest is decoded again
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["obs"], b["obs"])
