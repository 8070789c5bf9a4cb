"""Streaming batches from rollout shards, holding only a few episodes in memory at a time.

Randomness comes from the numpy Generator the caller passes in, so a seeded run is repeatable.
Shuffling is two-level: the episode order is permuted every epoch and items are shuffled within
a buffer of `buffer_episodes` episodes, which bounds memory to that buffer plus one batch.

Decoding a compressed shard costs far more than shuffling it, so decoded episodes are kept in a
`DecodedCache` while their total stays within `cache_bytes` (a dataset that fits is decoded once,
not once per epoch; a larger one keeps what fits and streams the rest). The cache changes no batch.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rlcar_core.io.data.episodes import EPISODE_KEYS, DatasetError, load_episode, load_manifest

SPLITS = ("train", "validation")
DEFAULT_CACHE_BYTES = 1 << 30  # decoded episodes kept in memory; 1 GiB is ~85k 64x64x3 frames


class SequenceBatch(NamedTuple):
    obs: np.ndarray  # (B, L + 1, H, W, C) uint8; obs[:, t + 1] follows action[:, t]
    action: np.ndarray  # (B, L, A) float32
    reward: np.ndarray  # (B, L) float32
    terminated: np.ndarray  # (B, L) bool
    truncated: np.ndarray  # (B, L) bool
    mask: np.ndarray  # (B, L) bool; False on padding after the end of a short episode


class _Episode(NamedTuple):
    path: Path
    length: int


class DecodedCache:
    """Decoded episodes by path, kept while their total size stays within `budget_bytes`."""

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BYTES):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._episodes: dict[tuple[Path, tuple[str, ...]], dict[str, np.ndarray]] = {}

    def load(self, path: Path, keys: tuple[str, ...] = EPISODE_KEYS) -> dict[str, np.ndarray]:
        cached = self._episodes.get((path, keys))
        if cached is not None:
            return cached
        arrays = load_episode(path, keys=keys)
        size = sum(array.nbytes for array in arrays.values())
        if self.used_bytes + size <= self.budget_bytes:
            for array in arrays.values():
                array.flags.writeable = False  # shared by every later epoch: nobody may change it
            self._episodes[(path, keys)] = arrays
            self.used_bytes += size
        return arrays


def _split_score(file_name: str) -> float:
    # A hash of the name, not a position, decides the split: appending episodes never moves an
    # existing episode between train and validation.
    return zlib.crc32(file_name.encode()) / 2**32


def split_episodes(file_names: list[str], validation_fraction: float) -> tuple[list[str], list[str]]:
    """(train, validation) file names; disjoint, deterministic, both non-empty given two or more
    episodes and a fraction strictly between 0 and 1."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    by_score = sorted(file_names, key=_split_score)
    num_validation = sum(_split_score(name) < validation_fraction for name in by_score)
    if validation_fraction > 0.0 and len(by_score) >= 2:
        num_validation = min(max(num_validation, 1), len(by_score) - 1)
    validation = set(by_score[:num_validation])
    train = [name for name in file_names if name not in validation]
    return train, [name for name in file_names if name in validation]


def _episodes_for_split(directory: Path, split: str, validation_fraction: float) -> list[_Episode]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = load_manifest(directory)
    lengths = {entry["file"]: int(entry["length"]) for entry in manifest["episodes"]}
    train, validation = split_episodes(list(lengths), validation_fraction)
    chosen = train if split == "train" else validation
    if not chosen:
        raise DatasetError(
            f"dataset at {directory} has no {split} episodes "
            f"({len(lengths)} episodes, validation fraction {validation_fraction})"
        )
    return [_Episode(directory / name, lengths[name]) for name in chosen]


def _epochs(epochs: int | None) -> Iterator[int]:
    return itertools.count() if epochs is None else iter(range(epochs))


def _chunks(
    episodes: list[_Episode], rng: np.random.Generator, buffer_episodes: int
) -> Iterator[list[_Episode]]:
    order = rng.permutation(len(episodes))
    for start in range(0, len(order), buffer_episodes):
        yield [episodes[index] for index in order[start : start + buffer_episodes]]


def iterate_frames(
    directory: str | os.PathLike,
    batch_size: int,
    rng: np.random.Generator,
    *,
    split: str = "train",
    validation_fraction: float = 0.1,
    buffer_episodes: int = 8,
    epochs: int | None = 1,
    drop_remainder: bool = True,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> Iterator[np.ndarray]:
    """Shuffled uint8 frames (B, H, W, C) for VAE training; `epochs=None` repeats forever. Decoded
    episodes are kept up to `cache_bytes` (0: decode every time)."""
    directory = Path(directory)
    episodes = _episodes_for_split(directory, split, validation_fraction)
    total_frames = sum(episode.length + 1 for episode in episodes)
    if drop_remainder and total_frames < batch_size:
        raise DatasetError(
            f"{split} data at {directory} has {total_frames} frames, fewer than one batch of {batch_size}"
        )

    cache = DecodedCache(cache_bytes)

    def frames_of(episode: _Episode) -> np.ndarray:
        return cache.load(episode.path, keys=("obs",))["obs"]

    batches = _shuffled_batches(episodes, frames_of, batch_size, rng, buffer_episodes, epochs, drop_remainder)
    for batch in batches:
        yield np.stack(batch)


def _shuffled_batches(
    episodes: list[_Episode],
    items_of: Callable,
    batch_size: int,
    rng,
    buffer_episodes,
    epochs,
    drop_remainder,
) -> Iterator[list]:
    """Lists of `batch_size` items (frames, windows) from a pool that `buffer_episodes` episodes at a
    time refill and `rng` shuffles; what a pass leaves over waits for the next chunk of episodes."""
    for _ in _epochs(epochs):
        pool: list = []
        for chunk in _chunks(episodes, rng, buffer_episodes):
            for episode in chunk:
                pool.extend(items_of(episode))
            pool = [pool[index] for index in rng.permutation(len(pool))]
            num_full = len(pool) // batch_size
            for index in range(num_full):
                yield pool[index * batch_size : (index + 1) * batch_size]
            pool = pool[num_full * batch_size :]
        if not drop_remainder and pool:
            yield pool


def _windows(arrays: dict[str, np.ndarray], length: int, sequence_length: int, rng: np.random.Generator):
    """Cut one episode into padded windows of `sequence_length` steps at a random phase."""
    if length >= sequence_length:
        offset = int(rng.integers(0, length % sequence_length + 1))
        starts = offset + sequence_length * np.arange(length // sequence_length)
    else:
        starts = np.zeros(1, np.int64)
    for start in starts:
        steps = min(sequence_length, length - start)
        pad = sequence_length - steps

        def take(key, extra=0, start=start, steps=steps, pad=pad):
            window = arrays[key][start : start + steps + extra]
            return np.pad(window, [(0, pad)] + [(0, 0)] * (window.ndim - 1)) if pad else window

        yield SequenceBatch(
            obs=take("obs", extra=1),
            action=take("action"),
            reward=take("reward"),
            terminated=take("terminated"),
            truncated=take("truncated"),
            mask=np.arange(sequence_length) < steps,
        )


def _stack(windows: list[SequenceBatch]) -> SequenceBatch:
    return SequenceBatch(*(np.stack(field) for field in zip(*windows, strict=True)))


def iterate_sequences(
    directory: str | os.PathLike,
    batch_size: int,
    sequence_length: int,
    rng: np.random.Generator,
    *,
    split: str = "train",
    validation_fraction: float = 0.1,
    buffer_episodes: int = 8,
    epochs: int | None = 1,
    drop_remainder: bool = True,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> Iterator[SequenceBatch]:
    """Shuffled fixed-length windows for MDN-RNN training. Each epoch cuts every episode into
    non-overlapping windows at a random phase; episodes shorter than `sequence_length` become one
    zero-padded window whose `mask` marks the real steps. Decoded episodes are kept up to
    `cache_bytes` (0: decode every time)."""
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be at least 1, got {sequence_length}")
    directory = Path(directory)
    episodes = _episodes_for_split(directory, split, validation_fraction)
    total_windows = sum(max(1, episode.length // sequence_length) for episode in episodes)
    if drop_remainder and total_windows < batch_size:
        raise DatasetError(
            f"{split} data at {directory} gives {total_windows} sequences of {sequence_length} steps, "
            f"fewer than one batch of {batch_size}"
        )

    cache = DecodedCache(cache_bytes)

    def windows_of(episode: _Episode) -> Iterator[SequenceBatch]:
        return _windows(cache.load(episode.path), episode.length, sequence_length, rng)

    batches = _shuffled_batches(
        episodes, windows_of, batch_size, rng, buffer_episodes, epochs, drop_remainder
    )
    for batch in batches:
        yield _stack(batch)
