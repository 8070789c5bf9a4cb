"""Rollout shards on disk: one compressed `.npz` per episode plus a `manifest.json`.

An episode of T steps holds::

    obs         uint8   (T + 1, H, W, C)  obs[0] is the reset frame; obs[t + 1] follows action[t],
                                          so the final frame (needed as the last prediction target)
                                          is kept even when the episode was cut off
    action      float32 (T, A)
    reward      float32 (T,)            paid for action[t]
    terminated  bool    (T,)            action[t] ended the episode (crash, lap done)
    truncated   bool    (T,)            the episode was cut off after action[t] (time limit)

Files are written to a hidden temp name and renamed, and the manifest is replaced atomically
after them, so a killed collector leaves at most an unlisted file that loaders never read. Only
episodes listed in the manifest belong to the dataset. Writers take a lock on the folder, so
several collectors may append to one dataset.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import remove_temp_files, write_bytes_atomic, write_json_atomic

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a single writer is then assumed.
    fcntl = None

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "rlcar-episodes-v1"
EPISODE_KEYS = ("obs", "action", "reward", "terminated", "truncated")
_EPISODE_FILE = re.compile(r"^episode_(\d+)\.npz$")
_LOCK_FILE = ".write.lock"


class DatasetError(RlcarError):
    """The rollout dataset is missing, empty or damaged."""


def _validated(episode: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [key for key in EPISODE_KEYS if key not in episode]
    extra = sorted(set(episode) - set(EPISODE_KEYS))
    if missing or extra:
        raise ValueError(f"episode keys must be {EPISODE_KEYS}; missing {missing}, unexpected {extra}")
    obs = np.asarray(episode["obs"])
    if obs.dtype != np.uint8 or obs.ndim < 2:
        raise ValueError(f"obs must be a uint8 array of frames, got {obs.dtype} {obs.shape}")
    arrays = {
        "obs": obs,
        "action": np.asarray(episode["action"], np.float32),
        "reward": np.asarray(episode["reward"], np.float32),
        "terminated": np.asarray(episode["terminated"], bool),
        "truncated": np.asarray(episode["truncated"], bool),
    }
    length = arrays["action"].shape[0] if arrays["action"].ndim == 2 else -1
    if length < 1:
        raise ValueError(f"action must be (T, A) with T >= 1, got {arrays['action'].shape}")
    if obs.shape[0] != length + 1:
        raise ValueError(f"obs must hold T + 1 = {length + 1} frames (reset frame first), got {obs.shape[0]}")
    for key in ("reward", "terminated", "truncated"):
        if arrays[key].shape != (length,):
            raise ValueError(f"{key} must have shape ({length},), got {arrays[key].shape}")
    return arrays


def _empty_manifest(env_name: str) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "env_name": env_name,
        "obs_shape": None,
        "action_dim": None,
        "episodes": [],
        "num_episodes": 0,
        "total_steps": 0,
        "total_frames": 0,
    }


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DatasetError(f"{path} is not an rlcar episode manifest")
    return _checked_manifest(path, manifest)


def _checked_manifest(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Reject a hand-edited manifest here, with its path, rather than as a KeyError deep in a loader."""
    episodes = manifest.get("episodes")
    if not isinstance(episodes, list):
        raise DatasetError(f"{path} has no 'episodes' list; it is damaged (collect again into a new run)")
    for entry in episodes:
        valid = (
            isinstance(entry, dict)
            and isinstance(entry.get("file"), str)
            and _EPISODE_FILE.match(entry["file"])
            and isinstance(entry.get("length"), int)
            and entry["length"] >= 1
        )
        if not valid:
            raise DatasetError(f"{path} has a bad episode entry {json.dumps(entry)[:80]}; it is damaged")
    if not isinstance(manifest.get("env_name", ""), str):
        raise DatasetError(f"{path} has a bad 'env_name'; it is damaged")
    manifest["num_episodes"] = len(episodes)
    manifest["total_steps"] = sum(entry["length"] for entry in episodes)
    manifest["total_frames"] = manifest["total_steps"] + len(episodes)
    return manifest


def load_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The dataset's manifest; DatasetError when the folder, manifest or episodes are missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"no dataset at {directory} (collect rollouts first)")
    manifest = _read_manifest(directory)
    if manifest is None:
        raise DatasetError(f"no {MANIFEST_FILE} in {directory} (collect rollouts first)")
    if not manifest["episodes"]:
        raise DatasetError(f"dataset at {directory} has no episodes")
    return manifest


@contextlib.contextmanager
def _writer_lock(directory: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(directory / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _next_index(directory: Path, manifest: dict[str, Any]) -> int:
    # Files on disk count too: an episode renamed into place just before a crash is unlisted but
    # must not be overwritten by the next write.
    names = [entry["file"] for entry in manifest["episodes"]] + os.listdir(directory)
    indices = [int(match.group(1)) for name in names if (match := _EPISODE_FILE.match(name))]
    return max(indices, default=-1) + 1


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getbuffer(), overwrite=False)


def remove_orphan_episodes(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files and episode files the manifest does not list (a collector killed between
    renaming an episode into place and rewriting the manifest); returns the removed paths. Takes the
    folder's lock, so a live writer's files are never touched."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    with _writer_lock(directory):
        return _remove_leftovers(directory)


def _remove_leftovers(directory: Path) -> list[Path]:
    try:
        manifest = _read_manifest(directory)
    except DatasetError:
        return []  # a damaged manifest is reported by the loaders; never delete data on a guess
    listed = {entry.get("file") for entry in (manifest or {}).get("episodes", []) if isinstance(entry, dict)}
    removed = remove_temp_files(directory)
    for name in os.listdir(directory):
        if _EPISODE_FILE.match(name) and name not in listed:
            (directory / name).unlink(missing_ok=True)
            removed.append(directory / name)
    return removed


def write_episodes(
    directory: str | os.PathLike,
    episodes: Iterable[Mapping[str, Any]],
    *,
    env_name: str,
    driver: str | None = None,
) -> list[str]:
    """Append episodes to the dataset (created if needed) and return their file names.

    `driver`, when given, is recorded with each episode in the manifest (who drove it: a teacher's
    episodes can then be told from exploration). The manifest is rewritten once per call, so pass a
    batch of episodes when collecting many.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    validated = [_validated(episode) for episode in episodes]
    with _writer_lock(directory):
        _remove_leftovers(directory)
        manifest = {**_empty_manifest(env_name), **(_read_manifest(directory) or {})}
        if manifest["env_name"] != env_name:
            raise DatasetError(
                f"dataset at {directory} holds {manifest['env_name']} episodes, not {env_name}; "
                "use another data folder"
            )
        index = _next_index(directory, manifest)
        names: list[str] = []
        try:
            for arrays in validated:
                obs_shape = list(arrays["obs"].shape[1:])
                action_dim = int(arrays["action"].shape[1])
                if manifest["obs_shape"] is None:
                    manifest["obs_shape"], manifest["action_dim"] = obs_shape, action_dim
                elif (manifest["obs_shape"], manifest["action_dim"]) != (obs_shape, action_dim):
                    raise ValueError(
                        f"episode has obs {obs_shape} and {action_dim} actions; dataset has "
                        f"{manifest['obs_shape']} and {manifest['action_dim']}"
                    )
                name = f"episode_{index:06d}.npz"
                _write_npz_atomic(directory / name, arrays)
                length = int(arrays["action"].shape[0])
                entry = {"file": name, "length": length}
                if driver is not None:
                    entry["driver"] = driver
                manifest["episodes"].append(entry)
                manifest["total_steps"] += length
                manifest["total_frames"] += length + 1
                names.append(name)
                index += 1
            manifest["num_episodes"] = len(manifest["episodes"])
            write_json_atomic(directory / MANIFEST_FILE, manifest)
        except BaseException:
            # The manifest was not rewritten, so these files are not part of the dataset: remove them
            # now (a full disk, Ctrl-C) rather than leave orphans for the next writer to sweep.
            with contextlib.suppress(DatasetError, OSError):
                listed = {
                    entry["file"] for entry in (_read_manifest(directory) or {"episodes": []})["episodes"]
                }
                for name in set(names) - listed:
                    (directory / name).unlink(missing_ok=True)
            raise
    return names


def write_episode(directory: str | os.PathLike, episode: Mapping[str, Any], *, env_name: str) -> str:
    """Append one episode (see the module docstring for the arrays) and return its file name."""
    return write_episodes(directory, [episode], env_name=env_name)[0]


def load_episode(path: str | os.PathLike, keys: Iterable[str] = EPISODE_KEYS) -> dict[str, np.ndarray]:
    """Read only `keys` from one episode file (npz members are decompressed on access)."""
    try:
        with np.load(path) as archive:
            return {key: archive[key] for key in keys}
    except FileNotFoundError:
        raise DatasetError(f"episode file {path} is listed in the manifest but missing") from None
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as error:
        raise DatasetError(f"episode file {path} is damaged: {error}") from None
