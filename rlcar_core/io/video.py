"""Writing frames to .mp4 or .gif, atomically: a killed export never leaves a broken file behind."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import atomic_path

VIDEO_SUFFIXES = (".mp4", ".gif")


def check_video_path(path: str | os.PathLike) -> Path:
    """Fail early, before any episode is run, if ``path`` cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise RlcarError(f"video file must end in {' or '.join(VIDEO_SUFFIXES)}, got {str(path)!r}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RlcarError(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise RlcarError(f"cannot write {path}: it is a directory")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RlcarError(f"cannot write {path}: permission denied")
    try:  # root passes os.access everywhere (/proc, read-only mounts): creating a file is the real test
        handle, probe = tempfile.mkstemp(prefix=f".tmp-{path.stem}.", suffix=path.suffix, dir=parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise RlcarError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: int = 10) -> int:
    """Stream ``frames`` (H, W, 3 uint8) into ``path``; returns the number of frames written."""
    import imageio.v2 as imageio

    path = check_video_path(path)
    count = 0
    with atomic_path(path) as temp, warnings.catch_warnings():
        # imageio-ffmpeg starts ffmpeg with fork+exec; JAX's warning about forking does not apply to exec.
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        if path.suffix.lower() == ".mp4":
            # macro_block_size=1 keeps odd frame sizes as they are instead of rescaling them.
            writer = imageio.get_writer(temp, fps=fps, codec="libx264", quality=7, macro_block_size=1)
        else:
            writer = imageio.get_writer(temp, mode="I", duration=1000.0 / fps, loop=0)
        with writer:
            for frame in frames:
                writer.append_data(np.asarray(frame, np.uint8))
                count += 1
        if count == 0:
            raise RlcarError("no frames to write")
    return count
