"""Held-out rollouts of any policy: what `rlcar eval` reports and what trainers measure themselves by.

Below the algorithms and the apps alike, so a trainer evaluates its own checkpoints without importing
the `eval` command, and `eval` reports the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from rlcar_core.envs.drivers import Policy
from rlcar_core.envs.factory import make_env
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import require_at_least
from rlcar_core.sim.track import EVAL_SEED_OFFSET, evaluation_seeds

MAX_EVAL_TRACKS = 100  # more episodes than this cycle through the same held-out tracks


def track_seed_for(env_name: str, track: int) -> int:
    """Held-out track number ``track`` (RLCar track seed, or CarRacing-v3 reset seed)."""
    del env_name  # both envs number held-out tracks from the same offset
    require_at_least("--track", track, 0)
    return EVAL_SEED_OFFSET + track


def one_track_env(
    name: str, obs: str, track_seed: int, max_steps: int, render_mode: str | None = None, camera: Any = None
):
    """One car that always drives track `track_seed` (reset it with `reset_on_track`): RLCar's bank
    holds only that track, filmed by `camera` (a CameraSpec; None: today's); CarRacing-v3 draws it
    from the reset seed."""
    if EnvName.parse(name).has_track_bank:
        return make_env(
            name,
            obs=obs,
            track_seeds=[track_seed],
            max_steps=max_steps,
            render_mode=render_mode,
            camera=camera,
        )
    return make_env(name, obs=obs, max_steps=max_steps, render_mode=render_mode)


def reset_on_track(env, name: str, track_seed: int, seed: int):
    """`env.reset` of a `one_track_env`: `(obs, info)` at the start of its track."""
    if EnvName.parse(name).has_track_bank:
        return env.reset(seed=seed, options={"track_id": 0})
    return env.reset(seed=track_seed)


@dataclasses.dataclass
class EpisodeRecord:
    track: int  # RLCar track seed, or CarRacing-v3 reset seed
    episode_return: float
    progress: float
    lap_complete: bool
    crashed: bool
    steps: int

    def lap_time(self, env: str) -> float | None:
        return self.steps * EnvName.parse(env).step_seconds if self.lap_complete else None


def summarise(records: list[EpisodeRecord], env: str) -> dict:
    returns = np.array([r.episode_return for r in records])
    progress = np.array([r.progress for r in records])
    lap_times = [t for t in (r.lap_time(env) for r in records) if t is not None]
    return {
        "episodes": len(records),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "progress_mean": float(progress.mean()),
        "progress_std": float(progress.std()),
        "lap_rate": float(np.mean([r.lap_complete for r in records])),
        "crash_rate": float(np.mean([r.crashed for r in records])),
        "lap_time_mean": float(np.mean(lap_times)) if lap_times else None,
        "steps_mean": float(np.mean([r.steps for r in records])),
    }


def run_episodes(
    name: str,
    agent: Policy,
    tracks: list[int],
    seed: int,
    max_steps: int,
    num_envs: int,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    """One episode per entry of ``tracks`` (RLCar track seeds or CarRacing reset seeds), in waves of
    ``num_envs`` cars; each car's first episode of a wave is kept."""
    num_envs = min(num_envs, len(tracks))
    banked = EnvName.parse(name).has_track_bank
    unique = sorted(set(tracks))
    if banked:
        # An agent trained on another camera than today's says so (`camera`, from its run's config).
        env = make_env(
            name,
            obs=agent.obs_kind,
            num_envs=num_envs,
            track_seeds=unique,
            max_steps=max_steps,
            camera=getattr(agent, "camera", None),
        )
    else:
        # CarRacing-v3's Box2D cars are single-threaded Python: one worker process each.
        env = make_env(name, obs="pixels", num_envs=num_envs, max_steps=max_steps, processes=num_envs > 1)
    records: list[EpisodeRecord] = []
    try:
        for wave, first in enumerate(range(0, len(tracks), num_envs)):
            wave_tracks = tracks[first : first + num_envs]
            wave_tracks = wave_tracks + [wave_tracks[-1]] * (num_envs - len(wave_tracks))  # pad the last wave
            if banked:
                obs, _ = env.reset(
                    seed=seed + wave, options={"track_id": [unique.index(t) for t in wave_tracks]}
                )
            else:
                obs, _ = env.reset(seed=wave_tracks)
            agent.reset(num_envs)
            returns = np.zeros(num_envs)
            steps = np.zeros(num_envs, int)
            running = np.ones(num_envs, bool)
            progress = np.zeros(num_envs)
            lap = np.zeros(num_envs, bool)
            crashed = np.zeros(num_envs, bool)
            while running.any():
                obs, reward, terminated, truncated, info = env.step(agent.act(obs))
                returns += np.where(running, reward, 0.0)
                steps += running
                progress = np.where(running, info["progress"], progress)
                lap |= running & info["lap_complete"].astype(bool)
                crashed |= running & info["crashed"].astype(bool)
                finished = running & (terminated | truncated)
                for i in np.flatnonzero(finished):
                    if i < len(tracks) - first:  # padded cars of the last wave are not recorded
                        record = EpisodeRecord(
                            wave_tracks[i],
                            float(returns[i]),
                            float(progress[i]),
                            bool(lap[i]),
                            bool(crashed[i]),
                            int(steps[i]),
                        )
                        records.append(record)
                        if on_episode is not None:
                            on_episode(record)
                running &= ~finished
    finally:
        env.close()
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(records, key=lambda r: (tracks.index(r.track), order[id(r)]))


def evaluation_tracks(name: str, episodes: int, first_track: int = 0) -> list[int]:
    """Held-out tracks `first_track`, `first_track + 1`, ... for `episodes` episodes (more than
    MAX_EVAL_TRACKS cycle). A later `first_track` scores an agent on held-out tracks its earlier
    evaluations (the ones that picked its best checkpoint) never drove."""
    require_at_least("--first-track", first_track, 0)
    count = min(episodes, MAX_EVAL_TRACKS)
    banked = EnvName.parse(name).has_track_bank
    if banked:
        seeds = evaluation_seeds(count, start=first_track)
    else:
        seeds = [EVAL_SEED_OFFSET + first_track + i for i in range(count)]
    return [seeds[i % count] for i in range(episodes)]


def evaluate_policy(
    env_name: str,
    policy: Policy,
    episodes: int,
    seed: int,
    max_steps: int,
    num_envs: int,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
    first_track: int = 0,
) -> dict[str, Any]:
    """`episodes` held-out episodes of `policy`: the summary `rlcar eval` prints, plus each episode."""
    tracks = evaluation_tracks(env_name, episodes, first_track)
    records = run_episodes(env_name, policy, tracks, seed, max_steps, num_envs, on_episode)
    return {**summarise(records, env_name), "per_episode": [dataclasses.asdict(r) for r in records]}
