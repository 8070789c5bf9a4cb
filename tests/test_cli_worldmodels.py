"""The World Models commands' contract: bad input and missing stages are one line and exit 2, a
diverged loss exits 1, and the pieces (exploration, the training loop) behave."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.io.data import write_episodes

runner = CliRunner()


def fake_dataset(run, episodes=3, steps=10, env_name="rlcar"):
    """Episodes written straight to disk: enough for the stage checks, no simulator needed."""
    rng = np.random.default_rng(0)
    write_episodes(
        run / "data",
        [
            {
                "obs": rng.integers(0, 255, (steps + 1, 64, 64, 3), dtype=np.uint8),
                "action": rng.uniform(0, 1, (steps, 3)).astype(np.float32),
                "reward": np.zeros(steps, np.float32),
                "terminated": np.eye(steps, dtype=bool)[-1],
                "truncated": np.zeros(steps, bool),
            }
            for _ in range(episodes)
        ],
        env_name=env_name,
    )
    return run


def fails_with(args, code=2, message=""):
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr
    return result


def test_without_run_dir_the_default_run_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A refusal stays one line, and names the default run in its advice.
    fails_with(["train-vae"], message="run `rlcar collect --run-dir runs/worldmodels` first")
    result = runner.invoke(
        app,
        ["collect", "--env", "carracing", "--policy", "random", "--episodes", "1", "--num-envs", "1",
         "--max-steps", "3", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_dir"] == os.path.join("runs", "worldmodels")
    assert "run: runs/worldmodels (new)" in result.stderr
    assert (tmp_path / "runs" / "worldmodels" / "data" / "manifest.json").is_file()
    fails_with(["dream", "--headless"], message="no trained run under runs/")


def test_each_stage_says_which_command_to_run_first(tmp_path):
    empty = tmp_path / "empty"
    fails_with(["train-vae", "--run-dir", empty], message="run `rlcar collect --run-dir")
    fails_with(["train-rnn", "--run-dir", empty], message="rlcar collect")
    run = fake_dataset(tmp_path / "run")
    fails_with(
        ["train-rnn", "--run-dir", run],
        message=f"no VAE checkpoint in {run}: run `rlcar train-vae --run-dir {run}` first",
    )
    fails_with(["train-controller", "--run-dir", run], message="no MDN-RNN checkpoint")
    # Inputs are checked before any checkpoint folder is made: a refused command leaves no trace.
    assert not (run / "checkpoints").exists()
    # A run with data only: the earliest missing stage is named, not the last.
    fails_with(["dream", "--run-dir", run, "--headless"], message="run `rlcar train-vae")
    fails_with(["eval", "--agent", "worldmodel", "--run-dir", run], message="no controller checkpoint")
    fails_with(["collect", "--run-dir", run, "--policy", "checkpoint"], message="no controller checkpoint")


def test_dataset_problems_are_bad_input(tmp_path):
    single = fake_dataset(tmp_path / "single", episodes=1)
    fails_with(["train-vae", "--run-dir", single], message="no validation episodes")
    other_env = fake_dataset(tmp_path / "carracing", env_name="carracing")
    fails_with(["collect", "--run-dir", other_env, "--episodes", "1"], message="pass --env carracing")
    (tmp_path / "broken" / "data").mkdir(parents=True)
    (tmp_path / "broken" / "data" / "manifest.json").write_text("{not json")
    fails_with(["train-vae", "--run-dir", tmp_path / "broken"], message="not valid JSON")


@pytest.mark.parametrize(
    "args",
    [
        ["collect", "--episodes", "0"],
        ["collect", "--max-steps", "0"],
        ["collect", "--num-envs", "0"],
        ["collect", "--policy", "autopilot"],
        ["collect", "--env", "carracing", "--policy", "heuristic"],
        ["collect", "--env", "carracing", "--num-tracks", "2"],
        ["train-vae", "--steps", "0"],
        ["train-vae", "--epochs", "0"],
        ["train-vae", "--steps", "3", "--epochs", "1"],
        ["train-vae", "--batch-size", "0"],
        ["train-vae", "--z-dim", "0"],
        ["train-vae", "--learning-rate", "0"],
        ["train-vae", "--learning-rate", "inf"],
        ["train-vae", "--learning-rate", "nan"],
        ["train-vae", "--epochs", "inf"],
        ["train-rnn", "--learning-rate", "inf"],
        ["train-controller", "--initial-sigma", "nan"],
        ["train-rnn", "--hidden-size", "0"],
        ["train-rnn", "--sequence-length", "-1"],
        ["train-controller", "--popsize", "1"],
        ["train-controller", "--generations", "0"],
        ["train-controller", "--temperature", "0"],
        ["dream", "--temperature", "-1"],
        ["dream", "--max-steps", "0"],
        ["dream", "--manual", "--headless"],
        ["dream", "-o", "dream.avi"],
        ["collect", "--action-noise", "0.1"],  # noise applies to --policy checkpoint only
        ["collect", "--action-repeat", "2"],  # CarRacing only
        ["train-controller", "--controller-hidden", "-1"],
        ["train-worldmodels", "--iterations", "-1"],
        ["train-worldmodels", "--action-noise", "-1"],
        ["train-worldmodels", "--carracing-backend", "envpool"],
        ["train-worldmodels", "--heuristic-laps", "-1"],
        ["train-worldmodels", "--env", "carracing", "--heuristic-laps", "2"],  # no ray sensors
        ["train-worldmodels", "--imitate"],  # nothing to imitate without --heuristic-laps
    ],
)
def test_out_of_range_options_exit_2(args, tmp_path):
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert not (
        tmp_path / "run"
    ).exists()  # validated before anything is written (no Infinity in config.json)


def test_a_diverged_loss_exits_1_with_one_line(tmp_path, monkeypatch):
    from rlcar_core.loop.outcomes import TrainingDiverged
    from rlcar_core.worldmodels import train_rnn as train_rnn_module

    def diverging(config, on_step=None):
        raise TrainingDiverged("mdnrnn loss became nan at step 7; kept checkpoint ep5 in somewhere")

    monkeypatch.setattr(train_rnn_module, "train_rnn", diverging)
    fails_with(["train-rnn", "--run-dir", tmp_path], code=1, message="loss became nan at step 7")


def test_the_training_loop_stops_on_nan_and_saves_on_a_stop_request(tmp_path):
    import jax.numpy as jnp

    from rlcar_core.io.runs import RunDir
    from rlcar_core.loop.checkpointer import Checkpointer
    from rlcar_core.loop.metrics import MetricsLogger
    from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted
    from rlcar_core.loop.stop import StopFlag
    from rlcar_core.worldmodels.supervised import Schedule, TrainState, fit

    def fresh_state():
        return TrainState({"w": np.zeros(2, np.float32)}, {"m": np.zeros(2, np.float32)}, np.int32(0))

    def train_step(state, batch, stream):
        # The loss turns NaN once the batch says so, as a diverging model would.
        params = {"w": state.params["w"] + batch}
        return state._replace(params=params, step=state.step + 1), {"loss": jnp.float32(batch)}

    def train(run, batches, stop=None, on_step=None, total=6):
        log = MetricsLogger(run, "toy")
        with Checkpointer(run.checkpoint_dir("toy"), "toy", metrics=log, best_mode="min") as ckpt:
            restored = ckpt.resume(fresh_state())
            return fit(
                stage="toy",
                ckpt=ckpt,
                log=log,
                stop=stop or StopFlag(),
                state=restored.state if restored else fresh_state(),
                train_step=train_step,
                seed=0,
                batches=iter(batches),
                validate=lambda params: {"validation_loss": float(np.sum(params["w"]))},
                best_metric="validation_loss",
                saved_config={},
                schedule=Schedule(total_steps=total, eval_every=2, log_every=1),
                items_per_batch=1,
                on_step=on_step,
            )

    run = RunDir(tmp_path / "nan")
    with pytest.raises(TrainingDiverged, match="toy/loss became nan at step 3; kept checkpoint ep2"):
        train(run, [1.0, 1.0, float("nan"), 1.0])
    assert [p.name for p in run.checkpoint_dir("toy").iterdir()] == ["2"]

    # Ctrl-C is a flag (see loop.stop): the loop finishes the update in hand, saves it and stops.
    stop = StopFlag()

    def ctrl_c_at_step_3(record):
        if record["step"] == 3:
            stop.request()

    run = RunDir(tmp_path / "interrupted")
    with pytest.raises(TrainingInterrupted, match="interrupted at toy step 3; the run resumes from ep3"):
        train(run, [1.0] * 6, stop=stop, on_step=ctrl_c_at_step_3)
    result = train(run, [1.0] * 6)
    assert result["resumed_from"] == 3 and result["step"] == 6
    assert sorted(int(p.name) for p in run.checkpoint_dir("toy").iterdir()) == [2, 3, 4, 6]
    records = [(r["step"], r["kind"]) for r in run.read_metrics()]
    assert records == [(1, "train"), (2, "train"), (2, "eval"), (3, "train"), (4, "train"), (4, "eval"),
                       (5, "train"), (6, "train"), (6, "eval")]  # fmt: skip
    assert {"toy/loss", "toy/items_per_second"} <= set(run.read_metrics()[0])


def test_a_second_writer_of_a_run_exits_2(tmp_path):
    from rlcar_core.io.runs import RunDir

    run = fake_dataset(tmp_path / "run")
    with RunDir(run).writer_lock("collect"):
        fails_with(
            ["collect", "--run-dir", run, "--episodes", "1"], message=f"in use by pid {os.getpid()} (collect)"
        )
        fails_with(["train-vae", "--run-dir", run], message="in use by pid")


def test_ctrl_c_during_collect_keeps_the_finished_episodes(tmp_path, monkeypatch):
    import signal

    from rlcar_core.worldmodels import collect as collect_module

    real_write = collect_module.write_episodes

    def write_then_ctrl_c(*args, **kwargs):
        names = real_write(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # lands on the collector's stop flag, not as an exception
        return names

    monkeypatch.setattr(collect_module, "write_episodes", write_then_ctrl_c)
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["collect", "--run-dir", str(run), "--env", "carracing", "--policy", "random", "--episodes", "3",
         "--num-envs", "1", "--max-steps", "3"],
    )  # fmt: skip
    assert result.exit_code == 130, result.output
    assert "interrupted after 1 of 3 episodes" in result.stderr and "Traceback" not in result.output
    assert json.loads((run / "data" / "manifest.json").read_text())["num_episodes"] == 1


def test_dream_picks_the_most_recently_trained_run(tmp_path):
    from rlcar_core.apps.dream_dispatch import latest_trained_run
    from rlcar_core.io.checkpoint import CheckpointStore

    for name, model, when in (("old", "vae", 1_000), ("new", "mdnrnn", 2_000), ("untrained", None, None)):
        run = tmp_path / name
        (run / "data").mkdir(parents=True)
        if model is not None:
            with CheckpointStore(run / "checkpoints" / model) as store:
                store.save(4, {"w": np.zeros(2, np.float32)}, {})
            os.utime(run / "checkpoints" / model / "4", (when, when))
    assert latest_trained_run(tmp_path) == tmp_path / "new"


def test_reconstructions_are_labelled():
    from rlcar_core.worldmodels.train_vae import LABEL_WIDTH, reconstruction_grid

    frames = np.zeros((10, 64, 64, 3), np.uint8)
    grid = reconstruction_grid(frames, np.zeros((10, 64, 64, 3), np.float32))
    assert grid.shape == (4 * 64, LABEL_WIDTH + 8 * 64, 3)
    labels = grid[:, :LABEL_WIDTH]
    # Every row has its label ("real" or "reconstructed") written in the left column.
    assert all(labels[row * 64 : (row + 1) * 64].max() > 128 for row in range(4))
    assert (labels[64:128] > 128).sum() > (labels[:64] > 128).sum()  # "reconstructed" is the longer word


def test_brownian_exploration_is_smooth_and_valid():
    from rlcar_core.envs.drivers import BrownianPolicy

    policy = BrownianPolicy(seed=0)
    policy.reset(8)
    actions = np.stack([policy.act(np.zeros((8, 64, 64, 3), np.uint8)) for _ in range(400)])
    assert actions.dtype == np.float32 and actions.shape == (400, 8, 3)
    assert actions[..., 0].min() >= -1 and actions[..., 0].max() <= 1
    assert actions[..., 1:].min() >= 0 and actions[..., 1:].max() <= 1
    steer = actions[:, :, 0]
    # Neighbouring steps are strongly correlated (uniform noise would give ~0), yet the wheel turns both ways.
    assert np.corrcoef(steer[1:].ravel(), steer[:-1].ravel())[0, 1] > 0.8
    assert (steer > 0.5).any() and (steer < -0.5).any()
    assert actions[..., 1].mean() > 0.4 > actions[..., 2].mean()
    policy.reset_where(np.array([True] + [False] * 7))
    assert policy.act(np.zeros((8, 64, 64, 3), np.uint8)).shape == (8, 3)


def test_collect_on_carracing_stores_64x64_frames(tmp_path):
    result = runner.invoke(
        app,
        ["collect", "--env", "carracing", "--run-dir", str(tmp_path), "--episodes", "2", "--num-envs", "2",
         "--max-steps", "6", "--policy", "random", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["episodes"] == 2
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["env_name"] == "carracing" and manifest["obs_shape"] == [64, 64, 3]
    assert [entry["length"] for entry in manifest["episodes"]] == [6, 6]


@pytest.mark.slow  # end to end; `make test` runs it
def test_bad_input_is_one_line_in_a_real_process(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "SDL_VIDEODRIVER": "dummy"}
    run = fake_dataset(tmp_path / "run")
    for args, message in (
        (["train-rnn"], "no VAE checkpoint"),
        (["train-controller"], "no MDN-RNN checkpoint"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "rlcar_cli.main", *args, "--run-dir", str(run)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        # One line and nothing else: no orbax shutdown traceback after it, no empty checkpoint folder.
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
        assert message in result.stderr
    assert not (run / "checkpoints").exists()


def test_episodes_are_cut_at_the_vector_envs_next_step_autoreset():
    from rlcar_core.worldmodels.collect import _EpisodeRecorder

    def frames(*values):
        return np.stack([np.full((64, 64, 3), value, np.uint8) for value in values])

    recorder = _EpisodeRecorder(frames(0, 100))
    done, running = np.array([True, False]), np.array([False, False])
    action = np.ones((2, 3), np.float32)
    finished, restarted = recorder.record(action, frames(1, 101), [1.0, 1.0], running, running, [0.1, 0.1])
    assert finished == [] and not restarted.any()
    finished, restarted = recorder.record(action, frames(2, 102), [2.0, 1.0], done, running, [0.2, 0.2])
    assert len(finished) == 1 and not restarted.any()
    episode = finished[0].arrays()
    assert [frame[0, 0, 0] for frame in episode["obs"]] == [0, 1, 2]
    assert episode["reward"].tolist() == [1.0, 2.0] and episode["terminated"].tolist() == [False, True]
    # The next step ignored car 0's action and returned the first frame of its next episode.
    finished, restarted = recorder.record(action, frames(50, 103), [0.0, 1.0], running, running, [0.0, 0.3])
    assert finished == [] and restarted.tolist() == [True, False]
    car_1_cut_off = np.array([False, True])
    finished, _ = recorder.record(action, frames(51, 104), [3.0, 1.0], running, car_1_cut_off, [0.1, 0.4])
    assert [frame[0, 0, 0] for frame in finished[0].arrays()["obs"]] == [100, 101, 102, 103, 104]
    assert [frame[0, 0, 0] for frame in recorder.episodes[0].frames] == [50, 51]


def test_latent_windows_are_padded_masked_and_often_start_at_a_reset():
    from rlcar_core.worldmodels.latents import LatentEpisode, all_windows, sample_sequences

    def episode(length, value):
        return LatentEpisode(
            mean=np.full((length + 1, 2), value, np.float32),
            log_var=np.zeros((length + 1, 2), np.float32),
            action=np.full((length, 3), value, np.float32),
            reward=np.arange(length, dtype=np.float32),
            terminated=np.arange(length) == length - 1,
        )

    episodes = [episode(5, 1.0), episode(12, 2.0)]
    windows = all_windows(episodes, length=4, limit=10)
    assert windows.mean.shape == (5, 5, 2) and windows.action.shape == (5, 4, 3)
    assert windows.mask.sum(axis=1).tolist() == [4, 1, 4, 4, 4]
    assert windows.terminated[1].tolist() == [True, False, False, False]  # the short tail, padded
    assert all_windows(episodes, length=4, limit=2).mask.shape == (2, 4)

    batch = sample_sequences(episodes, batch_size=400, length=4, rng=np.random.default_rng(0))
    assert batch.mean.shape == (400, 5, 2) and batch.mask.dtype == bool
    assert np.all(batch.reward[~batch.mask] == 0)
    from_reset = batch.reward[:, 0] == 0
    assert 0.25 < from_reset.mean() < 0.5  # a quarter forced, plus the uniform draws that land on 0
