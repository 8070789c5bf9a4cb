"""``rlcar export-video``: one episode of an agent on a held-out track, rendered with a HUD, to mp4/gif."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rlcar_core.agents import make_agent
from rlcar_core.agents.base import Agent
from rlcar_core.apps.drive import DrivingSession
from rlcar_core.errors import require_at_least
from rlcar_core.io.video import check_video_path, write_video


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    output: Path
    env: str = "rlcar"
    agent: str = "heuristic"
    max_steps: int = 1000
    track: int = 0
    seed: int = 0
    fps: int = 0  # 0: the env's own rate (10 for RLCar, 50 for CarRacing-v3)
    run_dir: Path | None = None  # learned agents: the run whose checkpoint drives
    checkpoint: str = "best"

    def validate(self) -> None:
        require_at_least("--max-steps", self.max_steps, 1)
        require_at_least("--fps", self.fps, 0)
        check_video_path(self.output)


def export_video(
    config: ExportConfig, agent: Agent | None = None, on_frame: Callable[[int], None] | None = None
) -> dict:
    config.validate()
    agent = agent or make_agent(config.agent, config.env, config.seed, config.run_dir, config.checkpoint)
    session = DrivingSession(config.env, agent.obs_kind, config.track, config.max_steps, config.seed)
    result: dict = {}

    def frames() -> Iterator[np.ndarray]:
        obs = session.reset()
        agent.reset(1)
        label = f"AI: {agent.name}"
        yield session.frame(session.hud(label))
        while True:
            batch = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
            obs, _, terminated, truncated, info = session.step(agent.act(batch)[0])
            yield session.frame(session.hud(label))
            if on_frame is not None:
                on_frame(session.steps)
            if terminated or truncated:
                result.update(
                    episode_return=session.episode_return,
                    progress=float(info.get("progress", 0.0)),
                    lap_complete=bool(info.get("lap_complete", False)),
                    crashed=bool(info.get("crashed", False)),
                    steps=session.steps,
                )
                return

    fps = config.fps or (10 if config.env == "rlcar" else 50)
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
        "track_seed": session.track_seed,
        **result,
    }
