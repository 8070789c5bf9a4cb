"""`rlcar serve`'s latent view: a World Models or DreamerV3 agent drives, and z edits reach the decoded
frame and the action (C's, or the actor's)."""

import base64
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

from rlcar_core.apps.serve.app import ServeConfig, create_app  # noqa: E402

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained" / "worldmodel-rlcar-pixels"
SHIPPED_DREAMERS = PRETRAINED.parent  # dreamer-rlcar-pixels, dreamer-rlcar-sensors
WS = "ws://127.0.0.1"

if not (PRETRAINED / "checkpoints").is_dir():
    pytest.skip(f"{PRETRAINED} is missing", allow_module_level=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-root")
    shutil.copytree(PRETRAINED, root / "wm")
    for name in ("dreamer-rlcar-pixels", "dreamer-rlcar-sensors"):
        if (SHIPPED_DREAMERS / name / "checkpoints").is_dir():
            shutil.copytree(SHIPPED_DREAMERS / name, root / name)
    return root


def _dreamer(root, name="dreamer-rlcar-pixels"):
    if not (root / name).is_dir():
        pytest.skip(f"pretrained/{name} is missing")
    return root / name


@pytest.fixture(scope="module")
def client(root):
    return TestClient(create_app(ServeConfig(root=root)), base_url="http://127.0.0.1")


def _image(data_url: str) -> np.ndarray:
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :]))))


def _drives_like(view, agent, steps: int, atol: float) -> None:
    """`view` sees the frames and takes the actions that `agent` does, beside it on the same track."""
    from rlcar_core.apps.drive import DrivingSession

    agent.reset(1)
    # The agent's own camera, as the view films with its run's (the shipped agents differ).
    session = DrivingSession("rlcar", "pixels", 0, 50, 0, render=False, camera=getattr(agent, "camera", None))
    obs = session.reset()
    for _ in range(steps):
        np.testing.assert_array_equal(view.camera, obs)
        action = agent.act(obs[None])[0]
        np.testing.assert_allclose(view.action, action, atol=atol)
        obs, *_ = session.step(action)
        view.tick()
    session.close()


def test_the_latent_view_drives_as_the_agent_does(root):
    """Same frames, same actions as WorldModelAgent; z, h and the reconstruction come with each step."""
    from rlcar_core.agents.worldmodel import load_worldmodel_agent
    from rlcar_core.apps.serve.latent import LatentConfig, LatentView

    view = LatentView(LatentConfig(root / "wm", max_steps=50))
    _drives_like(view, load_worldmodel_agent(root / "wm", "best", "rlcar", 0), 8, atol=1e-6)
    state = view.state()
    assert len(state["z"]) == 32 and state["h"]["size"] == 128 and state["step"] == 8
    assert _image(state["camera"]).shape == _image(state["reconstruction"]).shape == (64, 64, 3)
    assert -1 <= state["action"]["steer"] <= 1 and 0 <= state["action"]["gas"] <= 1
    view.close()


def test_pause_and_move_a_latent_over_the_websocket(client):
    with client.websocket_connect(WS + "/ws/latent?run=wm&checkpoint=best&track=1") as socket:
        state = json.loads(socket.receive_text())
        for _ in range(3):  # driving: one state per physics step
            state = json.loads(socket.receive_text())
        assert not state["paused"] and state["step"] >= 2
        socket.send_text(json.dumps({"type": "pause"}))
        while not state["paused"]:
            state = json.loads(socket.receive_text())
        seen, step = state, state["step"]
        # A latent the decoder uses (the first that moves this model's frame): the frame and the action
        # change, and reset_z brings back what the car saw.
        for index in range(len(seen["z"])):
            socket.send_text(json.dumps({"type": "set_z", "index": index, "value": 3.0}))
            moved = json.loads(socket.receive_text())
            assert moved["step"] == step and moved["z"][index] == 3.0 and moved["edited"] == [index]
            assert moved["camera"] == seen["camera"]  # the camera stays; only what V and C make of z moves
            difference = np.abs(
                _image(moved["reconstruction"]).astype(int) - _image(seen["reconstruction"])
            ).mean()
            socket.send_text(json.dumps({"type": "reset_z"}))
            assert not json.loads(socket.receive_text())["edited"]
            if difference > 2:
                break
        assert difference > 2, difference
        assert moved["action"] != seen["action"]
        # Nonsense is ignored, never fatal.
        for bad in ({"type": "set_z", "index": 99, "value": 1}, {"type": "set_z", "index": 0, "value": "nan"},
                    {"type": "set_z", "index": True, "value": 1}, {"type": "launch"}, [1, 2]):  # fmt: skip
            socket.send_text(json.dumps(bad))
        socket.send_text("{oops")
        socket.send_text(json.dumps({"type": "reset_z"}))
        back = json.loads(socket.receive_text())
        while back["edited"]:
            back = json.loads(socket.receive_text())
        assert back["reconstruction"] == seen["reconstruction"] and back["action"] == seen["action"]
        socket.send_text(json.dumps({"type": "resume"}))
        while back["step"] == step:
            back = json.loads(socket.receive_text())
        assert not back["paused"]


@pytest.mark.parametrize(
    ("query", "words"),
    [("run=nothing", "no run"), ("run=wm&track=3000000000", "--track must be at most"),
     ("run=wm&checkpoint=ep1;rm", "--checkpoint"), ("run=" + "a" * 300, "no run"),
     ("run=notes", "not a World Models or DreamerV3 run"),
     ("run=dreamer-rlcar-sensors", "this DreamerV3 agent reads sensors")],
)  # fmt: skip
def test_the_latent_view_refuses_bad_requests_with_a_message(client, root, query, words):
    (root / "notes").mkdir(exist_ok=True)
    (root / "notes" / "config.json").write_text(json.dumps({"note": "not a model"}))
    if "dreamer" in query:
        _dreamer(root, "dreamer-rlcar-sensors")
    with client.websocket_connect(WS + "/ws/latent?" + query) as socket:
        assert words in json.loads(socket.receive_text())["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
        assert closed.value.code == 4400


def test_the_latent_view_drives_as_a_dreamer_agent_does(root):
    """DreamerV3: the same frames and actions as the agent acting by its actor's clipped mean (the
    view's choice: deterministic, so a slider's effect is the latent's), with z drawn from the same
    keys; z is one class per categorical variable, with the posterior's probabilities beside it."""
    from rlcar_core.agents.dreamer import load_dreamer_agent
    from rlcar_core.apps.serve.latent import LatentConfig, LatentView

    run = _dreamer(root)
    view = LatentView(LatentConfig(run, kind="dreamer", max_steps=50))
    _drives_like(view, load_dreamer_agent(run, "best", "rlcar", 0, actions="mean"), 6, atol=1e-5)
    state = view.state()
    config = view.mind.config
    assert state["kind"] == "dreamer" and state["labels"]["actor"] == "the actor"
    assert len(state["z"]) == config.stoch_size and state["h"]["size"] == config.deter_size
    probabilities = np.array(state["z_probabilities"])
    assert probabilities.shape == (config.stoch_size, config.stoch_classes)
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=0.01)
    assert state["slider"] == {"min": 0, "max": config.stoch_classes - 1, "step": 1}
    assert _image(state["reconstruction"]).shape == (64, 64, 3)
    view.close()


def test_pause_and_set_a_dreamer_variables_class_over_the_websocket(client, root):
    _dreamer(root)
    with client.websocket_connect(WS + "/ws/latent?run=dreamer-rlcar-pixels&track=2") as socket:
        state = json.loads(socket.receive_text())
        while state["step"] < 3:
            state = json.loads(socket.receive_text())
        socket.send_text(json.dumps({"type": "pause"}))
        while not state["paused"]:
            state = json.loads(socket.receive_text())
        seen = state
        other = (int(seen["z"][0]) + 4) % len(seen["z_probabilities"][0])  # another class for variable 0
        socket.send_text(json.dumps({"type": "set_z", "index": 0, "value": other}))
        moved = json.loads(socket.receive_text())
        assert moved["z"][0] == other and moved["edited"] == [0] and moved["z_seen"] == seen["z"]
        assert moved["reconstruction"] != seen["reconstruction"] and moved["action"] != seen["action"]
        socket.send_text(json.dumps({"type": "set_z", "index": 1, "value": 99}))  # a class past the last
        assert json.loads(socket.receive_text())["z"][1] == len(seen["z_probabilities"][0]) - 1
        socket.send_text(json.dumps({"type": "reset_z"}))
        back = json.loads(socket.receive_text())
        assert back["reconstruction"] == seen["reconstruction"] and back["action"] == seen["action"]


CARRACING_WM = PRETRAINED.parent / "worldmodel-carracing-pixels"


def test_the_latent_view_drives_a_carracing_world_models_agent():
    """CarRacing-v3 (Box2D) with the shipped World Models agent: its 64x64 frame, its 32 latents, and a
    latent moved while paused changes the decoded frame; resuming drives on with what the car saw."""
    pytest.importorskip("Box2D")
    if not (CARRACING_WM / "checkpoints").is_dir():
        pytest.skip(f"{CARRACING_WM} is missing")
    from rlcar_core.apps.serve.latent import LatentConfig, LatentView

    view = LatentView(LatentConfig(CARRACING_WM, max_steps=60))
    try:
        for _ in range(3):
            view.tick()
        state = view.state()
        assert state["env"] == "carracing" and state["kind"] == "worldmodels" and state["step"] >= 3
        assert _image(state["camera"]).shape == _image(state["reconstruction"]).shape == (64, 64, 3)
        assert len(state["z"]) == 32 and -1 <= state["action"]["steer"] <= 1
        view.command({"type": "pause"})
        step = view.state()["step"]
        view.tick()  # paused: the car stays
        assert view.state()["step"] == step
        moved = []
        for index in range(len(state["z"])):  # some latent moves the decoded road
            view.command({"type": "set_z", "index": index, "value": 3.0})
            edited = view.state()
            change = _image(edited["reconstruction"]).astype(int) - _image(state["reconstruction"])
            moved.append(np.abs(change).mean())
            view.command({"type": "reset_z"})
        assert max(moved) > 2, moved
        assert view.state()["reconstruction"] == state["reconstruction"]  # reset_z: back to what it saw
        view.command({"type": "resume"})
        view.tick()
        assert view.state()["step"] > step
    finally:
        view.close()
