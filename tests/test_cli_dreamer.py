"""`rlcar train-dreamer` through the CLI, and the dreamer agent in eval, export-video and play.

The tests read the tiny run tests/test_dreamer_train.py reads too (conftest's `tiny_dreamer_run`,
trained once per session), so in one pytest process everything trains and compiles once.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_DREAMER_RUN,
    assert_names_nearest_checkpoints,
    fail_learner_from_update,
    single_error_line,
)
from typer.testing import CliRunner

from rlcar_cli.main import app

runner = CliRunner()
# The shared tiny run's options on the command line.
TRAIN = [
    str(part) for name, value in TINY_DREAMER_RUN.items() for part in (f"--{name.replace('_', '-')}", value)
]
EVAL = ["--episodes", "2", "--num-envs", "2", "--max-steps", "20"]


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def invoke_json(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def run(tiny_dreamer_run):
    """`(run_dir, summary)` of the tiny run shared with tests/test_dreamer_train.py (same options as
    `TRAIN`): the CLI tests read it, or copy it to change it."""
    return tiny_dreamer_run[:2]


def copy_run(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.mark.slow  # trains a run of its own; the fast tests read the shared one
def test_train_dreamer_json_summary_and_run_files(tmp_path):
    run_dir = tmp_path / "run"
    summary = invoke_json("train-dreamer", "--run-dir", run_dir, "--episodes", "2", *TRAIN, "--json")
    assert summary["episodes"] == 2 and summary["env_steps"] == 40 and summary["size"] == "tiny"
    assert summary["updates"] > 0 and summary["checkpoint"].endswith("checkpoints/dreamer/2")
    assert summary["eval"]["progress_mean"] >= 0.0 and summary["best_checkpoint"] is not None
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"episode", "train", "eval", "checkpoint"} <= {record["kind"] for record in records}
    assert (run_dir / "checkpoints" / "dreamer-replay.npz").is_file()


@pytest.mark.slow
def test_rerun_with_more_episodes_resumes(run, tmp_path):
    copy = copy_run(run[0], tmp_path)
    # Model and run options come from the run itself; the evaluation schedule is per invocation.
    summary = invoke_json(
        "train-dreamer",
        "--run-dir",
        copy,
        "--episodes",
        "4",
        "--eval-every",
        "2",
        "--eval-episodes",
        "2",
        "--json",
    )
    assert summary["resumed_from_episode"] == 2 and summary["episodes"] == 4
    assert summary["env_steps"] == 80 and summary["replay_steps"] == 80
    assert summary["updates"] > run[1]["updates"]


def test_eval_with_the_dreamer_agent(run):
    run_dir, summary = run
    for checkpoint in ("ep2", "best"):  # the run's only checkpoint, by step and by rank
        result = invoke_json(
            "eval", "--agent", "dreamer", "--run-dir", run_dir, "--checkpoint", checkpoint, *EVAL, "--json"
        )
        assert result["agent"] == "dreamer" and result["checkpoint"] == checkpoint
        # The checkpoint the run evaluated at episode 2, on the same held-out tracks, episode length
        # and seed: eval reproduces the run's own evaluation.
        for name, value in summary["eval"].items():
            assert result[name] == pytest.approx(value), name
        tracks = [episode["track"] for episode in result["per_episode"]]
        assert len(set(tracks)) == 2 and all(episode["steps"] <= 20 for episode in result["per_episode"])


@pytest.mark.slow
def test_export_video_and_headless_play_with_the_dreamer_agent(run, tmp_path):
    video = tmp_path / "dreamer.gif"
    result = invoke_json(
        "export-video", "--agent", "dreamer", "--run-dir", run[0], "--checkpoint", "ep2",
        "--max-steps", "6", "-o", video, "--json",
    )  # fmt: skip
    assert video.is_file() and result["frames"] == 7 and result["agent"] == "dreamer"
    played = invoke_json(
        "play", "--headless", "--agent", "dreamer", "--run-dir", run[0], "--checkpoint", "latest",
        "--max-steps", "6", "--json",
    )  # fmt: skip
    assert played["episodes"][0]["steps"] == 6


def test_unknown_checkpoint_lists_the_existing_ones(run):
    result = invoke("eval", "--agent", "dreamer", "--run-dir", run[0], "--checkpoint", "ep81", *EVAL)
    assert result.exit_code == 2
    assert_names_nearest_checkpoints(single_error_line(result.stderr), "ep81", ["ep2"], latest="ep2")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--obs", "pixels"], "--obs sensors"),
        (["--size", "small"], "--size tiny"),
        (["--num-envs", "4"], "--num-envs 2"),
        (["--set", "deter_size=128"], "deter_size 64 -> 128"),
    ],
)
def test_incompatible_resume_is_one_line_and_exit_2(run, options, message):
    result = invoke("train-dreamer", "--run-dir", run[0], "--episodes", "4", *options)
    assert result.exit_code == 2, result.output
    assert message in single_error_line(result.stderr)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "modle_lr=1e-3"], "did you mean model_lr"),
        (["--set", "horizon=soon"], "expected an integer"),
        (["--set", "horizon=0"], "horizon must be positive"),
        (["--set", "nonsense"], "key=value"),
        (["--train-ratio", "0"], "--train-ratio must be a positive number"),
        (["--episodes", "0"], "--episodes"),
        (["--max-steps", "-3"], "--max-steps"),
        (["--size", "huge"], "--size"),
        (["--env", "carracing", "--obs", "sensors"], "only pixel"),
        (["--patience", "100"], "--patience ends CarRacing-v3 episodes"),
        (["--patience", "-1"], "--patience"),
        (["--set", "actor_mean_limit=1.0"], "actor_mean_limit must be in [0, 1)"),
        (["--devices", "5"], "--devices must be between 1 and 1"),
        (["--distributed"], "needs a coordinator"),
        (["--coordinator-address", "127.0.0.1:1"], "--num-processes and --process-id"),
        (["--coordinator-address", "h:1", "--num-processes", "2", "--process-id", "2"], "0..1"),
    ],
)
def test_bad_input_exits_2(tmp_path, options, message):
    result = invoke("train-dreamer", "--run-dir", tmp_path / "new", *options)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "new" / "checkpoints").exists()


@pytest.mark.slow
def test_the_default_run_trains_exactly_the_episodes_asked_and_evaluates(tmp_path, monkeypatch):
    """Issue 8's short forms: no --run-dir, more cars than episodes, then eval of `ep2`."""
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "train-dreamer", "--episodes", "2", "--num-envs", "8", "--max-steps", "100", "--size", "tiny",
        "--prefill-steps", "50", "--train-ratio", "4", "--batch-size", "4", "--batch-length", "8",
        "--eval-episodes", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_dir"] == "runs/dreamer" and summary["episodes"] == 2
    assert "run: runs/dreamer (new)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "runs/dreamer/checkpoints/dreamer").iterdir()) == ["2"]
    evaluated = invoke_json(
        "eval", "--agent", "dreamer", "--run-dir", "runs/dreamer", "--checkpoint", "ep2", "--episodes", "2",
        "--max-steps", "50", "--json",
    )  # fmt: skip
    assert evaluated["episodes"] == 2
    again = invoke("train-dreamer", "--episodes", "3", "--num-envs", "8", "--max-steps", "100", "--json")
    assert again.exit_code == 0, again.output
    assert "run: runs/dreamer (resuming at episode 2, " in again.stderr  # and the env steps it resumes from
    assert "env steps)" in again.stderr.split("resuming at episode 2, ")[1].splitlines()[0]
    assert json.loads(again.stdout)["episodes"] == 3


def test_nan_loss_exits_1_and_keeps_the_last_good_checkpoint(run, tmp_path, monkeypatch):
    copy = copy_run(run[0], tmp_path)
    fail_learner_from_update(monkeypatch, lambda out: (out[0], {**out[1], "critic/loss": np.float32(np.inf)}))
    result = invoke("train-dreamer", "--run-dir", copy, "--episodes", "4", "--json")
    assert result.exit_code == 1
    assert (
        "critic/loss became inf" in single_error_line(result.stderr)
        and "kept checkpoint ep2" in result.stderr
    )
    assert result.stdout == ""
    assert sorted(p.name for p in (copy / "checkpoints" / "dreamer").iterdir()) == ["2"]


def test_ctrl_c_saves_and_exits_130(run, tmp_path, monkeypatch):
    del run  # compiled already

    def interrupt(out):
        raise KeyboardInterrupt

    fail_learner_from_update(monkeypatch, interrupt)
    result = invoke("train-dreamer", "--run-dir", tmp_path / "run", "--episodes", "2", *TRAIN)
    assert result.exit_code == 130
    # A stop the user asked for is one line, and not an "error:".
    assert "error:" not in result.stderr and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("interrupted at")]
    assert "resumes from" in line and "run the same command again" in line
    assert (tmp_path / "run" / "checkpoints" / "dreamer" / "0").is_dir()


def test_help_does_not_import_jax():
    code = "import sys; import rlcar_cli.main; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = invoke("train-dreamer", "--help")
    assert result.exit_code == 0 and "--train-ratio" in result.output and "--set" in result.output


@pytest.mark.slow
def test_dream_shows_a_dreamer_run_next_to_reality(run, tmp_path):
    run_dir, _ = run
    video = tmp_path / "dream.gif"
    data = invoke_json(
        "dream", "--run-dir", run_dir, "--checkpoint", "latest", "--max-steps", "10", "-o", video, "--json"
    )
    assert data["model"] == "dreamer" and data["frames"] == data["steps"] == 10 and video.exists()
    data = invoke_json("dream", "--run-dir", run_dir, "--max-steps", "8", "--headless", "--json")
    assert data["steps"] == 8 and data["frame_mse_mean"] is not None


def test_help_at_80_columns_groups_the_options_in_panels_with_whole_names():
    """Issue 29: 169 lines with `--coordinator-ad…` cut and the distributed options before --episodes."""
    env = {**os.environ, "COLUMNS": "80", "JAX_PLATFORMS": "cpu"}
    code = "from rlcar_cli.main import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "train-dreamer", "--help"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in result.stdout
    panels = [line.split("─ ")[1].split(" ─")[0] for line in lines if line.startswith("╭─ ")]
    assert panels == ["Options", "Run", "Budget", "Model", "Evaluation", "Scale-out"]
    from rlcar_cli.dreamer_cli import PANELS

    names = [flag for flag in re.findall(r"│ (--[a-z-]+)", result.stdout) if flag != "--help"]
    assert len(names) == sum(len(options) for options in PANELS.values())
    for flag in ("--coordinator-address", "--carracing-backend", "--eval-every-steps", "--heartbeat-timeout"):
        assert flag in names  # whole, never cut
    assert names.index("--episodes") < names.index("--distributed")
    assert names[:2] == ["--env", "--obs"]


def progress_lines(width, steps_budget, records, monkeypatch):
    """What a `_ProgressView` of `width` columns draws for `records`, one string per drawn line."""
    import io

    from rich.console import Console

    import rlcar_cli.dreamer_cli as dreamer_cli

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(dreamer_cli, "progress_console", lambda: console)
    view = dreamer_cli._ProgressView(True, Path("no-such-run"), False, steps_budget)
    with view.bar:
        for record in records:
            view(record)
        view.bar.refresh()
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", buffer.getvalue())
    return view, [line for line in re.split(r"[\r\n]", drawn) if line.strip()]


def _record(kind, episode, env_steps, **fields):
    return {"kind": kind, "episode": episode, "env_steps": env_steps, "updates": episode * 3,
            "episodes_total": 500, **fields}  # fmt: skip


def test_the_progress_bar_follows_the_env_steps_budget_and_fits_the_line(monkeypatch):
    """Issue 29: `--env-steps 12000` showed 0/500 episodes and an ETA from 500 episodes, and at 120
    columns the line overflowed ("drea…")."""
    records = [
        _record("start", 0, 0, resumed_from_episode=None),
        _record("train", 3, 3000, **{"wm/loss": 12.345, "actor/loss": -0.1234, "critic/loss": 3.21},
                env_steps_per_second=1234.5),
        _record("episode", 4, 4000, **{"return": 12.3, "progress": 0.43}),
        _record("eval", 6, 6000, progress_mean=0.5, lap_rate=0.1, return_mean=3.0, best=True),
    ]  # fmt: skip
    for width in (80, 117):  # 117: a 120-column terminal less the columns a "^C" echo needs
        view, lines = progress_lines(width, 12000, records, monkeypatch)
        (task,) = view.bar.tasks
        assert (task.total, task.completed) == (12000, 6000)
        bars = [line for line in lines if line.startswith("dreamer")]
        assert bars and all(len(line) <= width for line in bars), lines
        assert "6,000/12,000 env steps" in bars[-1] and "held-out 0.50" in bars[-1] and "ETA" in bars[-1]
        assert width < 100 or "episode 6" in bars[-1]  # the other count: kept where there is room
        assert "drea…" not in "".join(lines)
    view, lines = progress_lines(117, None, records, monkeypatch)  # no --env-steps: episodes
    assert (view.bar.tasks[0].total, view.bar.tasks[0].completed) == (500, 6)
    assert "6/500 episodes" in [line for line in lines if line.startswith("dreamer")][-1]


@pytest.mark.slow  # compiles a run of its own
def test_ctrl_c_is_acknowledged_at_once_and_the_stop_is_not_an_error(tmp_path):
    """Issue 29: a Ctrl-C during the first compile took 36 s to act, with no word. The acknowledgement
    comes from the signal watcher thread, so it does not wait for the loop's next safe point."""
    import signal
    import time

    log = tmp_path / "train.log"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    code = "from rlcar_cli.main import main; main()"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", code, "train-dreamer", "--episodes", "40", *TRAIN],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 240
        while "run: runs/dreamer (new)" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)  # the loop's first record: inside its graceful stop, before the compile
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        while "stopping at the next safe point" not in log.read_text() and time.monotonic() - sent < 5:
            time.sleep(0.05)
        assert "stopping at the next safe point" in log.read_text(), log.read_text()
        assert process.wait(timeout=300) == 130
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "error:" not in text and "Traceback" not in text, text
    assert text.rstrip().splitlines()[-1].startswith("interrupted at "), text
