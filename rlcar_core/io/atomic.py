"""The one atomic writer: write under a hidden temporary name in the same directory, fsync, rename.

A process killed mid-write leaves at most a hidden temp file, never a truncated file under the final
name; `remove_temp_files` sweeps such leftovers when the next writer starts. Files get the mode the
user's umask allows (usually 0644), not `mkstemp`'s 0600.

API (every writer in the project uses these, so there is one temp-name scheme to sweep):

- `atomic_path(path)`: a context manager yielding a temp path for writers that need a file name
  (imageio, `np.savez`); the temp keeps `path`'s suffix, so format detection still works.
- `write_bytes_atomic(path, payload, overwrite=True)`: bytes (or any buffer) in one call.
- `write_json_atomic(path, value)`: strict JSON (no NaN/Infinity) via `to_json_value`.
- `remove_temp_files(directory)`: delete leftovers of killed writers in one folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlcar_core.io.jsonable import to_json_value

TEMP_PREFIX = ".tmp-"


def default_file_mode() -> int:
    """0666 minus the umask: what `open()` would give a new file (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_path_for(path: Path) -> Path:
    """A fresh hidden name beside `path` that keeps its suffix: `.tmp-<name>.<random><suffix>`."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(4)}{path.suffix}")


def is_temp_file(name: str) -> bool:
    """True for temp names of this writer and of the older ones a killed run may have left:
    `.tmp-*`, `.<name>.<random>.tmp` (e.g. `.episode_000005.npz.x1.tmp`) and `.<name>.tmp-<pid>`
    (e.g. `.dreamer-replay.npz.tmp-1234`)."""
    return name.startswith(TEMP_PREFIX) or (
        name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name)
    )


def _fsync_directory(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed; best effort off POSIX.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _commit(temp: Path, path: Path, overwrite: bool) -> None:
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(temp, default_file_mode())
    if not overwrite and path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    os.replace(temp, path)
    _fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block succeeds the file written there is fsynced and
    renamed over `path`. On any error (or Ctrl-C) the temp file is removed and `path` is untouched."""
    path = Path(path)
    temp = temp_path_for(path)
    try:
        yield temp
        _commit(temp, path, overwrite)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            _annotate_no_space(error, path, temp)
        raise
    finally:
        temp.unlink(missing_ok=True)


def _annotate_no_space(error: OSError, path: Path, temp: Path) -> None:
    """Name the file the user knows (not the temp one) and how much it needed, for the one-line
    'no space left on <path> (needs about N MB)' message."""
    error.filename = os.fspath(path)
    if getattr(error, "needed_bytes", None) is None:
        with contextlib.suppress(OSError):
            error.needed_bytes = temp.stat().st_size or None


def write_bytes_atomic(
    path: str | os.PathLike, payload: bytes | memoryview, *, overwrite: bool = True
) -> None:
    """Write `payload` to `path` atomically (creating the parent folder); readers see the old file or
    the new one, never a torn write. `overwrite=False` raises FileExistsError instead of replacing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, overwrite=overwrite) as temp, open(temp, "xb") as handle:
            handle.write(payload)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            error.needed_bytes = memoryview(payload).nbytes
        raise


def dumps_json(value: Any, **options) -> str:
    """Strict JSON text of `value` after `to_json_value` (NaN and infinities become null)."""
    return json.dumps(to_json_value(value), allow_nan=False, **options)


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    # Serialise first: a value that cannot be stored must leave the old file as it was.
    text = dumps_json(value, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode())


def remove_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files killed writers left in `directory` (not in sub-folders); returns them.

    Call it only while holding the folder's writer lock: a live writer's temp file looks the same.
    """
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        candidate = directory / name
        if is_temp_file(name) and candidate.is_file() and not candidate.is_symlink():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def unused_path(path: Path) -> Path:
    """``path``, or ``stem-1.suffix``, ``stem-2.suffix``... if it exists: never overwrite a user's file."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
