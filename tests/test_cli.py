"""The `rlcar` command line: every command headless with --json, and bad input as one line + exit 2."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rlcar_cli.main import app

runner = CliRunner()
COMMANDS = (
    "collect",
    "train-vae",
    "train-rnn",
    "train-controller",
    "train-dreamer",
    "eval",
    "play",
    "dream",
    "export-video",
)


def rlcar(*args, **kwargs):
    """Run the real console entry point in a subprocess."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "SDL_VIDEODRIVER": "dummy"}
    code = "from rlcar_cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300, **kwargs
    )


def json_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


def test_help_does_not_import_jax():
    probe = "import sys; sys.argv = ['rlcar', '--help']\nfrom rlcar_cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nassert 'jax' not in sys.modules, 'jax imported'"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_eval_json_reports_the_summary():
    data = json_of(
        runner.invoke(app, ["eval", "--agent", "heuristic", "--episodes", "2", "--max-steps", "60", "--json"])
    )
    for key in ("episodes", "return_mean", "return_std", "progress_mean", "lap_rate", "crash_rate"):
        assert key in data
    assert data["episodes"] == 2 and len(data["per_episode"]) == 2


def test_eval_on_carracing_with_random_agent():
    data = json_of(
        runner.invoke(
            app,
            [
                "eval",
                "--env",
                "carracing",
                "--agent",
                "random",
                "--episodes",
                "1",
                "--max-steps",
                "20",
                "--json",
            ],
        )
    )
    assert data["env"] == "carracing" and data["episodes"] == 1


def test_export_video_writes_a_gif(tmp_path):
    target = tmp_path / "lap.gif"
    data = json_of(
        runner.invoke(
            app, ["export-video", "--agent", "heuristic", "--max-steps", "8", "-o", str(target), "--json"]
        )
    )
    assert target.exists() and target.stat().st_size > 0
    assert data["frames"] == 9 and data["path"] == str(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left behind"


def test_play_headless_with_agent_and_manual_recording_then_eval_human(tmp_path):
    data = json_of(
        runner.invoke(app, ["play", "--headless", "--agent", "heuristic", "--max-steps", "10", "--json"])
    )
    assert data["episodes"][0]["steps"] == 10 and "saved" not in data["episodes"][0]
    data = json_of(
        runner.invoke(
            app, ["play", "--manual", "--headless", "--max-steps", "5", "--run-dir", str(tmp_path), "--json"]
        )
    )
    saved = data["episodes"][0]["saved"]
    assert os.path.exists(saved)
    data = json_of(
        runner.invoke(
            app, ["eval", "--episodes", "1", "--max-steps", "30", "--human", str(tmp_path), "--json"]
        )
    )
    assert data["human"]["recorded"]["steps"] == 5
    assert data["human"]["agent_on_same_track"]["track"] == data["human"]["recorded"]["track_seed"]


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--env", "gta"],
        ["eval", "--agent", "pilot"],
        ["eval", "--episodes", "-3"],
        ["eval", "--env", "carracing", "--agent", "heuristic"],
        ["eval", "--human", "/nonexistent/run"],
        ["export-video", "-o", "/nonexistent/dir/out.mp4"],
        ["export-video", "-o", "out.avi"],
        ["play", "--headless", "--max-steps", "0"],
        ["train-dreamer", "--episodes", "5"],
        ["collect", "--episodes", "3"],
    ],
)
def test_bad_input_exits_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_bad_input_is_one_line_on_stderr_in_a_real_process():
    for args in (["eval", "--env", "gta"], ["export-video", "-o", "/nonexistent/dir/out.mp4"]):
        result = rlcar(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_json_is_the_only_thing_on_stdout_in_a_real_process():
    result = rlcar("eval", "--episodes", "1", "--max-steps", "30", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 1
