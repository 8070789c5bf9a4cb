"""Drivers: built-in (``random``, ``heuristic``) and, in later stages, learned ones from checkpoints."""

from __future__ import annotations

from rlcar_core.agents.base import Agent, select_obs
from rlcar_core.errors import RlcarError

BUILTIN_AGENTS = ("heuristic", "random")
LEARNED_AGENTS = ("worldmodel", "dreamer")
AGENT_NAMES = BUILTIN_AGENTS + LEARNED_AGENTS


def make_agent(name: str, env_name: str = "rlcar", seed: int = 0) -> Agent:
    """A built-in agent by name; a clear error where it cannot drive ``env_name``."""
    if name not in AGENT_NAMES:
        raise RlcarError(f"unknown agent {name!r}; choose one of {', '.join(AGENT_NAMES)}")
    if name in LEARNED_AGENTS:
        raise RlcarError(f"the {name!r} agent is not available yet: it arrives with its training command")
    if name == "heuristic":
        if env_name != "rlcar":
            raise RlcarError("the heuristic agent reads RLCar's ray sensors; CarRacing-v3 has none (use --agent random)")
        from rlcar_core.agents.builtin import HeuristicAgent

        return HeuristicAgent()
    from rlcar_core.agents.builtin import RandomAgent

    return RandomAgent(seed, obs_kind="sensors" if env_name == "rlcar" else "pixels")


__all__ = ["AGENT_NAMES", "Agent", "make_agent", "select_obs"]
