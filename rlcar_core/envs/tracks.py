"""Which tracks an environment drives on: training tracks or the held-out evaluation tracks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlcar_core.envs.names import EnvName
from rlcar_core.errors import InvalidArgument, RlcarError, require_at_least
from rlcar_core.sim.bank import TrackBank, build_track_bank
from rlcar_core.sim.camera_spec import CONFIG_KEY as CAMERA_KEY
from rlcar_core.sim.camera_spec import CameraSpec
from rlcar_core.sim.track import TrackSpec, evaluation_seeds, training_seeds

TRACK_SPLITS = ("train", "eval")
DEFAULT_NUM_TRACKS = {"train": 32, "eval": 20}


def split_seeds(split: str, num_tracks: int | None = None, first: int = 0) -> list[int]:
    if split not in TRACK_SPLITS:
        raise RlcarError(f"unknown track split {split!r}; choose one of {', '.join(TRACK_SPLITS)}")
    count = DEFAULT_NUM_TRACKS[split] if num_tracks is None else num_tracks
    require_at_least("num_tracks", count, 1)
    return training_seeds(count, first) if split == "train" else evaluation_seeds(count, first)


def check_track_ids(track_ids, num_tracks: int) -> None:
    """Reset options name tracks by their index in the bank; anything else is the caller's mistake."""
    ids = np.atleast_1d(np.asarray(track_ids))
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < -1 or ids.max() >= num_tracks):
        raise InvalidArgument(
            f"track_id must be an index in 0..{num_tracks - 1} (or -1 for random), got {track_ids}"
        )


def make_track_bank(
    split: str = "train",
    num_tracks: int | None = None,
    track_seeds: Sequence[int] | None = None,
    camera: CameraSpec | None = None,
    spec: TrackSpec = TrackSpec(),
) -> TrackBank:
    """A bank of explicit ``track_seeds``, or of the first ``num_tracks`` tracks of ``split``, with
    ``camera``'s obstacles and paint (None: ``spec`` as it is, painted as today)."""
    seeds = list(track_seeds) if track_seeds is not None else split_seeds(split, num_tracks)
    if camera is None:
        return build_track_bank(seeds, spec)
    return build_track_bank(seeds, camera.track_spec(spec), camera.paint())


def camera_spec(camera: CameraSpec | Mapping[str, Any] | None) -> CameraSpec:
    """An env's ``camera`` argument (a spec, its dict as a run's config.json holds it, or None for
    today's camera) as a `CameraSpec`."""
    return camera if isinstance(camera, CameraSpec) else CameraSpec.from_dict(camera)


def run_camera(env_name: str, run_config: Mapping[str, Any] | None) -> CameraSpec | None:
    """The camera to build a run's envs with: the one its config.json (or a checkpoint's config)
    recorded, today's when it recorded none (runs and shipped agents from before cameras were
    recorded); None on CarRacing-v3, which films with its own camera."""
    if not EnvName.parse(env_name).has_track_bank:
        return None
    return CameraSpec.from_run_config(run_config)


def recorded_camera(camera: CameraSpec | None) -> dict[str, Any]:
    """What a run's config.json (and a checkpoint's config) records of `camera`, which `run_camera`
    reads back: nothing on CarRacing-v3 (None)."""
    return {} if camera is None else {CAMERA_KEY: camera.to_dict()}
