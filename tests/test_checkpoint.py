import os
import subprocess
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint import (
    CheckpointDamaged,
    CheckpointError,
    CheckpointNotFound,
    CheckpointStore,
    open_checkpoint,
    parse_checkpoint_reference,
)


class TrainingState(NamedTuple):
    """A training state like the trainers' own (params, optimiser state, RNG, counter)."""

    params: Any
    opt_state: Any
    rng: Any
    step: Any


CONFIG = {"model": "tiny", "layers": [2, 3]}


def _init_state(seed):
    weights = np.random.default_rng(seed).normal(size=(3, 4)).astype(np.float32)
    params = {"dense": {"w": jnp.asarray(weights), "b": jnp.zeros(4)}}
    opt_state = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)).init(params)
    return TrainingState(params, opt_state, jax.random.PRNGKey(7), jnp.zeros((), jnp.int32))


def _trained_state(seed):
    """A state whose optimiser moments are non-zero, so restoring them is really checked."""
    state = _init_state(seed)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    grads = jax.tree.map(jnp.ones_like, state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return state._replace(
        params=optax.apply_updates(state.params, updates), opt_state=opt_state, step=jnp.int32(seed)
    )


def _assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture
def filled_store(tmp_path):
    """Steps 1..6 with best metrics 0.5, -, 0.9, 0.1, nan, -: keeps the last 2 plus the best (3)."""
    states = {}
    with CheckpointStore(tmp_path / "vae", keep_last=2) as store:
        for step, best in [(1, 0.5), (2, None), (3, 0.9), (4, 0.1), (5, float("nan")), (6, None)]:
            states[step] = _trained_state(step)
            store.save(step, states[step], CONFIG, metrics={"loss": jnp.float32(step)}, best_metric=best)
    return tmp_path / "vae", states


def test_round_trip_restores_params_and_optimiser_state_into_an_abstract_tree(filled_store):
    directory, states = filled_store
    abstract = jax.eval_shape(lambda: _init_state(0))
    with CheckpointStore(directory) as store:
        restored = store.restore("ep6", abstract)
        _assert_trees_equal(restored, states[6])
        assert isinstance(restored.params["dense"]["w"], jax.Array)
        assert restored.params["dense"]["w"].devices() == {jax.local_devices()[0]}
        # Adam's moments survive as the same NamedTuples, not plain dicts.
        assert type(restored.opt_state[1][0]) is type(states[6].opt_state[1][0])
        assert store.restore_config("ep6") == CONFIG
        assert store.metrics("ep6") == {"best_metric": None, "metrics": {"loss": 6.0}}


def test_names_resolve_and_retention_keeps_latest_and_best(filled_store):
    directory, _ = filled_store
    with CheckpointStore(directory, keep_last=2) as store:
        assert store.steps() == [3, 5, 6]
        assert store.resolve("latest") == 6
        assert store.resolve("best") == 3  # NaN at step 5 never counts as best
        assert store.resolve("ep5") == store.resolve(5) == 5
        with pytest.raises(CheckpointNotFound) as error:
            store.resolve("ep2")
        assert str(error.value) == f"no ep2 in {directory}; nearest: ep3; also best (ep3), latest (ep6)"
        with pytest.raises(CheckpointNotFound, match="nearest: ep3, ep5;"):
            store.resolve("ep4")
        with pytest.raises(CheckpointNotFound, match=r"use best, latest or epN \(have ep3, ep5, ep6"):
            store.resolve("newest")
        with pytest.raises(CheckpointError, match="already exists"):
            store.save(6, _init_state(0), CONFIG)


def test_best_mode_min_and_missing_best(tmp_path):
    with CheckpointStore(tmp_path / "rnn", best_mode="min") as store:
        state = _init_state(0)
        store.save(1, state, CONFIG)
        with pytest.raises(CheckpointNotFound, match=r"none was ranked.*use latest \(ep1\)"):
            store.resolve("best")
        store.save(2, state, CONFIG, best_metric=2.0)
        store.save(3, state, CONFIG, best_metric=1.0)
        store.save(4, state, CONFIG, best_metric=3.0)
        assert store.resolve("best") == 3


def test_protected_steps_survive_pruning_and_an_unreadable_pin_list_prunes_nothing(tmp_path):
    """Steps another stage was built on (`protect()`, read at each cleanup) are never pruned, even
    when a newer run of the same store keeps only its newest steps and a new best."""
    state = _init_state(0)
    pins = {2}
    with CheckpointStore(tmp_path / "vae", keep_last=2, best_mode="min", protect=lambda: pins) as store:
        for step in range(1, 5):
            store.save(step, state, CONFIG, best_metric=10.0 - step)
        assert store.steps() == [2, 3, 4]
        pins.add(4)
        for step in range(5, 8):
            store.save(step, state, CONFIG, best_metric=10.0 - step)
        assert store.steps() == [2, 4, 6, 7]

    def unreadable():
        raise OSError("cannot read the pins")

    with CheckpointStore(tmp_path / "vae", keep_last=2, best_mode="min", protect=unreadable) as store:
        store.save(8, state, CONFIG, best_metric=1.0)
        assert store.steps() == [2, 4, 6, 7, 8]


def test_open_checkpoint_by_name_or_path_and_errors(filled_store, tmp_path):
    directory, _ = filled_store
    store, step = open_checkpoint("best", directory)
    assert step == 3
    store.close()
    store, step = open_checkpoint(str(directory / "5"), tmp_path / "elsewhere")
    assert step == 5 and store.directory == directory.absolute()
    with pytest.raises(CheckpointError, match="read-only"):
        store.save(9, _init_state(0), CONFIG)
    store.close()
    with pytest.raises(CheckpointNotFound, match="no checkpoint folder"):
        open_checkpoint("latest", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    assert issubclass(CheckpointNotFound, RlcarError)


def test_empty_store_and_unfinished_save_are_not_checkpoints(tmp_path):
    directory = tmp_path / "ctrl"
    (directory / "7.orbax-checkpoint-tmp-1234").mkdir(parents=True)
    with CheckpointStore(directory) as store:
        assert store.steps() == []
        with pytest.raises(CheckpointNotFound, match="holds no checkpoints yet"):
            store.resolve("latest")
        # Orbax removes leftovers of a killed save in the background, finishing before the next save.
        store.save(8, _init_state(0), CONFIG)
    assert not (directory / "7.orbax-checkpoint-tmp-1234").exists()
    assert sorted(path.name for path in directory.iterdir() if not path.name.startswith("_")) == ["8"]


def test_restoring_into_a_different_model_is_a_clear_error(filled_store):
    directory, _ = filled_store
    wrong = jax.eval_shape(lambda: {"other": jnp.zeros(2)})
    with CheckpointStore(directory) as store, pytest.raises(CheckpointError, match="does not match"):
        store.restore("latest", wrong)


_SAVE_ON_SECOND_DEVICE = """
import sys
import jax, jax.numpy as jnp
from rlcar_core.io.checkpoint import CheckpointStore
device = jax.devices()[1]
state = {"w": jax.device_put(jnp.arange(6.0).reshape(2, 3), device), "n": jax.device_put(jnp.int32(3), device)}
with CheckpointStore(sys.argv[1]) as store:
    store.save(1, state, {})
"""


def test_checkpoint_from_a_device_this_machine_lacks_restores_here(tmp_path):
    # Stands in for "saved on a GPU, restored on a CPU": the saver has two devices and writes from
    # the second; this process has one, so the saved sharding names a device that is not here.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-c", _SAVE_ON_SECOND_DEVICE, str(tmp_path / "m")]
    subprocess.run(command, env=env, cwd=repo_root, check=True)
    abstract = jax.eval_shape(lambda: {"w": jnp.zeros((2, 3)), "n": jnp.int32(0)})
    with CheckpointStore(tmp_path / "m") as store:
        restored = store.restore("latest", abstract)
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3))
    assert restored["w"].devices() == {jax.local_devices()[0]}


def _damage(step_folder, how):
    """Damage one saved step the ways a crash or a user can: truncate its array data, delete the
    TensorStore manifest, or delete orbax's commit metadata."""
    if how == "truncated":
        data = [path for path in (step_folder / "state").rglob("*") if path.is_file() and "d" in path.parts]
        for path in data:
            os.truncate(path, path.stat().st_size // 2)
    elif how == "no_manifest":
        (step_folder / "state" / "manifest.ocdbt").unlink()
    elif how == "no_metadata":
        (step_folder / "_CHECKPOINT_METADATA").unlink()
    elif how == "empty_file":
        next(path for path in (step_folder / "state").rglob("*") if path.is_file()).write_bytes(b"")


@pytest.fixture
def damaged_store(tmp_path):
    """Steps 1..4 (best metric = step): 4 truncated, 3 without manifest, 2 without metadata; 1 intact."""
    directory = tmp_path / "m"
    with CheckpointStore(directory, keep_last=5) as store:
        for step in (1, 2, 3, 4):
            store.save(step, _trained_state(step), CONFIG, best_metric=float(step))
    _damage(directory / "4", "truncated")
    _damage(directory / "3", "no_manifest")
    _damage(directory / "2", "no_metadata")
    return directory


def test_damaged_steps_are_never_best_or_latest_and_name_the_intact_ones(damaged_store):
    abstract = jax.eval_shape(lambda: _init_state(0))
    with CheckpointStore(damaged_store, read_only=True) as store:
        assert store.steps() == [1, 2, 3, 4]
        assert store.damaged_steps() == {2: "missing _CHECKPOINT_METADATA", 3: "missing state/manifest.ocdbt"}
        # A data file truncated to a non-zero length passes the cheap check; a real restore finds it.
        assert store.intact_steps() == [1, 4] and store.is_intact(4) and not store.is_intact(3)
        assert not store.is_intact(4, abstract) and store.is_intact(1, abstract)
        for name in ("ep3", "ep4"):
            with pytest.raises(CheckpointDamaged) as error:
                store.restore(name, abstract)
            message = str(error.value)
            assert "\n" not in message and len(message) < 300 and "intact: ep1" in message
            assert isinstance(error.value, RlcarError)
        restored = store.restore_newest_intact(abstract)
        assert restored.step == 1 and restored.config == CONFIG
        assert [step for step, _ in restored.skipped] == [4, 3, 2]
        _assert_trees_equal(restored.state, _trained_state(1))


def test_every_step_damaged_says_so(tmp_path):
    directory = tmp_path / "m"
    with CheckpointStore(directory) as store:
        store.save(1, _init_state(0), CONFIG, best_metric=1.0)
    _damage(directory / "1", "empty_file")
    abstract = jax.eval_shape(lambda: _init_state(0))
    with CheckpointStore(directory, read_only=True) as store:
        assert store.latest_step() is None and store.best_step() is None
        with pytest.raises(CheckpointNotFound, match="every checkpoint there is damaged: ep1 \\(empty "):
            store.resolve("latest")
        with pytest.raises(CheckpointDamaged, match="every checkpoint in .* is damaged"):
            store.restore_newest_intact(abstract)
    with CheckpointStore(tmp_path / "none") as store:
        assert store.restore_newest_intact(abstract) is None


@pytest.mark.parametrize("garbage", [b"\x00\xffgarbage{", b"[1, 2]", b""])
def test_a_garbage_metrics_file_is_a_damaged_step_with_fallback(tmp_path, garbage):
    """Orbax reads every step's metrics when a store opens: garbage there was a JSONDecodeError."""
    from rlcar_core.loop.checkpointer import Checkpointer

    directory = tmp_path / "m"
    with CheckpointStore(directory, keep_last=5) as store:
        for step in (1, 2):
            store.save(step, _trained_state(step), CONFIG, best_metric=float(step))
    (directory / "2" / "metrics" / "metrics").write_bytes(garbage)
    abstract = jax.eval_shape(lambda: _init_state(0))
    with CheckpointStore(directory, read_only=True) as store:
        assert store.damaged_steps() == {2: "unreadable metrics/metrics"}
        assert store.latest_step() == 1 and store.best_step() == 1
        with pytest.raises(CheckpointDamaged, match="unreadable metrics/metrics.*intact: ep1"):
            store.resolve("ep2")
    warnings = []
    with Checkpointer(directory, "M", warn=warnings.append) as checkpointer:
        assert checkpointer.resume(abstract).step == 1
        checkpointer.save(3, _trained_state(3), CONFIG, best_metric=3.0)
    assert warnings == ["checkpoint ep2 is damaged (unreadable metrics/metrics); resuming from ep1"]
    assert sorted(os.listdir(directory)) == ["1", "3", "ep2.damaged"]


def test_one_truncated_data_file_is_named_and_its_leftover_reads_stay_quiet(tmp_path, monkeypatch):
    """Orbax wraps TensorStore's OUT_OF_RANGE in a bare Exception; reads of the same restore still in
    flight failed later, often at exit, each printing a 50-line TensorStore spec (515 lines in all)."""
    import types

    directory = tmp_path / "m"
    state = {
        "a": jnp.asarray(np.random.default_rng(0).normal(size=(128, 192)), jnp.float32),
        "b": jnp.arange(10),
    }
    with CheckpointStore(directory) as store:
        store.save(1, state, CONFIG)
    data = sorted(
        (path for path in (directory / "1" / "state").rglob("*") if path.is_file() and "d" in path.parts),
        key=lambda path: path.stat().st_size,
    )
    os.truncate(data[-1], data[-1].stat().st_size // 2)
    reached = []
    monkeypatch.setattr(sys, "unraisablehook", reached.append)
    with CheckpointStore(directory, read_only=True) as store, pytest.raises(CheckpointDamaged) as error:
        store.restore(1, jax.eval_shape(lambda: state))
    assert error.value.reason == "a data file is shorter than written: truncated"

    def unraisable(text):
        return types.SimpleNamespace(
            exc_value=Exception(text), exc_type=Exception, exc_traceback=None, err_msg=None, object=None
        )

    sys.unraisablehook(
        unraisable(
            "Encountered error while reading array index: (slice(0, 10, 1),). See full TensorStore details"
        )
    )
    sys.unraisablehook(unraisable("something else"))
    assert [str(item.exc_value) for item in reached] == ["something else"]


def test_opening_a_store_creates_nothing_until_the_first_save(tmp_path):
    with CheckpointStore(tmp_path / "run" / "checkpoints" / "rnn") as store:
        assert store.latest_step() is None
    assert not (tmp_path / "run").exists()


def test_one_parser_for_checkpoint_references(tmp_path):
    step_folder = tmp_path / "run" / "checkpoints" / "controller" / "12"
    step_folder.mkdir(parents=True)
    parsed = parse_checkpoint_reference(str(step_folder))
    assert parsed == (12, step_folder.parent)
    assert parsed.run_dir == tmp_path / "run" and parsed.model == "controller"
    assert parse_checkpoint_reference("ep81") == ("ep81", None)
    assert parse_checkpoint_reference("best").run_dir is None
    assert parse_checkpoint_reference(7) == (7, None)
