"""`rlcar dream` for any run: pick the run (the most recently trained one when none is named), then hand
it to the dream of the algorithm that trained it.

DreamerV3 runs dream through `rlcar_core.dreamer.dream_view`, World Models runs through
`rlcar_core.worldmodels.dream`; both are shown the same way (window, video or headless), side by side.
The algorithms never import this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.apps.run_identity import identify_run, next_world_models_stage
from rlcar_core.envs.names import frames_per_second
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RUNS_ROOT
from rlcar_core.io.video import write_video
from rlcar_core.worldmodels.config import DreamConfig


def latest_trained_run(root: str | Path = RUNS_ROOT) -> Path:
    """The run under `root` (of either kind) whose newest intact checkpoint is the most recent."""
    from rlcar_core.apps.runs import most_recent_trained_run

    run = most_recent_trained_run(root)
    if run is None:
        raise RlcarError(
            f"no trained run under {Path(root)}/: train one first (`rlcar train-dreamer`, or the World Models "
            "commands), or pass --run-dir"
        )
    return run


def resolve_run(config: DreamConfig) -> DreamConfig:
    """`config` with its run directory filled in (the most recently trained run when none was given)."""
    if config.run_dir is not None:
        return config
    return dataclasses.replace(config, run_dir=latest_trained_run())


def run_dream(config: DreamConfig, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Dream with the run's world model, whichever algorithm trained it."""
    config.validate()
    config = resolve_run(config)
    if identify_run(config.run_dir, for_dream=True).kind == "dreamer":
        result = run_dreamer_dream(config, on_step)
    elif config.actions is not None:
        raise RlcarError(
            f"--actions chooses how a DreamerV3 actor acts; {config.run_dir} is a World Models run "
            "(its controller has no such choice)"
        )
    else:
        from rlcar_core.worldmodels.dream import run_dream as run_worldmodels_dream

        # A dream needs V and M, and C to drive unless a person does (--manual): name the earliest
        # stage missing, not the controller a run with only a VAE cannot train yet.
        missing = next_world_models_stage(config.run_dir, "mdnrnn" if config.manual else "controller")
        if missing:
            raise RlcarError(f"cannot dream with {config.run_dir}: {missing}")

        result = {**run_worldmodels_dream(config, on_step), "model": "worldmodels"}
    return {**result, "run_dir": str(config.run_dir)}


def run_dreamer_dream(config: DreamConfig, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Dream with a DreamerV3 run (temperature unused)."""
    from rlcar_core.dreamer.config import DEFAULT_ACTIONS
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
        actions=config.actions or DEFAULT_ACTIONS,
    )
    fps = config.fps or frames_per_second(summary["env"])

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
