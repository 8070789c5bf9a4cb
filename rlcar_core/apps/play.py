"""``rlcar play``: drive a held-out track by keyboard, or watch an agent drive; T hands over between them.

The simulator steps at its own rate (10 Hz for RLCar); the window draws at the display rate in
between, with the car's pose interpolated, so the car glides instead of jumping. While JAX compiles
(several seconds), the window shows a splash instead of staying black.

Every attempt a person drove is saved as a human run for ``eval --human``: each one ended by R, Esc,
a lap, a crash or the step limit, as long as the car moved. An attempt nobody drove, or one an agent
drove most of after a T, is not saved.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlcar_core.agents import Agent, agent_run_dir, check_action_choice, is_learned, make_agent
from rlcar_core.apps.drive import DrivingSession, how_it_ended
from rlcar_core.apps.human import HumanRun, save_human_run
from rlcar_core.apps.pretrained import is_shipped
from rlcar_core.apps.run_identity import resolve_driver
from rlcar_core.envs.camera_option import check_camera_request
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError, require_at_least, require_steps, require_track
from rlcar_core.io.runs import default_run_dir
from rlcar_core.render.motion import interpolate_pose

MOVED_METRES = 1.0  # an attempt shorter than this never left the start: not worth saving
LAP_BANNER_SECONDS = 1.5  # how long a finished lap stays on screen before the next attempt
SPLASH_REFRESH_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class PlayConfig:
    env: str | None = None  # None: the env of the run in run_dir, else RLCar
    manual: bool = False
    # None: the agent of the run in run_dir, else the heuristic takes the wheel on T (RLCar), or nobody
    agent: str | None = None
    headless: bool = False
    max_steps: int = 1000
    episodes: int = 1  # in a window, play goes on until Esc; headless it stops after this many
    track: int = 0
    seed: int = 0
    run_dir: Path | None = None  # human runs are saved here (default runs/play); learned agents load
    # from here too, else from their own default run
    checkpoint: str = "best"
    actions: str | None = None  # DreamerV3: sample (None: the default) or mode; see dreamer.config
    # RLCar without a trained agent: the camera preset to look at (None: today's). A trained agent
    # drives with its run's camera.
    camera: str | None = None

    def validate(self) -> None:
        require_steps("--max-steps", self.max_steps)
        require_track("--track", self.track)
        require_at_least("--episodes", self.episodes, 1)

    def check_display(self) -> None:
        """A window needs a display. On Linux with none (no DISPLAY or WAYLAND_DISPLAY: ssh, a container,
        CI) and no SDL_VIDEODRIVER chosen, pygame would fail deep inside SDL or open nothing: one line
        now instead. macOS and Windows always have one."""
        if self.headless or not sys.platform.startswith("linux"):
            return
        if not any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")):
            raise RlcarError("no display; use --headless")

    @property
    def human_dir(self) -> Path:
        # A shipped agent's folder (pretrained/...) stays as git has it: a person's runs go to runs/play.
        if self.run_dir is None or is_shipped(self.run_dir):
            return default_run_dir("play")
        return self.run_dir


@dataclasses.dataclass
class Attempt:
    """One try since the last reset: what a human run is saved from."""

    actions: list[np.ndarray] = dataclasses.field(default_factory=list)
    manual_steps: int = 0
    human_input: bool = False  # a key was held on at least one manual step

    def record(self, action: np.ndarray, by_hand: bool) -> None:
        """One step's action, and whether the person (not the agent) chose it."""
        if by_hand:
            self.manual_steps += 1
            self.human_input |= bool(np.any(action != 0))
        self.actions.append(np.asarray(action, np.float32))

    def driven_by_a_person(self, session: DrivingSession) -> bool:
        """It moved, a key was held, and the person drove most of its steps: an attempt an agent
        drove most of (after a T) is the agent's, not a human run to compare agents against."""
        moved = session.distance >= MOVED_METRES or float(session.info.get("progress", 0.0)) > 0.0
        mostly_by_hand = 2 * self.manual_steps > len(self.actions)
        return mostly_by_hand and self.human_input and moved


def resolve_play(config: PlayConfig) -> PlayConfig:
    """``config`` with its agent and env filled in from ``run_dir`` when that holds a trained run (see
    `resolve_driver`); a folder of human runs, or a new one, leaves them as they were given."""
    driver = resolve_driver(config.agent, config.env, config.run_dir, default_agent=None, run_required=False)
    config = dataclasses.replace(config, agent=driver.agent, env=driver.env)
    partner = partner_for(config)
    check_action_choice([partner] if partner else ["nobody (no agent drives)"], config.actions)
    check_play_camera(config, partner)
    return config


def check_play_camera(config: PlayConfig, partner: str | None) -> None:
    """--camera is for looking at a camera without a run: a trained agent brings its run's."""
    if config.camera is None:
        return
    if partner is not None and is_learned(partner):
        raise RlcarError(
            f"the {partner} agent drives with the camera its run was trained with; drop --camera"
        )
    check_camera_request(config.camera, config.env or EnvName.RLCAR)


def session_camera(config: PlayConfig, partner: Agent | None):
    """The camera of the car on screen: the trained partner's own, else --camera's (None: today's)."""
    if getattr(partner, "camera", None) is not None:
        return partner.camera
    if config.camera is None:
        return None
    from rlcar_core.sim.camera_spec import parse_camera

    return parse_camera(config.camera)


def partner_for(config: PlayConfig) -> str | None:
    """Who drives when the person does not: --agent, else the heuristic where it can (RLCar)."""
    if config.agent is not None:
        return config.agent
    return "heuristic" if EnvName.parse(config.env or EnvName.RLCAR).has_sensors else None


def keys_help(manual: bool, partner: Agent | None) -> tuple[str, ...]:
    """The key hints that work right now, one per line."""
    hints = ["arrows/WASD  drive"] if manual else []
    if partner is not None:
        hints.append(f"T  {partner.name} drives" if manual else "T  take the wheel")
    return (*hints, "R  restart", "Esc  quit")


def play(
    config: PlayConfig,
    on_episode: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run the interactive loop (or its headless equivalent); returns every attempt's summary.

    ``should_stop`` is polled once per step (a Ctrl-C flag): the attempt is kept as on Esc, then
    KeyboardInterrupt is raised outside JAX."""
    config.validate()
    config = resolve_play(config)
    partner_name = partner_for(config)
    run_dir = agent_run_dir(partner_name, config.run_dir) if partner_name else None
    window = None if config.headless else _open_window(config)
    try:
        prepared = _prepare(config, partner_name, run_dir, window, should_stop or (lambda: False))
        if prepared is None:  # Esc during the splash
            return {"env": config.env, "track_seed": None, "episodes": []}
        session, partner = prepared
        episodes = _drive(config, session, partner, window, on_episode, should_stop or (lambda: False))
    finally:
        if window is not None:
            window.close()
    return {
        "env": config.env,
        "track_seed": session.track_seed,
        "agent": partner.name if partner is not None else None,
        "actions": getattr(partner, "actions", None),  # how a DreamerV3 actor acted; None otherwise
        "run_dir": str(run_dir) if run_dir is not None else None,
        "episodes": episodes,
    }


def _open_window(config: PlayConfig):
    from rlcar_core.render.panel import PANEL_WIDTH
    from rlcar_core.render.topdown import FRAME_SIZE
    from rlcar_core.render.window import Window

    # CarRacing's view is its 600x400 render less its own bottom bar.
    view = (FRAME_SIZE, FRAME_SIZE) if config.env == EnvName.RLCAR else (600, 350)
    window = Window((view[0] + PANEL_WIDTH, view[1]), title="rlcar play", fps=0)
    window.splash("loading…")
    return window


def _prepare(config: PlayConfig, partner_name, run_dir, window, should_stop):
    """Load the partner agent and compile the simulator, the agent and the renderer before the first
    frame; in a window, a splash stays on screen (and Esc works) meanwhile."""
    outcome: dict = {}

    def work() -> None:
        try:
            partner = (
                make_agent(partner_name, config.env, config.seed, run_dir, config.checkpoint, config.actions)
                if partner_name
                else None
            )
            obs_kind = partner.obs_kind if partner else "sensors"
            session = DrivingSession(
                config.env,
                obs_kind,
                config.track,
                config.max_steps,
                config.seed,
                camera=session_camera(config, partner),
            )
            obs = session.reset()
            if partner is not None:
                partner.reset(1)
                partner.act(_batch(obs))
            session.step(np.zeros(3, np.float32))
            if window is not None:
                session.warm_up()
            outcome["prepared"] = (session, partner)
        except BaseException as error:  # re-raised on the main thread
            outcome["error"] = error

    if window is None:
        work()
    else:
        worker = threading.Thread(target=work, name="rlcar-play-compile", daemon=True)
        started = time.perf_counter()
        worker.start()
        quit_requested = False
        while worker.is_alive():
            window.splash("compiling the simulator…", started)
            quit_requested |= window.quit_requested()
            worker.join(SPLASH_REFRESH_SECONDS)
        if (quit_requested or should_stop()) and "prepared" in outcome:
            outcome["prepared"][0].close()
            if should_stop():
                raise KeyboardInterrupt("interrupted")
            return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["prepared"]


def _batch(obs):
    return {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]


def _drive(config, session: DrivingSession, partner, window, on_episode, should_stop) -> list[dict]:
    manual = config.manual or config.agent is None
    episodes: list[dict] = []

    def new_attempt():
        if partner is not None:
            partner.reset(1)
        return session.reset(), Attempt()

    def keep(attempt: Attempt, ended: str) -> None:
        summary = _summarise(config, session, attempt, ended)
        if attempt.manual_steps > 0 or ended in ("lap", "crash", "time"):
            episodes.append(summary)
            if on_episode is not None:
                on_episode(summary)

    try:
        obs, attempt = new_attempt()
        while True:
            controls = window.poll() if window is not None else None
            if should_stop():
                if attempt.manual_steps:
                    keep(attempt, "quit")
                raise KeyboardInterrupt("interrupted")
            if controls is not None:
                if controls.quit:
                    if attempt.manual_steps:  # a human run cut short by Esc is still the user's run
                        keep(attempt, "quit")
                    break
                if controls.toggle and partner is not None:
                    manual = not manual
                if controls.reset:
                    if attempt.manual_steps:
                        keep(attempt, "restart")
                    obs, attempt = new_attempt()
                    continue
            if manual:
                action = controls.action if controls is not None else np.zeros(3, np.float32)
            else:
                action = partner.act(_batch(obs))[0]
            attempt.record(action, by_hand=manual)
            before = session.pose()
            obs, _, terminated, truncated, info = session.step(action)
            if window is not None:
                mode = "you" if manual else f"AI: {partner.name}"
                _draw_step(window, session, before, session.hud(mode), keys_help(manual, partner))
            if terminated or truncated:
                ended = how_it_ended(info)
                keep(attempt, ended)
                if window is None and len(episodes) >= config.episodes:
                    break
                obs, attempt = new_attempt()
    finally:
        session.close()
    return episodes


def _draw_step(window, session: DrivingSession, before, hud, keys) -> None:
    """The frames between the previous physics step and this one, then a held banner after a lap."""
    after = session.pose()
    banner = session.lap_banner()
    for fraction in window.frame_fractions(session.step_seconds):
        pose = interpolate_pose(before, after, fraction) if after is not None else None
        window.show(session.surface(hud, pose, keys, banner))
    if banner is not None:
        held = session.surface(hud, after, keys, banner)
        for _ in window.frame_fractions(LAP_BANNER_SECONDS):
            window.show(held)
            window.poll()


def _summarise(config: PlayConfig, session: DrivingSession, attempt: Attempt, ended: str) -> dict:
    info = session.info
    summary = {
        "episode_return": session.episode_return,
        "progress": float(info.get("progress", 0.0)),
        "lap_complete": bool(info.get("lap_complete", False)),
        "crashed": bool(info.get("crashed", False)),
        "steps": session.steps,
        "manual_steps": attempt.manual_steps,
        "ended": ended,
    }
    if attempt.driven_by_a_person(session):
        run = HumanRun(
            env=config.env,
            track_seed=session.track_seed,
            reset_seed=config.seed,
            actions=np.stack(attempt.actions),
            camera=None if session.camera is None else session.camera.to_dict(),
            **{k: v for k, v in summary.items() if k != "ended"},
        )
        summary["saved"] = str(save_human_run(config.human_dir, run))
    return summary
