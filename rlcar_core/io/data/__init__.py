"""Rollout data: episode shards on disk and streaming loaders for World Models training."""

from rlcar_core.io.data.episodes import (
    EPISODE_KEYS,
    MANIFEST_FILE,
    DatasetError,
    load_episode,
    load_manifest,
    write_episode,
    write_episodes,
)
from rlcar_core.io.data.streams import SequenceBatch, iterate_frames, iterate_sequences, split_episodes

__all__ = [
    "EPISODE_KEYS",
    "MANIFEST_FILE",
    "DatasetError",
    "SequenceBatch",
    "iterate_frames",
    "iterate_sequences",
    "load_episode",
    "load_manifest",
    "split_episodes",
    "write_episode",
    "write_episodes",
]
