"""Which files the server may touch: only those under ``--root``, named by a relative path."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# A run name typed into the training form: one path segment, no dots in front, no separators.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class OutsideRoot(Exception):
    """A path that is absolute, climbs with ``..``, or resolves (through links) outside the root."""


def resolve_under(root: Path, relative: str) -> Path:
    """``root / relative`` when it stays inside ``root``; raises OutsideRoot otherwise.

    Absolute paths and any ``..`` segment are refused before touching the disk, then the resolved
    path is checked again so a symlink cannot lead out either.
    """
    if "\x00" in relative or "\\" in relative:
        raise OutsideRoot(relative)
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or any(part in ("..", "") for part in parts) or ":" in relative[:3]:
        raise OutsideRoot(relative)
    root = root.resolve()
    path = root.joinpath(*parts).resolve() if parts else root
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
    return name
