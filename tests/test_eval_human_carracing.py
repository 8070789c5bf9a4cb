"""`rlcar eval --human` on CarRacing-v3 recordings, made by `play --env carracing --manual` (a scripted
window stands in for the person) or in the web page (`serve`'s live drive): one HumanRun format."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import rlcar_core.render.window as window_module
from rlcar_cli.main import app
from rlcar_core.apps.human import load_human_run
from rlcar_core.envs.heldout import track_seed_for
from rlcar_core.render.window import Controls

runner = CliRunner()
GAS = np.array([0.0, 1.0, 0.0], np.float32)
STEPS = 12


class GasThenQuit:
    """A window whose person holds the gas for STEPS steps, then presses Esc."""

    def __init__(self, size, title="rlcar", fps=10):
        self.remaining = [Controls(GAS, False, False, False)] * STEPS

    def poll(self) -> Controls:
        return (
            self.remaining.pop(0) if self.remaining else Controls(np.zeros(3, np.float32), True, False, False)
        )

    def quit_requested(self):
        return False

    def splash(self, message, started=None):
        pass

    def frame_fractions(self, seconds):
        return [1.0]

    def show(self, frame):
        pass

    def close(self):
        pass


def eval_json(*args):
    result = runner.invoke(
        app, ["eval", "--agent", "random", "--episodes", "1", "--max-steps", "20", *args, "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_human_on_a_carracing_recording_from_play(monkeypatch, tmp_path):
    monkeypatch.setattr(window_module, "Window", GasThenQuit)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    result = runner.invoke(
        app, ["play", "--env", "carracing", "--manual", "--track", "2", "--run-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    recorded = load_human_run(tmp_path)
    assert (recorded.env, recorded.track_seed, recorded.steps) == (
        "carracing",
        track_seed_for("carracing", 2),
        STEPS,
    )
    # No --env: the recording's env is used, and the agent drives the recorded track (its reset seed).
    data = eval_json("--human", str(tmp_path))
    assert data["env"] == "carracing"
    human = data["human"]
    assert human["recorded"]["env"] == "carracing" and human["recorded"]["manual_steps"] == STEPS
    assert human["agent_on_same_track"]["track"] == recorded.track_seed


def test_eval_human_on_a_carracing_recording_from_the_page(tmp_path):
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    live = LiveDrive(LiveConfig(env="carracing", track=1, max_steps=STEPS), tmp_path / "play", None)
    live.key("ArrowUp", True)
    clock = live.stepped_at
    for _ in range(STEPS):
        clock += live.step_seconds
        live.tick(clock)
    live.close()
    assert live.last_episode["saved"]
    recorded = load_human_run(live.last_episode["saved"])
    assert recorded.env == "carracing" and recorded.track_seed == track_seed_for("carracing", 1)
    assert recorded.actions.shape == (STEPS, 3) and (recorded.actions[:, 1] == 1).all()
    data = eval_json("--human", live.last_episode["saved"])
    assert data["human"]["agent_on_same_track"]["track"] == recorded.track_seed
    assert data["human"]["recorded"]["episode_return"] == pytest.approx(recorded.episode_return)
    # An env that contradicts the recording is one line, exit 2.
    wrong = runner.invoke(
        app, ["eval", "--env", "rlcar", "--episodes", "1", "--human", str(tmp_path / "play")]
    )
    assert wrong.exit_code == 2 and "recorded on carracing" in wrong.output
