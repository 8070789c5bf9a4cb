"""Who drives while `rlcar collect` records: smooth random exploration, uniform noise, the heuristic
driver, or the run's own trained World Models agent.

Every policy is an `Agent` (batched `act`) plus `reset_where(mask)`, which forgets the memory of the
cars whose episode just restarted, since the vector env restarts cars one by one.
"""

from __future__ import annotations

from pathlib import Path

from rlcar_core.agents import make_agent
from rlcar_core.envs.drivers import BrownianPolicy, ExplorationPolicy, Memoryless  # noqa: F401
from rlcar_core.errors import RlcarError

COLLECT_POLICIES = ("brownian", "random", "heuristic", "checkpoint")


def make_exploration_policy(
    name: str, env_name: str, seed: int, run_dir: Path, checkpoint: str = "best"
) -> ExplorationPolicy:
    if name not in COLLECT_POLICIES:
        raise RlcarError(f"unknown policy {name!r}; choose one of {', '.join(COLLECT_POLICIES)}")
    if name == "brownian":
        return BrownianPolicy(seed)
    if name == "random":
        from rlcar_core.agents.builtin import RandomAgent

        return Memoryless(RandomAgent(seed, obs_kind="pixels"))
    if name == "heuristic":
        if env_name != "rlcar":
            raise RlcarError(
                "--policy heuristic reads RLCar's ray sensors; CarRacing-v3 has none (use brownian or random)"
            )
        return Memoryless(make_agent("heuristic", env_name, seed))
    from rlcar_core.agents.worldmodel import load_worldmodel_agent

    return load_worldmodel_agent(run_dir, checkpoint, env_name, seed)
