"""Drivers: built-in (``random``, ``heuristic``) and learned ones restored from a run's checkpoints."""

from __future__ import annotations

import importlib
from pathlib import Path

from rlcar_core.agents.base import Agent, select_obs
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import default_run_dir

BUILTIN_AGENTS = ("heuristic", "random")
# A learned agent's loader, imported only when asked for: ``load(run_dir, checkpoint, env_name, seed) -> Agent``.
LEARNED_AGENT_LOADERS = {
    "worldmodel": ("rlcar_core.agents.worldmodel", "load_worldmodel_agent"),
    "dreamer": ("rlcar_core.agents.dreamer", "load_dreamer_agent"),
}
# The kind of run each learned agent comes from, so `--agent dreamer` alone finds `runs/dreamer`.
LEARNED_AGENT_RUN_KINDS = {"worldmodel": "worldmodels", "dreamer": "dreamer"}
TRAIN_HINTS = {
    "worldmodel": "rlcar collect, train-vae, train-rnn, train-controller",
    "dreamer": "rlcar train-dreamer",
}
AGENT_NAMES = BUILTIN_AGENTS + tuple(LEARNED_AGENT_LOADERS)
# Agents whose actor is a distribution, so a user chooses how it acts (--actions sample|mode; see
# rlcar_core.dreamer.config.ACTION_CHOICES). The others act as they always do.
AGENTS_WITH_ACTION_CHOICE = ("dreamer",)


def is_learned(name: str) -> bool:
    return name in LEARNED_AGENT_LOADERS


def agent_run_dir(name: str, run_dir: str | Path | None) -> Path | None:
    """The run a learned agent drives from: ``run_dir`` when given, else its kind's default run
    (``runs/dreamer``, ``runs/worldmodels``). Built-in drivers need none: None."""
    if not is_learned(name):
        return None
    if run_dir is not None:
        return Path(run_dir)
    default = default_run_dir(LEARNED_AGENT_RUN_KINDS[name])
    if not default.is_dir():
        raise RlcarError(
            f"the {name!r} agent drives with a trained run and there is none at {default}: "
            f"train one ({TRAIN_HINTS[name]}) or pass --run-dir"
        )
    return default


def check_action_choice(names: list[str] | tuple[str, ...], actions: str | None) -> None:
    """A given --actions must be a choice and must concern at least one of the agents that drive."""
    if actions is None:
        return
    from rlcar_core.dreamer.config import check_actions  # no JAX: the config module is plain Python

    check_actions(actions)
    if not any(name in AGENTS_WITH_ACTION_CHOICE for name in names):
        raise RlcarError(
            f"--actions chooses how a DreamerV3 actor acts; {', '.join(names)} "
            f"{'has' if len(names) == 1 else 'have'} no such choice"
        )


def make_agent(
    name: str,
    env_name: str = EnvName.RLCAR,
    seed: int = 0,
    run_dir: str | Path | None = None,
    checkpoint: str = "best",
    actions: str | None = None,
) -> Agent:
    """An agent by name; learned agents come from ``run_dir``'s ``checkpoint`` (latest, best, epN), or
    from their default run when ``run_dir`` is None. ``actions`` (sample or mode, default sample) is
    how a DreamerV3 actor acts; other agents ignore it (commands refuse it for them with
    `check_action_choice`, unless another agent they drive takes it)."""
    if name not in AGENT_NAMES:
        raise RlcarError(f"unknown agent {name!r}; choose one of {', '.join(AGENT_NAMES)}")
    if is_learned(name):
        run = agent_run_dir(name, run_dir)
        module_name, loader_name = LEARNED_AGENT_LOADERS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            raise RlcarError(
                f"the {name!r} agent is not available yet: it arrives with its training command"
            ) from None
        # A DreamerV3 loader takes the choice (its own default when None is given); the others have none.
        choice = {"actions": actions} if actions is not None and name in AGENTS_WITH_ACTION_CHOICE else {}
        return getattr(module, loader_name)(run, checkpoint, env_name, seed, **choice)
    env = EnvName.parse(env_name)
    if name == "heuristic":
        if not env.has_sensors:
            raise RlcarError(
                "the heuristic agent reads RLCar's ray sensors; CarRacing-v3 has none (use --agent random)"
            )
        from rlcar_core.agents.builtin import HeuristicAgent

        return HeuristicAgent()
    from rlcar_core.agents.builtin import RandomAgent

    return RandomAgent(seed, obs_kind=env.default_obs)


__all__ = [
    "AGENTS_WITH_ACTION_CHOICE",
    "AGENT_NAMES",
    "Agent",
    "agent_run_dir",
    "check_action_choice",
    "is_learned",
    "make_agent",
    "select_obs",
]
