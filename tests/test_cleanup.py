"""What trainers and restores leave behind: the metrics logger closes its TensorBoard event file when
its trainer ends, and a restore collects garbage only after a failed read."""

import gc
import os

import jax
import jax.numpy as jnp
import pytest

from rlcar_core.io.checkpoint import CheckpointDamaged, CheckpointStore
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.metrics import MetricsLogger


def _event_files(run_dir):
    return sorted(run_dir.glob("events.out.tfevents.*"))


def test_the_logger_closes_its_event_file_when_its_trainer_ends(tmp_path):
    run = RunDir(tmp_path)
    with MetricsLogger(run, "vae") as log:
        log.log("train", 1, {"vae/loss": 1.0})
        assert log.tensorboard._writer is not None
    assert log.tensorboard._writer is None, "the event writer (and its flush thread) is closed"
    (events,) = _event_files(tmp_path)
    size = events.stat().st_size
    assert size > 0 and len(run.read_metrics()) == 1
    log.close()  # closing twice is harmless
    # A logger that writes nothing (every process but the first of a distributed run) closes too.
    with MetricsLogger(run, "vae", writes=False) as quiet:
        quiet.log("train", 2, {"vae/loss": 0.5})
    assert _event_files(tmp_path) == [events] and events.stat().st_size == size


@pytest.fixture
def store_with_a_truncated_step(tmp_path):
    state = {"w": jnp.arange(4096.0), "n": jnp.int32(3)}
    with CheckpointStore(tmp_path / "m", keep_last=3) as store:
        store.save(1, state, {}, best_metric=1.0)
        store.save(2, state, {}, best_metric=2.0)
    for path in (tmp_path / "m" / "2" / "state").rglob("*"):
        if path.is_file() and "d" in path.parts:
            os.truncate(path, path.stat().st_size // 2)
    return tmp_path / "m", jax.eval_shape(lambda: state)


def test_a_restore_collects_garbage_only_after_a_failed_read(store_with_a_truncated_step, monkeypatch):
    directory, abstract = store_with_a_truncated_step
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    with CheckpointStore(directory, read_only=True) as store:
        store.restore("ep1", abstract)
        assert collections == []
        with pytest.raises(CheckpointDamaged):
            store.restore("ep2", abstract)
        assert len(collections) == 1
