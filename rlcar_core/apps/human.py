"""Recorded human runs from ``play --manual``, so ``eval --human`` can compare an agent against them."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import atomic_path, unused_path

HUMAN_DIR = "human"


@dataclasses.dataclass
class HumanRun:
    env: str
    track_seed: int
    reset_seed: int
    actions: np.ndarray  # (T, 3) float32, every action the car received
    episode_return: float
    progress: float
    lap_complete: bool
    crashed: bool
    steps: int
    manual_steps: int  # steps the human drove; the rest, if any, an agent drove after a T toggle
    created: str = ""
    # RLCar's camera and world (CameraSpec.to_dict) the attempt was driven in; None: today's, and
    # CarRacing-v3's own. Its obstacles are part of the track, so a comparison needs the same ones.
    camera: dict | None = None

    def summary(self) -> dict:
        fields = dataclasses.asdict(self)
        fields.pop("actions")
        return fields


def save_human_run(run_dir: str | os.PathLike, run: HumanRun) -> Path:
    """Write ``run`` to ``run_dir/human/`` atomically (temp file, then rename); returns the path."""
    directory = Path(run_dir) / HUMAN_DIR
    directory.mkdir(parents=True, exist_ok=True)
    run.created = run.created or time.strftime("%Y%m%d-%H%M%S")
    path = unused_path(directory / f"{run.created}-{run.env}-track{run.track_seed}.npz")
    with atomic_path(path) as temp:
        np.savez_compressed(
            temp, actions=np.asarray(run.actions, np.float32), meta=np.array(json.dumps(run.summary()))
        )
    return path


def load_human_run(path: str | os.PathLike) -> HumanRun:
    """A recording file, or the newest recording of a run directory."""
    path = Path(path)
    if path.is_dir():
        folder = path / HUMAN_DIR if (path / HUMAN_DIR).is_dir() else path
        # Newest last: several attempts can be saved within one second, so names alone do not order them.
        recordings = sorted(
            (p for p in folder.glob("*.npz") if not p.name.startswith(".")),
            key=lambda p: (p.stat().st_mtime_ns, p.name),
        )
        if not recordings:
            raise RlcarError(
                f"no recorded human run in {path}: record one with `rlcar play --manual --run-dir {path}`"
            )
        path = recordings[-1]
    if not path.is_file():
        raise RlcarError(f"no recorded human run at {path}")

    def refuse(reason: str) -> RlcarError:
        return RlcarError(
            f"{path} is not a recorded human run ({reason}); record one with `rlcar play --manual`"
        )

    # A recording is an .npz (a zip archive). Anything else would reach numpy's pickle branch, whose
    # error speaks of Python objects, which a JSON or text file does not hold.
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise refuse("not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            actions = np.asarray(data["actions"])
    except KeyError as error:
        raise refuse(f"no {error} array in it") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        raise refuse("a damaged or foreign archive") from None
    expected = {field.name for field in dataclasses.fields(HumanRun)} - {"actions"}
    required = expected - {"created", "camera"}
    if not isinstance(meta, dict) or not required <= set(meta) <= expected:
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise refuse(f"its meta holds {keys}, not {sorted(expected)}")
    if problem := _meta_problem(meta, actions):
        raise refuse(problem)
    return HumanRun(actions=actions, **meta)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_problem(meta: dict, actions: np.ndarray) -> str | None:
    """What is wrong with a recording's meta and actions, or None: a hand-edited or foreign file must
    fail here, in one line, not deep inside the simulator."""
    from rlcar_core.envs.names import EnvName

    if meta["env"] not in {name.value for name in EnvName}:
        return f"unknown env {meta['env']!r}"
    for name, limit in (("track_seed", 2**31 - 1), ("reset_seed", 2**32 - 1)):
        if not _is_int(meta[name]) or not 0 <= meta[name] <= limit:
            return f"{name} must be a whole number from 0 to {limit}, got {meta[name]!r}"
    for name in ("steps", "manual_steps"):
        if not _is_int(meta[name]) or meta[name] < 0:
            return f"{name} must be a whole number from 0, got {meta[name]!r}"
    for name in ("episode_return", "progress"):
        if not isinstance(meta[name], int | float) or isinstance(meta[name], bool):
            return f"{name} must be a number, got {meta[name]!r}"
    for name in ("lap_complete", "crashed"):
        if not isinstance(meta[name], bool):
            return f"{name} must be true or false, got {meta[name]!r}"
    if actions.ndim != 2 or actions.shape[1] != 3 or not np.issubdtype(actions.dtype, np.number):
        return f"its actions must be a (steps, 3) array of numbers, not {actions.dtype} {actions.shape}"
    if not np.isfinite(actions).all():
        return "its actions hold NaN or infinite values"
    return _camera_problem(meta.get("camera"))


def _camera_problem(camera) -> str | None:
    if camera is None:
        return None
    if not isinstance(camera, dict):
        return f"its camera must be an object of camera settings, got {camera!r}"
    from rlcar_core.sim.camera_spec import CameraSpec  # here: the simulator imports JAX

    try:
        CameraSpec.from_dict(camera)
    except (RlcarError, TypeError, ValueError) as error:
        return f"its camera: {error}"
    return None


def recorded_world(run: HumanRun):
    """The CameraSpec of the world ``run`` was driven in (today's when it recorded none)."""
    from rlcar_core.sim.camera_spec import CameraSpec

    return CameraSpec.from_dict(run.camera)
