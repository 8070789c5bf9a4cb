"""How a trained DreamerV3 actor acts outside training (`--actions`): it samples by default, as DreamerV3's
own evaluation does, repeatably under a seed; `mode` takes its most likely action, `mean` the action its
samples give on average (E[clip(sample)], issue 28). The choice reaches
eval, play, export-video, dream and the trainer's own evaluations, and is refused where nobody has it."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_DREAMER_RUN, single_error_line
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.dreamer.checkpoints import load_saved_agent
from rlcar_core.dreamer.config import ACTION_CHOICES, DEFAULT_ACTIONS
from rlcar_core.dreamer.policy import DreamerPolicy
from rlcar_core.dreamer.train_config import TrainDreamerConfig
from rlcar_core.errors import RlcarError

runner = CliRunner()


def driven_actions(policy: DreamerPolicy, observations: np.ndarray) -> np.ndarray:
    policy.reset(observations.shape[1])
    return np.stack([policy.act(obs) for obs in observations])


@pytest.fixture(scope="module")
def saved_agent(tiny_dreamer_run):
    return load_saved_agent(tiny_dreamer_run[0], "latest")


@pytest.fixture(scope="module")
def observations(saved_agent):
    shape = (6, 3, *saved_agent.config.obs_shape)  # 6 steps of 3 cars
    return np.random.default_rng(0).uniform(0.0, 1.0, shape).astype(np.float32)


def test_sampled_actions_repeat_under_a_seed_and_differ_across_seeds(saved_agent, observations):
    policy = DreamerPolicy(saved_agent.config, saved_agent.params, seed=3)
    assert policy.actions == DEFAULT_ACTIONS == "sample"
    first = driven_actions(policy, observations)
    np.testing.assert_array_equal(first, driven_actions(policy, observations))  # reset restarts the keys
    other_seed = DreamerPolicy(saved_agent.config, saved_agent.params, seed=4)
    assert not np.array_equal(first, driven_actions(other_seed, observations))
    assert not np.array_equal(first[:, 0], first[:, 1])  # each car draws its own sample


def test_the_mode_repeats_and_is_not_a_sample(saved_agent, observations):
    # The latent state is still a posterior sample under the seed; only the action is the actor's mode.
    modes = [
        driven_actions(DreamerPolicy(saved_agent.config, saved_agent.params, 0, "mode"), observations)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(modes[0], modes[1])
    sampled = driven_actions(DreamerPolicy(saved_agent.config, saved_agent.params, 0), observations)
    assert not np.array_equal(modes[0], sampled)
    for actions in (modes[0], sampled):
        assert actions.dtype == np.float32 and actions.shape == (6, 3, 3)
        assert np.all(actions[..., 1:] >= 0.0) and np.all(np.abs(actions) <= 1.0)


def test_the_mean_repeats_and_lies_between_the_bounds_the_mode_can_saturate(saved_agent, observations):
    # "mean" is E[clip(sample)]: deterministic like the mode (given the latent state), never a sample.
    means = [
        driven_actions(DreamerPolicy(saved_agent.config, saved_agent.params, 0, "mean"), observations)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(means[0], means[1])
    modes = driven_actions(DreamerPolicy(saved_agent.config, saved_agent.params, 0, "mode"), observations)
    assert not np.array_equal(means[0], modes)
    assert means[0].dtype == np.float32 and means[0].shape == (6, 3, 3)
    assert np.all(means[0][..., 1:] > 0.0) and np.all(np.abs(means[0]) < 1.0)  # pedals never 0 or 1


def test_an_unknown_choice_is_refused(saved_agent):
    with pytest.raises(RlcarError, match="--actions must be one of sample, mode"):
        DreamerPolicy(saved_agent.config, saved_agent.params, 0, "greedy")


def eval_json(run_dir, *extra) -> dict:
    args = ["eval", "--run-dir", run_dir, "--episodes", "2", "--max-steps", "15", "--json", *extra]
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_samples_by_default_repeatably_and_reports_the_choice(tiny_dreamer_run):
    run_dir = tiny_dreamer_run[0]
    sampled = eval_json(run_dir)
    assert sampled["actions"] == "sample"
    assert eval_json(run_dir)["per_episode"] == sampled["per_episode"]
    assert eval_json(run_dir, "--actions", "mode")["actions"] == "mode"
    assert eval_json(run_dir, "--actions", "mean")["actions"] == "mean"


def test_other_agents_keep_their_own_way_in_a_comparison(tiny_dreamer_run):
    document = eval_json(
        tiny_dreamer_run[0], "--agent", "dreamer", "--agent", "heuristic", "--actions", "mode"
    )
    assert [(row["agent"], row["actions"]) for row in document["agents"]] == [
        ("dreamer", "mode"),
        ("heuristic", None),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--agent", "heuristic"],
        ["export-video", "--agent", "random", "-o", "video.gif"],
        ["play", "--headless", "--agent", "heuristic"],
        ["play", "--headless", "--env", "carracing"],  # nobody drives there
    ],
    ids=["eval", "export-video", "play", "play-nobody"],
)
def test_actions_for_an_agent_without_the_choice_is_one_line_and_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--actions", "mode"])
    assert result.exit_code == 2, result.output
    assert "--actions chooses how a DreamerV3 actor acts" in single_error_line(result.stderr)
    assert not (tmp_path / "video.gif").exists()


def test_an_unknown_choice_on_the_command_line_is_one_line_and_exit_2(tiny_dreamer_run):
    code = "from rlcar_cli.main import main; main()"
    args = ["eval", "--run-dir", str(tiny_dreamer_run[0]), "--actions", "greedy"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "SDL_VIDEODRIVER": "dummy"},
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "'greedy' is not one of 'sample', 'mode'" in single_error_line(result.stderr)


def test_export_video_and_dream_report_how_the_actor_acted(tiny_dreamer_run, tmp_path):
    run_dir = str(tiny_dreamer_run[0])
    video = runner.invoke(
        app,
        [
            "export-video",
            "--run-dir",
            run_dir,
            "--max-steps",
            "5",
            "-o",
            str(tmp_path / "v.gif"),
            "--actions",
            "mode",
            "--json",
        ],
    )
    assert video.exit_code == 0, video.output
    assert json.loads(video.stdout)["actions"] == "mode"
    dreams = {}
    for choice in ACTION_CHOICES:
        dream = runner.invoke(
            app,
            ["dream", "--run-dir", run_dir, "--headless", "--max-steps", "12", "--actions", choice, "--json"],
        )
        assert dream.exit_code == 0, dream.output
        dreams[choice] = json.loads(dream.stdout)
        assert dreams[choice]["actions"] == choice


def test_training_evaluates_with_samples_unless_told_otherwise(tiny_dreamer_run, tmp_path, monkeypatch):
    saved = json.loads((tiny_dreamer_run[0] / "config.json").read_text())
    assert saved["dreamer"]["train"]["eval_actions"] == "sample"
    older = {k: v for k, v in TrainDreamerConfig().to_dict().items() if k != "eval_actions"}
    assert TrainDreamerConfig.from_dict(older).eval_actions == "sample"  # runs saved before the option
    with pytest.raises(RlcarError, match="eval"):
        dataclasses.replace(TrainDreamerConfig(), eval_actions="greedy").validate()

    import rlcar_core.dreamer.train as train_module

    chosen = []

    def recording_policy(*args, **kwargs):
        policy = DreamerPolicy(*args, **kwargs)
        chosen.append(policy.actions)
        return policy

    monkeypatch.setattr(train_module, "DreamerPolicy", recording_policy)
    settings = {"episodes": 2, **TINY_DREAMER_RUN, "eval_actions": "mode"}
    train_module.train_dreamer(tmp_path / "run", settings)
    assert chosen and set(chosen) == {"mode"}
