"""Fault injection through the real CLI (issue 13): signals at seeded random moments, damaged files, two
writers, read-only and full disks, hand-made files. Every case asserts the exit code, ONE `error:` line
on stderr, no traceback, and that nothing written earlier was lost.

Run by `make test` (CI); `pytest -m faults` runs only these.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_names_nearest_checkpoints, single_error_line

from rlcar_core.io.runs import RunDir

# Every case starts the CLI in a subprocess (a JAX import each, about 3 s), so the whole file is slow;
# the same rules are checked in-process, quickly, by test_checkpoint.py, test_runs.py and test_envs.py.
pytestmark = [pytest.mark.faults, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
RLCAR = [sys.executable, "-c", "from rlcar_cli.main import main; main()"]
COLLECT = ["--episodes", "4", "--num-envs", "2", "--max-steps", "30"]
TRAIN_VAE = ["--steps", "6", "--batch-size", "4", "--z-dim", "4", "--base-channels", "4", "--eval-every", "3"]
TRAIN_DREAMER = [
    "--episodes",
    "2",
    "--num-envs",
    "2",
    "--max-steps",
    "20",
    "--size",
    "tiny",
    "--obs",
    "sensors",
]
EVAL = ["--episodes", "2", "--num-envs", "2", "--max-steps", "30"]


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "SDL_VIDEODRIVER": "dummy", "PYTHONFAULTHANDLER": "1"}
    env.pop("RLCAR_DEBUG", None)
    return {**env, **extra}


def rlcar(*args, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    command = [*RLCAR, *(str(arg) for arg in args)]
    return subprocess.run(
        command, cwd=cwd, env=environment(**env), capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_failure(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Fatal Python error" not in result.stderr
    line = single_error_line(result.stderr)
    for fragment in fragments:
        assert fragment in line, line
    return line


def dataset_fingerprint(run: Path) -> dict[str, str]:
    """{episode file: hash of its actions} for every listed episode; each must load and be unique."""
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    listed = [entry["file"] for entry in manifest["episodes"]]
    on_disk = sorted(name for name in os.listdir(run / "data") if name.startswith("episode_"))
    assert sorted(listed) == on_disk, "every episode file is listed, and only those"
    fingerprint = {}
    for name in listed:
        with np.load(run / "data" / name) as episode:
            fingerprint[name] = hashlib.sha1(
                episode["action"].tobytes() + episode["obs"].tobytes()
            ).hexdigest()
    assert len(set(fingerprint.values())) == len(fingerprint), "no episode is a copy of another"
    assert not [name for name in os.listdir(run / "data") if name.endswith(".tmp") or ".tmp-" in name]
    return fingerprint


# -- quick: bad places and hand-made files ---------------------------------------------------------


def test_a_run_dir_that_is_a_file_or_cannot_exist_is_one_line_exit_2(tmp_path):
    (tmp_path / "afile.txt").write_text("not a run")
    for command in (["collect", *COLLECT], ["train-dreamer", *TRAIN_DREAMER]):
        result = rlcar(*command, "--run-dir", "afile.txt", cwd=tmp_path)
        assert_one_line_failure(result, 2, "afile.txt")
    assert_one_line_failure(rlcar("collect", *COLLECT, "--run-dir", "/proc/x", cwd=tmp_path), 2, "/proc/x")
    assert (tmp_path / "afile.txt").read_text() == "not a run"


def test_a_video_that_cannot_be_written_fails_before_the_episode(tmp_path):
    (tmp_path / "adir.mp4").mkdir()
    for output in ("/proc/x.mp4", "adir.mp4"):
        result = rlcar("export-video", "--max-steps", "5", "-o", output, cwd=tmp_path)
        assert_one_line_failure(result, 2, output)


def test_hand_made_files_are_one_line_exit_2(tmp_path):
    broken = RunDir(tmp_path / "broken").create()
    (broken.data_dir).mkdir()
    (broken.data_dir / "manifest.json").write_text(
        json.dumps({"format": "rlcar-episodes-v1", "env_name": "rlcar"})
    )
    assert_one_line_failure(
        rlcar("train-vae", *TRAIN_VAE, "--run-dir", broken.path, cwd=tmp_path), 2, "episodes"
    )

    odd = RunDir(tmp_path / "odd").create()
    odd.config_path.write_text("[1, 2]")
    assert_one_line_failure(rlcar("collect", *COLLECT, "--run-dir", odd.path, cwd=tmp_path), 2, "JSON object")
    assert odd.config_path.read_text() == "[1, 2]"  # reported, not overwritten

    meta = {
        "env": "rlcar",
        "track_seed": 0,
        "reset_seed": 0,
        "episode_return": 1.0,
        "progress": 0.1,
        "lap_complete": False,
        "crashed": False,
        "steps": 2,
        "manual_steps": 2,
        "created": "x",
        "extra": 1,
    }
    human = tmp_path / "human.npz"
    np.savez(human, actions=np.zeros((2, 3), np.float32), meta=np.array(json.dumps(meta)))
    result = rlcar("eval", *EVAL, "--human", human, cwd=tmp_path)
    line = assert_one_line_failure(result, 2, "not a recorded human run")
    assert "allow_pickle" not in result.stderr and "extra" in line


@pytest.mark.parametrize("platform", ["gpu", "cuda"])  # cuda: a bare AssertionError inside JAX
def test_a_missing_jax_backend_says_how_to_run_on_the_cpu(tmp_path, platform):
    result = rlcar("eval", *EVAL, cwd=tmp_path, JAX_PLATFORMS=platform)
    if result.returncode == 0:
        pytest.skip("this machine has a GPU backend")
    assert_one_line_failure(result, 2, f"JAX backend '{platform}' is not available here", "JAX_PLATFORMS=cpu")


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.writer_lock("pytest"):
        result = rlcar("collect", *COLLECT, "--run-dir", run.path, cwd=tmp_path)
    assert_one_line_failure(result, 2, f"in use by pid {os.getpid()} (pytest)")


# -- quick: damaged checkpoints, read by name ------------------------------------------------------


@pytest.fixture
def damaged_dreamer_run(tmp_path):
    """A run whose DreamerV3 checkpoint folder holds ep2 (intact), ep4 (no manifest) and ep6 (no commit
    metadata). The states are placeholders: naming a damaged or missing step must fail before any
    model is built."""
    import jax.numpy as jnp

    from rlcar_core.io.checkpoint import CheckpointStore

    run = RunDir(tmp_path / "run").create()
    directory = run.checkpoint_dir("dreamer")
    with CheckpointStore(directory, keep_last=5) as store:
        for step in (2, 4, 6):
            store.save(step, {"w": jnp.zeros(2)}, {"env": "rlcar"}, best_metric=float(step))
    (directory / "4" / "state" / "manifest.ocdbt").unlink()
    (directory / "6" / "_CHECKPOINT_METADATA").unlink()
    return run


@pytest.mark.parametrize("name", ["ep4", "ep6"])
def test_a_named_damaged_checkpoint_is_one_line_naming_the_intact_ones(damaged_dreamer_run, tmp_path, name):
    result = rlcar(
        "eval",
        *EVAL,
        "--agent",
        "dreamer",
        "--run-dir",
        damaged_dreamer_run.path,
        "--checkpoint",
        name,
        cwd=tmp_path,
    )
    line = assert_one_line_failure(result, 2, f"checkpoint {name} in", "is damaged", "intact: ep2")
    assert len(line) < 400 and "Event loop is closed" not in result.stderr


def test_a_missing_checkpoint_names_the_nearest(damaged_dreamer_run, tmp_path):
    result = rlcar(
        "eval",
        *EVAL,
        "--agent",
        "dreamer",
        "--run-dir",
        damaged_dreamer_run.path,
        "--checkpoint",
        "ep3",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert_names_nearest_checkpoints(single_error_line(result.stderr), "ep3", ["ep2"], latest="ep2")


# -- file system faults (root only: a tmpfs can be mounted) -----------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str, read_only: bool = False):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (CI and the dev container run as root)")
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_run_directory_is_one_line_exit_2(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "1m", read_only=True) as read_only:
        result = rlcar("collect", *COLLECT, "--run-dir", read_only / "run", cwd=tmp_path)
    assert_one_line_failure(result, 2, str(read_only / "run"), "read-only file system")


def test_a_full_disk_names_the_run_and_the_free_space_of_its_own_file_system(tmp_path, monkeypatch):
    """In-process and quick: a write that names no file, and TensorStore's error on orbax's temp folder,
    name the run's path (or the step folder) and the free space there, not the current folder's disk."""
    import errno

    from rlcar_cli import output

    with mounted_tmpfs(tmp_path / "small", "1m") as disk:
        run = disk / "run"
        monkeypatch.setattr(sys, "argv", ["rlcar", "train-dreamer", "--run-dir", str(run)])
        message, code = output.describe_failure(OSError(errno.ENOSPC, "No space left on device"))
        assert code == 1 and message.startswith(f"no space left on {run} (")
        free = shutil.disk_usage(disk).free
        assert (
            f"({round(free / 1e3)} KB free there)" in message
            or f"({round(free / 1e6)} MB free there)" in message
        )
        temp = f"{run}/checkpoints/dreamer/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/"
        tensorstore = ValueError(
            f'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "{temp}": '
            "Failed to write 1417596 bytes to file 4: No space left on device [os_error_code='28']"
        )
        message, _ = output.describe_failure(tensorstore)
        assert (
            message.startswith(f"no space left on {run}/checkpoints/dreamer/4 (") and "free there" in message
        )
    monkeypatch.setattr(sys, "argv", ["rlcar", "collect"])
    message, _ = output.describe_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert message == "no space left on the disk; nothing was lost"  # never the current folder's space


@pytest.mark.slow
def test_a_full_disk_loses_nothing_and_the_next_start_cleans_up(tmp_path):
    with mounted_tmpfs(tmp_path / "full", "300k") as disk:
        run = disk / "run"
        first = rlcar(
            "collect",
            "--episodes",
            "2",
            "--num-envs",
            "2",
            "--max-steps",
            "20",
            "--run-dir",
            run,
            cwd=tmp_path,
        )
        assert first.returncode == 0, first.stderr[-2000:]
        before = dataset_fingerprint(run)
        full = rlcar(
            "collect",
            "--episodes",
            "40",
            "--num-envs",
            "2",
            "--max-steps",
            "200",
            "--run-dir",
            run,
            cwd=tmp_path,
        )
        assert_one_line_failure(full, 1, "no space left on", "nothing was lost")
        after = dataset_fingerprint(run)  # still consistent, and what was there is still there
        assert {name: after[name] for name in before} == before
        leftovers = [name for name in os.listdir(run / "data") if name.startswith(".")]
        assert set(leftovers) <= {".write.lock"}


# -- signals at seeded random moments --------------------------------------------------------------


def start(args, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*RLCAR, *(str(arg) for arg in args)],
        cwd=cwd,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def signal_when(
    process: subprocess.Popen, ready, delay: float, signal_number: int, timeout: float = 240
) -> bool:
    """Wait until `ready()` (the command is past start-up and inside its work), then `delay` more
    seconds, then send the signal. False if the command had already finished."""
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal_number)
    return True


def finish(process: subprocess.Popen, log: Path, timeout: float = 240) -> tuple[int, str]:
    code = process.wait(timeout=timeout)
    return code, log.read_text()


def assert_interrupted(code: int, stderr: str, signalled: bool, finished_line: str | None = None) -> None:
    """Ctrl-C mid-run: exit code 130 and one clear line. `finished_line` is what the command prints when its
    whole job is done: a signal that lands after it (while the process exits) rightly leaves exit code 0."""
    assert code != -signal.SIGSEGV and "Fatal Python error" not in stderr, stderr[-3000:]
    if signalled and code == 0 and finished_line is not None and finished_line in stderr:
        assert "Traceback" not in stderr, stderr[-3000:]
    elif signalled:
        assert code == 130, (code, stderr[-3000:])
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
        # A stop the user asked for: one "interrupted..." line, no "error:" (issue 29).
        assert "error:" not in stderr, stderr[-3000:]
        stops = [line for line in stderr.splitlines() if line.startswith("interrupted")]
        assert len(stops) == 1, stderr[-3000:]
    else:
        assert code == 0, stderr[-3000:]


# Issue 26: a signal while the CLI imports JAX or compiles, before any graceful stop is armed. Today's
# fix arms a handler from the first line of main() (rlcar_cli.interrupts); before it, such a signal
# segfaulted (-11), aborted in jaxlib (-6), printed a KeyboardInterrupt traceback (-2), or was swallowed.
EARLY_DELAYS = ((0.2, signal.SIGINT), (0.5, signal.SIGTERM), (1.0, signal.SIGINT))


@pytest.fixture(scope="module")
def collected_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("collected") / "run"
    result = rlcar("collect", *COLLECT, "--run-dir", run, cwd=run.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train-dreamer", "collect", "train-vae", "eval"])
def test_a_signal_in_the_first_second_is_exit_130_and_one_line(tmp_path, collected_run, command):
    arguments = {
        "train-dreamer": [*TRAIN_DREAMER, "--run-dir", tmp_path / "dreamer"],
        "collect": [*COLLECT, "--run-dir", tmp_path / "collect"],
        "train-vae": [*TRAIN_VAE, "--run-dir", tmp_path / "vae"],
        "eval": EVAL,
    }[command]
    if command == "train-vae":
        shutil.copytree(collected_run, tmp_path / "vae")
    for delay, signal_number in EARLY_DELAYS:
        log = tmp_path / f"{command}-{delay}.log"
        process = start([command, *arguments], tmp_path, log)
        time.sleep(delay)
        signalled = process.poll() is None
        if signalled:
            process.send_signal(signal_number)
        code, stderr = finish(process, log, timeout=120)
        assert code not in (-signal.SIGINT, -signal.SIGABRT, -signal.SIGSEGV), (delay, code, stderr[-3000:])
        assert_interrupted(code, stderr, signalled)
        if signalled:
            assert stderr.rstrip().splitlines()[-1].startswith("interrupted"), stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_collect_survives_sigint_and_sigkill_and_resumes_without_duplicates(tmp_path, seed):
    rng = random.Random(seed)
    run = tmp_path / "run"
    seeded = rlcar("collect", *COLLECT, "--run-dir", run, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    before = dataset_fingerprint(run)
    for signal_number in (signal.SIGINT, signal.SIGKILL):
        log = tmp_path / f"collect-{signal_number}.log"
        # --progress: without a terminal, the first line is otherwise the last, once all is written.
        process = start(["collect", *COLLECT, "--run-dir", run, "--progress"], tmp_path, log)
        started = lambda log=log: log.stat().st_size > 0  # noqa: E731 - a one-line predicate
        signalled = signal_when(process, started, rng.uniform(0.5, 4.0), signal_number)
        code, stderr = finish(process, log)
        if signal_number == signal.SIGINT:
            assert_interrupted(code, stderr, signalled, finished_line="wrote 4 episodes")
        else:
            assert code in (-signal.SIGKILL, 0), stderr[-2000:]
    again = rlcar("collect", *COLLECT, "--run-dir", run, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    after = dataset_fingerprint(run)
    assert {name: after[name] for name in before} == before and len(after) >= len(before) + 4


@pytest.mark.slow
def test_train_vae_interrupted_then_resumed(tmp_path):
    run = tmp_path / "run"
    assert rlcar("collect", *COLLECT, "--run-dir", run, cwd=tmp_path).returncode == 0
    log = tmp_path / "vae.log"
    process = start(["train-vae", *TRAIN_VAE, "--steps", "400", "--run-dir", run], tmp_path, log)
    signalled = signal_when(
        process, lambda: (run / "checkpoints" / "vae").is_dir(), random.Random(3).uniform(0, 2), signal.SIGINT
    )
    assert_interrupted(*finish(process, log), signalled)
    resumed = rlcar("train-vae", *TRAIN_VAE, "--steps", "12", "--run-dir", run, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.slow
def test_train_dreamer_interrupted_then_resumed_and_eval_interrupted(tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "dreamer.log"
    process = start(["train-dreamer", *TRAIN_DREAMER, "--episodes", "40", "--run-dir", run], tmp_path, log)
    ready = lambda: (run / "checkpoints" / "dreamer").is_dir()  # noqa: E731 - a one-line predicate
    signalled = signal_when(process, ready, random.Random(5).uniform(0, 3), signal.SIGINT)
    assert_interrupted(*finish(process, log), signalled)
    resumed = rlcar("train-dreamer", *TRAIN_DREAMER, "--run-dir", run, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    eval_log = tmp_path / "eval.log"
    process = start(
        ["eval", "--episodes", "64", "--num-envs", "2", "--max-steps", "1000", "--progress"],
        tmp_path,
        eval_log,
    )
    signalled = signal_when(
        process, lambda: eval_log.stat().st_size > 0, random.Random(7).uniform(1, 3), signal.SIGINT
    )
    assert_interrupted(*finish(process, eval_log), signalled)


@pytest.mark.slow
def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    run = tmp_path / "run"
    # Checkpoints every 2 episodes, so an intact one (ep2) sits behind the newest (ep4).
    options = [*TRAIN_DREAMER, "--checkpoint-every", "2", "--run-dir", run]
    first = rlcar("train-dreamer", *options, "--episodes", "4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    steps = sorted(int(name) for name in os.listdir(run / "checkpoints" / "dreamer") if name.isdigit())
    assert len(steps) >= 2, steps
    newest, previous = steps[-1], steps[-2]
    for data in (run / "checkpoints" / "dreamer" / str(newest) / "state" / "d").iterdir():
        os.truncate(data, data.stat().st_size // 2)
    resumed = rlcar("train-dreamer", *options, "--episodes", "6", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    assert f"checkpoint ep{newest} is damaged (" in resumed.stderr
    assert f"resuming from ep{previous}" in resumed.stderr


@pytest.mark.slow
def test_a_truncated_replay_is_not_a_dead_end(tmp_path):
    run = tmp_path / "run"
    assert rlcar("train-dreamer", *TRAIN_DREAMER, "--run-dir", run, cwd=tmp_path).returncode == 0
    replay = next((run / "checkpoints").glob("*replay*.npz"))
    os.truncate(replay, replay.stat().st_size // 3)
    resumed = rlcar("train-dreamer", *TRAIN_DREAMER, "--episodes", "4", "--run-dir", run, cwd=tmp_path)
    assert "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    if resumed.returncode == 0:  # resumed without the replay, and said so
        assert "replay" in resumed.stderr and "damaged" in resumed.stderr, resumed.stderr[-2000:]
    else:  # or refused, saying exactly what to do
        assert "replay" in single_error_line(resumed.stderr)
