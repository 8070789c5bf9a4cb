"""Issue 31's camera, wired through: each training command records the camera its run films with
(--camera, a preset), and whatever loads the run (eval, play, dream, export-video) films with that same
camera; runs and shipped agents that recorded none keep today's."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import single_error_line
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.envs.camera_option import CAMERA_NAMES
from rlcar_core.envs.tracks import run_camera
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir
from rlcar_core.sim.camera_spec import CAMERA_PRESETS, CameraSpec, camera_preset, parse_camera

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
# A small frame keeps every compilation here short; the field overrides are part of what --camera takes.
SMALL_ZOOM = "zoom:size=16,rows_ahead=12"


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


# -- the presets ----------------------------------------------------------------------------------


def test_the_presets_live_in_one_table_that_the_help_and_the_probe_name():
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    import pixel_probe

    assert CAMERA_NAMES == tuple(CAMERA_PRESETS)  # --help's names cannot import the simulator
    assert pixel_probe.CAMERAS is CAMERA_PRESETS
    assert camera_preset("today") == CameraSpec()
    assert parse_camera(SMALL_ZOOM) == CAMERA_PRESETS["zoom"].with_overrides("size=16,rows_ahead=12")
    with pytest.raises(RlcarError, match="unknown camera 'fisheye'; choose one of today, flat"):
        parse_camera("fisheye")


def test_a_run_that_recorded_no_camera_gets_todays_and_carracing_gets_none():
    zoom = CAMERA_PRESETS["zoom"]
    assert run_camera("rlcar", {"dreamer": {}}) == CameraSpec()
    assert run_camera("rlcar", None) == CameraSpec()
    assert run_camera("rlcar", json.loads(json.dumps({"camera": zoom.to_dict()}))) == zoom
    assert run_camera("carracing", {"camera": zoom.to_dict()}) is None


# -- train-dreamer --------------------------------------------------------------------------------


def test_train_dreamer_resolves_the_camera_into_the_model_and_keeps_it_on_resume():
    from rlcar_core.dreamer.train_config import TrainDreamerConfig, resolve, resume

    config, model = resolve(TrainDreamerConfig(obs="pixels", camera="zoom-96"))
    assert config.camera == "zoom-96" and model.obs_shape == (96, 96, 3)
    assert model.cnn_min_resolution == 6  # 96 halves to 6 x 6, not to 4 x 4
    # New runs: pixels film with the camera whose obstacles the model can see; sensors keep today's world.
    visible, visible_model = resolve(TrainDreamerConfig(obs="pixels"))
    assert visible.camera == "visible" and visible_model.obs_shape == (64, 64, 3)
    today, today_model = resolve(TrainDreamerConfig())
    assert today.obs == "sensors" and today.camera == "today"
    assert resolve(TrainDreamerConfig(env="carracing"))[0].camera is None
    # A run from before --camera filmed with today's camera: resuming it asks for nothing new...
    older = TrainDreamerConfig(**{**today.to_dict(), "camera": None, "overrides": ()})
    assert resume(older, today_model, {}, "runs/old")[0].camera == "today"
    # ...and another camera would change the frames its model and replay were trained on.
    with pytest.raises(RlcarError, match="trained with --camera today"):
        resume(older, today_model, {"camera": "zoom"}, "runs/old")


def test_train_dreamer_records_the_camera_and_builds_its_cars_with_it(tmp_path, monkeypatch):
    """Everything up to the training loop, which a stand-in replaces: config.json's "camera" and the
    cars' frames come from --camera."""
    from rlcar_core.dreamer import train

    seen = {}

    class StandInLoop:
        def __init__(self, run, checkpointer, log, config, model, env, emit, warn, learner, camera):
            seen.update(shape=env.single_observation_space.shape, camera=camera, model=model)

        def run(self, stop):
            return {}

    monkeypatch.setattr(train, "_TrainingLoop", StandInLoop)
    run_dir = tmp_path / "run"
    options = dict(obs="pixels", size="tiny", num_envs=1, num_tracks=1)
    train.train_dreamer(run_dir, {**options, "camera": SMALL_ZOOM})
    recorded = json.loads((run_dir / "config.json").read_text())
    assert CameraSpec.from_run_config(recorded) == parse_camera(SMALL_ZOOM) == seen["camera"]
    assert recorded["dreamer"]["train"]["camera"] == SMALL_ZOOM
    assert seen["shape"] == seen["model"].obs_shape == (16, 16, 3)
    # The recorded spec, not the preset's name, is what a resume films with.
    assert train.settle_camera(RunDir(run_dir), train.settle(RunDir(run_dir), {})[0]) == seen["camera"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--camera", "fisheye"], "unknown camera 'fisheye'; choose one of today, flat, zoom"),
        (["--camera", "zoom:zoom=2"], "bad camera override 'zoom=2'"),
        (["--env", "carracing", "--camera", "zoom"], "--camera applies to --env rlcar only"),
    ],
)
def test_a_bad_camera_is_one_line_and_exit_2(tmp_path, options, message):
    result = invoke("train-dreamer", "--run-dir", tmp_path / "new", *options)
    assert result.exit_code == 2, result.output
    assert message in single_error_line(result.stderr)
    assert not (tmp_path / "new").exists()


# -- the loaders ----------------------------------------------------------------------------------


def saved_dreamer_run(run_dir: Path, camera: str) -> Path:
    """A DreamerV3 run of one untrained checkpoint, saved as train-dreamer saves one (config.json and
    the checkpoint's config both record the camera): what the loaders read, without training."""
    from rlcar_core.dreamer.checkpoints import initial_trainer_state, open_store
    from rlcar_core.dreamer.train_config import TrainDreamerConfig, resolve, saved_section
    from rlcar_core.envs.tracks import recorded_camera

    config, model = resolve(TrainDreamerConfig(obs="pixels", size="tiny", camera=camera))
    spec = parse_camera(camera)
    run = RunDir(run_dir)
    run.update_config({"dreamer": saved_section(config, model), **recorded_camera(spec)})
    saved = {"dreamer": model.to_dict(), "env": "rlcar", "size": "tiny", "training": {"action_repeat": 1}}
    with open_store(run) as store:
        store.save(1, initial_trainer_state(model, jax.random.key(0)), {**saved, **recorded_camera(spec)})
    return run_dir


@pytest.fixture(scope="module")
def zoomed_dreamer_run(tmp_path_factory):
    return saved_dreamer_run(tmp_path_factory.mktemp("camera") / "run", SMALL_ZOOM)


def test_the_dreamer_loader_evaluates_and_drives_with_its_runs_camera(zoomed_dreamer_run, monkeypatch):
    from rlcar_core.agents import make_agent
    from rlcar_core.apps.drive import DrivingSession
    from rlcar_core.envs import heldout

    agent = make_agent("dreamer", "rlcar", 0, zoomed_dreamer_run, "latest")
    assert agent.camera == parse_camera(SMALL_ZOOM)
    built = []
    real_make_env = heldout.make_env

    def spy(*args, **kwargs):
        env = real_make_env(*args, **kwargs)
        built.append((kwargs.get("camera"), env.unwrapped.camera))
        return env

    monkeypatch.setattr(heldout, "make_env", spy)
    summary = heldout.evaluate_policy("rlcar", agent, episodes=1, seed=0, max_steps=3, num_envs=1)
    assert summary["episodes"] == 1  # the agent read 16 x 16 frames: it raises on any other shape
    session = DrivingSession("rlcar", agent.obs_kind, 0, 3, 0, render=False, camera=agent.camera)
    assert session.reset().shape == (16, 16, 3)
    session.close()
    assert built == [(agent.camera, agent.camera)] * 2


def test_shipped_agents_film_with_the_camera_they_were_trained_with():
    from rlcar_core.dreamer.checkpoints import load_saved_agent
    from rlcar_core.worldmodels.storage import load_world_model

    # Both RLCar pixel agents were retrained on the visible camera (issue 31), which their runs recorded.
    assert load_saved_agent(ROOT / "pretrained" / "dreamer-rlcar-pixels", "best").camera == camera_preset(
        "visible"
    )
    assert load_saved_agent(ROOT / "pretrained" / "dreamer-carracing-pixels", "best").camera is None
    model = load_world_model(RunDir(ROOT / "pretrained" / "worldmodel-rlcar-pixels"), "best")
    assert model.camera == camera_preset("visible")


def test_a_world_models_run_drives_with_the_camera_its_data_was_collected_with(tmp_path):
    from rlcar_core.agents import make_agent

    run_dir = tmp_path / "wm"
    shutil.copytree(ROOT / "pretrained" / "worldmodel-rlcar-pixels", run_dir)
    RunDir(run_dir).update_config({"camera": CAMERA_PRESETS["zoom"].to_dict()})
    assert make_agent("worldmodel", "rlcar", 0, run_dir, "best").camera == CAMERA_PRESETS["zoom"]


# -- collect and train-worldmodels ----------------------------------------------------------------


def test_collect_records_its_camera_and_a_dataset_stays_one_cameras(tmp_path):
    from rlcar_core.io.data import load_episode

    run_dir = tmp_path / "run"
    small = ["--episodes", "1", "--max-steps", "3", "--num-envs", "1", "--num-tracks", "1"]
    result = invoke("collect", "--run-dir", run_dir, *small, "--camera", SMALL_ZOOM, "--json")
    assert result.exit_code == 0, result.output
    assert CameraSpec.from_run_config(json.loads((run_dir / "config.json").read_text())) == parse_camera(
        SMALL_ZOOM
    )
    episode = load_episode(next((run_dir / "data").glob("episode_*.npz")))
    assert episode["obs"].shape[1:] == (16, 16, 3)
    mixed = invoke("collect", "--run-dir", run_dir, *small, "--camera", "today")
    assert mixed.exit_code == 2 and "filmed with another camera" in single_error_line(mixed.stderr)


def test_a_new_dataset_films_with_the_pixel_default_and_an_older_one_keeps_todays(tmp_path):
    """A new dataset without --camera takes the pixel runs' default ("visible"); one from before cameras
    were recorded (episodes, no "camera" in config.json) goes on with today's, the camera it holds."""
    from test_cli_worldmodels import fake_dataset

    from rlcar_core.worldmodels.collect import settle_camera
    from rlcar_core.worldmodels.config import CollectConfig

    fresh = RunDir(tmp_path / "fresh")
    assert settle_camera(fresh, CollectConfig(run_dir=fresh.path), 0) == CAMERA_PRESETS["visible"]
    older = RunDir(fake_dataset(tmp_path / "older"))
    assert settle_camera(older, CollectConfig(run_dir=older.path), 2) == CameraSpec()
    assert settle_camera(fresh, CollectConfig(run_dir=fresh.path, env="carracing"), 0) is None


def test_a_train_worldmodels_rerun_refuses_another_camera_before_any_stage(tmp_path):
    """A rerun may have every collect done already: the dataset's camera is checked up front."""
    from test_cli_worldmodels import fake_dataset

    run_dir = fake_dataset(tmp_path / "run")  # 64 x 64 episodes from before cameras were recorded
    result = invoke("train-worldmodels", "--run-dir", run_dir, "--camera", "zoom", "--episodes", "1")
    assert result.exit_code == 2, result.output
    assert "filmed with another camera than 'zoom'" in single_error_line(result.stderr)
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["collect", "--camera", "fisheye"], "unknown camera 'fisheye'"),
        (["collect", "--env", "carracing", "--camera", "zoom"], "--camera applies to --env rlcar only"),
        (["train-worldmodels", "--camera", "zoom-96"], "VAE reads 64x64 frames"),
        (["train-worldmodels", "--camera", "nope"], "unknown camera 'nope'"),
    ],
)
def test_world_models_commands_refuse_a_bad_camera_in_one_line(tmp_path, args, message):
    result = invoke(*args, "--run-dir", tmp_path / "new")
    assert result.exit_code == 2, result.output
    assert message in single_error_line(result.stderr)
    assert not (tmp_path / "new" / "data").exists()


def test_train_vae_refuses_frames_of_another_size_in_one_line(tmp_path):
    from rlcar_core.io.data import write_episodes

    steps = 4
    episode = {
        "obs": np.zeros((steps + 1, 96, 96, 3), np.uint8),
        "action": np.zeros((steps, 3), np.float32),
        "reward": np.zeros(steps, np.float32),
        "terminated": np.eye(steps, dtype=bool)[-1],
        "truncated": np.zeros(steps, bool),
    }
    write_episodes(tmp_path / "run" / "data", [episode] * 3, env_name="rlcar")
    result = invoke("train-vae", "--run-dir", tmp_path / "run", "--steps", "1")
    assert result.exit_code == 2, result.output
    assert "holds frames of shape (96, 96, 3)" in single_error_line(result.stderr)


# -- play -----------------------------------------------------------------------------------------


def test_play_looks_through_a_preset_when_no_trained_agent_drives(monkeypatch):
    from rlcar_core.apps import play

    cameras = []
    real_session = play.DrivingSession

    def spy(*args, **kwargs):
        cameras.append(kwargs.get("camera"))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(play, "DrivingSession", spy)
    result = invoke("play", "--headless", "--camera", SMALL_ZOOM, "--max-steps", "2", "--json")
    assert result.exit_code == 0, result.output
    assert cameras == [parse_camera(SMALL_ZOOM)]


def test_play_refuses_a_camera_for_a_trained_agent(zoomed_dreamer_run):
    result = invoke("play", "--headless", "--run-dir", zoomed_dreamer_run, "--camera", "today")
    assert result.exit_code == 2, result.output
    assert "drives with the camera its run was trained with" in single_error_line(result.stderr)
