"""``rlcar play``: drive a held-out track by keyboard, or watch an agent drive; T hands over between them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlcar_core.agents import make_agent
from rlcar_core.apps.drive import DrivingSession
from rlcar_core.apps.human import HumanRun, save_human_run
from rlcar_core.errors import require_at_least

KEYS_HELP = "arrows/WASD drive, T toggles, R resets, Esc quits"


@dataclasses.dataclass(frozen=True)
class PlayConfig:
    env: str = "rlcar"
    manual: bool = False
    agent: str | None = None
    headless: bool = False
    max_steps: int = 1000
    episodes: int = 1  # in a window, play goes on until Esc; headless it stops after this many
    track: int = 0
    seed: int = 0
    run_dir: Path = Path("runs/play")  # human runs are saved here; learned agents load from here too
    checkpoint: str = "best"

    def validate(self) -> None:
        require_at_least("--max-steps", self.max_steps, 1)
        require_at_least("--episodes", self.episodes, 1)


def play(config: PlayConfig, on_episode: Callable[[dict], None] | None = None) -> dict:
    """Run the interactive loop (or its headless equivalent); returns every episode's summary."""
    config.validate()
    agent = (
        make_agent(config.agent, config.env, config.seed, config.run_dir, config.checkpoint)
        if config.agent
        else None
    )
    manual = config.manual or agent is None
    session = DrivingSession(
        config.env, agent.obs_kind if agent else "sensors", config.track, config.max_steps, config.seed
    )
    window = None
    if not config.headless:
        from rlcar_core.render.window import Window

        window = Window((640, 640), title="rlcar play", fps=10 if config.env == "rlcar" else 50)
    episodes: list[dict] = []
    try:
        obs = session.reset()
        if agent is not None:
            agent.reset(1)
        actions: list[np.ndarray] = []
        manual_steps = 0
        while True:
            controls = window.poll() if window is not None else None
            if controls is not None:
                if controls.quit:
                    if manual_steps:  # a human run cut short by Esc is still the user's run: keep it
                        episodes.append(
                            _finish_episode(config, session, session.info, actions, manual_steps, on_episode)
                        )
                    break
                if controls.toggle and agent is not None:
                    manual = not manual
                if controls.reset:
                    obs, actions, manual_steps = session.reset(), [], 0
                    if agent is not None:
                        agent.reset(1)
                    continue
            if manual:
                action = controls.action if controls is not None else np.zeros(3, np.float32)
                manual_steps += 1
            else:
                agent_obs = (
                    {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
                )
                action = agent.act(agent_obs)[0]
            actions.append(np.asarray(action, np.float32))
            obs, _, terminated, truncated, info = session.step(action)
            if window is not None:
                mode = "you (manual)" if manual else f"AI: {agent.name}"
                window.show(session.frame({**session.hud(mode), "keys": KEYS_HELP}))
            if terminated or truncated:
                episodes.append(_finish_episode(config, session, info, actions, manual_steps, on_episode))
                if window is None and len(episodes) >= config.episodes:
                    break
                obs, actions, manual_steps = session.reset(), [], 0
                if agent is not None:
                    agent.reset(1)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends play like Esc: whatever was finished is already saved
    finally:
        session.close()
        if window is not None:
            window.close()
    return {"env": config.env, "track_seed": session.track_seed, "episodes": episodes}


def _finish_episode(
    config: PlayConfig, session: DrivingSession, info: dict, actions, manual_steps: int, on_episode
) -> dict:
    summary = {
        "episode_return": session.episode_return,
        "progress": float(info.get("progress", 0.0)),
        "lap_complete": bool(info.get("lap_complete", False)),
        "crashed": bool(info.get("crashed", False)),
        "steps": session.steps,
        "manual_steps": manual_steps,
    }
    if manual_steps > 0:
        run = HumanRun(
            env=config.env,
            track_seed=session.track_seed,
            reset_seed=config.seed,
            actions=np.stack(actions),
            **summary,
        )
        summary["saved"] = str(save_human_run(config.run_dir, run))
    if on_episode is not None:
        on_episode(summary)
    return summary
