"""`rlcar collect`: record episodes of an exploration policy into `<run>/data/`, batched through the
vector env. Each finished episode is written at once (atomically), so a killed collector loses only
the episodes still in progress, and a second collect adds to the dataset instead of replacing it.

The collector holds the run's writer lock (a second collector into the same run exits 2) and treats
Ctrl-C as a flag checked between steps: what finished is kept, then it stops (exit 130).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rlcar_core.envs import make_env
from rlcar_core.envs.camera_option import default_camera
from rlcar_core.envs.drivers import ExplorationPolicy
from rlcar_core.envs.names import EnvName
from rlcar_core.envs.tracks import recorded_camera
from rlcar_core.errors import RlcarError
from rlcar_core.io.data import MANIFEST_FILE, load_manifest, write_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.outcomes import TrainingInterrupted
from rlcar_core.loop.session import writer_session
from rlcar_core.sim.camera_spec import CONFIG_KEY as CAMERA_KEY
from rlcar_core.sim.camera_spec import CameraSpec, parse_camera
from rlcar_core.worldmodels.config import HEURISTIC, CollectConfig, carracing_env_options
from rlcar_core.worldmodels.storage import camera_of_run, run_dir_of

ProgressCallback = Callable[[dict[str, Any]], None]
# `make_policy(seed) -> policy`: the caller (CLI, apps) builds the driver, so this algorithm never
# imports the agents layer; collect only decides the seed.
PolicyFactory = Callable[[int], ExplorationPolicy]
# `policies(collect_config) -> seed -> policy`: the caller builds drivers (the agents layer sits above).
PolicySource = Callable[[CollectConfig], PolicyFactory]


class _Episode:
    """One car's episode as it is being recorded; obs[t + 1] follows action[t]."""

    def __init__(self, first_frame: np.ndarray):
        self.frames = [first_frame]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.progress = 0.0

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "obs": np.stack(self.frames),
            "action": np.stack(self.actions),
            "reward": np.asarray(self.rewards, np.float32),
            "terminated": np.asarray(self.terminated, bool),
            "truncated": np.asarray(self.truncated, bool),
        }


class _EpisodeRecorder:
    """Splits the vector env's stream of batched steps into per-car episodes.

    With next-step autoreset, the step after a car's episode ends ignores its action and returns the
    first frame of its next episode; that frame starts a new recording and nothing else is kept.
    """

    def __init__(self, first_frames: np.ndarray):
        self.episodes = [_Episode(frame) for frame in first_frames]
        self.restarting = np.zeros(len(first_frames), bool)

    def record(
        self, action, pixels, reward, terminated, truncated, progress
    ) -> tuple[list[_Episode], np.ndarray]:
        """Add one batched step; returns the episodes it finished and which cars it restarted."""
        finished = []
        for car, episode in enumerate(self.episodes):
            if self.restarting[car]:
                self.episodes[car] = _Episode(pixels[car])
                continue
            episode.frames.append(pixels[car])
            episode.actions.append(action[car])
            episode.rewards.append(float(reward[car]))
            episode.terminated.append(bool(terminated[car]))
            episode.truncated.append(bool(truncated[car]))
            episode.progress = float(progress[car])
            if terminated[car] or truncated[car]:
                finished.append(episode)
        restarted = self.restarting
        self.restarting = np.asarray(terminated | truncated, bool) & ~restarted
        return finished, restarted


def _existing_episodes(run: RunDir, env_name: str) -> int:
    if not (run.data_dir / MANIFEST_FILE).is_file():
        return 0
    manifest = load_manifest(run.data_dir)  # a damaged manifest fails here, before any driving
    if manifest["env_name"] != env_name:
        raise RlcarError(
            f"{run.data_dir} holds {manifest['env_name']} episodes, not {env_name}; "
            f"pass --env {manifest['env_name']} or use another --run-dir"
        )
    return len(manifest["episodes"])


def episodes_driven_by(run: RunDir, driver: str) -> int:
    """Episodes of the run's dataset that `driver` drove (collectors record their driver)."""
    if not (run.data_dir / MANIFEST_FILE).is_file():
        return 0
    return sum(entry.get("driver") == driver for entry in load_manifest(run.data_dir)["episodes"])


def top_up_heuristic_laps(
    config: CollectConfig,
    laps: int,
    policies: PolicySource,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any] | None:
    """Collect the heuristic's episodes until the dataset holds `laps` of them (None: it already does).

    RLCar's obstacles lie 50 m and more past the line, where brownian explorers never get: without
    these laps V and M never see an obstacle, and they are what `--imitate` fits C to. Counting the
    heuristic's own episodes makes a killed collection resume where it stopped."""
    missing = laps - episodes_driven_by(RunDir(run_dir_of(config)), HEURISTIC)
    if missing <= 0:
        return None
    heuristic = dataclasses.replace(config, policy=HEURISTIC, episodes=missing, action_noise=0.0)
    return collect(heuristic, policies(heuristic), on_progress)


def settle_camera(run: RunDir, config: CollectConfig, existing: int) -> CameraSpec | None:
    """The camera this collection films with; None on CarRacing-v3. A dataset is one camera's: one
    that holds episodes keeps the camera they were filmed with (today's for datasets from before
    cameras were recorded), and refuses another --camera; a new one takes --camera's, else the pixel
    runs' default (`camera_option.default_camera`)."""
    recorded = camera_of_run(run, config.env)
    if recorded is None:
        return None
    if config.camera is None:
        fresh = not existing and CAMERA_KEY not in (run.read_config() if run.has_config() else {})
        return parse_camera(default_camera(config.env, "pixels")) if fresh else recorded
    asked = parse_camera(config.camera)
    if existing and asked != recorded:
        raise RlcarError(
            f"{run.data_dir} holds {existing} episodes filmed with another camera than {config.camera!r}; "
            "drop --camera to add to them, or use another --run-dir"
        )
    return asked


class _ProgressClock:
    """Episodes done (fractional: running cars count their share of --max-steps) and an ETA from the rate
    measured after warm-up, i.e. after the first batched step, which pays for compilation."""

    def __init__(self, total: int):
        self.total = total
        self.warm: tuple[float, float] | None = None  # (time, episodes done) when warm-up ended

    def report(self, episodes_done: float, frames: int, started: float) -> dict[str, Any]:
        now = time.perf_counter()
        if self.warm is None:
            self.warm = (now, episodes_done)
        elapsed, done_since = now - self.warm[0], episodes_done - self.warm[1]
        rate = done_since / elapsed if elapsed > 0 and done_since > 0 else None
        return {
            "episodes_done": episodes_done,
            "total_episodes": self.total,
            "frames": frames,
            "frames_per_second": frames / max(now - started, 1e-9),
            "eta_seconds": None if rate is None else max(self.total - episodes_done, 0.0) / rate,
        }


def collect(
    config: CollectConfig, make_policy: PolicyFactory, on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Record `config.episodes` more episodes driven by `make_policy(seed)`; returns a summary of what
    was written. Raises TrainingInterrupted (after keeping every finished episode) on Ctrl-C."""
    config.validate()
    run = RunDir(run_dir_of(config))
    with writer_session(run, "collect") as stop:
        existing = _existing_episodes(run, config.env)
        camera = settle_camera(run, config, existing)
        # Seeded by how much data exists, so collecting again with the same --seed adds new episodes
        # instead of duplicating the first ones (the writer lock keeps two collectors from racing).
        env_seed, policy_seed = (
            int(s) for s in np.random.SeedSequence([config.seed, existing]).generate_state(2)
        )
        policy = make_policy(policy_seed)
        num_envs = min(config.num_envs, config.episodes)
        # Frames are what the dataset keeps; a driver that reads sensors gets both.
        reads_sensors = policy.obs_kind == "sensors" and EnvName.parse(config.env).has_sensors
        env = make_env(
            config.env,
            obs="both" if reads_sensors else "pixels",
            num_envs=num_envs,
            num_tracks=config.num_tracks,
            max_steps=config.max_steps,
            camera=camera,
            **carracing_env_options(config, config.env, num_envs),
        )
        run.update_config(
            {
                "env": config.env,
                "collect": {**dataclasses.asdict(config), "run_dir": str(run.path)},
                **recorded_camera(camera),
            }
        )
        if on_progress is not None:
            on_progress({"kind": "start", "run_dir": str(run.path), "existing_episodes": existing})

        written: list[dict[str, Any]] = []
        frames = 0
        started = time.perf_counter()
        clock = _ProgressClock(config.episodes)
        try:
            obs, _ = env.reset(seed=env_seed % (2**31))
            policy.reset(num_envs)
            recorder = _EpisodeRecorder(_pixels(obs))
            while len(written) < config.episodes and not stop.requested:
                action = np.asarray(policy.act(obs), np.float32)
                obs, reward, terminated, truncated, info = env.step(action)
                # Env frames, not decisions: with an action repeat the env says how many each step used.
                frames += int(np.sum(info["frames"])) if "frames" in info else num_envs
                finished, restarted = recorder.record(
                    action, _pixels(obs), reward, terminated, truncated, info["progress"]
                )
                policy.reset_where(restarted)
                finished = finished[: config.episodes - len(written)]
                if finished:
                    names = write_episodes(
                        run.data_dir,
                        [e.arrays() for e in finished],
                        env_name=config.env,
                        driver=config.policy,
                    )
                    for name, episode in zip(names, finished, strict=True):
                        written.append(
                            {
                                "file": name,
                                "steps": len(episode.actions),
                                "return": float(np.sum(episode.rewards)),
                                "progress": episode.progress,
                            }
                        )
                if on_progress is not None:
                    running = sum(len(episode.actions) for episode in recorder.episodes) / config.max_steps
                    done = (
                        min(len(written) + running, config.episodes - 0.01)
                        if len(written) < config.episodes
                        else config.episodes
                    )
                    on_progress(
                        {"kind": "progress", "episodes": len(written), **clock.report(done, frames, started)}
                    )
        finally:
            env.close()
        if stop.requested and len(written) < config.episodes:
            raise TrainingInterrupted(
                f"interrupted after {len(written)} of {config.episodes} episodes; they are saved in {run.data_dir} "
                f"(the dataset holds {existing + len(written)}); the episodes in progress were dropped"
            )
    elapsed = time.perf_counter() - started
    steps = np.array([episode["steps"] for episode in written])
    return {
        "run_dir": str(run.path),
        "data_dir": str(run.data_dir),
        "env": config.env,
        "policy": config.policy,
        "episodes": len(written),
        "dataset_episodes": existing + len(written),
        "steps": int(steps.sum()),
        "steps_mean": float(steps.mean()),
        "return_mean": float(np.mean([episode["return"] for episode in written])),
        "progress_mean": float(np.mean([episode["progress"] for episode in written])),
        "frames_per_second": frames / max(elapsed, 1e-9),
        "wall_seconds": elapsed,
    }


def _pixels(obs) -> np.ndarray:
    return np.asarray(obs["pixels"] if isinstance(obs, dict) else obs)
