"""The apps behind eval, play and export-video, and what a person sees: the frame layout, the lap
banner, the real pygame window (SDL's dummy driver), several agents on the same tracks."""

import dataclasses

import numpy as np
import pytest

import rlcar_core.render.window as window_module
from rlcar_core.apps.drive import DrivingSession
from rlcar_core.apps.evaluate import EvalConfig, check_agent_list, compare_with_human, evaluate_agents
from rlcar_core.apps.human import HumanRun
from rlcar_core.apps.play import PlayConfig, play
from rlcar_core.errors import RlcarError
from rlcar_core.render.motion import interpolate_pose
from rlcar_core.render.panel import PANEL_WIDTH
from rlcar_core.render.topdown import FRAME_SIZE

GAS = np.array([0.0, 1.0, 0.0], np.float32)


@pytest.fixture(scope="module")
def session():
    session = DrivingSession("rlcar", "sensors", track=1, max_steps=100, seed=0)
    session.reset()
    for _ in range(5):
        session.step(GAS)
    yield session
    session.close()


def test_the_hud_never_covers_the_track(session):
    busy = session.frame({"driver": "AI: heuristic", **session.hud("x")}, keys=("R  restart",) * 4)
    bare = session.frame({})
    assert busy.shape == (FRAME_SIZE, FRAME_SIZE + PANEL_WIDTH, 3)
    np.testing.assert_array_equal(busy[:, :FRAME_SIZE], bare[:, :FRAME_SIZE])
    assert not np.array_equal(busy[:, FRAME_SIZE:], bare[:, FRAME_SIZE:])


def test_a_finished_lap_is_marked_on_screen(session):
    assert session.lap_banner() is None
    plain = session.frame(session.hud())
    info = session.info
    session.info = {**info, "lap_complete": np.bool_(True)}
    try:
        banner = session.lap_banner()
        assert banner == f"LAP  {session.steps * 0.1:.1f} s"
        marked = session.frame(session.hud(), banner=banner)
    finally:
        session.info = info
    centre = np.s_[FRAME_SIZE // 2 - 20 : FRAME_SIZE // 2 + 20, FRAME_SIZE // 2 - 60 : FRAME_SIZE // 2 + 60]
    assert np.abs(marked[centre].astype(int) - plain[centre]).mean() > 20


def test_interpolated_frames_move_the_car_between_steps(session):
    before = session.pose()
    session.step(GAS)
    after = session.pose()
    assert np.linalg.norm(after.position - before.position) > 0.1
    hud = session.hud()
    frames = [session.frame(hud, interpolate_pose(before, after, f)) for f in (0.0, 0.5, 1.0)]
    np.testing.assert_array_equal(frames[2], session.frame(hud))  # the last one is the state itself
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


class QuitsAfter(window_module.Window):
    """The real window (SDL dummy driver) with a person who holds the gas, then presses Esc."""

    steps = 4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.polls = 0
        self.splash_seen = False

    def splash(self, message, started=None):
        super().splash(message, started)
        self.splash_seen = True

    def poll(self):
        self.polls += 1
        controls = super().poll()
        quit = self.polls > self.steps
        QuitsAfter.last = self
        return controls._replace(action=GAS, quit=quit)

    def close(self):
        QuitsAfter.screen_pixels = self.pygame.surfarray.array3d(self.screen)
        super().close()


def test_play_in_a_real_window_splashes_then_draws_frames(monkeypatch, tmp_path):
    monkeypatch.setattr(window_module, "Window", QuitsAfter)
    result = play(PlayConfig(manual=True, run_dir=tmp_path, max_steps=50))
    (attempt,) = result["episodes"]
    assert attempt["ended"] == "quit" and attempt["steps"] == QuitsAfter.steps and "saved" in attempt
    assert QuitsAfter.last.splash_seen
    pixels = QuitsAfter.screen_pixels
    assert pixels.shape == (FRAME_SIZE + PANEL_WIDTH, FRAME_SIZE, 3) and pixels.max() > 100


@pytest.mark.slow  # end to end; `make test` runs it
def test_several_agents_run_the_same_tracks_and_report_each_episode():
    config = EvalConfig(episodes=3, max_steps=30, num_envs=3)
    seen = []
    heuristic, random = evaluate_agents(
        config, ["heuristic", "random"], on_episode=lambda name, r: seen.append(name)
    )
    assert seen == ["heuristic"] * 3 + ["random"] * 3  # one tick per finished car-episode
    assert [e["track"] for e in heuristic["per_episode"]] == [e["track"] for e in random["per_episode"]]
    assert heuristic["run_dir"] is None and heuristic["checkpoint"] is None


@pytest.mark.parametrize(
    ("names", "run_dir", "message"),
    [
        (["random", "random"], None, "once"),
        (["dreamer", "worldmodel"], "some/run", "--run-dir"),
    ],
)
def test_ambiguous_agent_lists_are_refused(names, run_dir, message):
    with pytest.raises(RlcarError, match=message):
        evaluate_agents(dataclasses.replace(EvalConfig(), run_dir=run_dir), names)


def test_no_agent_named_means_the_run_dirs_own_or_the_heuristic(tmp_path):
    with pytest.raises(RlcarError, match="at least one"):
        check_agent_list([], None)
    # No --agent: the --run-dir's agent (see tests/test_run_identity.py); a folder that is no run says so.
    with pytest.raises(RlcarError, match="is not a trained run"):
        evaluate_agents(EvalConfig(run_dir=tmp_path), [])


def test_compare_with_human_drives_the_recorded_track():
    recorded = HumanRun("rlcar", 1_000_003, 0, np.zeros((4, 3), np.float32), 0.0, 0.0, False, False, 4, 4)
    result = compare_with_human(EvalConfig(max_steps=20), recorded)
    assert result["agent_on_same_track"]["track"] == 1_000_003 and result["recorded"]["steps"] == 4
    with pytest.raises(RlcarError, match="--env rlcar"):
        compare_with_human(EvalConfig(env="carracing", agent="random"), recorded)


def test_a_human_run_keeps_its_world_and_is_compared_only_in_the_same_one(tmp_path):
    import json

    from rlcar_core.apps.human import load_human_run, save_human_run
    from rlcar_core.sim.camera_spec import camera_preset

    big = camera_preset("big-flat")  # bigger obstacles: another track, not only another picture
    recorded = HumanRun(
        "rlcar",
        1_000_003,
        0,
        np.zeros((4, 3), np.float32),
        0.0,
        0.0,
        False,
        False,
        4,
        4,
        camera=big.to_dict(),
    )
    path = save_human_run(tmp_path, recorded)
    assert load_human_run(path).camera == big.to_dict()
    with pytest.raises(RlcarError, match="obstacles of radius 2.6 m"):
        compare_with_human(EvalConfig(max_steps=20), load_human_run(path))  # the heuristic: today's world
    # Another camera over the same world compares: the person watched the top-down view anyway.
    flat = dataclasses.replace(recorded, camera=camera_preset("flat").to_dict())
    assert compare_with_human(EvalConfig(max_steps=20), flat)["agent_on_same_track"]["steps"] > 0
    # A hand-edited camera fails on load, in one line.
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
    meta["camera"] = {"obstacle_radius": -1}
    np.savez_compressed(
        tmp_path / "bad.npz", actions=np.zeros((4, 3), np.float32), meta=np.array(json.dumps(meta))
    )
    with pytest.raises(RlcarError, match="its camera: obstacle_radius"):
        load_human_run(tmp_path / "bad.npz")


def test_a_builtin_driver_drives_in_the_world_a_benchmark_names():
    from rlcar_core.apps.evaluate import builtin_driver_in_world, evaluate

    config = EvalConfig(agent="heuristic", episodes=1, max_steps=5, num_envs=1)
    assert getattr(builtin_driver_in_world(config, None), "camera", None) is None  # today's
    driver = builtin_driver_in_world(config, "big-flat")
    assert driver.camera.obstacle_radius == 2.6
    assert evaluate(config, driver)["episodes"] == 1


def test_the_panel_fits_a_short_view():
    from rlcar_core.render.hud import array_from_surface, pygame_module
    from rlcar_core.render.panel import MARGIN, PANEL_COLOUR, compose

    view = pygame_module().Surface((600, 350))  # CarRacing's view less its bar
    camera = np.full((64, 64, 3), 200, np.uint8)
    lines = {name: "123.4" for name in ("driver", "speed", "progress", "time", "return")}
    frame = array_from_surface(compose(view, camera, lines, keys=("arrows/WASD  drive",) * 4))
    assert frame.shape == (350, 600 + PANEL_WIDTH, 3)
    assert (frame[-MARGIN // 2 :, 600:] == PANEL_COLOUR).all(), "nothing is cut off at the bottom"
    assert (frame[:, 600:] == 200).any(), "the camera is still there"


def test_first_track_moves_evaluation_to_later_held_out_tracks():
    from rlcar_core.envs.heldout import evaluation_tracks
    from rlcar_core.errors import RlcarError
    from rlcar_core.sim.track import EVAL_SEED_OFFSET, training_seeds

    assert evaluation_tracks("rlcar", 3) == [EVAL_SEED_OFFSET + i for i in range(3)]
    later = evaluation_tracks("rlcar", 3, first_track=20)
    assert later == [EVAL_SEED_OFFSET + 20 + i for i in range(3)]
    assert not set(later) & set(training_seeds(10_000))  # still tracks training never saw
    assert evaluation_tracks("carracing", 2, first_track=5) == [EVAL_SEED_OFFSET + 5, EVAL_SEED_OFFSET + 6]
    with pytest.raises(RlcarError, match="--first-track"):
        evaluation_tracks("rlcar", 3, first_track=-1)


def test_eval_cli_reports_the_first_track(tmp_path):
    import json

    from typer.testing import CliRunner

    from rlcar_cli.main import app

    args = [
        "eval",
        "--agent",
        "heuristic",
        "--episodes",
        "1",
        "--max-steps",
        "5",
        "--first-track",
        "7",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["first_track"] == 7 and summary["per_episode"][0]["track"] == 1_000_007
    bad = CliRunner().invoke(app, ["eval", "--agent", "heuristic", "--first-track", "-1"])
    assert bad.exit_code == 2
