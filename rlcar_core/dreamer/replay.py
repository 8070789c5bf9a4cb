"""Numpy replay for DreamerV3: one ring of steps per environment, sampled as fixed-length windows.

Steps follow the convention in `world_model`: index t holds obs_t, the action a_{t-1} that led to it,
the reward r_t received on arriving, `is_first` and `is_terminal`. Episodes are stored back to back
in each stream; a window may cross an episode boundary, and the `is_first` flag inside it tells the
RSSM to reset there. Every sampled window has `is_first[:, 0] = True` because training starts each
window from the initial state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.io.atomic import atomic_path

ArraySpec = tuple[tuple[int, ...], np.dtype]
_FORMAT_VERSION = 1


def replay_spec(config: DreamerConfig) -> dict[str, ArraySpec]:
    """The per-step arrays DreamerV3 trains on, with their shapes and storage dtypes."""
    obs_dtype = np.uint8 if config.obs_kind == "pixels" else np.float32
    return {
        "obs": (tuple(config.obs_shape), np.dtype(obs_dtype)),
        "action": ((config.action_dim,), np.dtype(np.float32)),
        "reward": ((), np.dtype(np.float32)),
        "is_first": ((), np.dtype(bool)),
        "is_terminal": ((), np.dtype(bool)),
    }


def align_episode(
    obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray
) -> dict[str, np.ndarray]:
    """Converts an episode in env order into replay steps.

    Env order: `action[t]` was taken at `obs[t]`, then `reward[t]` and `terminated[t]` came back.
    `obs` may hold the final observation too (len(action) + 1 entries) or not (len(action)); without
    it the last transition cannot be stored and is dropped. Actions must already be in actor space
    (see `policy.from_env_action`).
    """
    obs = np.asarray(obs)
    action = np.asarray(action, np.float32)
    reward = np.asarray(reward, np.float32)
    terminated = np.asarray(terminated, bool)
    num_actions = len(action)
    if (
        len(obs) not in (num_actions, num_actions + 1)
        or len(reward) != num_actions
        or len(terminated) != num_actions
    ):
        raise ValueError(
            f"episode lengths do not line up: obs {len(obs)}, action {num_actions}, "
            f"reward {len(reward)}, terminated {len(terminated)}"
        )
    length = len(obs)
    prev_action = np.zeros((length,) + action.shape[1:], np.float32)
    prev_action[1:] = action[: length - 1]
    step_reward = np.zeros(length, np.float32)
    step_reward[1:] = reward[: length - 1]
    is_terminal = np.zeros(length, bool)
    is_terminal[1:] = terminated[: length - 1]
    is_first = np.zeros(length, bool)
    is_first[0] = True
    return {
        "obs": obs,
        "action": prev_action,
        "reward": step_reward,
        "is_first": is_first,
        "is_terminal": is_terminal,
    }


class ReplayBuffer:
    """Fixed-capacity ring buffers, one per stream (an environment of a vectorised env).

    `capacity` counts steps over all streams; the oldest steps of a stream are overwritten first.
    """

    def __init__(self, capacity: int, spec: Mapping[str, ArraySpec], num_streams: int = 1):
        if num_streams < 1 or capacity < num_streams:
            raise ValueError(f"need capacity >= num_streams >= 1, got {capacity} and {num_streams}")
        self.spec = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in spec.items()}
        self.num_streams = num_streams
        self.stream_capacity = capacity // num_streams
        self._data = {
            name: np.zeros((num_streams, self.stream_capacity) + shape, dtype)
            for name, (shape, dtype) in self.spec.items()
        }
        self._next = np.zeros(num_streams, np.int64)
        self._size = np.zeros(num_streams, np.int64)

    @property
    def capacity(self) -> int:
        return self.stream_capacity * self.num_streams

    def __len__(self) -> int:
        return int(self._size.sum())

    def add(self, step: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> None:
        """Appends one step to every stream (or to the streams where `mask` is True); each array has
        a leading axis of size `num_streams`."""
        self._check_keys(step)
        streams = np.arange(self.num_streams) if mask is None else np.flatnonzero(mask)
        positions = self._next[streams]
        for name, (shape, dtype) in self.spec.items():
            values = np.asarray(step[name])
            if values.shape != (self.num_streams,) + shape:
                raise ValueError(f"{name}: expected shape {(self.num_streams,) + shape}, got {values.shape}")
            self._data[name][streams, positions] = values[streams].astype(dtype, copy=False)
        self._next[streams] = (positions + 1) % self.stream_capacity
        self._size[streams] = np.minimum(self._size[streams] + 1, self.stream_capacity)

    def add_episode(self, steps: Mapping[str, np.ndarray], stream: int = 0) -> None:
        """Appends consecutive steps (leading time axis) to one stream, e.g. from `align_episode`."""
        self._check_keys(steps)
        length = len(np.asarray(steps["is_first"]))
        for name, (shape, _) in self.spec.items():
            if np.shape(steps[name]) != (length,) + shape:
                raise ValueError(f"{name}: expected shape {(length,) + shape}, got {np.shape(steps[name])}")
        # Only the newest `stream_capacity` steps could survive anyway.
        kept = min(length, self.stream_capacity)
        positions = (self._next[stream] + np.arange(length - kept, length)) % self.stream_capacity
        for name, (_, dtype) in self.spec.items():
            self._data[name][stream, positions] = np.asarray(steps[name])[length - kept :].astype(
                dtype, copy=False
            )
        self._next[stream] = (self._next[stream] + length) % self.stream_capacity
        self._size[stream] = min(self._size[stream] + length, self.stream_capacity)

    def windows_per_stream(self, seq_len: int) -> np.ndarray:
        """(num_streams,) how many windows of `seq_len` steps each stream holds."""
        return np.maximum(self._size - seq_len + 1, 0)

    def num_windows(self, seq_len: int) -> int:
        return int(np.maximum(self._size - seq_len + 1, 0).sum())

    def can_sample(self, seq_len: int) -> bool:
        return self.num_windows(seq_len) > 0

    def sample(
        self, batch_size: int, seq_len: int, rng: np.random.Generator, streams: slice | None = None
    ) -> dict[str, np.ndarray]:
        """`batch_size` windows of `seq_len` consecutive steps, uniformly over all stored windows (of
        the streams in `streams` only, when given: one device's shard of the cars).

        Returns arrays shaped (batch_size, seq_len, ...). The result depends only on the stored steps
        in order and on `rng`, so it is reproducible from a seed and unchanged by a save/load.
        """
        windows_per_stream = np.maximum(self._size - seq_len + 1, 0)
        if streams is not None:
            chosen = np.zeros(self.num_streams, bool)
            chosen[streams] = True
            windows_per_stream = np.where(chosen, windows_per_stream, 0)
        total = int(windows_per_stream.sum())
        if total == 0:
            raise ValueError(f"replay holds no window of {seq_len} steps yet ({len(self)} steps stored)")
        flat = rng.integers(0, total, size=batch_size)
        ends = np.cumsum(windows_per_stream)
        stream = np.searchsorted(ends, flat, side="right")
        offset = flat - (ends[stream] - windows_per_stream[stream])
        oldest = (self._next[stream] - self._size[stream]) % self.stream_capacity
        index = (oldest[:, None] + offset[:, None] + np.arange(seq_len)[None]) % self.stream_capacity
        batch = {name: self._data[name][stream[:, None], index] for name in self.spec}
        batch["is_first"][:, 0] = True
        return batch

    def save(self, path: str | os.PathLike) -> None:
        """Writes the stored steps (oldest first, per stream) to one .npz, atomically (io.atomic: temp
        file, fsync, rename, the user's usual file mode)."""
        path = Path(path)
        arrays = {
            f"data/{name}": np.concatenate([self._stream_in_order(name, s) for s in range(self.num_streams)])
            for name in self.spec
        }
        arrays.update(
            format_version=np.asarray(_FORMAT_VERSION),
            capacity=np.asarray(self.capacity),
            num_streams=np.asarray(self.num_streams),
            stream_sizes=self._size.copy(),
            spec_names=np.asarray(list(self.spec)),
            spec_dtypes=np.asarray([dtype.str for _, dtype in self.spec.values()]),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temp, open(temp, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        """Rebuilds a buffer written by `save`."""
        with np.load(Path(path), allow_pickle=False) as saved:
            version = int(saved["format_version"])
            if version != _FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported replay format version {version}")
            names = [str(name) for name in saved["spec_names"]]
            data = {name: saved[f"data/{name}"] for name in names}
            spec = {
                name: (data[name].shape[1:], np.dtype(str(dtype)))
                for name, dtype in zip(names, saved["spec_dtypes"], strict=True)
            }
            buffer = cls(int(saved["capacity"]), spec, int(saved["num_streams"]))
            sizes = saved["stream_sizes"].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for stream in range(buffer.num_streams):
            chunk = slice(starts[stream], starts[stream + 1])
            buffer.add_episode({name: data[name][chunk] for name in names}, stream=stream)
        return buffer

    def _stream_in_order(self, name: str, stream: int) -> np.ndarray:
        size = self._size[stream]
        oldest = (self._next[stream] - size) % self.stream_capacity
        return self._data[name][stream, (oldest + np.arange(size)) % self.stream_capacity]

    def _check_keys(self, step: Mapping[str, np.ndarray]) -> None:
        if set(step) != set(self.spec):
            raise ValueError(f"expected keys {sorted(self.spec)}, got {sorted(step)}")
