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
import errno
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import dumps_json, remove_temp_files, write_bytes_atomic
from rlcar_core.io.atomic import write_json_atomic as write_json_atomic  # re-exported: older imports

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


def sweep_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left in a run: temp files (`.tmp-*`, `.*.tmp`, `.*.tmp-<pid>`) in the
    run folder, `data/`, `videos/` and each `checkpoints/` folder, and episode files that the data
    manifest does not list. Returns the removed paths. Call it only while holding the run's writer lock
    (`writer_lock` does, when it is taken); orbax cleans its own `*.orbax-checkpoint-tmp*` folders."""
    from rlcar_core.io.data.episodes import remove_orphan_episodes

    root = Path(run_dir)
    folders = [root, root / "data", root / "videos", root / "checkpoints"]
    checkpoints = root / "checkpoints"
    if checkpoints.is_dir():
        folders += sorted(path for path in checkpoints.iterdir() if path.is_dir())
    removed = [path for folder in folders for path in remove_temp_files(folder)]
    return removed + remove_orphan_episodes(root / "data")


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
        """Make the folder (and parents); a path that is a file, or under one, is bad input."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            if self.path.is_symlink() and not self.path.exists():
                raise RlcarError(
                    f"cannot use {self.path} as a run directory: it is a symbolic link to nothing "
                    "(a loop, or a missing target)"
                ) from None
            raise RlcarError(f"cannot use {self.path} as a run directory: it or a parent is a file") from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise RlcarError(
                    f"cannot use {self.path} as a run directory: a symbolic link loop in its path"
                ) from None
            if error.errno in (errno.ENOENT, errno.EPERM, errno.EACCES, errno.EROFS):
                raise RlcarError(
                    f"cannot create run directory {self.path}: {os.strerror(error.errno).lower()}"
                ) from None
            raise
        return self

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def read_config(self) -> dict[str, Any]:
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            raise RlcarError(f"no {CONFIG_FILE} in run directory {self.path}") from None
        except (IsADirectoryError, NotADirectoryError, UnicodeDecodeError):
            raise RlcarError(f"{self.config_path} is not a readable JSON file") from None
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise RlcarError(f"{self.config_path} is not valid JSON: {error}") from None
        if not isinstance(config, dict):
            raise RlcarError(
                f"{self.config_path} must hold a JSON object, not a {type(config).__name__}; "
                "fix it or start a new --run-dir"
            )
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        if self.config_path.is_dir():  # else the rename fails naming the temp file, not config.json
            raise RlcarError(f"{self.config_path} is a folder; remove it or use another --run-dir")
        write_json_atomic(self.config_path, config)

    def update_config(self, updates: dict[str, Any]) -> dict[str, Any]:
        """Shallow-merge `updates` into config.json (e.g. one section per model) and return the result."""
        config = self.read_config() if self.has_config() else {}
        config.update(updates)
        self.write_config(config)
        return config

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        line = dumps_json(metrics, sort_keys=True)
        self.create()
        with open(self.metrics_path, "a+b") as handle:
            # A run killed mid-write can leave a line without its newline; start a fresh line so
            # only that one record is lost, not the next one too.
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line.encode() + b"\n")

    def iter_metrics(self) -> Iterator[dict[str, Any]]:
        """Stream metrics.jsonl, skipping lines a killed run left half-written, or damaged ones."""
        if not self.metrics_path.is_file():
            return
        # Bytes, decoded line by line: a damaged line (0x00 or 0xff bytes, a torn write) is one record
        # lost, never a UnicodeDecodeError for the whole file.
        with open(self.metrics_path, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
                    continue
                if isinstance(record, dict):
                    yield record

    def read_metrics(self) -> list[dict[str, Any]]:
        return list(self.iter_metrics())

    def keep_metrics(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Rewrite metrics.jsonl (atomically) with only the records `keep` accepts; returns how many
        were dropped. On resume, drop what was logged after the checkpoint being resumed, e.g.
        `run.keep_metrics(lambda record: record.get("episode", 0) <= step)`, so no record repeats."""
        records = self.read_metrics()
        kept = [record for record in records if keep(record)]
        if len(kept) != len(records):
            text = "".join(dumps_json(record, sort_keys=True) + "\n" for record in kept)
            write_bytes_atomic(self.metrics_path, text.encode())
        return len(records) - len(kept)

    @contextlib.contextmanager
    def writer_lock(self, command: str) -> Iterator[None]:
        """Hold the run's single-writer lock for the block, or raise RunInUse naming the holder.
        Once held, leftovers of killed writers are swept (see `sweep_temp_files`).

        An OS-level `flock`, so it is released when the holder dies however it dies; readers (eval,
        play, dream, serve) never take it. The lock file records who holds it, for the message.
        """
        self.create()
        if fcntl is None:
            yield
            return
        try:
            handle = open(self.path / LOCK_FILE, "a+")
        except IsADirectoryError:
            raise RlcarError(f"{self.path / LOCK_FILE} is a folder; remove it") from None
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
            # Holding the lock, any temp file here belongs to a writer that died: sweep it now.
            sweep_temp_files(self.path)
            yield
        finally:
            handle.close()  # closing the descriptor releases the flock
