"""Run directories: one folder per experiment holding its config, metrics, data, checkpoints and videos.

Layout::

    <run>/config.json          the run's configuration (written atomically)
    <run>/metrics.jsonl        one JSON object per log step, appended
    <run>/data/                rollout shards (see rlcar_core.io.data)
    <run>/checkpoints/<model>/ one orbax checkpoint folder per model (see rlcar_core.io.checkpoint)
    <run>/videos/
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.errors import RlcarError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
# Where runs live when no --run-dir is given: one default run per kind, so the short forms
# (`rlcar train-dreamer --episodes 500`, `rlcar dream --checkpoint ep81`) work as written.
RUNS_ROOT = Path("runs")
DEFAULT_RUN_DIRS = {
    "dreamer": RUNS_ROOT / "dreamer",
    "worldmodels": RUNS_ROOT / "worldmodels",
    "play": RUNS_ROOT / "play",
}

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; runs are then unguarded
    fcntl = None


class RunInUse(RlcarError):
    """Another live process holds this run's writer lock."""


def default_run_dir(kind: str) -> Path:
    """The run a command of this kind uses when no --run-dir is given."""
    return DEFAULT_RUN_DIRS[kind]


def to_json_value(value: Any) -> Any:
    """numpy/jax scalars and arrays -> plain Python so `json` accepts metrics straight from jit."""
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`: readers see the old
    file or the new one, never a torn write, even if the process is killed mid-way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(to_json_value(value), indent=2, sort_keys=True) + "\n").encode())


class RunDir:
    """Paths and small-file I/O for one run. Creating the object touches nothing on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def videos_dir(self) -> Path:
        return self.path / "videos"

    def checkpoint_dir(self, model_name: str) -> Path:
        if not model_name or os.sep in model_name or model_name.startswith("."):
            raise ValueError(f"bad model name for a checkpoint folder: {model_name!r}")
        return self.path / "checkpoints" / model_name

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def read_config(self) -> dict[str, Any]:
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            raise RlcarError(f"no {CONFIG_FILE} in run directory {self.path}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise RlcarError(f"{self.config_path} is not valid JSON: {error}") from None

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.config_path, config)

    def update_config(self, updates: dict[str, Any]) -> dict[str, Any]:
        """Shallow-merge `updates` into config.json (e.g. one section per model) and return the result."""
        config = self.read_config() if self.has_config() else {}
        config.update(updates)
        self.write_config(config)
        return config

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        line = json.dumps(to_json_value(metrics), sort_keys=True)
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a+b") as handle:
            # A run killed mid-write can leave a line without its newline; start a fresh line so
            # only that one record is lost, not the next one too.
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line.encode() + b"\n")

    def iter_metrics(self) -> Iterator[dict[str, Any]]:
        """Stream metrics.jsonl, skipping lines a killed run left half-written."""
        if not self.metrics_path.is_file():
            return
        with open(self.metrics_path) as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record

    def read_metrics(self) -> list[dict[str, Any]]:
        return list(self.iter_metrics())

    @contextlib.contextmanager
    def writer_lock(self, command: str) -> Iterator[None]:
        """Hold the run's single-writer lock for the block, or raise RunInUse naming the holder.

        An OS-level `flock`, so it is released when the holder dies however it dies; readers (eval,
        play, dream, serve) never take it. The lock file records who holds it, for the message.
        """
        self.create()
        if fcntl is None:
            yield
            return
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunInUse(
                    f"{self.path} is in use by {holder}; wait for it or use another --run-dir"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} ({command})")
            handle.flush()
            yield
        finally:
            handle.close()  # closing the descriptor releases the flock
