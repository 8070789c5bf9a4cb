"""Which files the server may touch: only those under ``--root``, named by a relative path."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# A run name typed into the training form: one path segment, no dots in front, no separators.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Names the server keeps for itself at the top of the root: a run may not take them.
RESERVED_NAMES = frozenset({"leaderboard.json", "play", "videos"})
# Longer names, or deeper paths, than any file system takes: refused before the disk is asked (the
# OS would answer ENAMETOOLONG, an OSError, not "no such file").
MAX_SEGMENT_BYTES = 255
MAX_PATH_CHARS = 1024
MAX_DEPTH = 32


class OutsideRoot(Exception):
    """A path that is absolute, climbs with ``..``, or resolves (through links) outside the root."""


def resolve_under(root: Path, relative: str) -> Path:
    """``root / relative`` when it stays inside ``root``; raises OutsideRoot otherwise.

    Absolute paths and any ``..`` segment are refused before touching the disk, then the resolved
    path is checked again so a symlink cannot lead out either.
    """
    if "\x00" in relative or "\\" in relative or len(relative) > MAX_PATH_CHARS:
        raise OutsideRoot(relative[:80])
    parts = PurePosixPath(relative).parts
    if len(parts) > MAX_DEPTH or any(
        len(part.encode("utf-8", "replace")) > MAX_SEGMENT_BYTES for part in parts
    ):
        raise OutsideRoot(relative[:80])
    if relative.startswith("/") or any(part in ("..", "") for part in parts) or ":" in relative[:3]:
        raise OutsideRoot(relative)
    root = root.resolve()
    try:
        path = root.joinpath(*parts).resolve() if parts else root
    except (OSError, RuntimeError):  # a loop of links, or a name the OS refuses
        raise OutsideRoot(relative[:80]) from None
    if path != root and root not in path.parents:
        raise OutsideRoot(relative)
    return path


def relative_name(root: Path, path: Path) -> str:
    """How the page names a run or file: its path below the root, with forward slashes."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def check_run_name(name: str) -> str:
    from rlcar_core.errors import RlcarError

    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise RlcarError("run name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if name.lower() in RESERVED_NAMES:
        raise RlcarError(f"run name {name!r} is kept for the server's own files; choose another")
    return name
