"""The training-loop kit: schedules, checkpoint fallback, metrics truncation on resume, the stop flag."""

import glob
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.io.checkpoint import CheckpointDamaged
from rlcar_core.io.runs import RunDir, RunInUse, sweep_temp_files
from rlcar_core.loop.checkpointer import Checkpointer, short_reason
from rlcar_core.loop.keys import stream_base, stream_key
from rlcar_core.loop.metrics import MetricsLogger
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted
from rlcar_core.loop.schedule import Every, Ratio
from rlcar_core.loop.session import writer_session
from rlcar_core.loop.stop import graceful_stop


def _state(value: float = 1.0):
    return {"w": jnp.full((64,), value, jnp.float32), "step": jnp.asarray(3, jnp.int32)}


def _abstract():
    return jax.eval_shape(_state)


# -- schedules ---------------------------------------------------------------------------------


def test_every_fires_once_per_multiple_crossed():
    every = Every(10)
    assert every.crossed(9, 10)
    assert every.crossed(8, 13)  # a jump over the multiple still fires
    assert not every.crossed(10, 19)
    assert every.due(20) and not every.due(0) and not every.due(21)
    with pytest.raises(ValueError):
        Every(0)


def test_ratio_carries_fractional_credit():
    ratio = Ratio(train_ratio=64.0, replayed_per_update=8 * 16)  # half an update per env step
    updates, credit = ratio.owed(0.0, env_steps=1)
    assert (updates, credit) == (0, 0.5)
    updates, credit = ratio.owed(credit, env_steps=8)
    assert (updates, credit) == (4, 0.5)
    total, credit = 0, 0.0
    for _ in range(100):
        owed, credit = ratio.owed(credit, env_steps=3)
        total += owed
    assert total == 150
    with pytest.raises(ValueError):
        Ratio(train_ratio=float("inf"), replayed_per_update=4)


def test_stream_keys_are_distinct_and_reproducible():
    a = jax.random.key_data(stream_key(0, 1, 5))
    assert np.array_equal(a, jax.random.key_data(jax.random.fold_in(stream_base(0, 1), 5)))
    assert not np.array_equal(a, jax.random.key_data(stream_key(0, 2, 5)))
    assert not np.array_equal(a, jax.random.key_data(stream_key(0, 1, 6)))


# -- checkpointer ------------------------------------------------------------------------------


def _two_checkpoints(directory):
    with Checkpointer(directory, "test model") as checkpointer:
        assert checkpointer.resume(_abstract()) is None
        checkpointer.save(5, _state(5.0), {"a": 1})
        checkpointer.save(10, _state(10.0), {"a": 1})


def _truncate_data_files(step_dir):
    files = [f for f in glob.glob(f"{step_dir}/state/**/d/*", recursive=True) if os.path.isfile(f)]
    assert files
    for name in files:
        os.truncate(name, 3)


@pytest.mark.parametrize("damage", ["truncated", "no-manifest"])
def test_resume_falls_back_to_the_previous_intact_checkpoint(tmp_path, damage):
    directory = tmp_path / "ckpt"
    _two_checkpoints(directory)
    if damage == "truncated":
        _truncate_data_files(directory / "10")
    else:
        (directory / "10" / "state" / "manifest.ocdbt").unlink()
    warnings = []
    with Checkpointer(directory, "test model", warn=warnings.append) as checkpointer:
        restored = checkpointer.resume(_abstract())
        assert restored.step == 5
        assert float(restored.state["w"][0]) == 5.0
        assert len(warnings) == 1
        assert warnings[0].startswith("checkpoint ep10 is damaged (")
        assert warnings[0].endswith("); resuming from ep5")
        assert len(warnings[0].replace(str(directory), "")) < 130  # one line, whatever the temp path
        # The damaged step is set aside: never latest again, and its number can be saved anew.
        assert checkpointer.store.steps() == [5]
        assert (directory / "ep10.damaged").is_dir()
        assert checkpointer.save(10, _state(11.0), {"a": 1})
    with Checkpointer(directory, "test model") as checkpointer:
        assert float(checkpointer.resume(_abstract()).state["w"][0]) == 11.0


def test_resume_moves_nothing_when_no_checkpoint_restores(tmp_path):
    directory = tmp_path / "ckpt"
    _two_checkpoints(directory)
    other_model = jax.eval_shape(lambda: {"w": jnp.zeros((7,)), "step": jnp.asarray(0, jnp.int32)})
    with Checkpointer(directory, "test model") as checkpointer, pytest.raises(Exception, match="ep10"):  # noqa: B017 - io may wrap it
        checkpointer.resume(other_model)
    assert sorted(os.listdir(directory)) == ["10", "5"]


def test_resume_when_every_step_is_truncated_names_none_as_intact(tmp_path):
    directory = tmp_path / "ckpt"
    _two_checkpoints(directory)
    _truncate_data_files(directory / "10")
    _truncate_data_files(directory / "5")
    with Checkpointer(directory, "test model") as checkpointer, pytest.raises(CheckpointDamaged) as error:
        checkpointer.resume(_abstract())
    message = str(error.value)
    assert message.startswith("every test model checkpoint in ") and "intact" not in message
    assert "ep10 (" in message and "ep5 (" in message and "\n" not in message
    assert sorted(os.listdir(directory)) == ["10", "5"]  # nothing moved


def test_short_reason_is_one_short_clause():
    long = "OUT_OF_RANGE: Error reading ... " + "x" * 2000
    assert short_reason(ValueError(long)) == "a file is truncated, OUT_OF_RANGE"
    reason = short_reason(RuntimeError("boom " * 100))
    assert len(reason) < 120 and "\n" not in reason


def test_non_finite_loss_raises_diverged_and_keeps_the_checkpoint(tmp_path):
    with Checkpointer(tmp_path / "ckpt", "test model") as checkpointer:
        checkpointer.save(5, _state(), {})
        checkpointer.check_finite({"m/loss": 1.0}, where="update 1")
        with pytest.raises(TrainingDiverged, match=r"m/loss became nan at update 2; kept checkpoint ep5"):
            checkpointer.check_finite({"m/loss": float("nan")}, where="update 2")
        with pytest.raises(TrainingDiverged, match="parameters"):
            checkpointer.check_params({"w": np.array([np.inf])}, where="update 3")


def test_interrupted_saves_the_current_state(tmp_path):
    with Checkpointer(tmp_path / "ckpt", "test model") as checkpointer:
        checkpointer.save(5, _state(), {})
        error = checkpointer.interrupted(7, _state(7.0), {}, where="episode 7")
        assert isinstance(error, TrainingInterrupted)
        assert "resumes from ep7" in str(error)
        # Same step again: nothing new to save, and the message says what is not in the checkpoint.
        error = checkpointer.interrupted(
            7, _state(8.0), {}, where="episode 7", unsaved="12 env steps are lost"
        )
        assert "resumes from ep7" in str(error) and "12 env steps are lost" in str(error)
        assert checkpointer.store.steps() == [5, 7]


def test_a_newer_state_replaces_its_step_and_says_when_that_was_the_best(tmp_path):
    directory = tmp_path / "ckpt"
    warnings = []
    with Checkpointer(directory, "test model", warn=warnings.append) as checkpointer:
        checkpointer.save(4, _state(4.0), {}, best_metric=0.2)
        checkpointer.save(5, _state(5.0), {}, best_metric=0.5)
        assert not checkpointer.save(5, _state(6.0), {})  # without replace=True, nothing is written
        # A best state replaced by a better one of the same step: best stays there, no warning.
        assert checkpointer.save(5, _state(6.0), {}, replace=True, best_metric=0.6)
        assert checkpointer.store.best_step() == 5 and not warnings
        # Replaced by a state without an evaluation: best falls back to ep4, and a warning says so.
        assert checkpointer.save(5, _state(7.0), {}, replace=True)
        assert checkpointer.store.steps() == [4, 5] and checkpointer.store.best_step() == 4
        assert len(warnings) == 1 and warnings[0].startswith("ep5 held the best evaluation (0.6)")
        assert warnings[0].endswith("so best is now ep4")
    assert sorted(os.listdir(directory)) == ["4", "5"]  # the old folder aside is gone
    with Checkpointer(directory, "test model") as checkpointer:
        restored = checkpointer.resume(_abstract())
        assert restored.step == 5 and float(restored.state["w"][0]) == 7.0


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_records_share_one_key_scheme(tmp_path):
    run = RunDir(tmp_path)
    log = MetricsLogger(run, "vae", clock=lambda: 123.0)
    record = log.log("train", 4, {"vae/loss": 0.5})
    assert record == {"trainer": "vae", "kind": "train", "step": 4, "time": 123.0, "vae/loss": 0.5}
    assert run.read_metrics() == [record]


def test_a_failed_append_leaves_no_partial_record_and_resume_skips_damaged_bytes(tmp_path, monkeypatch):
    import errno

    run = RunDir(tmp_path)
    log = MetricsLogger(run, "vae")
    log.log("train", 1, {"vae/loss": 1.0})
    whole = run.metrics_path.read_bytes()

    def disk_fills_part_way(record):  # a full disk takes the first 8 KB of a record, then refuses
        with open(run.metrics_path, "ab") as handle:
            handle.write(b'{"trainer": "vae", "kind": "train", "x": "' + b"x" * 8192)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run, "append_metrics", disk_fills_part_way)
    with pytest.raises(OSError) as error:
        log.log("train", 2, {"vae/loss": 0.5})
    assert error.value.filename == str(run.metrics_path)  # the one-line message names the file
    assert run.metrics_path.read_bytes() == whole and log.count == 1
    monkeypatch.undo()
    # Damaged bytes (a torn line, 0xff) from any other cause are dropped by the resume's rewrite.
    with open(run.metrics_path, "ab") as handle:
        handle.write(b'{"trainer": "vae", "kind": "tr\xff\x00\n[1]\n')
    log.log("train", 2, {"vae/loss": 0.5})
    log.log("train", 3, {"vae/loss": 0.4})
    assert MetricsLogger(run, "vae").resume(2) == 1
    assert [record["step"] for record in run.read_metrics()] == [1, 2]
    assert b"\xff" not in run.metrics_path.read_bytes()


def test_resume_drops_the_records_written_after_the_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    other = MetricsLogger(run, "vae")
    log = MetricsLogger(run, "rnn")
    with Checkpointer(run.checkpoint_dir("rnn"), "MDN-RNN", metrics=log) as checkpointer:
        assert checkpointer.resume(_abstract()) is None
        log.log("train", 1, {"rnn/loss": 3.0})
        other.log("train", 1, {"vae/loss": 1.0})
        log.log("checkpoint", 2, {})
        checkpointer.save(2, _state(), {})
        log.log("train", 3, {"rnn/loss": 2.0})  # after the checkpoint: a rerun repeats it
        other.log("train", 2, {"vae/loss": 0.9})
    with open(run.metrics_path, "a") as handle:
        handle.write('{"trainer": "rnn", "kind": "tr')  # half a line from a kill
    log = MetricsLogger(run, "rnn")
    with Checkpointer(run.checkpoint_dir("rnn"), "MDN-RNN", metrics=log) as checkpointer:
        assert checkpointer.resume(_abstract()).step == 2
    kept = [(r["trainer"], r["kind"], r["step"]) for r in run.read_metrics()]
    assert kept == [("rnn", "train", 1), ("vae", "train", 1), ("rnn", "checkpoint", 2), ("vae", "train", 2)]
    assert log.count == 2
    assert oct(os.stat(run.metrics_path).st_mode & 0o777) != oct(0o600)


def test_fresh_start_drops_records_of_a_run_that_never_checkpointed(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"kind": "train", "wm/loss": 1.0})  # an older record without `trainer`: kept
    MetricsLogger(run, "dreamer").log("train", 1, {})
    log = MetricsLogger(run, "dreamer")
    with Checkpointer(run.checkpoint_dir("dreamer"), "DreamerV3", metrics=log) as checkpointer:
        assert checkpointer.resume(_abstract()) is None
    assert run.read_metrics() == [{"kind": "train", "wm/loss": 1.0}]


# -- session and stop --------------------------------------------------------------------------


def test_stop_flag_is_set_by_a_signal_and_a_second_one_raises():
    # Whatever handlers were there before come back (a shell's background job starts with SIGINT
    # ignored, an interactive one with Python's default), and the flag works under both.
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with graceful_stop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_writer_session_locks_the_run_and_sweeps_leftovers(tmp_path):
    run = RunDir(tmp_path / "run")
    (run.path / "checkpoints").mkdir(parents=True)
    leftovers = [run.path / ".dreamer-replay.npz.tmp-1234", run.path / "checkpoints" / ".tmp-x.npz"]
    for path in leftovers:
        path.write_bytes(b"half")
    (run.path / "keep.txt").write_text("mine")
    with writer_session(run, "train-test") as stop:
        assert not stop.requested
        assert not any(path.exists() for path in leftovers)
        assert (run.path / "keep.txt").exists()
        with pytest.raises(RunInUse), writer_session(run, "train-other"):
            pass
    assert sweep_temp_files(run.path) == []
