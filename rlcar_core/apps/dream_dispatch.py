"""`rlcar dream` for DreamerV3 runs: the same window / video / headless presentation as World Models.

`rlcar_core.worldmodels.dream_session.run_dream` hands a run over to `run_dreamer_dream` when the run
directory holds DreamerV3 checkpoints, so one command dreams with whichever world model a run trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.io.video import write_video

FPS = {"rlcar": 10, "carracing": 50}


def is_dreamer_run(run_dir: str | Path) -> bool:
    from rlcar_core.dreamer.checkpoints import is_dreamer_run as check

    return check(run_dir)


def run_dreamer_dream(config, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Dream with a DreamerV3 run; ``config`` is a World Models ``DreamConfig`` (temperature unused)."""
    from rlcar_core.dreamer.dream_view import dream_frames

    window = None
    needs_window = (not config.headless and config.output is None) or config.manual

    def keyboard(step: int) -> np.ndarray | None:
        controls = window.poll() if window is not None else None
        if controls is None:
            return np.zeros(3, np.float32)
        return None if controls.quit else controls.action

    frames, summary = dream_frames(
        config.run_dir,
        config.checkpoint,
        config.max_steps,
        config.seed,
        keyboard if config.manual else None,
        track=config.track,
    )
    fps = config.fps or FPS.get(summary["env"], 10)

    def shown(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal window
        for count, frame in enumerate(frames, start=1):
            if needs_window:
                if window is None:
                    from rlcar_core.render.window import Window

                    window = Window(
                        (frame.shape[1], frame.shape[0]), title="rlcar dream: real | dream", fps=fps
                    )
                window.show(frame)
            if on_step is not None:
                on_step(count)
            yield frame

    result: dict[str, Any] = {}
    try:
        if config.output is not None:
            result = {
                "path": str(config.output),
                "frames": write_video(shown(frames), config.output, fps=fps),
            }
        else:
            for _ in shown(frames):
                pass
    finally:
        if window is not None:
            window.close()
    # `frame_mse_mean` is the key the dream command reports for every model.
    return {**summary, **result, "model": "dreamer", "frame_mse_mean": summary.get("obs_mse_mean")}
