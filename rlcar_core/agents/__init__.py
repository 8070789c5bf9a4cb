"""Drivers: built-in (``random``, ``heuristic``) and learned ones restored from a run's checkpoints."""

from __future__ import annotations

import importlib
from pathlib import Path

from rlcar_core.agents.base import Agent, select_obs
from rlcar_core.errors import RlcarError

BUILTIN_AGENTS = ("heuristic", "random")
# A learned agent's loader, imported only when asked for: ``load(run_dir, checkpoint, env_name, seed) -> Agent``.
LEARNED_AGENT_LOADERS = {
    "worldmodel": ("rlcar_core.agents.worldmodel", "load_worldmodel_agent"),
    "dreamer": ("rlcar_core.agents.dreamer", "load_dreamer_agent"),
}
AGENT_NAMES = BUILTIN_AGENTS + tuple(LEARNED_AGENT_LOADERS)


def make_agent(
    name: str,
    env_name: str = "rlcar",
    seed: int = 0,
    run_dir: str | Path | None = None,
    checkpoint: str = "best",
) -> Agent:
    """An agent by name; learned agents come from ``run_dir``'s ``checkpoint`` (latest, best, epN)."""
    if name not in AGENT_NAMES:
        raise RlcarError(f"unknown agent {name!r}; choose one of {', '.join(AGENT_NAMES)}")
    if name in LEARNED_AGENT_LOADERS:
        if run_dir is None:
            raise RlcarError(f"the {name!r} agent needs --run-dir: the run whose checkpoints it drives with")
        module_name, loader_name = LEARNED_AGENT_LOADERS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            raise RlcarError(
                f"the {name!r} agent is not available yet: it arrives with its training command"
            ) from None
        return getattr(module, loader_name)(Path(run_dir), checkpoint, env_name, seed)
    if name == "heuristic":
        if env_name != "rlcar":
            raise RlcarError(
                "the heuristic agent reads RLCar's ray sensors; CarRacing-v3 has none (use --agent random)"
            )
        from rlcar_core.agents.builtin import HeuristicAgent

        return HeuristicAgent()
    from rlcar_core.agents.builtin import RandomAgent

    return RandomAgent(seed, obs_kind="sensors" if env_name == "rlcar" else "pixels")


__all__ = ["AGENT_NAMES", "Agent", "make_agent", "select_obs"]
