"""Who drives while data is collected (`rlcar collect`, DreamerV3's prefill): smooth random exploration,
uniform noise, the heuristic driver, or a run's own trained World Models agent.

This is the agents layer's job because two of the choices are agents; the algorithms receive the
policy (or a `seed -> policy` factory) from their caller and never import this module. Every policy is
an `Agent` (batched `act`) plus `reset_where(mask)`, which forgets the memory of the cars whose episode
just restarted, since the vector env restarts cars one by one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from rlcar_core.envs.drivers import BrownianPolicy, ExplorationPolicy, Memoryless, RandomAgent
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError
from rlcar_core.worldmodels.config import COLLECT_POLICIES, CollectConfig


def make_exploration_policy(
    name: str,
    env_name: str,
    seed: int,
    run_dir: Path | None,
    checkpoint: str = "best",
    action_noise: float = 0.0,
) -> ExplorationPolicy:
    if name not in COLLECT_POLICIES:
        raise RlcarError(f"unknown policy {name!r}; choose one of {', '.join(COLLECT_POLICIES)}")
    if name == "brownian":
        return BrownianPolicy(seed)
    if name == "random":
        return Memoryless(RandomAgent(seed, obs_kind="pixels"))
    if name == "heuristic":
        if not EnvName.parse(env_name).has_sensors:
            raise RlcarError(
                "--policy heuristic reads RLCar's ray sensors; CarRacing-v3 has none (use brownian or random)"
            )
        from rlcar_core.agents import make_agent

        return Memoryless(make_agent("heuristic", env_name, seed))
    from rlcar_core.agents.worldmodel import load_worldmodel_agent

    return load_worldmodel_agent(run_dir, checkpoint, env_name, seed, action_noise)


def exploration_factory(
    name: str, env_name: str, run_dir: Path | None, checkpoint: str = "best", action_noise: float = 0.0
) -> Callable[[int], ExplorationPolicy]:
    """`seed -> policy`, for trainers that pick the seed themselves (e.g. `worldmodels.collect`)."""
    return functools.partial(
        make_exploration_policy,
        name,
        env_name,
        run_dir=run_dir,
        checkpoint=checkpoint,
        action_noise=action_noise,
    )


def collect_policy_factory(config: CollectConfig) -> Callable[[int], ExplorationPolicy]:
    """`exploration_factory` for what a `CollectConfig` asks: its policy, env, run, checkpoint and noise."""
    from rlcar_core.worldmodels.storage import run_dir_of

    return exploration_factory(
        config.policy, config.env, run_dir_of(config), config.checkpoint, config.action_noise
    )
