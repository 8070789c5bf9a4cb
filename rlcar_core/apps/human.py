"""Recorded human runs from ``play --manual``, so ``eval --human`` can compare an agent against them."""

from __future__ import annotations

import dataclasses
import json
import os
import time
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
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            actions = data["actions"]
    except (OSError, ValueError, KeyError, EOFError) as error:
        # numpy's own text advises allow_pickle=True, which would be wrong here: say what is wrong instead.
        reason = "it holds Python objects" if "allow_pickle" in str(error) else type(error).__name__
        raise RlcarError(f"{path} is not a recorded human run ({reason})") from None
    expected = {field.name for field in dataclasses.fields(HumanRun)} - {"actions"}
    required = expected - {"created"}
    if not isinstance(meta, dict) or not required <= set(meta) <= expected:
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise RlcarError(
            f"{path} is not a recorded human run (its meta holds {keys}, not {sorted(expected)})"
        )
    return HumanRun(actions=actions, **meta)
