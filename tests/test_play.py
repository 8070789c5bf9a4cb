"""The interactive play loop, driven by a scripted window instead of a person."""

import numpy as np
import pytest

import rlcar_core.render.window as window_module
from rlcar_core.apps.human import load_human_run
from rlcar_core.apps.play import PlayConfig, play
from rlcar_core.render.window import Controls

GAS = np.array([0.0, 1.0, 0.0], np.float32)


class ScriptedWindow:
    """Replays a list of Controls, then asks to quit; records the frames it was shown."""

    script: list[Controls] = []
    shown: list[np.ndarray] = []

    def __init__(self, size, title="rlcar", fps=10):
        self.remaining = list(self.script)

    def poll(self) -> Controls:
        if self.remaining:
            return self.remaining.pop(0)
        return Controls(np.zeros(3, np.float32), True, False, False)

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
    return ScriptedWindow


def test_manual_drive_with_toggle_and_reset_saves_the_run(scripted, tmp_path):
    # 3 manual steps, R (restart), 4 manual steps, T (agent drives 2 steps), then Esc.
    scripted.script = [
        press(),
        press(),
        press(),
        press(reset=True),
        *[press()] * 4,
        press(toggle=True),
        press(),
    ]
    result = play(PlayConfig(manual=True, agent="heuristic", run_dir=tmp_path, max_steps=100))
    (episode,) = result["episodes"]
    assert episode["steps"] == 6 and episode["manual_steps"] == 4
    run = load_human_run(tmp_path)
    assert run.steps == 6 and run.actions.shape == (6, 3)
    np.testing.assert_array_equal(run.actions[:4], np.tile(GAS, (4, 1)))
    assert len(scripted.shown) == 9
    assert scripted.shown[0].shape[0] >= 256


def test_watching_an_agent_saves_nothing(scripted, tmp_path):
    scripted.script = [press()] * 3
    result = play(PlayConfig(agent="heuristic", run_dir=tmp_path, max_steps=100))
    assert result["episodes"] == [] and not (tmp_path / "human").exists()
