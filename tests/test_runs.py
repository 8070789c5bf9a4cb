import json

import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir, write_json_atomic


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
