"""The `rlcar` command line: every command headless with --json, and bad input as one line + exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


@pytest.fixture(autouse=True)
def in_a_fresh_directory(tmp_path, monkeypatch):
    """Commands with default runs write under ./runs: keep them out of the source tree."""
    monkeypatch.chdir(tmp_path)


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


def test_play_headless_with_an_agent_and_with_nobody_saves_no_human_run(tmp_path):
    data = json_of(
        runner.invoke(app, ["play", "--headless", "--agent", "heuristic", "--max-steps", "10", "--json"])
    )
    assert data["episodes"][0]["steps"] == 10 and "saved" not in data["episodes"][0]
    data = json_of(
        runner.invoke(
            app, ["play", "--manual", "--headless", "--max-steps", "5", "--run-dir", str(tmp_path), "--json"]
        )
    )
    assert "saved" not in data["episodes"][0] and not (tmp_path / "human").exists()


def record_human_run(run_dir, lap: bool):
    from rlcar_core.apps.human import HumanRun, save_human_run
    from rlcar_core.envs.heldout import track_seed_for

    actions = np.tile(np.array([0.0, 1.0, 0.0], np.float32), (5, 1))
    run = HumanRun("rlcar", track_seed_for("rlcar", 0), 0, actions, 3.0, 0.05, lap, False, 5, 5)
    return save_human_run(run_dir, run)


def test_eval_human_compares_on_the_recorded_track_and_shows_a_lap_time_only_for_a_lap(tmp_path):
    record_human_run(tmp_path / "play", lap=False)
    args = ["eval", "--episodes", "1", "--max-steps", "30", "--human", str(tmp_path / "play")]
    data = json_of(runner.invoke(app, [*args, "--json"]))
    assert data["human"]["recorded"]["steps"] == 5
    assert data["human"]["agent_on_same_track"]["track"] == data["human"]["recorded"]["track_seed"]
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    (human_row,) = [line for line in table.stdout.splitlines() if "human (recorded)" in line]
    assert " s " not in human_row + " " and human_row.rstrip("│ ").endswith("-")
    record_human_run(tmp_path / "play", lap=True)  # newest recording: a lap, so a lap time
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    (human_row,) = [line for line in table.stdout.splitlines() if "human (recorded)" in line]
    assert "0.5 s" in human_row


def test_eval_compares_several_agents_on_the_same_tracks():
    base = ["eval", "--episodes", "2", "--max-steps", "40", "--json"]
    data = json_of(runner.invoke(app, [*base, "--agent", "heuristic", "--agent", "random"]))
    heuristic, random = data["agents"]
    assert (heuristic["agent"], random["agent"]) == ("heuristic", "random")
    assert [e["track"] for e in heuristic["per_episode"]] == [e["track"] for e in random["per_episode"]]
    assert data["episodes"] == 2 and heuristic["progress_mean"] > random["progress_mean"]
    single = json_of(runner.invoke(app, [*base, "--agent", "random"]))
    assert "agents" not in single and single["agent"] == "random"
    assert single["per_episode"] == random["per_episode"]  # same tracks, same seed, same numbers
    table = runner.invoke(app, base[:-1] + ["--agent", "heuristic", "--agent", "random"])
    # The table is the result: on stdout, like `ls`; stderr keeps only messages (none here).
    assert table.exit_code == 0 and table.stderr == ""
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["heuristic", "random"]


class FakeLearnedAgent:
    """Stands in for a trained agent: records where it was loaded from, drives like the heuristic."""

    loaded: list = []

    def __init__(self, run_dir, checkpoint):
        from rlcar_core.agents.builtin import HeuristicAgent

        self.inner = HeuristicAgent()
        self.name, self.obs_kind = "dreamer", "sensors"
        FakeLearnedAgent.loaded.append((run_dir, checkpoint))

    def reset(self, num_envs):
        self.inner.reset(num_envs)

    def act(self, obs):
        return self.inner.act(obs)


def load_fake_dreamer(run_dir, checkpoint, env_name, seed, actions="sample"):
    return FakeLearnedAgent(run_dir, checkpoint)


@pytest.fixture
def fake_dreamer(monkeypatch):
    import rlcar_core.agents as agents

    monkeypatch.setitem(agents.LEARNED_AGENT_LOADERS, "dreamer", (__name__, "load_fake_dreamer"))
    FakeLearnedAgent.loaded = []
    return FakeLearnedAgent


def test_learned_agents_use_their_default_run_when_no_run_dir_is_given(fake_dreamer, tmp_path):
    missing = runner.invoke(app, ["eval", "--agent", "dreamer", "--checkpoint", "best"])
    assert missing.exit_code == 2 and "runs/dreamer" in missing.stderr and "train-dreamer" in missing.stderr
    (tmp_path / "runs" / "dreamer").mkdir(parents=True)
    result = runner.invoke(
        app,
        [
            "eval",
            "--agent",
            "dreamer",
            "--checkpoint",
            "best",
            "--episodes",
            "1",
            "--max-steps",
            "5",
            "--json",
        ],
    )
    data = json_of(result)
    assert data["run_dir"] == "runs/dreamer" and data["checkpoint"] == "best"
    assert "run: runs/dreamer" in result.stderr.splitlines()
    assert fake_dreamer.loaded == [(Path("runs/dreamer"), "best")]
    video = json_of(
        runner.invoke(
            app, ["export-video", "--agent", "dreamer", "--max-steps", "3", "-o", "v.gif", "--json"]
        )
    )
    assert video["run_dir"] == "runs/dreamer"
    played = json_of(
        runner.invoke(app, ["play", "--headless", "--agent", "dreamer", "--max-steps", "3", "--json"])
    )
    assert played["run_dir"] == "runs/dreamer" and played["agent"] == "dreamer"
    # An explicit --run-dir wins and prints no `run:` line.
    result = runner.invoke(
        app, ["eval", "--agent", "dreamer", "--run-dir", "elsewhere", "--episodes", "1", "--max-steps", "5"]
    )
    assert result.exit_code == 0 and "run:" not in result.stderr
    assert fake_dreamer.loaded[-1] == (Path("elsewhere"), "best")


def test_export_video_checks_the_output_before_rendering(fake_dreamer, tmp_path):
    (tmp_path / "runs" / "dreamer").mkdir(parents=True)
    (tmp_path / "adir.mp4").mkdir()
    for output, message in (
        ("/proc/x.mp4", "cannot write"),
        ("adir.mp4", "directory"),
        ("missing/out.mp4", "does not exist"),
        ("out.avi", ".mp4 or .gif"),
    ):
        result = runner.invoke(app, ["export-video", "--agent", "dreamer", "-o", output])
        assert result.exit_code == 2, (output, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert fake_dreamer.loaded == [], "no agent was loaded, nothing was rendered"


def test_export_video_of_carracing_skips_the_intro_and_has_one_hud_and_the_camera(tmp_path):
    import imageio.v2 as imageio

    target = tmp_path / "cr.gif"
    data = json_of(
        runner.invoke(
            app,
            [
                "export-video",
                "--env",
                "carracing",
                "--agent",
                "random",
                "--max-steps",
                "60",
                "-o",
                str(target),
                "--json",
            ],
        )
    )
    frames = imageio.mimread(target)
    assert data["steps"] == 60 and data["frames"] == len(frames) < 60  # the zoom-in intro is not written
    # ... and the count says so (issue 29: --max-steps 200 wrote 152 frames without a word)
    assert data["intro_steps"] > 0 and data["frames"] == data["steps"] - data["intro_steps"]
    first = np.asarray(frames[0])[..., :3]
    assert first.shape[:2] == (350, 800)  # CarRacing's view less its own bottom bar, then our panel
    view = first[:, :600]
    assert (view.max(axis=-1) < 30).mean() < 0.05, "the first frame is not the zoomed-out intro on black"
    assert first[20:170, 620:780].std() > 10, "the camera inset is drawn in the panel"


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
        ["eval", "--agent", "random", "--agent", "random"],
    ],
)
def test_bad_input_exits_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.slow  # end to end; `make test` runs it
def test_bad_input_is_one_line_on_stderr_in_a_real_process():
    for args in (["eval", "--env", "gta"], ["export-video", "-o", "/nonexistent/dir/out.mp4"]):
        result = rlcar(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


@pytest.mark.slow  # end to end; `make test` runs it
def test_json_is_the_only_thing_on_stdout_in_a_real_process():
    result = rlcar("eval", "--episodes", "1", "--max-steps", "30", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 1


def test_importing_the_cli_leaves_signal_handlers_as_they_were():
    # rlcar_cli.main records Ctrl-C while it imports (rlcar_cli.interrupts) and hands the handlers back
    # at the end of the import: a test run or the web server importing it keeps its own Ctrl-C.
    # In a fresh interpreter: here the module is long imported, and SIGINT's disposition depends on how
    # the test run was started (a background job ignores it).
    check = (
        "import signal; before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]; "
        "import rlcar_cli.main; "
        "assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before"
    )
    completed = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--first-track", str(10**12)], "--first-track must be at most"),
        (["eval", "--first-track", str(2**63 - 1)], "held-out tracks are numbered up to 1000000000"),
        (["eval", "--max-steps", str(10**12)], "--max-steps must be at most 2147483647"),
        (["play", "--headless", "--track", str(10**12)], "--track must be at most"),
        (["export-video", "-o", "out.gif", "--max-steps", str(2**40)], "a 32-bit step counter"),
        (["train-dreamer", "--run-dir", ""], "an empty path"),
        (["collect", "--run-dir", ""], "an empty path"),
        (["eval", "--run-dir", ""], "an empty path"),
    ],
)
def test_numbers_past_their_limit_and_an_empty_run_dir_are_one_line_exit_2(args, message, tmp_path):
    # Issue 26: numbers beyond JAX's 32-bit counters were an internal OverflowError (exit 1), and
    # `--run-dir ''` (Path('') is '.') wrote a run into the current folder.
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "data").exists()


def test_eval_human_on_a_file_that_is_not_a_recording_says_so(tmp_path):
    # Issue 26: these gave an internal BadZipFile or ValueError, or "it holds Python objects".
    import json as json_module
    import zipfile

    recording = record_human_run(tmp_path / "play", lap=False)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(recording.read_bytes()[:200])
    bad_seed = tmp_path / "bad_seed.npz"
    with zipfile.ZipFile(recording) as source, zipfile.ZipFile(bad_seed, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "meta.npy":
                with np.load(recording) as loaded:
                    meta = json_module.loads(str(loaded["meta"]))
                meta["track_seed"] = "abc"
                np.save(tmp_path / "meta.npy", np.array(json_module.dumps(meta)))
                data = (tmp_path / "meta.npy").read_bytes()
            target.writestr(item, data)
    (tmp_path / "run.json").write_text('{"env": "rlcar"}')
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(300))
    for name in ("truncated.npz", "bad_seed.npz", "run.json", "notes.txt", "random.bin"):
        result = runner.invoke(app, ["eval", "--episodes", "1", "--human", str(tmp_path / name)])
        assert result.exit_code == 2, (name, result.output)
        assert "not a recorded human run" in result.output and "Python objects" not in result.output, name
    assert "track_seed" in runner.invoke(app, ["eval", "--human", str(bad_seed)]).output


# -- issue 29: shell conventions ---------------------------------------------------------------------


def test_export_video_says_why_carracing_has_fewer_frames_than_steps(monkeypatch, tmp_path):
    import rlcar_core.apps.export as export

    def fake_export(config, on_frame=None):
        return {"path": str(config.output), "frames": 152, "steps": 200, "intro_steps": 48}

    monkeypatch.setattr(export, "export_video", fake_export)
    result = runner.invoke(app, ["export-video", "--agent", "random", "--env", "carracing", "-o", "v.gif"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "wrote 152 frames to v.gif (its first 48 steps, CarRacing's zoom-in intro, are not filmed)"
    )


def load_dreamer_without_best(run_dir, checkpoint, env_name, seed, actions="sample"):
    from rlcar_core.io.checkpoint import CheckpointNotFound

    if checkpoint == "best":  # as CheckpointStore.resolve says it for a run no evaluation ranked yet
        raise CheckpointNotFound(
            f"no best checkpoint in {run_dir}/checkpoints/dreamer: none was ranked by an evaluation yet; "
            "use latest (ep2) or one of ep2"
        )
    return FakeLearnedAgent(run_dir, checkpoint)


def test_eval_of_a_run_without_best_yet_falls_back_to_latest_with_a_note(monkeypatch, tmp_path):
    """Issue 29: `rlcar eval --agent dreamer` right after a short run exited 2: no `best` yet."""
    import rlcar_core.agents as agents

    monkeypatch.setitem(agents.LEARNED_AGENT_LOADERS, "dreamer", (__name__, "load_dreamer_without_best"))
    FakeLearnedAgent.loaded = []
    (tmp_path / "runs" / "dreamer").mkdir(parents=True)
    args = ["eval", "--agent", "dreamer", "--episodes", "1", "--max-steps", "5", "--json"]
    data = json_of(runner.invoke(app, args))
    assert data["checkpoint"] == "latest" and FakeLearnedAgent.loaded == [(Path("runs/dreamer"), "latest")]
    result = runner.invoke(app, args)
    assert "note: no evaluation has ranked a best checkpoint in runs/dreamer" in result.stderr
    assert "using latest" in result.stderr
    # Asked for by name, best stays best: the one-line error and exit 2.
    asked = runner.invoke(app, [*args, "--checkpoint", "best"])
    assert asked.exit_code == 2 and "no best checkpoint" in asked.stderr
