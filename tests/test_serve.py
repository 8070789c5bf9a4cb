"""`rlcar serve` in-process: the API (Starlette's TestClient), its guards, forms, live driving, jobs."""

import json
import struct
import warnings

import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():  # Starlette would rather have httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from rlcar_core.apps.serve.app import ServeConfig, create_app  # noqa: E402
from rlcar_core.apps.serve.leaderboard import Leaderboard  # noqa: E402
from rlcar_core.apps.serve.paths import OutsideRoot, resolve_under  # noqa: E402

LOCAL = "http://127.0.0.1"  # the Host a loopback server without a token accepts
WS = "ws://127.0.0.1"


def write_run(root, name="run1", records=5):
    run = root / name
    run.mkdir(parents=True)
    with open(run / "metrics.jsonl", "w") as handle:
        for i in range(records):
            handle.write(
                json.dumps({"kind": "eval", "env_steps": 100 * i, "progress_mean": i / 10, "return_mean": i})
                + "\n"
            )
        handle.write(
            json.dumps({"kind": "train", "env_steps": 700, "wm/loss": 1.5, "actor/loss": 0.5}) + "\n"
        )
        handle.write(json.dumps({"kind": "episode", "env_steps": 800, "return": 3.0, "progress": 0.2}) + "\n")
    return run


@pytest.fixture()
def root(tmp_path):
    write_run(tmp_path)
    return tmp_path


@pytest.fixture()
def client(root):
    return TestClient(create_app(ServeConfig(root=root)), base_url=LOCAL)


def test_resolve_under_refuses_climbing_absolute_and_links(tmp_path):
    (tmp_path / "a").mkdir()
    assert resolve_under(tmp_path, "a") == (tmp_path / "a").resolve()
    (tmp_path / "out").symlink_to("/etc")
    for bad in ("../x", "a/../../x", "/etc/passwd", "out/passwd", "a\\..\\x", "C:/x"):
        with pytest.raises(OutsideRoot):
            resolve_under(tmp_path, bad)


def test_runs_and_incremental_metrics(client):
    runs = client.get("/api/runs").json()
    assert [row["name"] for row in runs["runs"]] == ["run1"]
    assert {d["agent"] for d in runs["drivers"]} >= {"heuristic", "random"}
    series = client.get("/api/metrics", params={"run": "run1"}).json()
    assert series["count"] == 7
    assert series["eval"]["x"] == [0, 100, 200, 300, 400] and series["eval"]["progress"][-1] == 0.4
    assert series["losses"]["series"]["wm/loss"] == [1.5]
    assert series["episodes"]["return"] == [3.0]
    later = client.get("/api/metrics", params={"run": "run1", "since": 4}).json()
    assert later["eval"]["x"] == [400] and later["count"] == 7


@pytest.mark.parametrize(
    "path",
    ["/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd", "/files/nothing.mp4",
     "/api/metrics?run=../x", "/api/metrics?run=/etc", "/../etc/passwd", "/static/../app.py"],
)  # fmt: skip
def test_nothing_outside_the_root_is_served(client, path):
    assert client.get(path).status_code == 404


def test_files_under_the_root_are_served(client):
    response = client.get("/files/run1/metrics.jsonl")
    assert response.status_code == 200 and b"wm/loss" in response.content


def test_token_guards_data_but_not_the_page(root):
    client = TestClient(create_app(ServeConfig(root=root, token="secret")), base_url=LOCAL)
    assert client.get("/").status_code == 200
    assert client.get("/api/runs").status_code == 403
    assert client.get("/api/runs", params={"token": "wrong"}).status_code == 403
    assert client.get("/api/runs", params={"token": "secret"}).status_code == 200
    assert client.get("/api/runs", headers={"x-rlcar-token": "secret"}).status_code == 200
    assert client.post("/api/train", json={"run": "x", "episodes": 1}).status_code == 403


def test_state_changes_need_json_from_the_same_origin(client):
    response = client.post(
        "/api/train", content="run=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    response = client.post("/api/train", json={"run": "x"}, headers={"origin": "http://evil.example"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"run": "x", "episodes": 0}, "--episodes must be at least 1"),
        ({"run": "x", "episodes": "many"}, "--episodes must be a whole number"),
        ({"run": "../x", "episodes": 1}, "run name"),
        ({"run": "", "episodes": 1}, "run name"),
        ({"run": "x", "episodes": 1, "size": "huge"}, "--size"),
        ({"run": "x", "episodes": 1, "env": "carracing", "obs": "sensors"}, "pixel"),
        ({"run": "x", "episodes": 1, "train_ratio": "nan"}, "--train-ratio"),
        ({"run": "x", "episodes": 1, "env": ["rlcar"]}, "--env"),
    ],
)
def test_bad_training_forms_get_a_clear_4xx(client, form, message):
    response = client.post("/api/train", json=form)
    assert 400 <= response.status_code < 500
    assert message in response.json()["error"]


def test_bad_bodies_and_video_forms_get_a_clear_4xx(client):
    response = client.post("/api/train", content="{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]
    assert client.post("/api/train", json=[1, 2]).status_code == 400
    response = client.post("/api/video", json={"agent": "dreamer", "run": "../etc"})
    assert response.status_code == 400 and "no run" in response.json()["error"]
    response = client.post("/api/dream", json={"run": "run1", "checkpoint": "ep1; rm -rf /"})
    assert response.status_code == 400 and "--checkpoint" in response.json()["error"]
    assert client.post("/api/video", json={"agent": "heuristic", "max_steps": 10**6}).status_code == 400
    assert client.post("/api/jobs/999/stop", json={}).status_code == 404


def test_training_form_becomes_validated_argv(root):
    from rlcar_core.apps.serve.forms import training_argv

    name, argv = training_argv(root, {"run": "web", "episodes": "3", "max_steps": "20", "obs": "sensors"})
    assert name == "web"
    assert argv[:3] == ["train-dreamer", "--run-dir", str((root / "web").resolve())]
    assert argv[argv.index("--episodes") + 1] == "3" and argv[argv.index("--max-steps") + 1] == "20"


def test_a_run_in_use_is_refused_with_the_lock_message(client, root):
    from rlcar_core.io.runs import RunDir

    with RunDir(root / "busy").writer_lock("train-dreamer"):
        response = client.post("/api/train", json={"run": "busy", "episodes": 1})
    assert response.status_code == 409 and "in use" in response.json()["error"]


def test_leaderboard_ranks_laps_per_track(tmp_path):
    board = Leaderboard(tmp_path)
    assert board.add(0, "you", "human", 42.0)["rank"] == 1
    assert board.add(0, "AI: heuristic", "ai", 30.5)["rank"] == 1
    assert board.add(1, "you", "human", 50.0)["rank"] == 1
    saved = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [e["lap_time"] for e in saved["rlcar"]["0"]] == [30.5, 42.0] and len(saved["rlcar"]["1"]) == 1


def race(score, tiles=10, off_road=0.0):
    return {"score": score, "tiles": tiles, "tiles_total": 300, "off_road_seconds": off_road, "seconds": 20.0}


def test_leaderboard_keeps_carracing_races_apart_ranked_by_score(tmp_path):
    board = Leaderboard(tmp_path)
    board.add(0, "you", "human", 42.0)
    assert board.add_race("carracing", 0, "you", "human", race(120.5))["rank"] == 1
    assert board.add_race("carracing", 0, "AI: dreamer", "ai", race(300.0, 40))["rank"] == 1
    assert board.add_race("carracing", 0, "you", "human", race(200.0))["rank"] == 2
    # One entry per AI: a worse run of the same agent leaves its best; a better one replaces it.
    assert board.add_race("carracing", 0, "AI: dreamer", "ai", race(100.0))["kept"] is False
    assert board.add_race("carracing", 0, "AI: dreamer", "ai", race(310.0))["rank"] == 1
    scores = [e["score"] for e in board.entries("carracing", 0)]
    assert scores == [310.0, 200.0, 120.5]
    assert board.entries("carracing", 1) == [] and board.entries("rlcar", 0)[0]["lap_time"] == 42.0
    assert (
        board.entries("carracing", 0)[0]["tiles"] == 10
        and "off_road_seconds" in board.entries("carracing", 0)[0]
    )


def test_an_rlcar_only_leaderboard_file_is_still_read(tmp_path):
    old = {"0": [{"driver": "you", "kind": "human", "lap_time": 31.0, "when": "2026-12-01 10:00:00"}]}
    (tmp_path / "leaderboard.json").write_text(json.dumps(old))
    board = Leaderboard(tmp_path)
    assert board.entries("rlcar", 0)[0]["lap_time"] == 31.0
    board.add_race("carracing", 0, "you", "human", race(50.0))  # rewritten in the per-env form
    assert (
        board.entries("rlcar", 0)[0]["lap_time"] == 31.0 and board.entries("carracing", 0)[0]["score"] == 50.0
    )
    (tmp_path / "leaderboard.json").write_text("[1, 2")
    assert Leaderboard(tmp_path).read() == {}


def test_leaderboard_api_answers_one_board_and_refuses_bad_input(client, root):
    Leaderboard(root).add_race("carracing", 3, "you", "human", race(77.0))
    board = client.get("/api/leaderboard", params={"env": "carracing", "track": "3"}).json()
    assert board["ranked_by"] == "score" and board["entries"][0]["score"] == 77.0
    assert client.get("/api/leaderboard").json()["carracing"]["3"][0]["score"] == 77.0
    for params in ({"env": "pong"}, {"env": "carracing", "track": "-1"}, {"env": "carracing", "track": "²"},
                   {"env": "a" * 3000}, {"env": "rlcar", "track": "3000000000"}):  # fmt: skip
        answer = client.get("/api/leaderboard", params=params)
        assert answer.status_code == 400 and "\n" not in answer.json()["error"], params


def test_keys_make_actions():
    from rlcar_core.apps.serve.live import action_from_keys

    assert action_from_keys(set()).tolist() == [0, 0, 0]
    assert action_from_keys({"arrowup", "a"}).tolist() == [-1, 1, 0]
    assert action_from_keys({"d", "arrowdown"}).tolist() == [1, 0, 1]


def test_live_drive_by_keys_speeds_up_and_saves_the_human_run(tmp_path):
    from rlcar_core.apps.human import load_human_run
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    live = LiveDrive(LiveConfig(max_steps=12), tmp_path / "play", Leaderboard(tmp_path))
    live.key("ArrowUp", True)
    clock = live.stepped_at
    speeds = []
    for _ in range(11):
        clock += live.step_seconds
        assert live.tick(clock)
        speeds.append(live.render(clock)[1]["speed_kmh"])
    assert speeds[-1] > speeds[0] > 0
    jpeg, meta = live.render(clock)
    assert jpeg[:2] == b"\xff\xd8" and meta["manual"] and meta["action"] == [0.0, 1.0, 0.0]
    clock += live.step_seconds
    live.tick(clock)  # step 12 ends the episode: saved as `play --manual` saves it
    assert live.last_episode is not None and live.last_episode["steps"] == 12
    recorded = load_human_run(tmp_path / "play")
    assert recorded.steps == 12 and recorded.actions.shape == (12, 3) and recorded.manual_steps == 12
    live.close()


def test_a_key_steps_the_physics_before_the_next_tick_is_due(tmp_path):
    from rlcar_core.apps.serve.live import MIN_STEP_FRACTION, LiveConfig, LiveDrive

    live = LiveDrive(LiveConfig(), tmp_path, None)
    start = live.stepped_at
    assert not live.tick(start + 0.2 * live.step_seconds)
    live.key("w", True)
    assert live.tick(start + MIN_STEP_FRACTION * live.step_seconds)
    live.close()


def test_frames_between_physics_steps_are_interpolated(tmp_path):
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    live = LiveDrive(LiveConfig(agent="heuristic"), tmp_path, None)
    for _ in range(5):
        live.tick(live.stepped_at + live.step_seconds)
    drawn = [live.render(live.stepped_at + f * live.step_seconds)[0] for f in (0.0, 0.5, 1.0)]
    assert drawn[0] != drawn[1] != drawn[2]  # the car glides between two physics states
    assert live.session.steps == 5
    live.close()


def test_race_has_a_ghost_and_needs_an_ai(tmp_path):
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive
    from rlcar_core.errors import RlcarError

    with pytest.raises(RlcarError):
        LiveConfig(race=True).validate()
    live = LiveDrive(LiveConfig(agent="heuristic", race=True, max_steps=5), tmp_path, Leaderboard(tmp_path))
    assert live.manual  # in a race you drive; the agent is the ghost
    live.command("toggle")
    live.tick(live.stepped_at + live.step_seconds)
    assert live.manual and live.ghost.steps == 1
    live.close()


def test_carracing_race_runs_two_cars_side_by_side_and_compares_them_at_the_end(tmp_path):
    from rlcar_core.apps.human import load_human_run
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    board = Leaderboard(tmp_path)
    config = LiveConfig(env="carracing", agent="random", race=True, track=4, max_steps=6, label="random")
    live = LiveDrive(config, tmp_path / "play", board)
    live.command("toggle")  # in a race you drive: T hands nothing over
    live.key("w", True)
    clock, scores = live.stepped_at, []
    for _ in range(6):
        clock += live.step_seconds
        assert live.tick(clock)
        frames, meta = live.render_panes(clock)
        assert meta["panes"] == len(frames) == 2 and all(f[:2] == b"\xff\xd8" for f in frames)
        scores.append((meta["cars"]["you"]["score"], meta["cars"]["ai"]["steps"]))
        assert meta["cars"]["you"]["action"] == [0.0, 1.0, 0.0] and len(meta["cars"]["ai"]["action"]) == 3
    assert [steps for _, steps in scores] == [1, 2, 3, 4, 5, 6]  # both cars step together
    result = meta["result"]
    assert result is not None and result["you"]["ended"] == result["ai"]["ended"] == "time"
    assert set(result["better"]) == {"score", "tiles", "off_road_seconds"}
    assert result["you"]["tiles_total"] > 0 and result["you"]["off_road_seconds"] >= 0
    assert not live.tick(clock + 1.0)  # the result stays on screen until R
    # ... and is not drawn again while it waits: the same frames are sent
    assert live.render_panes(clock + 1.0)[0] == frames and live.render_panes()[0][0] is frames[0]
    drivers = {e["driver"]: e["kind"] for e in board.entries("carracing", 4)}
    assert drivers == {"you": "human", "AI: random": "ai"}
    recorded = load_human_run(tmp_path / "play")
    assert recorded.env == "carracing" and recorded.steps == 6 and recorded.manual_steps == 6
    live.command("reset")
    live.tick(clock + 1.0)
    assert live.race_result is None and live.session.steps == 0 and live.ghost.steps == 0
    live.close()


@pytest.mark.parametrize("shipped", ["dreamer-carracing-pixels", "worldmodel-carracing-pixels"])
def test_each_shipped_carracing_agent_drives_the_live_view(tmp_path, shipped):
    from pathlib import Path

    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    run = Path(__file__).resolve().parents[1] / "pretrained" / shipped
    if not (run / "checkpoints").is_dir():
        pytest.skip(f"{run} is missing")
    agent = "dreamer" if shipped.startswith("dreamer") else "worldmodel"
    live = LiveDrive(LiveConfig(env="carracing", agent=agent, run_dir=run, label=shipped), tmp_path, None)
    for _ in range(60):  # past CarRacing's zoom-in: the agent gives gas
        live.tick(live.stepped_at + live.step_seconds)
    jpeg, meta = live.render()
    assert jpeg[:2] == b"\xff\xd8" and meta["driver"] == f"AI: {shipped}" and not meta["manual"]
    assert meta["step"] == 60 and meta["speed_kmh"] > 0
    live.close()


def test_carracing_speed_reads_in_believable_km_per_hour(tmp_path):
    """Box2D's units/s read as m/s made a straight ~350 km/h; in metres (a unit is ~0.6 m, by the
    size of the car's wheels) full gas tops out near 200 km/h, and the page and the HUD agree."""
    import numpy as np

    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive
    from rlcar_core.envs.carracing import METRES_PER_UNIT

    live = LiveDrive(LiveConfig(env="carracing", track=5, max_steps=200), tmp_path / "play", None)
    live.key("ArrowUp", True)
    top = 0.0
    for _ in range(120):  # 2.4 s of full gas, straight ahead: the fastest this car gets
        live.tick(live.stepped_at + live.step_seconds)
        box2d_units = float(np.linalg.norm(live.session.env.unwrapped.car.hull.linearVelocity))
        shown = live.render_panes()[1]["speed_kmh"]
        assert shown == pytest.approx(3.6 * METRES_PER_UNIT * box2d_units, rel=1e-4)
        top = max(top, shown)
    assert 120 < top < 250, top
    assert live.session.hud()["speed"] == f"{shown:.1f} km/h"
    live.close()


def test_carracing_race_websocket_sends_both_panes(client):
    with client.websocket_connect(WS + "/ws/drive?env=carracing&agent=random&race=1&max_steps=5") as socket:
        meta = json.loads(socket.receive_text())
        assert meta["env"] == "carracing" and meta["panes"] == 2 and set(meta["cars"]) == {"you", "ai"}
        assert socket.receive_bytes()[:2] == socket.receive_bytes()[:2] == b"\xff\xd8"


def test_an_ai_lap_in_the_drive_tab_is_not_on_the_race_leaderboard(tmp_path):
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    board = Leaderboard(tmp_path)
    live = LiveDrive(LiveConfig(agent="heuristic", max_steps=50), tmp_path / "play", board)
    for _ in range(3):
        live.tick(live.stepped_at + live.step_seconds)
    live.session.info = {**live.session.info, "lap_complete": True}  # as if the heuristic just finished a lap
    live._finish_episode(live.session.info)
    assert live.last_episode["lap_complete"] and live.last_episode["manual_steps"] == 0
    assert board.read() == {} and live.last_lap is None
    live.close()


def test_an_attempt_the_ai_drove_most_of_is_not_saved_as_a_human_run(tmp_path):
    from rlcar_core.apps.serve.live import LiveConfig, LiveDrive

    live = LiveDrive(LiveConfig(agent="heuristic", max_steps=10), tmp_path / "play", None)
    live.command("toggle")  # you take the wheel for two steps, then hand it back for eight
    live.key("ArrowUp", True)
    clock = live.stepped_at
    for step in range(10):
        if step == 2:
            live.command("toggle")
        clock += live.step_seconds
        live.tick(clock)
    episode = live.last_episode
    assert (episode["steps"], episode["manual_steps"]) == (10, 2) and "saved" not in episode
    assert not (tmp_path / "play").exists()
    live.close()


def test_drive_websocket_streams_status_and_jpeg_frames(client):
    with client.websocket_connect(WS + "/ws/drive?agent=heuristic&fps=30") as socket:
        meta = json.loads(socket.receive_text())
        frame = socket.receive_bytes()
        assert frame[:2] == b"\xff\xd8" and meta["driver"] == "AI: heuristic"
        socket.send_text(json.dumps({"type": "toggle"}))
        socket.send_text(json.dumps({"type": "key", "key": "ArrowUp", "down": True}))
        for _ in range(10):
            meta = json.loads(socket.receive_text())
            socket.receive_bytes()
        assert meta["manual"]


def test_drive_websocket_reports_a_bad_driver(client):
    with client.websocket_connect(WS + "/ws/drive?agent=dreamer&run=missing") as socket:
        assert "no run" in json.loads(socket.receive_text())["error"]
    with client.websocket_connect(WS + "/ws/drive?agent=pilot") as socket:
        assert "unknown driver" in json.loads(socket.receive_text())["error"]


def _event_scalars(path):
    """Scalars in a TensorBoard event file (TFRecord framing around Event protos)."""
    from tensorboardX.proto import event_pb2

    scalars = []
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        for value in event.summary.value:
            scalars.append((value.tag, event.step, round(value.simple_value, 4)))
    return scalars


def test_tensorboard_event_files_beside_metrics(tmp_path):
    from rlcar_core.io.tensorboard import TensorBoardWriter

    with TensorBoardWriter(tmp_path) as writer:
        writer.write({"kind": "train", "step": 10, "wm/loss": 2.5, "trainer": "dreamer"})
        writer.write({"kind": "eval", "env_steps": 20, "progress_mean": 0.75, "best": True})
        writer.write({"kind": "checkpoint", "step": 30})
    (event_file,) = tmp_path.glob("events.out.tfevents.*")
    assert _event_scalars(event_file) == [("wm/loss", 10, 2.5), ("eval/progress_mean", 20, 0.75)]


# --- issue 30, part 3: bad input gets one line and a 4xx, never a 500 ----------------------------------


def _one_line_4xx(response, *words):
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    message = response.json()["error"]
    assert "\n" not in message and len(message) < 400, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "path",
    ["/api/metrics?run=run1&since=%C2%B2", "/api/metrics?run=run1&since=-1", "/api/metrics?run=" + "a" * 300,
     "/files/" + "a" * 300, "/files/" + "a/" * 3000 + "a", "/files/" + "é" * 200],
)  # fmt: skip
def test_bad_paths_and_numbers_get_one_line_4xx(client, path):
    _one_line_4xx(client.get(path))


def test_long_run_names_in_job_forms_get_one_line_4xx(client):
    _one_line_4xx(client.post("/api/video", json={"agent": "dreamer", "run": "a" * 300}), "no run")
    _one_line_4xx(client.post("/api/dream", json={"run": "a" * 300}), "no run")
    _one_line_4xx(client.post("/api/dream", json={"run": "a/" * 3000}), "no run")


def test_live_view_fps_with_a_unicode_digit_falls_back_to_the_default(client):
    with client.websocket_connect(WS + "/ws/drive?agent=heuristic&fps=%C2%B2") as socket:
        assert "driver" in json.loads(socket.receive_text())
        assert socket.receive_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("query", "words"),
    [("agent=heuristic&track=3000000000", "--track must be at most"), ("track=-1", "--track must be at least"),
     ("track=%C2%B2", "--track must be a whole number"), ("agent=dreamer&run=" + "a" * 300, "no run"),
     ("agent=dreamer&run=" + "a/" * 3000, "no run"), ("env=pong", "unknown env"), ("env=" + "a" * 3000, "unknown env"),
     ("env=carracing&agent=heuristic", "ray sensors"), ("env=carracing&max_steps=0", "max_steps"),
     ("env=carracing&max_steps=%C2%B2", "max_steps"), ("max_steps=99999999999999999", "max_steps")],
)  # fmt: skip
def test_live_view_refuses_bad_values_with_a_message(client, query, words):
    """Checked before any JAX call; the page shows the message (the socket then closes 4400)."""
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect(WS + "/ws/drive?" + query) as socket:
        message = json.loads(socket.receive_text())["error"]
        assert words in message and "\n" not in message
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
        assert closed.value.code == 4400


def write_kind(root, name, kind):
    """An empty run that `rlcar runs` lists as a dreamer run, or a `play` folder of human drives."""
    run = root / name
    if kind == "dreamer":
        (run / "checkpoints" / "dreamer").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"dreamer": {}}))
    else:
        (run / "human").mkdir(parents=True)
        (run / "human" / "actions.npy").write_bytes(b"")
    return run


@pytest.mark.parametrize(
    ("path", "form", "words"),
    [("/api/train", {"run": "leaderboard.json", "episodes": 1}, "kept for the server"),
     ("/api/train", {"run": "play", "episodes": 1}, "kept for the server"),
     ("/api/train", {"run": "x", "episodes": 10**30}, "--episodes"),
     ("/api/train", {"run": "x", "episodes": "9999999999999"}, "--episodes"),
     ("/api/video", {"agent": "heuristic", "max_steps": 0}, "--max-steps must be at least 1"),
     ("/api/video", {"agent": "heuristic", "max_steps": "0"}, "--max-steps must be at least 1"),
     ("/api/video", {"agent": "heuristic", "track": 3000000000}, "--track must be at most"),
     ("/api/dream", {"run": "play"}, "only a dreamer or World Models run"),
     ("/api/dream", {"run": "run1"}, "only a dreamer or World Models run"),
     ("/api/video", {"agent": "worldmodel", "run": "dreamer-run"}, "the dreamer driver reads it"),
     ("/api/video", {"agent": "dreamer", "run": "play"}, "not a trained agent's run")],
)  # fmt: skip
def test_jobs_are_checked_before_they_start(client, root, path, form, words):
    write_kind(root, "dreamer-run", "dreamer")
    write_kind(root, "play", "play")
    _one_line_4xx(client.post(path, json=form), *words.split("|"))
    assert client.get("/api/jobs").json()["jobs"] == []


def test_stop_wants_json_or_nothing(client):
    response = client.post("/api/jobs/1/stop", content="{oops", headers={"content-type": "application/json"})
    _one_line_4xx(response, "JSON")
    assert client.post("/api/jobs/1/stop", headers={"content-type": "application/json"}).status_code == 404


def test_concurrent_jobs_are_limited(root, monkeypatch):
    """A third job while two run is refused (429) with the reason; a finished one frees its place."""
    import sys

    from rlcar_core.apps.serve import jobs

    monkeypatch.setattr(
        jobs, "rlcar_argv", lambda *args: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    app = create_app(ServeConfig(root=root, max_jobs=2))
    client = TestClient(app, base_url=LOCAL)
    manager = app.app.state.server.jobs
    try:
        for _ in range(2):
            assert client.post("/api/video", json={"agent": "heuristic"}).status_code == 202
        response = client.post("/api/video", json={"agent": "heuristic"})
        assert response.status_code == 429 and "wait for one to end" in response.json()["error"]
        first = next(iter(manager.jobs.values()))
        first.process.kill()
        first.process.wait()
        assert client.post("/api/video", json={"agent": "heuristic"}).status_code == 202
    finally:
        for job in manager.jobs.values():
            job.process.kill()
            job.process.wait()


@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1.evil.example", "[::2]:80"])
def test_dns_rebinding_names_are_refused_without_a_token(root, host):
    client = TestClient(create_app(ServeConfig(root=root)), base_url=LOCAL)
    headers = {"host": host, "origin": f"http://{host}"}
    _one_line_4xx(client.get("/api/runs", headers=headers), "Host")
    _one_line_4xx(client.post("/api/train", json={"run": "x", "episodes": 1}, headers=headers), "Host")
    assert client.get("/", headers=headers).status_code == 403


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST"])
def test_loopback_names_are_accepted(root, host):
    client = TestClient(create_app(ServeConfig(root=root)), base_url=LOCAL)
    assert client.get("/api/runs", headers={"host": host}).status_code == 200


def test_with_a_token_any_host_name_may_reach_the_server(root):
    """Bound beyond loopback (a token is then required), the token is the check, not the name."""
    client = TestClient(create_app(ServeConfig(root=root, token="secret")), base_url=LOCAL)
    headers = {"host": "box.lan:8765", "x-rlcar-token": "secret"}
    assert client.get("/api/runs", headers=headers).status_code == 200


def test_a_stopped_job_reads_as_stopped_not_as_an_error(tmp_path, monkeypatch):
    import sys
    import time

    from rlcar_core.apps.serve import jobs

    script = "import sys; print('epoch 3'); sys.stderr.write('error: interrupted; rerun to resume\\n'); sys.exit({})"
    monkeypatch.setattr(jobs, "rlcar_argv", lambda code: [sys.executable, "-c", code])
    manager = jobs.JobManager(tmp_path, max_running=4)
    stopped, failed = (
        manager.start(jobs.TRAIN, "a", [script.format(130)]),
        manager.start(jobs.TRAIN, "b", [script.format(1)]),
    )
    deadline = time.monotonic() + 30
    while (stopped.running or failed.running) and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped_view, failed_view = stopped.to_dict(), failed.to_dict()
    assert stopped_view["state"] == "stopped" and stopped_view["message"] == "interrupted; rerun to resume"
    assert failed_view["state"] == "failed" and failed_view["message"].startswith("error: ")


def test_the_hud_never_reads_minus_zero(tmp_path):
    from rlcar_core.apps.drive import DrivingSession

    session = DrivingSession("rlcar", "sensors", 0, 10, 0, render=False)
    session.reset()
    session.episode_return = -0.03  # a few steps of time cost
    assert session.hud()["return"] == "0.0"
    session.close()


def test_videos_are_listed_from_disk_newest_first_and_only_inside_the_root(client, root, tmp_path_factory):
    import os

    (root / "run1" / "videos").mkdir()
    (root / "run1" / "videos" / "old.mp4").write_bytes(b"x")
    os.utime(root / "run1" / "videos" / "old.mp4", (1, 1))
    (root / "videos").mkdir()
    (root / "videos" / "heuristic-track0.gif").write_bytes(b"y")
    (root / "videos" / ".tmp-partial.mp4").write_bytes(b"z")  # an atomic writer's temp file
    (root / "videos" / "notes.txt").write_text("no")
    outside = tmp_path_factory.mktemp("outside") / "secret.mp4"
    outside.write_bytes(b"s")
    (root / "videos" / "link.mp4").symlink_to(outside)
    videos = client.get("/api/videos").json()["videos"]
    assert [v["file"] for v in videos] == ["videos/heuristic-track0.gif", "run1/videos/old.mp4"]
    assert videos[1]["run"] == "run1" and videos[0]["run"] == ""
    assert client.get("/files/" + videos[1]["file"]).content == b"x"
