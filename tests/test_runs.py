import json
import os
import stat
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir, RunInUse, write_json_atomic


def test_layout_paths_do_not_touch_disk(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.config_path == tmp_path / "run" / "config.json"
    assert run.metrics_path == tmp_path / "run" / "metrics.jsonl"
    assert run.data_dir == tmp_path / "run" / "data"
    assert run.videos_dir == tmp_path / "run" / "videos"
    assert run.checkpoint_dir("vae") == tmp_path / "run" / "checkpoints" / "vae"
    assert not run.exists()
    with pytest.raises(ValueError):
        run.checkpoint_dir("../escape")
    assert run.create().exists()


def test_config_write_read_update(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(RlcarError, match="no config.json"):
        run.read_config()
    run.write_config({"seed": 1, "vae": {"z_dim": 32, "channels": (32, 64)}})
    assert run.read_config() == {"seed": 1, "vae": {"z_dim": 32, "channels": [32, 64]}}
    merged = run.update_config({"rnn": {"hidden_size": 256}})
    assert run.read_config() == merged and set(merged) == {"seed", "vae", "rnn"}
    # The temp file used for the atomic write is gone once the rename has happened.
    assert sorted(path.name for path in run.path.iterdir()) == ["config.json"]
    run.config_path.write_text("{broken")
    with pytest.raises(RlcarError, match="not valid JSON"):
        run.read_config()


def test_atomic_write_keeps_the_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "config.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_metrics_append_accepts_jax_and_numpy_and_survives_a_torn_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.append_metrics({"step": 1, "loss": jnp.float32(0.5), "returns": np.array([1.0, 2.0])})
    with open(run.metrics_path, "a") as handle:
        handle.write('{"step": 2, "lo')  # a run killed mid-write
    run.append_metrics({"step": 3, "done": np.bool_(True)})
    assert run.read_metrics() == [
        {"step": 1, "loss": 0.5, "returns": [1.0, 2.0]},
        {"step": 3, "done": True},
    ]
    assert RunDir(tmp_path / "none").read_metrics() == []


def test_files_written_under_runs_are_0644_as_the_umask_allows(tmp_path):
    from rlcar_core.io.atomic import atomic_path, write_bytes_atomic

    previous = os.umask(0o022)
    try:
        run = RunDir(tmp_path / "runs" / "x")
        run.write_config({"seed": 1})
        run.append_metrics({"step": 1})
        write_bytes_atomic(run.path / "data" / "blob.bin", b"abc")
        with atomic_path(run.videos_dir.mkdir(parents=True) or run.videos_dir / "a.gif") as temp:
            temp.write_bytes(b"GIF89a")
        for path in (
            run.config_path,
            run.metrics_path,
            run.path / "data" / "blob.bin",
            run.videos_dir / "a.gif",
        ):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    finally:
        os.umask(previous)


def test_json_is_strict_and_knows_numpy_paths_and_enums(tmp_path):
    from enum import Enum

    from rlcar_core.io.jsonable import to_json_value

    class Kind(Enum):
        dreamer = "dreamer"

    value = {
        "nan": float("nan"),
        "inf": np.float32(np.inf),
        "path": tmp_path,
        "kind": Kind.dreamer,
        "n": np.int64(3),
    }
    assert to_json_value(value) == {
        "nan": None,
        "inf": None,
        "path": str(tmp_path),
        "kind": "dreamer",
        "n": 3,
    }
    write_json_atomic(tmp_path / "c.json", {"lr": float("inf")})
    assert "Infinity" not in (tmp_path / "c.json").read_text()
    assert json.loads((tmp_path / "c.json").read_text()) == {"lr": None}


def test_a_config_that_is_not_an_object_and_a_run_dir_that_is_a_file_are_one_line_errors(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.config_path.write_text("[1, 2]")
    with pytest.raises(RlcarError, match="must hold a JSON object, not a list"):
        run.read_config()
    (tmp_path / "afile.txt").write_text("x")
    for path in (tmp_path / "afile.txt", tmp_path / "afile.txt" / "below"):
        with pytest.raises(RlcarError, match="it or a parent is a file"):
            RunDir(path).create()


def test_the_writer_lock_names_the_holder_and_sweeps_what_killed_writers_left(tmp_path):
    run = RunDir(tmp_path / "run").create()
    (run.path / "data").mkdir()
    (run.path / "checkpoints" / "dreamer").mkdir(parents=True)
    leftovers = [
        run.path / ".config.json.a1b2.tmp",
        run.path / ".tmp-config.json.1234.json",
        run.path / "data" / ".episode_000005.npz.x9.tmp",
        run.path / "checkpoints" / "dreamer" / ".dreamer-replay.npz.tmp-4242",
        run.path / "data" / "episode_000000.npz",  # renamed into place, but the manifest never listed it
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    kept = run.path / "notes.tmp.txt"
    kept.write_text("a user's file")
    with run.writer_lock("train-dreamer"):
        assert not any(path.exists() for path in leftovers) and kept.exists()
        with pytest.raises(RunInUse, match=f"in use by pid {os.getpid()} \\(train-dreamer\\)"):
            with run.writer_lock("collect"):
                pass
    with run.writer_lock("collect"):  # released when the holder leaves
        pass


def test_keep_metrics_drops_records_past_a_resumed_checkpoint(tmp_path):
    run = RunDir(tmp_path / "run")
    for episode in range(1, 6):
        run.append_metrics({"episode": episode})
    assert run.keep_metrics(lambda record: record["episode"] <= 3) == 2
    assert [record["episode"] for record in run.read_metrics()] == [1, 2, 3]
    assert run.keep_metrics(lambda record: True) == 0


def _save_steps(directory, steps_and_metrics):
    import jax.numpy as jnp

    from rlcar_core.io.checkpoint import CheckpointStore

    with CheckpointStore(directory, keep_last=10) as store:
        for step, metric in steps_and_metrics:
            store.save(step, {"w": jnp.full((2,), float(step))}, {"env": "rlcar"}, best_metric=metric)


def test_runs_lists_kinds_checkpoints_best_progress_and_damage_without_jax(tmp_path):
    from rlcar_core.apps.runs import list_runs, most_recent_trained_run
    from rlcar_core.io.data import write_episode

    root = tmp_path / "runs"
    dreamer = RunDir(root / "dreamer").create()
    dreamer.write_config({"dreamer": {"train": {"env": "rlcar", "obs": "sensors"}}})
    for episode, progress in ((2, 0.2), (4, 0.6), (6, 0.4)):
        dreamer.append_metrics(
            {"kind": "eval", "episode": episode, "env_steps": 100 * episode, "progress_mean": progress}
        )
    _save_steps(dreamer.path / "checkpoints" / "dreamer", [(2, 0.2), (4, 0.6), (6, 0.4)])
    (dreamer.path / "checkpoints" / "dreamer" / "6" / "state" / "manifest.ocdbt").unlink()

    worldmodels = RunDir(root / "worldmodels").create()
    worldmodels.write_config({"env": "rlcar", "collect": {"obs": "pixels"}})
    episode = {
        "obs": np.zeros((3, 4, 4, 3), np.uint8),
        "action": np.zeros((2, 3), np.float32),
        "reward": np.zeros(2, np.float32),
        "terminated": np.zeros(2, bool),
        "truncated": np.zeros(2, bool),
    }
    write_episode(worldmodels.data_dir, episode, env_name="rlcar")
    _save_steps(worldmodels.path / "checkpoints" / "vae", [(1, 5.0), (2, 3.0), (3, 4.0)])
    (root / "play" / "human").mkdir(parents=True)
    (root / "play" / "human" / "20260101-rlcar-track0.npz").write_bytes(b"x")
    (root / "empty").mkdir()

    script = (
        "import sys, json; from rlcar_core.apps.runs import list_runs; "
        f"print(json.dumps([r.to_json() for r in list_runs({str(root)!r})])); print('jax' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    listed, jax_loaded = output.splitlines()
    assert jax_loaded == "False"
    runs = {run["path"].rsplit("/", 1)[-1]: run for run in json.loads(listed)}
    assert set(runs) == {"dreamer", "worldmodels", "play"}
    first = runs["dreamer"]
    assert (first["kind"], first["env"], first["obs"]) == ("dreamer", "rlcar", "sensors")
    assert (first["episodes"], first["env_steps"]) == (6, 600)
    assert (first["best_progress"], first["best_progress_checkpoint"]) == (0.6, "ep4")
    assert first["checkpoints"]["dreamer"]["newest"] == ["ep4", "ep2"]
    assert first["checkpoints"]["dreamer"]["damaged"] == {"ep6": "missing state/manifest.ocdbt"}
    second = runs["worldmodels"]
    assert (second["kind"], second["env"], second["obs"], second["episodes"], second["env_steps"]) == (
        "worldmodels",
        "rlcar",
        "pixels",
        1,
        2,
    )
    assert second["checkpoints"]["vae"]["best"] == "ep2"  # a loss: lower is better
    assert runs["play"]["kind"] == "play" and runs["play"]["episodes"] == 1
    assert [run.kind for run in list_runs(root, "play")] == ["play"]
    with pytest.raises(RlcarError, match="unknown run kind"):
        list_runs(root, "bogus")
    assert most_recent_trained_run(root) == root / "worldmodels"
    assert most_recent_trained_run(tmp_path / "none") is None


def test_damaged_bytes_in_metrics_skip_one_line_and_a_symlink_loop_is_a_clear_error(tmp_path):
    # Issue 26: 0x00 and 0xff bytes made `rlcar runs` and serve's /api/runs fail (UnicodeDecodeError).
    run = RunDir(tmp_path / "run")
    run.append_metrics({"episode": 1, "env_steps": 10})
    with open(run.metrics_path, "ab") as handle:
        handle.write(b'{"episode": 2, \x00\xff\xfe}\n\xff\xff\n')
    run.append_metrics({"episode": 3, "env_steps": 30})
    assert [record["episode"] for record in run.read_metrics()] == [1, 3]
    from rlcar_core.apps.runs import list_runs

    assert list_runs(tmp_path)

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(RlcarError, match="symbolic link"):
        RunDir(loop).create()


def test_a_config_json_that_is_a_folder_is_named(tmp_path):
    # Issue 26: the error named the temp file the atomic write renames, not config.json.
    run = RunDir(tmp_path / "run")
    run.config_path.mkdir(parents=True)
    with pytest.raises(RlcarError, match=r"config\.json is a folder"):
        run.write_config({"a": 1})


def _runs_listing(root, columns: int, cwd=None) -> subprocess.CompletedProcess:
    """`rlcar runs --root ROOT | cat` at a given terminal width, through the real entry point."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "COLUMNS": str(columns)}
    code = "from rlcar_cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "runs", "--root", str(root)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


def test_runs_listing_is_on_stdout_and_fits_80_columns_without_breaking_words():
    """Issue 29: the listing is a result (stdout, so `rlcar runs | wc -l` counts it); at 80 columns the
    least needed columns go instead of every cell folding letter by letter ("pretrai/ned")."""
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = "pretrained"  # as the README runs it, from the repository's root
    shipped = sorted(name for name in os.listdir(os.path.join(repository, root)) if not name.startswith("."))
    narrow = _runs_listing(root, 80, cwd=repository)
    assert narrow.returncode == 0 and narrow.stderr == "", narrow.stderr
    lines = narrow.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), narrow.stdout
    for name in shipped:  # each run's path whole, on one line, to copy into --run-dir
        assert any(f"{root}/{name}" in line for line in lines), name
    assert "hidden at this width:" in narrow.stdout and "best progress" in lines[1]
    wide = _runs_listing(root, 250, cwd=repository)
    header = wide.stdout.splitlines()[1]
    for column in (
        "run",
        "kind",
        "env / obs",
        "best progress",
        "env steps",
        "episodes",
        "checkpoints",
        "modified",
    ):
        assert column in header
    assert "hidden" not in wide.stdout


def test_runs_on_an_empty_root_lists_nothing_on_stdout(tmp_path):
    empty = _runs_listing(tmp_path, 80)
    assert empty.returncode == 0 and empty.stdout == "" and "no runs under" in empty.stderr
