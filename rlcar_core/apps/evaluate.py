"""``rlcar eval``: an agent's episodes on held-out tracks, batched through the vector env."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rlcar_core.agents import Agent, make_agent
from rlcar_core.envs.factory import check_env_request
from rlcar_core.envs.heldout import (  # noqa: F401 - re-exported for the apps
    EpisodeRecord,
    evaluation_tracks,
    run_episodes,
    summarise,
)
from rlcar_core.errors import require_at_least


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    env: str = "rlcar"
    agent: str = "heuristic"
    episodes: int = 10
    seed: int = 0
    max_steps: int = 1000
    num_envs: int = 16
    run_dir: Path | None = None  # learned agents: the run whose checkpoint drives
    checkpoint: str = "best"

    def validate(self) -> None:
        require_at_least("--episodes", self.episodes, 1)
        require_at_least("--max-steps", self.max_steps, 1)
        require_at_least("--num-envs", self.num_envs, 1)


def evaluate(config: EvalConfig, agent: Agent | None = None, on_episode=None) -> dict:
    """Evaluate ``config.agent`` (or a given ``agent``) on held-out tracks; returns a JSON-ready summary."""
    config.validate()
    check_env_request(config.env, "pixels" if config.env == "carracing" else "sensors")
    agent = agent or make_agent(config.agent, config.env, config.seed, config.run_dir, config.checkpoint)
    tracks = evaluation_tracks(config.env, config.episodes)
    start = time.perf_counter()
    records = run_episodes(
        config.env, agent, tracks, config.seed, config.max_steps, config.num_envs, on_episode
    )
    return {
        "env": config.env,
        "agent": config.agent,
        "seed": config.seed,
        "checkpoint": config.checkpoint if config.run_dir is not None else None,
        **summarise(records, config.env),
        "wall_seconds": time.perf_counter() - start,
        "per_episode": [dataclasses.asdict(r) for r in records],
    }
