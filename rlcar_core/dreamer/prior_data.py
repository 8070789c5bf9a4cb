"""Prior data: the episodes of a `rlcar collect` dataset, put into a fresh DreamerV3 run's replay
(`train-dreamer --prior-data DIR`).

Why: a new RLCar pixel agent ends nearly every episode on the first obstacle it meets, so its replay
shows obstacles only in the few frames before each crash, and its world model learns to draw none of
them (0.4 % of obstacle pixels at 45k env steps, `bench/pixel_probe.py --dreamer`), while the same
model trained on the heuristic's laps draws 78 %. Laps of the heuristic driver pass every obstacle of a
track. As in RL with prior data, these episodes only feed the world model (and the starts of
imagination): the actor still learns from imagined returns under its own actions, and the steps count
as none of the run's env steps, so a curve against env steps stays honest about what the agent drove.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rlcar_core.dreamer.policy import from_env_action
from rlcar_core.dreamer.replay import ReplayBuffer, align_episode
from rlcar_core.envs.tracks import run_camera
from rlcar_core.errors import RlcarError
from rlcar_core.io.data.episodes import MANIFEST_FILE, load_episode, load_manifest
from rlcar_core.io.runs import RunDir
from rlcar_core.sim.camera_spec import CameraSpec


def dataset_folder(path: str | os.PathLike) -> Path:
    """A dataset folder (it holds the manifest) or a `rlcar collect` run whose data/ holds it."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file():
        return path
    return RunDir(path).data_dir


def check_prior_data(
    path: str | os.PathLike,
    *,
    env_name: str,
    obs_shape: tuple[int, ...],
    camera: CameraSpec | None,
    action_repeat: int,
) -> dict:
    """The dataset's manifest, once its settings say it can be this run's data. RlcarError (reading
    no episode) when it cannot: another env, frame shape, camera (the world the frames show) or
    action repeat (what one step means)."""
    folder = dataset_folder(path)
    manifest = load_manifest(folder)  # DatasetError (an RlcarError) names a missing or empty dataset
    where = f"--prior-data {path}"
    if manifest["env_name"] != env_name:
        raise RlcarError(f"{where} holds {manifest['env_name']} episodes, but this run trains on {env_name}")
    if tuple(manifest["obs_shape"] or ()) != tuple(obs_shape):
        raise RlcarError(
            f"{where} holds observations of shape {tuple(manifest['obs_shape'] or ())}, "
            f"but the model reads {tuple(obs_shape)}"
        )
    collected = _collect_settings(folder)
    if run_camera(env_name, collected["run"]) != camera:
        raise RlcarError(
            f"{where} was collected with another camera than this run's: collect it again with this "
            "run's --camera"
        )
    repeat = int(collected["collect"].get("action_repeat") or 1)
    if repeat != action_repeat:
        raise RlcarError(
            f"{where} was collected with action repeat {repeat}, but this run uses {action_repeat}"
        )
    return manifest


def load_prior_episodes(path: str | os.PathLike, **settings) -> list[dict[str, np.ndarray]]:
    """The dataset's episodes as the replay stores them (`align_episode`, actions in actor space),
    after `check_prior_data(path, **settings)`."""
    manifest = check_prior_data(path, **settings)
    folder = dataset_folder(path)
    return [replay_steps(load_episode(folder / entry["file"])) for entry in manifest["episodes"]]


def replay_steps(episode: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One collected episode (env order, env actions) as the replay stores it: `align_episode` with
    the actions in actor space."""
    return align_episode(
        episode["obs"], from_env_action(episode["action"]), episode["reward"], episode["terminated"]
    )


def _collect_settings(folder: Path) -> dict:
    """The collect run's config.json (its camera) and its collect section ({} when it has none)."""
    run = RunDir(folder.parent)
    config = run.read_config() if run.has_config() else {}
    return {"run": config, "collect": config.get("collect") or {}}


def add_prior_episodes(replay: ReplayBuffer, episodes: list[dict[str, np.ndarray]]) -> int:
    """The episodes into the replay's streams in turn (each episode whole in one stream); the steps
    added. Each episode starts with is_first, so no replayed window runs from one into the next."""
    added = 0
    for index, episode in enumerate(episodes):
        replay.add_episode(episode, stream=index % replay.num_streams)
        added += len(episode["is_first"])
    return added
