"""Atomic file writes: write under a temporary name in the same directory, then rename over the target.

A process killed mid-write leaves at most a hidden ``.tmp-*`` file, never a truncated file under the
final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same suffix, same directory) that replaces ``path`` when the block succeeds."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".tmp-{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp_name)
        os.chmod(temp_name, _default_mode())  # mkstemp makes 0600 files; give the user's usual mode
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def unused_path(path: Path) -> Path:
    """``path``, or ``stem-1.suffix``, ``stem-2.suffix``... if it exists: never overwrite a user's file."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
