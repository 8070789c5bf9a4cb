"""Which tracks an environment drives on: training tracks or the held-out evaluation tracks."""

from __future__ import annotations

from collections.abc import Sequence

from rlcar_core.errors import RlcarError, require_at_least
from rlcar_core.sim.bank import TrackBank, build_track_bank
from rlcar_core.sim.track import TrackSpec, evaluation_seeds, training_seeds

TRACK_SPLITS = ("train", "eval")
DEFAULT_NUM_TRACKS = {"train": 32, "eval": 20}


def split_seeds(split: str, num_tracks: int | None = None, first: int = 0) -> list[int]:
    if split not in TRACK_SPLITS:
        raise RlcarError(f"unknown track split {split!r}; choose one of {', '.join(TRACK_SPLITS)}")
    count = DEFAULT_NUM_TRACKS[split] if num_tracks is None else num_tracks
    require_at_least("num_tracks", count, 1)
    return training_seeds(count, first) if split == "train" else evaluation_seeds(count, first)


def make_track_bank(
    split: str = "train",
    num_tracks: int | None = None,
    track_seeds: Sequence[int] | None = None,
    spec: TrackSpec = TrackSpec(),
) -> TrackBank:
    """A bank of explicit ``track_seeds``, or of the first ``num_tracks`` tracks of ``split``."""
    seeds = list(track_seeds) if track_seeds is not None else split_seeds(split, num_tracks)
    return build_track_bank(seeds, spec)
