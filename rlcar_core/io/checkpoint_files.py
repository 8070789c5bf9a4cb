"""Checkpoint folders read as plain files, without JAX or orbax: fast enough for `rlcar runs`.

An orbax step folder, as `CheckpointStore` writes it::

    <directory>/<step>/_CHECKPOINT_METADATA     JSON, written when the step is committed
    <directory>/<step>/state/manifest.ocdbt      the TensorStore database root of the state pytree
    <directory>/<step>/state/_METADATA           JSON, the tree structure
    <directory>/<step>/state/d/..., ocdbt.*/     the array data
    <directory>/<step>/config/metadata           the config dict, JSON
    <directory>/<step>/metrics/metrics           {"best_metric": float | null, "metrics": {...}}, JSON

`damage_of` is the cheap intact check: the files above present and non-empty, the JSON ones parseable
(metrics/metrics may be absent, but when present it must be a JSON object).
A data file truncated to a non-zero length passes it; only a real restore finds that (see
`CheckpointStore.is_intact`).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

STEP_NAME = re.compile(r"^(?:ep)?(\d+)$")
_STEP_FOLDER = re.compile(r"^\d+$")
# (relative path, must parse as JSON)
_REQUIRED_FILES = (
    ("_CHECKPOINT_METADATA", True),
    ("state/_METADATA", True),
    ("state/manifest.ocdbt", False),
    ("config/metadata", True),
)
# Written with every step; a step saved without it (older code) is not damaged, one that does not parse is.
_OPTIONAL_JSON = ("metrics/metrics",)


class CheckpointReference(NamedTuple):
    """A `--checkpoint` value, parsed: a name (`best`, `latest`, `epN`, or a step number) and, when the
    value was a path to a step folder, the checkpoint folder it lives in (else None)."""

    name: str | int
    directory: Path | None

    @property
    def run_dir(self) -> Path | None:
        """For a step folder `<run>/checkpoints/<model>/<step>`, the run folder `<run>`."""
        if self.directory is not None and self.directory.parent.name == "checkpoints":
            return self.directory.parent.parent
        return None

    @property
    def model(self) -> str | None:
        return self.directory.name if self.run_dir is not None else None


def parse_checkpoint_reference(reference: str | int | os.PathLike) -> CheckpointReference:
    """The one parser of `--checkpoint`: `best`/`latest`/`epN`/`N` is a name in the run's folder; a path
    to an existing step folder (`runs/x/checkpoints/vae/12`) names that folder and step. Any other
    path-like value (it has a separator) is returned as a name, which `resolve` then reports missing."""
    if isinstance(reference, int):
        return CheckpointReference(reference, None)
    text = os.fspath(reference)
    path = Path(text)
    match = STEP_NAME.match(path.name)
    if match and (os.sep in text or "/" in text) and path.is_dir():
        return CheckpointReference(int(match.group(1)), path.parent)
    return CheckpointReference(text, None)


def step_folders(directory: str | os.PathLike) -> dict[int, Path]:
    """Committed step folders by step (orbax's in-progress `*.orbax-checkpoint-tmp*` are left out)."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {
        int(entry.name): Path(entry.path)
        for entry in entries
        if _STEP_FOLDER.match(entry.name) and entry.is_dir()
    }


def damage_of(step_folder: str | os.PathLike) -> str | None:
    """None when the step folder looks complete, else a short reason (`missing state/manifest.ocdbt`)."""
    folder = Path(step_folder)
    for relative, is_json in _REQUIRED_FILES:
        path = folder / relative
        try:
            size = path.stat().st_size
        except OSError:
            return f"missing {relative}"
        if size == 0:
            return f"empty {relative}"
        if is_json:
            try:
                json.loads(path.read_bytes())
            except (OSError, ValueError):
                return f"unreadable {relative}"
    for relative in _OPTIONAL_JSON:
        path = folder / relative
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError:
            return f"unreadable {relative}"
        try:
            if not isinstance(json.loads(data), dict):
                return f"unreadable {relative}"
        except ValueError:
            return f"unreadable {relative}"
    for parent, _, files in os.walk(folder / "state"):
        for name in files:
            try:
                if os.path.getsize(os.path.join(parent, name)) == 0:
                    return f"empty {os.path.relpath(os.path.join(parent, name), folder)}"
            except OSError:
                return f"unreadable {os.path.relpath(os.path.join(parent, name), folder)}"
    return None


def read_step_metrics(step_folder: str | os.PathLike) -> dict[str, Any]:
    """{"best_metric": float | None, "metrics": dict} as saved; empty values when absent or unreadable."""
    try:
        record = json.loads((Path(step_folder) / "metrics" / "metrics").read_bytes())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return {"best_metric": None, "metrics": {}}
    best = record.get("best_metric")
    if not isinstance(best, int | float) or isinstance(best, bool) or not math.isfinite(best):
        best = None
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    return {"best_metric": best, "metrics": metrics}


def read_step_config(step_folder: str | os.PathLike) -> dict[str, Any] | None:
    try:
        config = json.loads((Path(step_folder) / "config" / "metadata").read_bytes())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def step_label(step: int) -> str:
    return f"ep{step}"
