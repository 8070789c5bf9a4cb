"""The World Models pipeline end to end through the CLI, with tiny models: collect, train-vae,
train-rnn, train-controller (dream, then resumed in the env), then eval, dream and export-video with
the result; resuming after an interruption; one run of the real console entry point.

One module-scoped run is shared by every test; the sizes keep four cars and four tracks everywhere so
the simulator and the policy compile once.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import single_error_line
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.storage import load_world_model

pytestmark = pytest.mark.slow  # end to end: every stage compiles its models
runner = CliRunner()
CARS = ["--num-tracks", "4"]
COLLECT = ["--episodes", "4", "--num-envs", "4", "--max-steps", "24", *CARS]
VAE = [
    "--batch-size",
    "16",
    "--z-dim",
    "4",
    "--base-channels",
    "4",
    "--eval-every",
    "2",
    "--validation-frames",
    "16",
]
RNN = ["--steps", "4", "--batch-size", "4", "--sequence-length", "8", "--hidden-size", "16", "--mixtures", "2",
       "--eval-every", "2"]  # fmt: skip
DREAM_CONTROLLER = ["--in-dream", "--generations", "2", "--popsize", "4", "--rollouts", "2", "--dream-horizon", "6",
                    "--max-steps", "16", "--eval-every", "2", "--eval-episodes", "4", *CARS]  # fmt: skip
# Four candidates with one episode each: the same four cars as everywhere else.
ENV_CONTROLLER = ["--in-env", "--generations", "3", "--popsize", "4", "--rollouts", "1", "--max-steps", "16",
                  "--eval-every", "3", "--eval-episodes", "4", *CARS]  # fmt: skip


def invoke(*args):
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    run = tmp_path_factory.mktemp("wm") / "run"
    results = {
        "collect": invoke("collect", "--run-dir", run, *COLLECT, "--json"),
        "vae": invoke("train-vae", "--run-dir", run, "--steps", "4", *VAE, "--json"),
        "rnn": invoke("train-rnn", "--run-dir", run, *RNN, "--json"),
        "controller": invoke("train-controller", "--run-dir", run, *DREAM_CONTROLLER, "--json"),
    }
    return run, results


def copy_run(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def test_collect_writes_episodes_and_a_manifest(pipeline):
    run, results = pipeline
    collected = results["collect"]
    assert collected["episodes"] == 4 and collected["dataset_episodes"] == 4
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["env_name"] == "rlcar" and manifest["num_episodes"] == 4
    with np.load(run / "data" / manifest["episodes"][0]["file"]) as episode:
        assert episode["obs"].dtype == np.uint8 and episode["obs"].shape[1:] == (64, 64, 3)
        assert len(episode["obs"]) == len(episode["action"]) + 1 <= 25
        assert episode["terminated"][-1] or episode["truncated"][-1]


def test_each_stage_reports_metrics_and_checkpoints(pipeline):
    run, results = pipeline
    vae, rnn, controller = results["vae"], results["rnn"], results["controller"]
    assert vae["step"] == 4 and 0 < vae["validation"]["validation_mse_per_pixel"] < 1
    assert os.path.isfile(vae["reconstructions"]) and os.path.isdir(vae["checkpoint"])
    assert rnn["step"] == 4 and np.isfinite(rnn["validation"]["validation_nll"])
    assert rnn["vae_step"] == 4
    assert controller["generations"] == 2 and controller["mode"] == "dream"
    assert np.isfinite(controller["eval_return"]) and controller["best_checkpoint"].endswith("/2")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {record["trainer"] for record in records} == {"vae", "rnn", "controller"}
    # One key scheme: every value is `<model>/<name>`.
    assert {"vae/loss", "vae/validation_mse_per_pixel", "rnn/loss", "controller/mean_fitness"} <= {
        key for record in records for key in record
    }
    assert {"vae", "mdnrnn", "controller", "collect"} <= set(json.loads((run / "config.json").read_text()))


def test_eval_export_video_and_dream_use_the_trained_agent(pipeline):
    run, _ = pipeline
    evaluation = invoke("eval", "--agent", "worldmodel", "--run-dir", run, "--checkpoint", "latest",
                        "--episodes", "4", "--num-envs", "4", "--max-steps", "12", "--json")  # fmt: skip
    assert evaluation["episodes"] == 4 and evaluation["agent"] == "worldmodel"
    video = invoke("export-video", "--agent", "worldmodel", "--run-dir", run, "--max-steps", "3",
                   "-o", run / "agent.gif", "--json")  # fmt: skip
    assert video["frames"] == 4 and (run / "agent.gif").stat().st_size > 0
    dream = invoke("dream", "--run-dir", run, "--max-steps", "3", "-o", run / "dream.gif", "--json")
    assert 1 <= dream["steps"] <= 3 and dream["frames"] == dream["steps"]
    assert (run / "dream.gif").stat().st_size > 0 and np.isfinite(dream["frame_mse_mean"])
    # The keyboard drives through a (here: dummy) window; with no keys held the car coasts.
    manual = invoke("dream", "--run-dir", run, "--manual", "--max-steps", "2", "--json")
    assert manual["driver"] == "keyboard" and 1 <= manual["steps"] <= 2


def test_controller_resumes_in_the_env_from_a_dream_search(pipeline, tmp_path):
    run = copy_run(pipeline[0], tmp_path)
    result = invoke("train-controller", "--run-dir", run, *ENV_CONTROLLER, "--json")
    assert result["resumed_from"] == 2 and result["generations"] == 3 and result["mode"] == "env"
    assert np.isfinite(result["eval_return"]) and 0 <= result["eval_progress"] <= 1
    # Rerunning a finished search trains nothing and reports the same checkpoint.
    again = invoke("train-controller", "--run-dir", run, *ENV_CONTROLLER, "--json")
    assert again["generations"] == 3 and again["checkpoint"] == result["checkpoint"]


def test_a_controller_on_z_alone_trains_drives_and_keeps_its_inputs_on_resume(pipeline, tmp_path):
    run = copy_run(pipeline[0], tmp_path)
    shutil.rmtree(run / "checkpoints" / "controller")
    result = invoke(
        "train-controller", "--run-dir", run, *DREAM_CONTROLLER, "--controller-inputs", "z", "--json"
    )
    assert result["generations"] == 2
    assert load_world_model(RunDir(run), "latest").controller_config.sees_hidden is False
    evaluation = invoke("eval", "--agent", "worldmodel", "--run-dir", run, "--checkpoint", "latest",
                        "--episodes", "4", "--num-envs", "4", "--max-steps", "8", "--json")  # fmt: skip
    assert evaluation["episodes"] == 4
    refused = runner.invoke(app, ["train-controller", "--run-dir", str(run), "--controller-inputs", "zh"])
    assert refused.exit_code == 2 and "sees_hidden=False" in single_error_line(refused.stderr)


def test_training_resumes_after_an_interruption(pipeline, tmp_path, monkeypatch):
    import signal

    from rlcar_core.loop.outcomes import TrainingInterrupted
    from rlcar_core.worldmodels import train_vae as train_vae_module

    run = copy_run(pipeline[0], tmp_path)
    real_train_vae = train_vae_module.train_vae

    def interrupted_at_step_6(config, on_step=None):
        def press_ctrl_c(record):
            if record.get("step") == 6 and record.get("kind") == "train":
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: it sets the trainer's stop flag
            if on_step is not None:
                on_step(record)

        return real_train_vae(config, press_ctrl_c)

    monkeypatch.setattr(train_vae_module, "train_vae", interrupted_at_step_6)
    result = runner.invoke(app, ["train-vae", "--run-dir", str(run), "--steps", "8", *VAE, "--json"])
    assert result.exit_code == 130, result.output
    assert "resumes from ep6" in result.stderr and result.stdout == ""
    assert (run / "checkpoints" / "vae" / "6").is_dir()
    assert issubclass(TrainingInterrupted, KeyboardInterrupt)

    monkeypatch.setattr(train_vae_module, "train_vae", real_train_vae)
    resumed = invoke("train-vae", "--run-dir", run, "--steps", "8", *VAE, "--json")
    assert resumed["resumed_from"] == 6 and resumed["step"] == 8


def _kept_steps(run, model):
    return {int(p.name) for p in (run / "checkpoints" / model).iterdir() if p.name.isdigit()}


def _saved_config(run, model, step):
    return json.loads((run / "checkpoints" / model / str(step) / "config" / "metadata").read_text())


def test_continuing_a_stage_keeps_the_checkpoints_its_downstream_stages_use(pipeline, tmp_path):
    """Continuing train-vae (then train-rnn) on a finished run prunes to the newest three and the best,
    but never the VAE step the MDN-RNN and the controller were trained on, nor the MDN-RNN step the
    controller uses: eval, dream and train-rnn still work afterwards."""
    run = copy_run(pipeline[0], tmp_path)
    controller = _saved_config(run, "controller", 2)
    vae_step, rnn_step = controller["vae_step"], controller["rnn_step"]
    assert vae_step == 4 and {
        _saved_config(run, "mdnrnn", s)["vae_step"] for s in _kept_steps(run, "mdnrnn")
    } == {4}

    invoke("train-vae", "--run-dir", run, "--steps", "12", *VAE, "--json")
    vae_kept = _kept_steps(run, "vae")
    assert {vae_step, 8, 10, 12} <= vae_kept and len(vae_kept) <= 5  # the newest three, best, pinned
    assert not {2, 6} <= vae_kept  # pruning still runs

    rnn = invoke("train-rnn", "--run-dir", run, *RNN[:1], "12", *RNN[2:], "--json")
    assert rnn["vae_step"] == vae_step and rnn["step"] == 12
    rnn_kept = _kept_steps(run, "mdnrnn")
    assert {rnn_step, 8, 10, 12} <= rnn_kept and len(rnn_kept) <= 5 and not {2, 4, 6} <= rnn_kept

    evaluation = invoke("eval", "--agent", "worldmodel", "--run-dir", run, "--checkpoint", "latest",
                        "--episodes", "4", "--num-envs", "4", "--max-steps", "6", "--json")  # fmt: skip
    assert evaluation["episodes"] == 4
    dream = invoke("dream", "--run-dir", run, "--max-steps", "2", "--json")
    assert 1 <= dream["steps"] <= 2


def test_diverging_loss_exits_1_and_keeps_the_last_good_checkpoint(pipeline, tmp_path):
    run = copy_run(pipeline[0], tmp_path)
    result = runner.invoke(
        app,
        ["train-vae", "--run-dir", str(run), "--steps", "8", *VAE, "--learning-rate", "1e30"],
    )
    assert result.exit_code == 1, result.output
    assert "became" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (run / "checkpoints" / "vae").iterdir() if p.name.isdigit()) == ["2", "4"]


def test_unknown_checkpoint_lists_the_existing_ones(pipeline, unknown_checkpoint_is_named):
    run, _ = pipeline
    result = runner.invoke(
        app, ["eval", "--agent", "worldmodel", "--run-dir", str(run), "--checkpoint", "ep99"]
    )
    assert result.exit_code == 2
    unknown_checkpoint_is_named(single_error_line(result.stderr), "ep99", ["ep2"], latest="ep2")


def test_collect_again_adds_new_episodes_driven_by_the_trained_agent(pipeline, tmp_path):
    run = copy_run(pipeline[0], tmp_path)
    first = np.load(run / "data" / "episode_000000.npz")["action"]
    added = invoke("collect", "--run-dir", run, *COLLECT, "--policy", "checkpoint", "--json")
    assert added["dataset_episodes"] == 8
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["episodes"]][-1] == "episode_000007.npz"
    assert not np.array_equal(np.load(run / "data" / "episode_000004.npz")["action"], first)


def test_imitate_starts_c_from_the_heuristics_laps_and_saves_that_start_as_ep0(pipeline, tmp_path):
    run = copy_run(pipeline[0], tmp_path)
    shutil.rmtree(run / "checkpoints" / "controller")
    imitate = ["train-controller", "--run-dir", run, *ENV_CONTROLLER, "--controller-hidden", "4", "--imitate"]
    # The brownian explorer's episodes are no teacher: one line, exit 2, nothing written.
    refused = runner.invoke(app, [str(arg) for arg in imitate])
    assert refused.exit_code == 2 and "rlcar collect --policy heuristic" in single_error_line(refused.stderr)
    assert not (run / "checkpoints" / "controller").exists()
    invoke("collect", "--run-dir", run, *COLLECT, "--policy", "heuristic", "--json")
    drivers = [
        entry["driver"] for entry in json.loads((run / "data" / "manifest.json").read_text())["episodes"]
    ]
    assert drivers == ["brownian"] * 4 + ["heuristic"] * 4
    result = invoke(*imitate, "--json")
    start = result["imitation"]
    assert start["generation"] == 0 and start["teacher"] == "heuristic" and start["train_steps"] > 0
    assert np.isfinite(start["eval_return"]) and np.isfinite(start["train_error"])
    assert result["generations"] == 3 and result["resumed_from"] is None
    # The fitted start is a checkpoint of its own, driven and evaluated like any other.
    evaluation = invoke("eval", "--agent", "worldmodel", "--run-dir", run, "--checkpoint", "ep0",
                        "--episodes", "4", "--num-envs", "4", "--max-steps", "8", "--json")  # fmt: skip
    assert evaluation["checkpoint"] == "ep0"
    # A resumed search continues from its checkpoint; it does not fit again.
    more = invoke(*imitate, "--generations", "4", "--json")
    assert more["resumed_from"] == 3 and "imitation" not in more


def test_dream_in_a_real_process_prints_one_json_document(pipeline):
    run, _ = pipeline
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "SDL_VIDEODRIVER": "dummy"}
    result = subprocess.run(
        [sys.executable, "-m", "rlcar_cli.main", "dream", "--run-dir", str(run), "--headless",
         "--max-steps", "3", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    dream = json.loads(result.stdout)
    assert dream["driver"] == "controller" and 1 <= dream["steps"] <= 3
