"""One live car for the browser: keys in, JPEG frames out, with an optional AI ghost to race.

Physics runs at the env's own rate (10 Hz for RLCar) while frames are drawn as often as the page
asks: each frame places the car between its last two physics states (interpolation), so 20-30 frames
per second look smooth without changing the simulation. A key that changes the action steps the
physics at once (no sooner than ``MIN_STEP_FRACTION`` of a step after the last one), so the car
answers a key in well under one 100 ms physics step.

Frames are the same as ``play``'s: ``DrivingSession`` with the top-down view, its side panel (camera,
HUD, the keys that work) and the pose interpolation of ``rlcar_core.render.motion``. A person's attempts
are kept by ``play``'s own rules (``Attempt``, its summary and ``save_human_run``), so ``eval --human``
reads a browser run exactly like one from ``play --manual``.

CarRacing-v3 drives through the same session, keys and frames (Gymnasium's own rgb_array view, no
interpolation: it steps at 50 Hz, so each frame catches the physics up instead). Its race is two panes,
you and the agent, each on its own env on the same track (see ``race``), compared at the end.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.apps.drive import DrivingSession, how_it_ended
from rlcar_core.apps.play import Attempt, PlayConfig, _summarise
from rlcar_core.apps.serve.leaderboard import Leaderboard
from rlcar_core.apps.serve.race import CarTally, compare
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError, require_at_least
from rlcar_core.render.motion import CarPose, interpolate_pose

MIN_STEP_FRACTION = 0.2
# A late frame is caught up by stepping again before it is drawn, but no more than this: 2 keeps
# CarRacing's 50 Hz at 25+ frames/s; on a machine too busy for both, the car slows down rather than
# the frames thinning out (each CarRacing step also draws its 96x96 camera: ~5-15 ms).
MAX_STEPS_PER_TICK = 2
JPEG_QUALITY = 80
GHOST_COLOUR = (60, 140, 255)
# Browser key names (KeyboardEvent.key, lower-cased) -> the action part each one drives.
STEER_LEFT = {"arrowleft", "a"}
STEER_RIGHT = {"arrowright", "d"}
GAS = {"arrowup", "w"}
BRAKE = {"arrowdown", "s"}
DRIVE_KEYS = STEER_LEFT | STEER_RIGHT | GAS | BRAKE


def action_from_keys(held: set[str]) -> np.ndarray:
    """[steer, gas, brake] from the keys held down, as ``play``'s window reads them."""
    left, right = bool(held & STEER_LEFT), bool(held & STEER_RIGHT)
    return np.array(
        [float(right) - float(left), float(bool(held & GAS)), float(bool(held & BRAKE))], np.float32
    )


def encode_jpeg(frame, ghost_outline: list | None = None) -> bytes:
    """A frame (an (H, W, 3) array or a pygame surface) as JPEG bytes, with the ghost's outline."""
    from PIL import Image, ImageDraw

    if isinstance(frame, np.ndarray):
        image = Image.fromarray(frame)
    else:  # pygame's own row-major copy: no transposed array in between (a few ms a frame)
        from rlcar_core.render.hud import pygame_module

        image = Image.frombytes("RGB", frame.get_size(), pygame_module().image.tobytes(frame, "RGB"))
    if ghost_outline:
        ImageDraw.Draw(image).polygon([tuple(p) for p in ghost_outline], outline=GHOST_COLOUR, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class LiveConfig:
    env: str = EnvName.RLCAR
    agent: str | None = None  # None: only you drive
    run_dir: Path | None = None  # learned agents: the run whose checkpoint drives
    checkpoint: str = "best"
    track: int = 0
    race: bool = False  # you drive; the agent drives the same track as a ghost
    seed: int = 0
    max_steps: int = 1000
    label: str = ""  # how the page names the driver

    def validate(self) -> None:
        EnvName.parse(self.env)
        require_at_least("--track", self.track, 0)
        require_at_least("--max-steps", self.max_steps, 1)
        if self.race and self.agent is None:
            raise RlcarError("a race needs an AI driver to race against")


class LiveDrive:
    """Holds the car (and ghost), turns keys into actions, steps physics when due, draws frames.

    ``tick`` and ``render`` run on one worker thread; ``key``/``command`` may come from another.
    """

    def __init__(self, config: LiveConfig, human_dir: Path, leaderboard: Leaderboard | None = None):
        from rlcar_core.agents import make_agent

        config.validate()
        self.config = config
        self.env = EnvName.parse(config.env)
        self.human_dir = human_dir
        self.leaderboard = leaderboard
        self.step_seconds = self.env.step_seconds

        def agent():
            return make_agent(config.agent, self.env, config.seed, config.run_dir, config.checkpoint)

        self.agent = agent() if config.agent else None
        self.label = config.label or (config.agent or "")
        obs_kind = self.agent.obs_kind if self.agent else self.env.default_obs
        # A trained agent films with its run's camera (None: today's); your car in a race too, so both
        # drive the same frames and your run is saved with the camera it was driven through.
        camera = getattr(self.agent, "camera", None)

        def car(obs_kind: str) -> DrivingSession:
            return DrivingSession(
                self.env, obs_kind, config.track, config.max_steps, config.seed, camera=camera
            )

        self.session = car(obs_kind)
        # In a race you always drive your car: the one agent loaded drives the other.
        self.ghost_agent = self.agent if config.race else None
        self.ghost = car(self.ghost_agent.obs_kind) if config.race else None
        # RLCar's ghost is drawn on your track; CarRacing's Box2D cars need a world each: two panes.
        self.side_by_side = config.race and self.env is EnvName.CARRACING
        self.race_result: dict[str, Any] | None = None
        self.manual = self.agent is None or config.race
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._action_changed = False
        self.episodes = 0
        self.last_episode: dict[str, Any] | None = None
        self.last_lap: dict[str, Any] | None = None
        self._attempts = -1  # counts resets: a frame drawn for an earlier attempt is never sent again
        self._reset()
        self.session.warm_up()  # compile the camera and rays now, not on the first frame

    # --- input (any thread) -------------------------------------------------------------------------

    def key(self, name: str, down: bool) -> None:
        name = str(name).lower()[:20]
        if name not in DRIVE_KEYS:
            return
        with self._lock:
            before = action_from_keys(self._held)
            (self._held.add if down else self._held.discard)(name)
            if not np.array_equal(before, action_from_keys(self._held)) and self.manual:
                self._action_changed = True

    def command(self, name: str) -> None:
        if name in ("toggle", "reset"):
            with self._lock:
                self._pending.append(name)

    def release_all(self) -> None:
        with self._lock:
            self._held.clear()

    # --- simulation (worker thread) -----------------------------------------------------------------

    def _reset(self) -> None:
        self._attempts += 1
        self._frames: dict[str, tuple[tuple, bytes]] = {}
        self.obs = self.session.reset()
        self.previous_pose: CarPose | None = None
        self.pose = self.session.pose()
        self.stepped_at = time.monotonic()
        self.attempt = Attempt()
        self.applied_action = np.zeros(3, np.float32)  # nothing applied yet: the page shows no gas
        self.ghost_action = np.zeros(3, np.float32)
        self.tally, self.ghost_tally = CarTally(), CarTally()
        self.race_result = None
        if self.agent is not None:
            self.agent.reset(1)
        if self.ghost is not None:
            self.ghost_obs = self.ghost.reset()
            self.ghost_done = False
            self.ghost_previous: CarPose | None = None
            self.ghost_pose = self.ghost.pose()
            self.ghost_agent.reset(1)

    @property
    def mode(self) -> str:
        return "you (manual)" if self.manual else f"AI: {self.label}"

    def due(self, now: float) -> bool:
        waited = now - self.stepped_at + 1e-6  # clock rounding must not skip a step that is due
        return waited >= self.step_seconds or (
            self._action_changed and waited >= MIN_STEP_FRACTION * self.step_seconds
        )

    def tick(self, now: float | None = None) -> bool:
        """Apply pending commands, then step the physics while a step is due (catching up a slow
        frame, at most ``MAX_STEPS_PER_TICK`` steps); True when it stepped."""
        now = time.monotonic() if now is None else now
        with self._lock:
            pending, self._pending = self._pending, []
        for name in pending:
            if name == "reset":
                if self.attempt.manual_steps and not self.tally.done:
                    self._keep("restart")
                self._reset()
                return True
            if name == "toggle" and self.agent is not None and not self.config.race:
                self.manual = not self.manual
        stepped = 0
        while stepped < MAX_STEPS_PER_TICK and self.race_result is None and self.due(now):
            keyed = self._action_changed
            self._step(now)
            stepped += 1
            if keyed:  # show a key's effect at once; the next frame catches the physics up
                break
        return stepped > 0

    def _step(self, now: float) -> None:
        with self._lock:
            self._action_changed = False
            action = action_from_keys(self._held)
        scheduled = self.stepped_at + self.step_seconds
        # On time or late by less than a catch-up: keep the schedule, so the next step follows at once.
        on_schedule = scheduled <= now < scheduled + MAX_STEPS_PER_TICK * self.step_seconds
        self.stepped_at = scheduled if on_schedule else now
        if self.side_by_side:
            self._step_side_by_side(action)
            return
        if not self.manual:
            action = self.agent.act(_batch(self.obs))[0]
        self.attempt.record(action, by_hand=self.manual)
        self.previous_pose = self.pose
        self.obs, _, terminated, truncated, info = self.session.step(action)
        self.pose = self.session.pose()
        self.applied_action = np.asarray(action, np.float32)
        if self.ghost is not None and not self.ghost_done:
            self._step_ghost()
        if terminated or truncated:
            self._finish_episode(info)

    def _step_side_by_side(self, action: np.ndarray) -> None:
        """One step of a CarRacing race: each car on its own env until its episode ends; when both
        have, the race is compared, kept, and stays on screen until R."""
        if not self.tally.done:
            self.attempt.record(action, by_hand=True)
            self.obs, _, terminated, truncated, info = self.session.step(action)
            self.applied_action = np.asarray(action, np.float32)
            self.tally.after_step(self.session, terminated, truncated, info)
            if self.tally.done:
                self._keep(self.tally.ended)
        if not self.ghost_tally.done:
            self.ghost_action = np.asarray(self.ghost_agent.act(_batch(self.ghost_obs))[0], np.float32)
            self.ghost_obs, _, terminated, truncated, info = self.ghost.step(self.ghost_action)
            self.ghost_tally.after_step(self.ghost, terminated, truncated, info)
        if self.tally.done and self.ghost_tally.done:
            self._finish_race()

    def _finish_race(self) -> None:
        you, ai = self.tally.state(self.session), self.ghost_tally.state(self.ghost)
        self.race_result = compare(you, ai)
        self.episodes += 1
        if self.leaderboard is None:
            return
        track, env = self.config.track, self.env
        # The AI first, so your rank is counted with this race's AI on the board.
        self.race_result["ai_rank"] = self.leaderboard.add_race(env, track, f"AI: {self.label}", "ai", ai)
        # Only an attempt saved as a person's run (it moved, and you drove it) ranks as a human's.
        if self.last_episode and self.last_episode.get("saved"):
            self.race_result["you_rank"] = self.leaderboard.add_race(env, track, "you", "human", you)
        self.last_lap = self.race_result.get("you_rank") or self.race_result["ai_rank"]

    def _step_ghost(self) -> None:
        self.ghost_previous = self.ghost_pose
        self.ghost_obs, _, terminated, truncated, info = self.ghost.step(
            self.ghost_agent.act(_batch(self.ghost_obs))[0]
        )
        self.ghost_pose = self.ghost.pose()
        if terminated or truncated:
            self.ghost_done = True
            if bool(info.get("lap_complete")):
                self._record_lap(f"AI: {self.label}", "ai", self.ghost.steps)

    def _keep(self, ended: str) -> dict[str, Any]:
        """Summarise the attempt; a person's attempt is saved as `play --manual` saves it."""
        config = PlayConfig(
            env=self.env, track=self.config.track, seed=self.config.seed, run_dir=self.human_dir
        )
        summary = _summarise(config, self.session, self.attempt, ended)
        self.last_episode = summary
        return summary

    def _finish_episode(self, info: dict) -> None:
        ended = how_it_ended(info)
        summary = self._keep(ended)
        # The leaderboard is the race's: a lap from the plain Drive tab, yours or an AI's, is not on it.
        if summary["lap_complete"] and self.config.race and summary["manual_steps"] == summary["steps"]:
            self._record_lap("you", "human", self.session.steps)
        self.episodes += 1
        self._reset()

    def _record_lap(self, driver: str, kind: str, steps: int) -> None:
        if self.leaderboard is not None:
            self.last_lap = self.leaderboard.add(self.config.track, driver, kind, steps * self.step_seconds)

    # --- frames -------------------------------------------------------------------------------------

    def alpha(self, now: float) -> float:
        return min(max((now - self.stepped_at) / self.step_seconds, 0.0), 1.0)

    def keys_help(self) -> tuple[str, ...]:
        hints = ["arrows/WASD  drive"] if self.manual else []
        if self.agent is not None and not self.config.race:
            hints.append(f"T  {self.agent.name} drives" if self.manual else "T  take the wheel")
        return (*hints, "R  restart")

    def render(self, now: float | None = None) -> tuple[bytes, dict[str, Any]]:
        """The frame for time ``now`` as JPEG bytes, and what the page shows beside it (in a
        side-by-side race, your pane: see `render_panes`)."""
        frames, meta = self.render_panes(now)
        return frames[0], meta

    def render_panes(self, now: float | None = None) -> tuple[list[bytes], dict[str, Any]]:
        """Each pane's frame for time ``now`` as JPEG bytes (yours, then in a CarRacing race the
        agent's), and what the page shows beside them; ``meta["panes"]`` counts the frames."""
        now = time.monotonic() if now is None else now
        hud = self.session.hud(self.mode)
        outline = None
        if self.side_by_side:
            you_banner, ai_banner = self._race_banner(self.tally), self._race_banner(self.ghost_tally)
            frames = [
                self._cached("you", (self.session.steps, you_banner), lambda: encode_jpeg(
                    self.session.surface(hud, None, self.keys_help(), you_banner)
                )),
                self._cached("ai", (self.ghost.steps, ai_banner), lambda: encode_jpeg(
                    self.ghost.surface(self.ghost.hud(f"AI: {self.label}"), None, (), ai_banner)
                )),
            ]  # fmt: skip
        elif self.env is not EnvName.RLCAR:  # no poses to interpolate: a frame changes with a step
            key = (self.session.steps, self.mode, self.keys_help())
            banner = self.session.lap_banner()
            frames = [self._cached("you", key, lambda: encode_jpeg(
                self.session.surface(hud, None, self.keys_help(), banner)
            ))]  # fmt: skip
        else:
            alpha = self.alpha(now)
            pose = interpolate_pose(self.previous_pose, self.pose, alpha) if self.previous_pose else None
            if self.ghost is not None:
                hud["ghost"] = f"{100 * float(self.ghost.info.get('progress', 0.0)):.1f} %"
            frame = self.session.surface(hud, pose, self.keys_help(), self.session.lap_banner())
            if self.ghost is not None:
                ghost = self.ghost_pose
                if self.ghost_previous is not None and not self.ghost_done:
                    ghost = interpolate_pose(self.ghost_previous, self.ghost_pose, alpha)
                outline = car_outline(self.session.renderer, ghost)
            frames = [encode_jpeg(frame, outline)]
        meta = {
            "env": self.env.value,
            "step": self.session.steps,
            "episode": self.episodes,
            "manual": self.manual,
            "driver": self.mode,
            "speed_kmh": 3.6 * float(self.session.speed or 0.0),
            "progress": float(self.session.info.get("progress", 0.0)),
            "return": self.session.episode_return,
            "action": [float(v) for v in self.applied_action],
            "track": self.config.track,
            "race": self.ghost is not None,
            "last_episode": self.last_episode,
            "last_lap": self.last_lap,
            "panes": len(frames),
        }
        if self.side_by_side:
            # Each car's last action beside its score: the AI's decisions next to yours.
            meta["cars"] = {
                "you": {**self.tally.state(self.session), "action": self.applied_action.tolist()},
                "ai": {
                    **self.ghost_tally.state(self.ghost),
                    "action": self.ghost_action.tolist(),
                    "driver": f"AI: {self.label}",
                },
            }
            meta["result"] = self.race_result
        return frames, meta

    def _cached(self, pane: str, key: tuple, draw) -> bytes:
        """``draw()``'s JPEG, drawn again only when ``key`` (the step, what is written on it) or the
        attempt changed: a CarRacing frame changes with a step only, and a finished race not at all
        while it waits for R, so the same frame is sent again instead of drawn again (~20-30 ms)."""
        key = (self._attempts, *key)
        cached = self._frames.get(pane)
        if cached is None or cached[0] != key:
            cached = self._frames[pane] = (key, draw())
        return cached[1]

    def _race_banner(self, tally: CarTally) -> str | None:
        if self.race_result is not None:
            return "FINISHED  R: race again"
        return {"lap": "LAP", "crash": "OUT OF BOUNDS", "time": "TIME"}.get(tally.ended or "")

    def close(self) -> None:
        self.session.close()
        if self.ghost is not None:
            self.ghost.close()


def car_outline(renderer, pose: CarPose) -> list[list[float]]:
    """The ghost car's corners on screen (the track view is the frame's left part)."""
    from rlcar_core.render.topdown import CAR_LENGTH, CAR_WIDTH

    position, heading = np.asarray(pose.position, np.float64), float(pose.heading)
    forward = np.array([np.cos(heading), np.sin(heading)])
    left = np.array([-np.sin(heading), np.cos(heading)])
    corners = [
        position + sx * CAR_LENGTH / 2 * forward + sy * CAR_WIDTH / 2 * left
        for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))
    ]
    return renderer.to_screen(np.array(corners)).tolist()


def _batch(obs):
    return {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
