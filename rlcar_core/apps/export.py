"""``rlcar export-video``: one episode of an agent on a held-out track, rendered with the side panel
(the car's camera and the HUD) to mp4/gif.

CarRacing-v3's own bottom bar is cropped (its numbers disagree with rlcar's HUD) and its zoom-in intro,
the first second, is not written: the video opens on the car at the start line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rlcar_core.agents import agent_run_dir, check_action_choice, make_agent
from rlcar_core.agents.base import Agent
from rlcar_core.apps.drive import DrivingSession
from rlcar_core.apps.run_identity import resolve_driver
from rlcar_core.envs.names import EnvName, frames_per_second
from rlcar_core.errors import require_at_least, require_steps, require_track
from rlcar_core.io.video import check_video_path, write_video

LAP_HOLD_SECONDS = 1.0  # a finished lap's last frame, with its banner, stays this long


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    output: Path
    env: str | None = None  # None: the env run_dir was trained on, else RLCar
    agent: str | None = None  # None: the agent run_dir trained, else the heuristic
    max_steps: int = 1000
    track: int = 0
    seed: int = 0
    fps: int = 0  # 0: the env's own rate (one frame per simulator step)
    run_dir: Path | None = None  # learned agents: the run whose checkpoint drives (None: its default run)
    checkpoint: str = "best"
    actions: str | None = None  # DreamerV3: sample (None: the default) or mode; see dreamer.config

    def validate(self) -> None:
        """Every input checked before any episode runs, the output path included."""
        require_steps("--max-steps", self.max_steps)
        require_track("--track", self.track)
        require_at_least("--fps", self.fps, 0)
        check_video_path(self.output)


def resolve_export(config: ExportConfig) -> ExportConfig:
    """``config`` with its agent and env filled in (from ``run_dir`` when given: see `resolve_driver`)."""
    driver = resolve_driver(config.agent, config.env, config.run_dir)
    check_action_choice([driver.agent], config.actions)
    return dataclasses.replace(config, agent=driver.agent, env=driver.env)


def export_video(
    config: ExportConfig, agent: Agent | None = None, on_frame: Callable[[int], None] | None = None
) -> dict:
    """Render one episode to ``config.output``; ``on_frame(step)`` after each simulator step."""
    config.validate()
    if agent is None:
        config = resolve_export(config)
    else:  # the caller chose what drives: only fill in what was left out
        config = dataclasses.replace(
            config, env=config.env or EnvName.RLCAR, agent=config.agent or agent.name
        )
    run_dir = agent_run_dir(config.agent, config.run_dir) if agent is None else config.run_dir
    if agent is None:
        agent = make_agent(config.agent, config.env, config.seed, run_dir, config.checkpoint, config.actions)
    session = DrivingSession(
        config.env,
        agent.obs_kind,
        config.track,
        config.max_steps,
        config.seed,
        camera=getattr(agent, "camera", None),  # a learned agent films with its run's camera
    )
    fps = config.fps or frames_per_second(config.env)
    result: dict = {}
    intro_steps = [0]  # steps of CarRacing's zoom-in intro: driven, not filmed

    def frames() -> Iterator[np.ndarray]:
        obs = session.reset()
        agent.reset(1)
        label = f"AI: {agent.name}"
        if not session.in_intro:
            yield session.frame(session.hud(label))
        while True:
            batch = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
            obs, _, terminated, truncated, info = session.step(agent.act(batch)[0])
            if session.in_intro:
                intro_steps[0] += 1
            else:
                banner = session.lap_banner()
                frame = session.frame(session.hud(label), banner=banner)
                yield frame
                if banner is not None:
                    yield from [frame] * round(LAP_HOLD_SECONDS * fps)
            if on_frame is not None:
                on_frame(session.steps)
            if terminated or truncated:
                if session.in_intro:  # an episode shorter than the intro still gets its last frame
                    yield session.frame(session.hud(label), banner=session.lap_banner())
                result.update(
                    episode_return=session.episode_return,
                    progress=float(info.get("progress", 0.0)),
                    lap_complete=bool(info.get("lap_complete", False)),
                    crashed=bool(info.get("crashed", False)),
                    steps=session.steps,
                )
                return

    try:
        count = write_video(frames(), config.output, fps=fps)
    finally:
        session.close()
    return {
        "path": str(config.output),
        "frames": count,
        "fps": fps,
        "env": config.env,
        "agent": agent.name,
        "actions": getattr(agent, "actions", None),  # how a DreamerV3 actor acted; None for the others
        "run_dir": str(run_dir) if run_dir is not None else None,
        "track_seed": session.track_seed,
        "intro_steps": intro_steps[0],
        **result,
    }
