"""train-dreamer --prior-data: a collect dataset's episodes start a fresh run's replay, and data that
cannot be the run's (another env, frame, camera or action repeat) is one line and exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import single_error_line
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.dreamer.prior_data import add_prior_episodes, dataset_folder, load_prior_episodes
from rlcar_core.dreamer.replay import ReplayBuffer
from rlcar_core.errors import RlcarError
from rlcar_core.sim.camera_spec import CameraSpec, parse_camera

runner = CliRunner()
SMALL = "zoom:size=16,rows_ahead=12"
EPISODE_STEPS = 12


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def heuristic_laps(tmp_path_factory):
    """Two short episodes of the heuristic driver, filmed with a 16-pixel camera."""
    run_dir = tmp_path_factory.mktemp("prior") / "laps"
    result = invoke(
        "collect", "--run-dir", run_dir, "--policy", "heuristic", "--episodes", 2, "--max-steps", EPISODE_STEPS,
        "--num-envs", 2, "--num-tracks", 1, "--camera", SMALL, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run_dir


def load(path, **changes):
    settings = dict(env_name="rlcar", obs_shape=(16, 16, 3), camera=parse_camera(SMALL), action_repeat=1)
    return load_prior_episodes(path, **{**settings, **changes})


def test_the_episodes_come_aligned_as_the_replay_stores_them_and_fill_its_streams_in_turn(heuristic_laps):
    assert (
        dataset_folder(heuristic_laps) == dataset_folder(heuristic_laps / "data") == heuristic_laps / "data"
    )
    episodes = load(heuristic_laps)
    assert len(episodes) == 2
    for episode in episodes:
        length = len(episode["obs"])
        assert episode["obs"].shape == (length, 16, 16, 3) and episode["obs"].dtype == np.uint8
        assert episode["is_first"][0] and not episode["is_first"][1:].any()
        assert np.all(np.abs(episode["action"]) <= 1.0)  # actor space: pedals in [-1, 1]
        assert not episode["action"][0].any()  # no action led to the first frame
    spec = {name: (value.shape[1:], value.dtype) for name, value in episodes[0].items()}
    replay = ReplayBuffer(1000, spec, num_streams=2)
    added = add_prior_episodes(replay, episodes)
    assert added == len(replay) == sum(len(episode["obs"]) for episode in episodes)
    assert (replay.windows_per_stream(4) > 0).all()  # one episode in each stream


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"env_name": "carracing"}, "holds rlcar episodes, but this run trains on carracing"),
        (
            {"obs_shape": (64, 64, 3)},
            "holds observations of shape (16, 16, 3), but the model reads (64, 64, 3)",
        ),
        ({"camera": CameraSpec()}, "was collected with another camera than this run's"),
        ({"action_repeat": 2}, "was collected with action repeat 1, but this run uses 2"),
    ],
)
def test_data_that_cannot_be_the_runs_is_refused_by_name(heuristic_laps, changes, words):
    with pytest.raises(RlcarError) as refused:
        load(heuristic_laps, **changes)
    assert words in str(refused.value)


def test_train_dreamer_starts_its_replay_with_the_prior_data_and_counts_none_of_it_as_env_steps(
    heuristic_laps, tmp_path
):
    run_dir = tmp_path / "run"
    options = ["--obs", "pixels", "--camera", SMALL, "--num-envs", 1, "--num-tracks", 1, "--size", "tiny"]
    # The budget ends inside the prefill: no update is compiled, only the replay is filled and saved.
    budget = ["--env-steps", 4, "--prefill-steps", 100, "--eval-episodes", 1, "--max-steps", 4]
    result = invoke(
        "train-dreamer", "--run-dir", run_dir, *options, *budget, "--prior-data", heuristic_laps, "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["prior_steps"] == 2 * (EPISODE_STEPS + 1)
    assert summary["env_steps"] == 4
    assert summary["replay_steps"] == summary["prior_steps"] + summary["env_steps"]


def test_prior_data_from_another_camera_is_one_line_and_exit_2(heuristic_laps, tmp_path):
    result = invoke(
        "train-dreamer", "--run-dir", tmp_path / "run", "--obs", "pixels", "--camera", "zoom:size=16,rows_ahead=10",
        "--num-envs", 1, "--num-tracks", 1, "--env-steps", 4, "--prior-data", heuristic_laps,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "was collected with another camera than this run's" in single_error_line(result.stderr)
    assert not (tmp_path / "run").exists()


def test_a_missing_prior_dataset_is_one_line_and_exit_2(tmp_path):
    result = invoke(
        "train-dreamer", "--run-dir", tmp_path / "run", "--num-envs", 1, "--num-tracks", 1, "--env-steps", 4,
        "--prior-data", tmp_path / "nothing",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "no dataset at" in single_error_line(result.stderr)
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_needs_its_prior_data_no_more(heuristic_laps, tmp_path):
    """Its replay file holds the prior episodes already, so the dataset may be gone."""
    import shutil

    laps = tmp_path / "laps"
    shutil.copytree(heuristic_laps, laps)
    run_dir = tmp_path / "run"
    options = ["--obs", "pixels", "--camera", SMALL, "--num-envs", 1, "--num-tracks", 1, "--max-steps", 4]
    budget = ["--prefill-steps", 100, "--eval-episodes", 1, "--prior-data", laps, "--json"]
    first = invoke("train-dreamer", "--run-dir", run_dir, *options, "--env-steps", 4, *budget)
    assert first.exit_code == 0, first.output
    shutil.rmtree(laps)
    resumed = invoke("train-dreamer", "--run-dir", run_dir, *options, "--env-steps", 8, *budget)
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["prior_steps"] == 0  # none added again
    assert summary["replay_steps"] == 2 * (EPISODE_STEPS + 1) + 8
