"""Shipped agents (`rlcar ship`, `pretrained/<agent>-<env>-<obs>/`): one checkpoint per model and a card,
small, resolving `best` and `latest`; read by eval, play, dream and export-video without writing a byte
into them; listed by `rlcar runs`; and every directory under the repo's `pretrained/` drives."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import single_error_line
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.apps.pretrained import CARD_FILE, MAX_SHIPPED_BYTES, folder_bytes, read_card, ship_agent
from rlcar_core.apps.runs import list_runs
from rlcar_core.errors import RlcarError

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SHIPPED_IN_REPO = sorted(path for path in (REPO / "pretrained").glob("*") if (path / CARD_FILE).is_file())


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` with its size and modification time: any write shows."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in [folder, *folder.rglob("*")]
    }


def invoke(*args):
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def set_writable(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def shipped_dreamer(tiny_dreamer_run, tmp_path_factory):
    """(source run, its snapshot before shipping, shipped dir, card) of the shared tiny DreamerV3 run."""
    run_dir = tiny_dreamer_run[0]
    before = snapshot(run_dir)
    dest = tmp_path_factory.mktemp("pretrained") / "dreamer-rlcar-sensors"
    card = ship_agent(run_dir, dest, notes="tiny test agent")
    return run_dir, before, dest, card


@pytest.fixture(scope="module")
def worldmodel_run(tmp_path_factory):
    """A World Models run made without training (random tiny V, M and C saved through the checkpoint
    store): two VAE and MDN-RNN steps, and controllers pinned to the older ones, so shipping has to
    pick the pinned steps rather than the newest."""
    import jax

    from rlcar_core.io.checkpoint import CheckpointStore
    from rlcar_core.io.runs import RunDir
    from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
    from rlcar_core.worldmodels.storage import abstract_rnn_state, abstract_search_state, abstract_vae_state

    rng = np.random.default_rng(0)

    def random_state(abstract):
        # Random numbers of the right shapes: initialising the models for real compiles them.
        return jax.tree.map(lambda leaf: (0.1 * rng.standard_normal(leaf.shape)).astype(leaf.dtype), abstract)

    run = RunDir(tmp_path_factory.mktemp("wm") / "run").create()
    vae = VAEConfig(z_dim=4, encoder_channels=(4, 4, 4, 4), decoder_channels=(4, 4, 4))
    rnn = MDNRNNConfig(z_dim=4, hidden_size=8, num_mixtures=2)
    controller = ControllerConfig(z_dim=4, hidden_size=8)
    saved = {
        "vae": {"vae": vae.to_dict(), "training": {}},
        "mdnrnn": {"mdnrnn": rnn.to_dict(), "vae_step": 2, "training": {}},
        "controller": {
            "controller": controller.to_dict(),
            "vae_step": 2,
            "rnn_step": 3,
            "env": "rlcar",
            "training": {},
        },
    }
    run.write_config(saved)
    run.data_dir.mkdir()
    (run.data_dir / "manifest.json").write_text(json.dumps({"total_steps": 96}))
    for model, steps, abstract, best_metric, metrics in (
        ("vae", (2, 4), abstract_vae_state(vae), 0.1, {}),
        ("mdnrnn", (3, 5), abstract_rnn_state(rnn), 1.0, {}),
        ("controller", (1, 2), abstract_search_state(controller), None, {"eval_progress": 0.25}),
    ):
        with CheckpointStore(run.checkpoint_dir(model)) as store:
            for step in steps:
                store.save(step, random_state(abstract), saved[model], metrics, best_metric)
    return run.path


@pytest.fixture(scope="module")
def shipped_worldmodel(worldmodel_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("pretrained") / "worldmodel-rlcar-pixels"
    return ship_agent(worldmodel_run, dest, "latest", float16=True)


# -- shipping ------------------------------------------------------------------------------------


def test_a_shipped_dreamer_holds_one_checkpoint_its_config_and_a_card(shipped_dreamer):
    run_dir, _, dest, card = shipped_dreamer
    assert sorted(path.name for path in dest.iterdir()) == ["agent.json", "checkpoints", "config.json"]
    assert [path.name for path in (dest / "checkpoints").iterdir()] == ["dreamer"]
    assert [path.name for path in (dest / "checkpoints" / "dreamer").iterdir()] == ["2"]
    assert (dest / "config.json").read_bytes() == (run_dir / "config.json").read_bytes()
    assert read_card(dest) == {key: value for key, value in card.items() if key not in ("path", "size_bytes")}
    assert card["agent"] == "dreamer" and (card["env"], card["obs"]) == ("rlcar", "sensors")
    assert card["checkpoint"] == "ep2" and card["checkpoints"] == {"dreamer": "ep2"}
    assert card["env_frames"] > 0 and card["wall_seconds"] > 0 and card["notes"] == "tiny test agent"
    assert card["source_run"] == str(run_dir) and card["precision"] == "float32"
    assert card["size_bytes"] == folder_bytes(dest) < MAX_SHIPPED_BYTES


def test_best_and_latest_name_the_shipped_step_with_the_trained_parameters(shipped_dreamer):
    import jax

    from rlcar_core.dreamer.checkpoints import load_saved_agent, open_store
    from rlcar_core.io.runs import RunDir

    run_dir, _, dest, _ = shipped_dreamer
    with open_store(RunDir(dest), read_only=True) as store:
        assert store.resolve("best") == store.resolve("latest") == 2
    source, shipped = load_saved_agent(run_dir, "ep2"), load_saved_agent(dest, "best")
    assert shipped.step == 2 and shipped.env == source.env and shipped.config == source.config
    for mine, theirs in zip(jax.tree.leaves(shipped.params), jax.tree.leaves(source.params), strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_shipping_leaves_the_source_run_unchanged(shipped_dreamer):
    run_dir, before, _, _ = shipped_dreamer

    def without_event_files(files):
        # The training run's TensorBoard writer is never closed, so tensorboardX's own thread may
        # still flush its event file after training returned: that is training's write, not ours.
        return {name: value for name, value in files.items() if "tfevents" not in name}

    assert without_event_files(snapshot(run_dir)) == without_event_files(before)


def test_an_existing_destination_is_replaced_only_with_force(shipped_dreamer, tmp_path):
    run_dir, _, dest, _ = shipped_dreamer
    with pytest.raises(RlcarError, match="already exists; pass --force"):
        ship_agent(run_dir, dest)
    copy = tmp_path / "dreamer"
    ship_agent(run_dir, copy)
    replaced = ship_agent(run_dir, copy, force=True, notes="again")
    assert read_card(copy)["notes"] == "again" == replaced["notes"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dreamer"]  # no temp or old folder left
    (tmp_path / "a-run").mkdir()
    with pytest.raises(RlcarError, match="not a shipped agent"):
        ship_agent(run_dir, tmp_path / "a-run", force=True)
    with pytest.raises(RlcarError, match="overlap"):
        ship_agent(run_dir, run_dir / "shipped")


def test_an_agent_over_the_size_limit_is_refused_and_nothing_is_left(shipped_dreamer, tmp_path):
    run_dir = shipped_dreamer[0]
    with pytest.raises(RlcarError, match=r"over the 0 MB limit.*--float16"):
        ship_agent(run_dir, tmp_path / "big", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_a_world_model_ships_the_controller_with_the_vae_and_mdnrnn_it_was_trained_on(
    worldmodel_run, shipped_worldmodel
):
    import jax

    from rlcar_core.io.runs import RunDir
    from rlcar_core.worldmodels.storage import load_world_model, open_store

    card = shipped_worldmodel
    dest = Path(card["path"])
    assert card["agent"] == "worldmodel" and card["obs"] == "pixels" and card["env_frames"] == 96
    assert card["checkpoints"] == {"vae": "ep2", "mdnrnn": "ep3", "controller": "ep2"}
    assert card["best_metric"] is None and card["precision"] == "float16"
    for model, step in (("vae", "2"), ("mdnrnn", "3"), ("controller", "2")):
        assert [path.name for path in (dest / "checkpoints" / model).iterdir()] == [step]
        with open_store(RunDir(dest), model, read_only=True) as store:
            assert store.resolve("best") == store.resolve("latest") == int(step)
    shipped, source = load_world_model(RunDir(dest), "best"), load_world_model(RunDir(worldmodel_run), "ep2")
    assert shipped.steps == source.steps and shipped.env == "rlcar"
    for mine, theirs in zip(jax.tree.leaves(shipped.params), jax.tree.leaves(source.params), strict=True):
        assert mine.dtype == theirs.dtype  # stored as float16, restored as the model's float32
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-3, atol=1e-4)
    # Adam's moments zeroed, one step per model, float16: a fraction of the source's checkpoints.
    assert folder_bytes(dest) < folder_bytes(worldmodel_run / "checkpoints") / 3


def test_ship_command_prints_the_card_and_bad_input_is_one_line(shipped_dreamer, tmp_path):
    run_dir = shipped_dreamer[0]
    score = tmp_path / "score.json"
    score.write_text(json.dumps({"env": "rlcar", "agent": "dreamer", "run_dir": str(run_dir), "checkpoint": "best",
                                 "episodes": 2, "return_mean": 3.5, "progress_mean": 0.25,
                                 "per_episode": [{"progress": 0.25}]}))  # fmt: skip
    card = invoke("ship", run_dir, tmp_path / "out", "--score", score, "--notes", "n", "--json")
    assert card["score"] == {"env": "rlcar", "agent": "dreamer", "checkpoint": "best", "episodes": 2,
                             "return_mean": 3.5, "progress_mean": 0.25}  # fmt: skip
    assert card["path"] == str(tmp_path / "out") and read_card(tmp_path / "out")["notes"] == "n"
    for args, message in (
        ([run_dir, tmp_path / "out"], "already exists"),
        ([tmp_path / "nothing", tmp_path / "x"], "no run directory"),
        ([run_dir, tmp_path / "x", "--checkpoint", "ep99"], "no ep99"),
        ([run_dir, tmp_path / "x", "--score", tmp_path / "missing.json"], "no score file"),
    ):
        result = runner.invoke(app, ["ship", *map(str, args)])
        assert result.exit_code == 2 and message in single_error_line(result.stderr), result.output
    assert not (tmp_path / "x").exists()


def test_a_score_of_another_agent_run_or_checkpoint_is_refused(
    shipped_dreamer, worldmodel_run, shipped_worldmodel, tmp_path
):
    """`--score` must be `rlcar eval --json` of the shipped agent: the same agent, run and checkpoint
    (named any way that resolves to the shipped step), or a shipped copy of that very checkpoint."""
    summary = {"env": "rlcar", "episodes": 2, "return_mean": 3.5, "progress_mean": 0.25}

    def ship_with(score: dict, checkpoint: str = "latest"):
        path = tmp_path / "score.json"
        path.write_text(json.dumps({**summary, **score}))
        return runner.invoke(app, ["ship", str(worldmodel_run), str(tmp_path / "out"), "--checkpoint",
                                   checkpoint, "--score", str(path), "--json", "--force"])  # fmt: skip

    own = {"agent": "worldmodel", "run_dir": str(worldmodel_run)}
    step_folder = worldmodel_run / "checkpoints" / "controller" / "2"
    for score in (
        {**own, "checkpoint": "latest"},
        {**own, "checkpoint": "ep2"},
        {**own, "checkpoint": str(step_folder)},
        {"agent": "worldmodel", "run_dir": shipped_worldmodel["path"], "checkpoint": "best"},
    ):
        result = ship_with(score)
        assert result.exit_code == 0, (score, result.output)
        assert json.loads(result.stdout)["score"]["agent"] == "worldmodel"
    for score, message in (
        ({"agent": "heuristic", "run_dir": None, "checkpoint": None}, "the score is of agent heuristic"),
        ({"checkpoint": "latest"}, "the score is of no named agent"),
        ({"agent": "worldmodel", "checkpoint": "latest"}, "the score names no run"),
        ({**own, "run_dir": str(tmp_path)}, f"measured on the run {tmp_path}, not"),
        ({"agent": "worldmodel", "run_dir": str(shipped_dreamer[2]), "checkpoint": "best"},
         "measured on the shipped agent"),
        ({**own}, "the score names no checkpoint"),
        ({**own, "checkpoint": "ep1"}, "measured on checkpoint ep1, not the worldmodel agent at ep2"),
        ({**own, "checkpoint": "ep9"}, "checkpoint ep9, which"),
        ({**own, "checkpoint": "latest", "env": "carracing"}, "measured on carracing"),
    ):  # fmt: skip
        result = ship_with(score)
        assert result.exit_code == 2, (score, result.output)
        line = single_error_line(result.stderr)
        assert message in line and "rlcar eval --run-dir" in line or "carracing" in message, line
    # The agent's own score of another step is refused when shipping that other step, too.
    result = ship_with({**own, "checkpoint": "latest"}, checkpoint="ep1")
    assert result.exit_code == 2 and "latest (now ep2), not the worldmodel agent at ep1" in result.stderr
    assert read_card(tmp_path / "out")["score"]["checkpoint"] == "best"  # the last accepted score stays


def test_runs_lists_shipped_agents_with_their_card(shipped_dreamer, shipped_worldmodel):
    (dreamer,) = list_runs(shipped_dreamer[2].parent)
    assert (dreamer.kind, dreamer.shipped["checkpoint"], dreamer.best_progress_checkpoint) == (
        "dreamer",
        "ep2",
        "ep2",
    )
    root = Path(shipped_worldmodel["path"]).parent
    (worldmodel,) = list_runs(root)
    assert (worldmodel.kind, worldmodel.env, worldmodel.obs) == ("worldmodels", "rlcar", "pixels")
    assert worldmodel.env_steps == 96 and worldmodel.best_progress == 0.25
    assert worldmodel.best_progress_checkpoint == "ep2"
    assert [run["path"] for run in invoke("runs", "--root", root, "--json")] == [shipped_worldmodel["path"]]
    table = runner.invoke(app, ["runs", "--root", str(root)])
    assert table.exit_code == 0 and "shipped" in table.stdout


# -- read-only use ---------------------------------------------------------------------------------


@pytest.mark.slow  # four commands, each compiling its agent
def test_eval_play_dream_and_export_video_write_nothing_into_a_shipped_agent(shipped_dreamer, tmp_path):
    dest = shipped_dreamer[2]
    run = ["--run-dir", dest]
    set_writable(dest, False)  # as a user without write access would have it (root writes anyway:
    before = snapshot(dest)  # the snapshot is what catches a write)
    try:
        evaluation = invoke("eval", "--agent", "dreamer", *run, "--episodes", "1", "--num-envs", "1",
                            "--max-steps", "10", "--json")  # fmt: skip
        assert evaluation["episodes"] == 1 and evaluation["checkpoint"] == "best"
        played = invoke("play", "--headless", "--agent", "dreamer", *run, "--max-steps", "5", "--json")
        assert played["episodes"][0]["steps"] == 5 and "saved" not in played["episodes"][0]
        dream = invoke("dream", *run, "--headless", "--max-steps", "8", "--json")
        assert dream["checkpoint"] == "ep2" and dream["steps"] >= 1
        video = invoke("export-video", "--agent", "dreamer", *run, "--max-steps", "3",
                       "-o", tmp_path / "agent.gif", "--json")  # fmt: skip
        assert video["frames"] >= 1 and (tmp_path / "agent.gif").stat().st_size > 0
        assert snapshot(dest) == before
    finally:
        set_writable(dest, True)


def test_a_person_driving_beside_a_shipped_agent_saves_into_runs_play(shipped_dreamer):
    from rlcar_core.apps.play import PlayConfig
    from rlcar_core.io.runs import default_run_dir

    assert PlayConfig(manual=True, agent="dreamer", run_dir=shipped_dreamer[2]).human_dir == default_run_dir(
        "play"
    )
    assert PlayConfig(manual=True, run_dir=Path("runs/mine")).human_dir == Path("runs/mine")


# -- the agents that ship with the project ---------------------------------------------------------


@pytest.mark.parametrize("shipped", SHIPPED_IN_REPO, ids=[path.name for path in SHIPPED_IN_REPO])
def test_each_pretrained_agent_in_the_repo_drives(shipped):
    card = read_card(shipped)
    assert folder_bytes(shipped) <= MAX_SHIPPED_BYTES
    before = snapshot(shipped)
    evaluation = invoke("eval", "--agent", card["agent"], "--env", card["env"], "--run-dir", shipped,
                        "--episodes", "1", "--num-envs", "1", "--max-steps", "20", "--json")  # fmt: skip
    assert evaluation["episodes"] == 1 and np.isfinite(evaluation["return_mean"])
    assert snapshot(shipped) == before
    assert os.path.basename(shipped) == f"{card['agent']}-{card['env']}-{card['obs']}"
