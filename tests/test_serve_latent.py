"""`rlcar serve`'s latent view: a World Models agent drives, and z edits reach the decoded frame and C."""

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
WS = "ws://127.0.0.1"

if not (PRETRAINED / "checkpoints").is_dir():
    pytest.skip(f"{PRETRAINED} is missing", allow_module_level=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-root")
    shutil.copytree(PRETRAINED, root / "wm")
    return root


@pytest.fixture(scope="module")
def client(root):
    return TestClient(create_app(ServeConfig(root=root)), base_url="http://127.0.0.1")


def _image(data_url: str) -> np.ndarray:
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :]))))


def test_the_latent_view_drives_as_the_agent_does(root):
    """Same frames, same actions as WorldModelAgent; z, h and the reconstruction come with each step."""
    from rlcar_core.agents.worldmodel import load_worldmodel_agent
    from rlcar_core.apps.drive import DrivingSession
    from rlcar_core.apps.serve.latent import LatentConfig, LatentView

    view = LatentView(LatentConfig(root / "wm", max_steps=50))
    agent = load_worldmodel_agent(root / "wm", "best", "rlcar", 0)
    agent.reset(1)
    session = DrivingSession("rlcar", "pixels", 0, 50, 0, render=False)
    obs = session.reset()
    for _ in range(8):
        np.testing.assert_array_equal(view.camera, obs)
        action = agent.act(obs[None])[0]
        np.testing.assert_allclose(view.action, action, atol=1e-6)
        obs, *_ = session.step(action)
        view.tick()
    state = view.state()
    assert len(state["z"]) == 32 and state["h"]["size"] == 128 and state["step"] == 8
    assert _image(state["camera"]).shape == _image(state["reconstruction"]).shape == (64, 64, 3)
    assert -1 <= state["action"]["steer"] <= 1 and 0 <= state["action"]["gas"] <= 1
    view.close()
    session.close()


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
        # A latent the decoder uses (z3 moves this model's road): the frame and the action change.
        socket.send_text(json.dumps({"type": "set_z", "index": 3, "value": 3.0}))
        moved = json.loads(socket.receive_text())
        assert moved["step"] == step and moved["z"][3] == 3.0 and moved["edited"] == [3]
        assert moved["camera"] == seen["camera"]  # the camera frame stays; only what V and C make of z moves
        difference = np.abs(
            _image(moved["reconstruction"]).astype(int) - _image(seen["reconstruction"])
        ).mean()
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
     ("run=dreamer", "not a World Models run")],
)  # fmt: skip
def test_the_latent_view_refuses_bad_requests_with_a_message(client, root, query, words):
    (root / "dreamer" / "checkpoints" / "dreamer").mkdir(parents=True, exist_ok=True)
    (root / "dreamer" / "config.json").write_text(json.dumps({"dreamer": {}}))
    with client.websocket_connect(WS + "/ws/latent?" + query) as socket:
        assert words in json.loads(socket.receive_text())["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
        assert closed.value.code == 4400
