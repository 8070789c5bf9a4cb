"""`rlcar collect`: record episodes of an exploration policy into `<run>/data/`, batched through the
vector env. Each finished episode is written at once (atomically), so a killed collector loses only
the episodes still in progress, and a second collect adds to the dataset instead of replacing it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.envs import make_env
from rlcar_core.envs.factory import check_env_request
from rlcar_core.errors import RlcarError, require_at_least
from rlcar_core.io.data import MANIFEST_FILE, load_manifest, write_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.policies import COLLECT_POLICIES, make_exploration_policy

ProgressCallback = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    run_dir: Path
    env: str = "rlcar"
    episodes: int = 100
    policy: str = "brownian"
    max_steps: int = 1000
    num_envs: int = 16
    num_tracks: int | None = None  # RLCar: how many training tracks to drive on (default: all)
    seed: int = 0
    checkpoint: str = "best"  # --policy checkpoint: which controller checkpoint of the run drives

    def validate(self) -> None:
        check_env_request(self.env, "pixels")
        if self.policy not in COLLECT_POLICIES:
            raise RlcarError(f"unknown policy {self.policy!r}; choose one of {', '.join(COLLECT_POLICIES)}")
        for option, value in (
            ("--episodes", self.episodes),
            ("--max-steps", self.max_steps),
            ("--num-envs", self.num_envs),
            ("--num-tracks", self.num_tracks),
        ):
            require_at_least(option, value, 1)
        if self.num_tracks is not None and self.env != "rlcar":
            raise RlcarError(
                "--num-tracks applies to RLCar only; CarRacing-v3 makes a new track every episode"
            )


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


def collect(config: CollectConfig, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Record `config.episodes` more episodes; returns a summary of what was written."""
    config.validate()
    run = RunDir(config.run_dir)
    existing = _existing_episodes(run, config.env)
    # Seeded by how much data exists, so collecting again with the same --seed adds new episodes
    # instead of duplicating the first ones.
    env_seed, policy_seed = (
        int(s) for s in np.random.SeedSequence([config.seed, existing]).generate_state(2)
    )
    policy = make_exploration_policy(config.policy, config.env, policy_seed, run.path, config.checkpoint)
    num_envs = min(config.num_envs, config.episodes)
    if config.env == "rlcar":
        obs_kind = "both" if policy.obs_kind == "sensors" else "pixels"
        env = make_env(
            "rlcar", obs=obs_kind, num_envs=num_envs, num_tracks=config.num_tracks, max_steps=config.max_steps
        )
    else:
        env = make_env("carracing", obs="pixels", num_envs=num_envs, max_steps=config.max_steps)
    run.create()
    run.update_config(
        {"env": config.env, "collect": {**dataclasses.asdict(config), "run_dir": str(config.run_dir)}}
    )

    written: list[dict[str, Any]] = []
    frames = 0
    started = time.perf_counter()
    try:
        obs, _ = env.reset(seed=env_seed % (2**31))
        policy.reset(num_envs)
        recorder = _EpisodeRecorder(_pixels(obs))
        while len(written) < config.episodes:
            action = np.asarray(policy.act(obs), np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            frames += num_envs
            finished, restarted = recorder.record(
                action, _pixels(obs), reward, terminated, truncated, info["progress"]
            )
            policy.reset_where(restarted)
            finished = finished[: config.episodes - len(written)]
            if finished:
                names = write_episodes(run.data_dir, [e.arrays() for e in finished], env_name=config.env)
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
                    on_progress(
                        {
                            "episodes": len(written),
                            "total_episodes": config.episodes,
                            "frames": frames,
                            "frames_per_second": frames / max(time.perf_counter() - started, 1e-9),
                        }
                    )
    finally:
        env.close()
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
