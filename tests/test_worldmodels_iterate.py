"""The iterative procedure (worldmodels.iterate) with tiny models: round 0 (heuristic laps, then the
explorers, then C fitted to the laps before its search) and one iteration end to end, M and C moving on
to the refitted V and M, and reruns that skip or top up what is already done.

One module-scoped pipeline is shared; the controller has a hidden layer, so the agent that collects
round 1 drives with one too. Four cars and four tracks everywhere, so each program compiles once.
"""

import json
import shutil

import numpy as np
import pytest

from rlcar_core.agents.exploration import exploration_factory
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.config import (
    CollectConfig,
    TrainControllerConfig,
    TrainRNNConfig,
    TrainVAEConfig,
)
from rlcar_core.worldmodels.iterate import PIPELINE_FILE, STAGES, PipelineConfig, run_iterations
from rlcar_core.worldmodels.storage import load_world_model, run_dir_of

pytestmark = pytest.mark.slow  # every stage compiles its models


def pipeline_config(run, iterations=1):
    return PipelineConfig(
        collect=CollectConfig(run_dir=run, episodes=4, num_envs=4, max_steps=24, num_tracks=4),
        vae=TrainVAEConfig(run_dir=run, steps=2, batch_size=16, z_dim=4, base_channels=4, eval_every=2,
                           validation_frames=16),
        rnn=TrainRNNConfig(run_dir=run, steps=2, batch_size=4, sequence_length=8, hidden_size=16,
                           num_mixtures=2, eval_every=2),
        controller=TrainControllerConfig(run_dir=run, generations=1, popsize=4, rollouts=2, dream_horizon=6,
                                         max_steps=16, eval_every=1, eval_episodes=4, num_tracks=4,
                                         controller_hidden=3, imitate=True),
        iterations=iterations,
        heuristic_laps=2,
        iteration_episodes=4,
        action_noise=0.2,
    )  # fmt: skip


def policies(config):
    return exploration_factory(
        config.policy, config.env, run_dir_of(config), config.checkpoint, config.action_noise
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    run = tmp_path_factory.mktemp("iterate") / "run"
    events = []
    result = run_iterations(pipeline_config(run), policies, events.append)
    return run, result, events


def stage_events(events, status):
    return [(e["round"], e["stage"]) for e in events if e.get("kind") == "stage" and e["status"] == status]


def test_one_iteration_collects_with_the_controller_and_refits_everything(pipeline):
    run, result, events = pipeline
    assert [r["round"] for r in result["rounds"]] == [0, 1]
    assert stage_events(events, "done") == [(r, stage) for r in (0, 1) for stage in STAGES]
    first, second = (r["stages"] for r in result["rounds"])
    assert first["collect"]["dataset_episodes"] == 6 and second["collect"]["dataset_episodes"] == 10
    # Budgets are per round: V and M continue from their checkpoints, C from its generation count.
    assert (first["vae"]["step"], second["vae"]["step"]) == (2, 4)
    assert (first["rnn"]["step"], second["rnn"]["step"]) == (2, 4)
    assert second["rnn"]["vae_step"] == 4 and (
        second["controller"]["vae_step"],
        second["controller"]["rnn_step"],
    ) == (4, 4)
    assert (first["controller"]["generations"], second["controller"]["generations"]) == (1, 2)
    assert np.isfinite(second["controller"]["eval_return"])
    # Stage progress reaches the caller tagged with its round and stage.
    assert any(e.get("kind") == "train" and e["stage"] == "vae" and e["round"] == 1 for e in events)
    # The heuristic's laps came first; round 1's episodes were driven by the round-0 controller (with
    # noise): new files, all recorded.
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    drivers = [entry["driver"] for entry in manifest["episodes"]]
    assert drivers == ["heuristic"] * 2 + ["brownian"] * 4 + ["checkpoint"] * 4
    # C was fitted to those laps once, before round 0's search; round 1 searched on from its mean.
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "imitation"] == [0]
    assert json.loads((run / PIPELINE_FILE).read_text())["rounds"] == result["rounds"]


def test_m_and_c_moved_on_so_best_loads_with_its_own_v_and_m(pipeline):
    run, _, _ = pipeline
    checkpoints = run / "checkpoints"
    assert (checkpoints / "mdnrnn-on-vae-ep2").is_dir() and (
        checkpoints / "controller-on-mdnrnn-ep2"
    ).is_dir()
    model = load_world_model(RunDir(run), "best")
    assert model.steps == {"vae": 4, "mdnrnn": 4, "controller": 2}
    assert model.controller_config.hidden_units == 3
    # M's metrics records of round 0 survived the move to a fresh checkpoint folder.
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r["trainer"] == "rnn" and r["kind"] == "eval"]  # fmt: skip
    assert steps == [2, 4]


def test_rerun_skips_every_finished_stage(pipeline):
    run, result, _ = pipeline
    events = []
    again = run_iterations(pipeline_config(run), policies, events.append)
    assert stage_events(events, "skipped") == [(r, stage) for r in (0, 1) for stage in STAGES]
    assert again["rounds"] == result["rounds"]


def test_an_interrupted_round_resumes_without_redoing_work(pipeline, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(pipeline[0], run)
    progress = json.loads((run / PIPELINE_FILE).read_text())
    # As if killed after round 1's collect wrote its episodes but before anything after was recorded.
    progress["rounds"][1]["stages"] = {}
    (run / PIPELINE_FILE).write_text(json.dumps(progress))
    events = []
    resumed = run_iterations(pipeline_config(run), policies, events.append)
    assert stage_events(events, "done") == [(1, stage) for stage in STAGES]
    stages = resumed["rounds"][1]["stages"]
    assert stages["collect"]["episodes"] == 0 and stages["collect"]["dataset_episodes"] == 10
    assert stages["vae"]["step"] == 4 and stages["controller"]["generations"] == 2


def test_stages_must_share_one_run(tmp_path):
    config = pipeline_config(tmp_path / "a")
    mixed = PipelineConfig(
        config.collect, config.vae, TrainRNNConfig(run_dir=tmp_path / "b"), config.controller
    )
    with pytest.raises(RlcarError, match="same run directory"):
        run_iterations(mixed, policies)
