"""``rlcar eval``: agents' episodes on held-out tracks, batched through the vector env, and the
comparison with a recorded human run."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rlcar_core.agents import (
    AGENTS_WITH_ACTION_CHOICE,
    Agent,
    agent_run_dir,
    check_action_choice,
    is_learned,
    make_agent,
)
from rlcar_core.apps.human import HumanRun, recorded_world
from rlcar_core.apps.run_identity import resolve_driver
from rlcar_core.envs.factory import check_env_request
from rlcar_core.envs.heldout import MAX_EVAL_TRACKS, EpisodeRecord, evaluate_policy, run_episodes
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError, require_at_least, require_steps, require_track


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    env: str | None = None  # None: the env --run-dir was trained on, else RLCar
    agent: str | None = None  # None: the agent --run-dir trained, else the heuristic
    episodes: int = 10
    seed: int = 0
    max_steps: int = 1000
    num_envs: int = 16
    run_dir: Path | None = None  # learned agents: the run whose checkpoint drives (None: its default run)
    checkpoint: str = "best"
    first_track: int = 0  # held-out tracks first_track, first_track + 1, ...
    actions: str | None = None  # DreamerV3: sample (None: the default) or mode; see dreamer.config

    def validate(self) -> None:
        require_at_least("--episodes", self.episodes, 1)
        require_track("--first-track", self.first_track, min(self.episodes, MAX_EVAL_TRACKS))
        require_steps("--max-steps", self.max_steps)
        require_at_least("--num-envs", self.num_envs, 1)
        env = EnvName.parse(self.env or EnvName.RLCAR)
        check_env_request(env, env.default_obs)
        if self.agent is not None:
            check_action_choice([self.agent], self.actions)

    def make_agent(self, run_dir: Path | None) -> Agent:
        return make_agent(self.agent, self.env, self.seed, run_dir, self.checkpoint, self.actions)


def builtin_driver_in_world(config: EvalConfig, camera: str | None) -> Agent:
    """``config``'s built-in driver (heuristic, random) in the RLCar world of ``camera`` (a --camera
    text; None: today's). A benchmark of agents trained on another camera scores its reference drivers
    among the same obstacles: the size and count of obstacles are part of the camera's settings."""
    agent = dataclasses.replace(config, env=config.env or EnvName.RLCAR).make_agent(None)
    if camera is not None:
        from rlcar_core.sim.camera_spec import parse_camera  # here: the simulator imports JAX

        agent.camera = parse_camera(camera)
    return agent


def evaluate(
    config: EvalConfig,
    agent: Agent | None = None,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> dict:
    """Evaluate ``config.agent`` (or a given ``agent``) on held-out tracks; returns a JSON-ready summary."""
    if agent is None:
        config, _ = resolve_agents(config)
    else:  # the caller chose (and resolved) what drives: only fill in what was left out
        config = dataclasses.replace(
            config, env=config.env or EnvName.RLCAR, agent=config.agent or agent.name
        )
    config.validate()
    run_dir = agent_run_dir(config.agent, config.run_dir) if agent is None else config.run_dir
    agent = agent or config.make_agent(run_dir)
    start = time.perf_counter()
    results = evaluate_policy(
        config.env,
        agent,
        config.episodes,
        config.seed,
        config.max_steps,
        config.num_envs,
        on_episode,
        first_track=config.first_track,
    )
    return {
        "env": config.env,
        "agent": config.agent,
        "seed": config.seed,
        "first_track": config.first_track,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "checkpoint": config.checkpoint if run_dir is not None else None,
        "actions": getattr(agent, "actions", None),  # how a DreamerV3 actor acted; None for the others
        **results,
        "wall_seconds": time.perf_counter() - start,
    }


def check_agent_list(names: Sequence[str], run_dir: Path | None) -> None:
    """Several agents share one set of options: refuse what would be ambiguous."""
    if not names:
        raise RlcarError("name at least one --agent")
    if len(set(names)) != len(names):
        raise RlcarError(f"each --agent once, please: got {', '.join(names)}")
    learned = [name for name in names if is_learned(name)]
    if run_dir is not None and len(learned) > 1:
        raise RlcarError(
            f"--run-dir names one run but {' and '.join(learned)} are both learned agents; "
            "leave --run-dir out so each uses its default run"
        )


def resolve_agents(config: EvalConfig, names: Sequence[str] = ()) -> tuple[EvalConfig, list[str]]:
    """The agents to evaluate (``names``, else ``config.agent``, else the one ``config.run_dir`` trained,
    else the heuristic) and ``config`` with its env filled in (given, else the run's, else RLCar).
    An --agent or --env that contradicts --run-dir is refused before anything is loaded."""
    names = list(names) or ([config.agent] if config.agent else [])
    if names:
        check_agent_list(names, config.run_dir)
    # With --run-dir there is at most one learned agent (check_agent_list): the run is checked against it.
    learned = [name for name in names if is_learned(name)]
    driver = resolve_driver(next(iter(learned + names), None), config.env, config.run_dir)
    names = names or [driver.agent]
    return dataclasses.replace(config, agent=names[0], env=driver.env), names


def evaluate_agents(
    config: EvalConfig,
    names: Sequence[str],
    recorded: HumanRun | None = None,
    on_episode: Callable[[str, EpisodeRecord], None] | None = None,
) -> list[dict]:
    """Each of ``names`` on the SAME held-out tracks with the same seed (``config.agent`` is not used);
    with ``recorded``, each also drives the human's track. One summary per agent, in order.
    No ``names``: see `resolve_agents`."""
    config, names = resolve_agents(config, names)
    check_action_choice(names, config.actions)
    # --actions concerns the agents that have the choice; the others drive as they always do.
    configs = [
        dataclasses.replace(
            config, agent=name, actions=config.actions if name in AGENTS_WITH_ACTION_CHOICE else None
        )
        for name in names
    ]
    for each in configs:  # every input error before the first (slow) evaluation
        each.validate()
        agent_run_dir(each.agent, each.run_dir)
    if recorded is not None:
        check_human_env(config.env, recorded)
    results = []
    for each in configs:
        run_dir = agent_run_dir(each.agent, each.run_dir)
        agent = each.make_agent(run_dir)
        if recorded is not None:
            check_same_world(recorded, agent)  # before its evaluation, not after
        result = evaluate(
            dataclasses.replace(each, run_dir=run_dir),
            agent,
            None if on_episode is None else (lambda record, name=each.agent: on_episode(name, record)),
        )
        if recorded is not None:
            result["human"] = compare_with_human(each, recorded, agent)
        results.append(result)
    return results


def with_recorded_env(config: EvalConfig, recorded: HumanRun | None) -> EvalConfig:
    """``config`` on the recording's env when neither --env nor --run-dir chose one: a CarRacing-v3
    recording is compared on CarRacing-v3 without saying so twice."""
    if recorded is None or config.env is not None or config.run_dir is not None:
        return config
    return dataclasses.replace(config, env=recorded.env)


def check_human_env(env: str, recorded: HumanRun) -> None:
    if recorded.env != env:
        raise RlcarError(
            f"the human run was recorded on {recorded.env}, not {env}; pass --env {recorded.env}"
        )


def check_same_world(recorded: HumanRun, agent: Agent) -> None:
    """The agent drives the human's track in its own run's world: refuse when that world's obstacles
    (size, shape, count: RLCar's camera settings that change the track) differ from the human's. The
    camera's geometry may differ: the person watched the big top-down view, not the agent's frames."""
    if recorded.env != EnvName.RLCAR:
        return
    from rlcar_core.sim.camera_spec import CameraSpec

    human_world = recorded_world(recorded)
    agent_world = getattr(agent, "camera", None) or CameraSpec()
    if human_world.track_spec() != agent_world.track_spec():
        raise RlcarError(
            f"the human drove among obstacles of radius {human_world.obstacle_radius:g} m "
            f"({human_world.obstacle_shape}, {human_world.num_obstacles} a track), the agent's world "
            f"has {agent_world.obstacle_radius:g} m ({agent_world.obstacle_shape}, "
            f"{agent_world.num_obstacles}); record a run with `rlcar play --manual --camera` "
            "set to the agent's camera"
        )


def compare_with_human(config: EvalConfig, recorded: HumanRun, agent: Agent | None = None) -> dict:
    """The agent on the recorded human's own track and reset seed, next to the human's summary."""
    if agent is None:
        config, _ = resolve_agents(config)
    check_human_env(config.env or EnvName.RLCAR, recorded)
    if agent is None:
        agent = config.make_agent(agent_run_dir(config.agent, config.run_dir))
    check_same_world(recorded, agent)
    (record,) = run_episodes(
        config.env, agent, [recorded.track_seed], recorded.reset_seed, config.max_steps, 1
    )
    return {"recorded": recorded.summary(), "agent_on_same_track": dataclasses.asdict(record)}
