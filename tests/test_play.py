"""The interactive play loop, driven by a scripted window instead of a person, and the real window
under SDL's dummy video driver."""

import numpy as np
import pytest

import rlcar_core.render.window as window_module
from rlcar_core.apps.human import load_human_run
from rlcar_core.apps.play import PlayConfig, keys_help, play
from rlcar_core.render.motion import CarPose, FramePacer, frame_count, interpolate_pose
from rlcar_core.render.window import Controls

GAS = np.array([0.0, 1.0, 0.0], np.float32)
IDLE = np.zeros(3, np.float32)
FRAMES_PER_STEP = 3


class ScriptedWindow:
    """Replays a list of Controls, then asks to quit; records the frames it was shown."""

    script: list[Controls] = []
    shown: list = []
    splashes: list[str] = []

    def __init__(self, size, title="rlcar", fps=10):
        self.size = size
        self.remaining = list(self.script)

    def poll(self) -> Controls:
        if self.remaining:
            return self.remaining.pop(0)
        return Controls(IDLE, True, False, False)

    def quit_requested(self):
        return False

    def splash(self, message, started=None):
        ScriptedWindow.splashes.append(message)

    def frame_fractions(self, seconds):
        return [k / FRAMES_PER_STEP for k in range(1, FRAMES_PER_STEP + 1)]

    def show(self, frame):
        ScriptedWindow.shown.append(frame)

    def close(self):
        pass


def press(action=GAS, quit=False, reset=False, toggle=False):
    return Controls(np.asarray(action, np.float32), quit, reset, toggle)


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(window_module, "Window", ScriptedWindow)
    ScriptedWindow.shown = []
    ScriptedWindow.splashes = []
    return ScriptedWindow


def human_runs(run_dir):
    return sorted((run_dir / "human").glob("*.npz")) if (run_dir / "human").is_dir() else []


def test_every_attempt_that_moved_is_saved_and_toggle_hands_over(scripted, tmp_path):
    # Attempt 1: 3 steps on the gas, then R. Attempt 2: 4 steps on the gas, T (the agent drives 2
    # steps), then Esc. Both attempts moved, so both are saved as human runs.
    scripted.script = [
        *[press()] * 3,
        press(reset=True),
        *[press()] * 4,
        press(toggle=True),
        press(),
    ]
    result = play(PlayConfig(manual=True, agent="heuristic", run_dir=tmp_path, max_steps=100))
    first, second = result["episodes"]
    assert (first["ended"], first["steps"], first["manual_steps"]) == ("restart", 3, 3)
    assert (second["ended"], second["steps"], second["manual_steps"]) == ("quit", 6, 4)
    assert "saved" in first and "saved" in second and len(human_runs(tmp_path)) == 2
    run = load_human_run(tmp_path)  # the newest recording: the second attempt
    assert run.steps == 6 and run.actions.shape == (6, 3)
    np.testing.assert_array_equal(run.actions[:4], np.tile(GAS, (4, 1)))
    assert load_human_run(first["saved"]).steps == 3
    # Each physics step is drawn as FRAMES_PER_STEP interpolated frames.
    assert len(scripted.shown) == 9 * FRAMES_PER_STEP
    assert scripted.splashes and "compiling" in scripted.splashes[-1]


def test_t_without_agent_hands_the_car_to_the_heuristic(scripted, tmp_path):
    scripted.script = [*[press()] * 5, press(toggle=True), *[press(IDLE)] * 3]
    result = play(PlayConfig(manual=True, run_dir=tmp_path, max_steps=100))
    assert result["agent"] == "heuristic"
    (episode,) = result["episodes"]
    assert episode["manual_steps"] == 5 and episode["steps"] == 9
    run = load_human_run(tmp_path)
    assert (run.actions[5:, 1] > 0).any(), "the heuristic drove after T"


def test_a_human_run_records_the_world_it_was_driven_in(scripted, tmp_path):
    scripted.script = [press()] * 4
    play(PlayConfig(manual=True, run_dir=tmp_path / "today", max_steps=100))
    assert load_human_run(tmp_path / "today").camera is None  # today's camera and world
    scripted.script = [press()] * 4
    play(PlayConfig(manual=True, run_dir=tmp_path / "big", max_steps=100, camera="big-flat"))
    assert load_human_run(tmp_path / "big").camera["obstacle_radius"] == 2.6


def test_an_attempt_the_agent_drove_most_of_is_not_a_human_run(scripted, tmp_path):
    scripted.script = [press(), press(toggle=True), *[press(IDLE)] * 6]
    (episode,) = play(PlayConfig(manual=True, run_dir=tmp_path, max_steps=100))["episodes"]
    assert episode["manual_steps"] == 1 and episode["steps"] == 8
    assert "saved" not in episode and human_runs(tmp_path) == []


def test_an_attempt_that_never_moved_is_not_saved(scripted, tmp_path):
    scripted.script = [press(IDLE), press(IDLE), press(reset=True), press(IDLE)]
    result = play(PlayConfig(manual=True, run_dir=tmp_path, max_steps=100))
    assert [e["ended"] for e in result["episodes"]] == ["restart", "quit"]
    assert not any("saved" in e for e in result["episodes"]) and human_runs(tmp_path) == []


def test_ctrl_c_keeps_the_attempt_then_interrupts(scripted, tmp_path):
    scripted.script = [press()] * 20

    def four_steps_drawn():
        return len(scripted.shown) >= 4 * FRAMES_PER_STEP

    with pytest.raises(KeyboardInterrupt):
        play(PlayConfig(manual=True, run_dir=tmp_path), should_stop=four_steps_drawn)
    assert load_human_run(tmp_path).steps == 4  # the flag was seen before step 5: 4 steps kept


def test_watching_an_agent_saves_nothing(scripted, tmp_path):
    scripted.script = [press()] * 3
    result = play(PlayConfig(agent="heuristic", run_dir=tmp_path, max_steps=100))
    assert result["episodes"] == [] and not (tmp_path / "human").exists()


def test_headless_manual_play_saves_no_human_run(tmp_path):
    result = play(PlayConfig(manual=True, headless=True, run_dir=tmp_path, max_steps=5))
    (episode,) = result["episodes"]
    assert episode["steps"] == 5 and "saved" not in episode
    assert human_runs(tmp_path) == []


def test_keys_help_shows_only_keys_that_work():
    class Partner:
        name = "heuristic"

    assert keys_help(True, None) == ("arrows/WASD  drive", "R  restart", "Esc  quit")
    assert "T  heuristic drives" in keys_help(True, Partner())
    watching = keys_help(False, Partner())
    assert "T  take the wheel" in watching and not any("WASD" in k for k in watching)


def test_interpolated_pose_blends_position_and_turns_the_short_way():
    before = CarPose(np.array([0.0, 0.0]), np.pi - 0.1)
    after = CarPose(np.array([2.0, 4.0]), -np.pi + 0.1)  # 0.2 rad further, across +-pi
    half = interpolate_pose(before, after, 0.5)
    np.testing.assert_allclose(half.position, [1.0, 2.0])
    assert abs(abs(half.heading) - np.pi) < 1e-9
    np.testing.assert_allclose(interpolate_pose(before, after, 1.0).position, after.position)
    np.testing.assert_allclose(interpolate_pose(before, after, 0.0).position, before.position)


def test_frame_pacer_draws_at_the_display_rate_and_drops_frames_when_behind():
    now = [0.0]
    pacer = FramePacer(60, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert frame_count(0.1, 60) == 6 and frame_count(0.02, 60) == 1
    fractions = list(pacer.fractions(0.1))
    np.testing.assert_allclose(fractions, [k / 6 for k in range(1, 7)])
    assert now[0] == pytest.approx(0.1)  # one physics step took one step of real time

    def slow_sleep(seconds):  # drawing each frame costs 50 ms: only some in-between frames fit
        now[0] += seconds

    pacer = FramePacer(60, clock=lambda: now[0], sleep=slow_sleep)
    drawn = []
    for fraction in pacer.fractions(0.1):
        drawn.append(fraction)
        now[0] += 0.05
    assert drawn[-1] == 1.0 and len(drawn) < 6


def test_the_real_window_shows_the_splash_and_frames_headless():
    from rlcar_core.render.window import Window

    window = Window((320, 200), fps=0)
    window.splash("compiling the simulator…")
    pixels = window.pygame.surfarray.array3d(window.screen)
    assert pixels.shape == (320, 200, 3) and pixels.max() > 200  # the message is drawn
    frame = np.zeros((100, 160, 3), np.uint8)
    frame[:, :, 1] = 200
    window.show(frame)  # scaled up to the window
    assert (window.pygame.surfarray.array3d(window.screen)[..., 1] == 200).all()
    assert window.poll().quit is False and window.quit_requested() is False
    window.close()


def test_play_without_a_display_says_use_headless(monkeypatch, tmp_path):
    """Issue 26: no --headless, no DISPLAY/WAYLAND_DISPLAY and no SDL driver: one line and exit 2."""
    import sys

    from typer.testing import CliRunner

    from rlcar_cli.main import app

    monkeypatch.chdir(tmp_path)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    result = CliRunner().invoke(app, ["play", "--max-steps", "3"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: no display; use --headless"
    PlayConfig(headless=True).check_display()  # --headless needs none
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    PlayConfig().check_display()  # nor does a chosen SDL driver
