"""`rlcar serve` in a real browser: Debian's headless Chromium driven by Playwright.

One server (the real `rlcar serve` command) and one browser serve the whole module. Skipped, with the
reason, only where /usr/bin/chromium is missing; CI installs it (.ci/run).
"""

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlcar_core.apps.pretrained import read_card
from rlcar_core.dreamer.train_config import from_saved_section
from rlcar_core.io.runs import RunDir

# A real Chromium against a real server: end to end, so `make test` runs these and `make test-fast` not.
pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps dialling Google's services, which this closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A train-dreamer run small enough to compile and log within a minute on two CPU cores.
TINY_TRAINING = {
    "run": "web-tiny",
    "episodes": "40",
    "size": "tiny",
    "max_steps": "20",
    "num_envs": "2",
    "num_tracks": "2",
    "prefill_steps": "8",
    "train_ratio": "8",
    "batch_size": "2",
    "batch_length": "8",
    "checkpoint_every": "2",
    "eval_every": "100",
    "eval_episodes": "1",
}
SCREENSHOTS = os.environ.get("RLCAR_SCREENSHOTS")  # a folder (docs/) to save the README's pictures in

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: `apt-get install -y chromium` (CI does)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_demo_run(root: Path) -> None:
    run = root / "demo-run"
    run.mkdir(parents=True)
    with open(run / "metrics.jsonl", "w") as handle:
        for i in range(12):
            step = 5000 * (i + 1)
            handle.write(json.dumps({"kind": "eval", "env_steps": step, "progress_mean": min(1, 0.08 * i + 0.02 * (i % 3)),
                                     "return_mean": 90 * min(1, 0.08 * i)}) + "\n")  # fmt: skip
            handle.write(json.dumps({"kind": "train", "env_steps": step, "wm/loss": 9 / (i + 1), "actor/loss": 0.1 * (i % 4),
                                     "critic/loss": 3 / (i + 2)}) + "\n")  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-root")
    write_demo_run(root)
    port = free_port()
    log = open(root.parent / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "rlcar_cli.main", "serve", "--root", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("rlcar serve did not start:\n" + (root.parent / "serve.log").read_text())
            time.sleep(0.2)
    yield {"base": base, "root": root, "port": port, "process": process}
    process.send_signal(signal.SIGINT)  # Ctrl-C: the server stops its child trainers, then exits
    try:
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server["base"])
        yield page
        browser.close()


def screenshot(locator_or_page, name: str) -> bytes:
    data = locator_or_page.screenshot()
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / name).write_bytes(data)
    return data


def test_dashboard_charts_a_run_with_points(server, page):
    page.goto(server["base"])
    page.wait_for_selector("#runs-table tbody tr[data-run='demo-run']")
    page.wait_for_function("Number(document.querySelector('#runs-charts').dataset.points) >= 24")
    assert page.locator("#runs-charts .chart canvas").count() >= 2
    assert "held-out progress" in page.locator("#runs-charts").inner_text()
    # One chart per loss, so wm/loss (9 -> 0.75) does not flatten actor/loss (0 - 0.3).
    for loss in ("wm/loss", "actor/loss", "critic/loss"):
        assert page.locator(f"#runs-charts .chart[data-chart='loss:{loss}']").count() == 1
    screenshot(page, "serve-dashboard.png")


def test_charts_take_the_room_there_is(server, page):
    page.goto(server["base"])
    page.wait_for_function("Number(document.querySelector('#runs-charts').dataset.points) >= 24")
    chart = page.locator("#runs-charts .chart[data-chart='progress'] canvas")
    at_1280 = chart.bounding_box()["width"]
    assert at_1280 > 500, at_1280  # two a row on a 1280 px window, not a fixed 460
    page.set_viewport_size({"width": 1800, "height": 900})
    try:
        page.wait_for_function(
            f"document.querySelector(\"#runs-charts .chart[data-chart='progress'] canvas\")"
            f".getBoundingClientRect().width > {at_1280 + 150}"
        )
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_videos_on_disk_are_listed_and_play(server, page):
    """Listed from the folders, not from this server's job history, so a restart loses none."""
    folder = server["root"] / "demo-run" / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "heuristic-best-track0-earlier.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    page.goto(server["base"])
    page.click("nav button[data-tab=dream]")
    row = page.locator("#video-files tbody tr[data-file='demo-run/videos/heuristic-best-track0-earlier.mp4']")
    row.wait_for()
    assert "demo-run" in row.inner_text() and row.locator("a").get_attribute("href").endswith("?download=1")
    row.locator("button").click()
    assert page.locator("#video-player").get_attribute("src").endswith("heuristic-best-track0-earlier.mp4")
    page.click("nav button[data-tab=runs]")


def _choose_driver(page, tab: str, driver_label: str, env: str | None = None) -> None:
    """Open the Drive or Race tab, pick the env if given, and pick a driver once the list offers it."""
    page.click(f"nav button[data-tab={tab}]")
    if env is not None:
        page.select_option(f"#{tab}-env", env)
    page.wait_for_function(
        f"[...document.querySelectorAll('#{tab}-driver option')].some(o => o.textContent === {driver_label!r})"
    )
    page.select_option(f"#{tab}-driver", label=driver_label)


def _start_drive(page, driver_label: str, env: str | None = None) -> None:
    _choose_driver(page, "drive", driver_label, env)
    page.click("#drive-form button[type=submit]")
    page.wait_for_function("document.querySelector('#drive-frame').src.startsWith('blob:')")


def test_drive_view_is_live(server, page):
    from PIL import Image, ImageChops

    _start_drive(page, "heuristic")
    page.wait_for_function("document.querySelector('#drive-mode').textContent.includes('heuristic')")
    first = page.locator("#drive-frame").screenshot()
    page.wait_for_timeout(1000)
    second = page.locator("#drive-frame").screenshot()
    screenshot(page, "serve-drive.png")
    difference = ImageChops.difference(
        Image.open(io.BytesIO(first)).convert("RGB"), Image.open(io.BytesIO(second)).convert("RGB")
    )
    assert difference.getbbox() is not None, "two frames 1 s apart are identical: the feed is not live"
    fps = float(page.locator("#drive-fps").inner_text())
    assert fps > 0


def test_holding_arrow_up_speeds_the_car_up(server, page):
    _start_drive(page, "you (keyboard only)")
    page.wait_for_function("document.querySelector('#drive-mode').textContent.includes('manual')")
    before = float(page.locator("#drive-frame").get_attribute("data-speed"))
    page.keyboard.down("ArrowUp")
    page.wait_for_timeout(2000)
    after = float(page.locator("#drive-frame").get_attribute("data-speed"))
    # The page does not repeat the frame's panel (speed, progress, time, return) beside it.
    assert "speed" not in page.locator("#drive-status").inner_text()
    page.keyboard.up("ArrowUp")
    assert after > before + 5, (before, after)


PRETRAINED_WORLD_MODEL = Path(__file__).resolve().parents[1] / "pretrained" / "worldmodel-rlcar-pixels"


def _serve_the_shipped_world_model(server) -> None:
    """The shipped RLCar World Models agent as the server's run `wm-pixels` (skips without it)."""
    import shutil

    if not (PRETRAINED_WORLD_MODEL / "checkpoints").is_dir():
        pytest.skip(f"{PRETRAINED_WORLD_MODEL} is missing")
    shutil.copytree(PRETRAINED_WORLD_MODEL, server["root"] / "wm-pixels", dirs_exist_ok=True)


def _start_latent_then_pause(page, driver_label: str, steps: int = 5) -> None:
    """Start the latent view with `driver_label` and pause it once its car has driven `steps` frames."""
    _choose_driver(page, "latent", driver_label)
    assert "connecting" not in page.locator("#latent-state").inner_text()
    page.click("#latent-form button[type=submit]")
    page.wait_for_function(f"Number(document.querySelector('#latent-view').dataset.step) >= {steps}")
    page.click("#latent-pause")
    page.wait_for_function("document.querySelector('#latent-view').dataset.paused === 'true'")
    page.wait_for_timeout(300)  # the last state of the step paused on


def _move_slider(page, index: int, value: str) -> bytes:
    """Move z slider `index` to `value` as a person would; the decoded frame before the move."""
    before = page.locator("#latent-reconstruction").screenshot()
    slider = page.locator(f"#latent-sliders input[data-index='{index}']")
    assert slider.is_enabled()
    slider.evaluate(
        f"s => {{ s.value = '{value}'; s.dispatchEvent(new Event('input', {{ bubbles: true }})); }}"
    )
    page.wait_for_function("Number(document.querySelector('#latent-view').dataset.probes) >= 1")
    page.wait_for_function(f"document.querySelector('#latent-state').textContent.includes('z{index}')")
    return before


def _decoded_frame_changed(page, before: bytes) -> bool:
    from PIL import Image, ImageChops

    after = page.locator("#latent-reconstruction").screenshot()
    difference = ImageChops.difference(
        Image.open(io.BytesIO(before)).convert("RGB"), Image.open(io.BytesIO(after)).convert("RGB")
    )
    return difference.getbbox() is not None


def _resume_latent(page) -> None:
    page.click("#latent-pause")  # resume: the car drives on
    page.wait_for_function("document.querySelector('#latent-view').dataset.paused === 'false'")
    page.click("nav button[data-tab=runs]")


def test_latent_view_slider_changes_the_decoded_frame(server, page):
    """A World Models agent drives; paused, moving z3 changes V's decoded frame and C's action."""
    _serve_the_shipped_world_model(server)
    page.goto(server["base"])
    _start_latent_then_pause(page, "wm-pixels: best")
    steer_before = page.locator("#latent-steer").inner_text()
    # z3 pulls this C's steering right: move it against the steer shown, so the change can't saturate.
    before = _move_slider(page, 3, "-3" if float(steer_before) >= 0 else "3")
    assert _decoded_frame_changed(page, before), "moving z3 left the decoded frame unchanged"
    assert page.locator("#latent-steer").inner_text() != steer_before
    assert "|h|" in page.locator("#latent-h-summary").inner_text()
    assert page.locator("#latent-actor-label").inner_text() == "C"
    screenshot(page, "serve-latent.png")
    _resume_latent(page)


def test_dreamer_latent_view_a_class_slider_changes_the_decoded_frame(server, page):
    """The shipped CarRacing-v3 DreamerV3 agent drives; paused, setting one categorical variable to
    another class re-decodes the frame from [h, z] and changes the actor's action."""
    if not (PRETRAINED_CARRACING_DREAMER / "checkpoints").is_dir():
        pytest.skip(f"{PRETRAINED_CARRACING_DREAMER} is missing")
    _serve_a_carracing_agent(server)
    page.goto(server["base"])
    _start_latent_then_pause(page, "dreamer-carracing: best", steps=60)  # past CarRacing's zoom-in
    assert page.locator("#latent-actor-label").inner_text() == "the actor"
    assert "categorical" in page.locator("#latent-z-label").inner_text()
    sliders = page.locator("#latent-sliders input")
    # One slider per categorical variable, each ranging over its classes (the shipped agent's sizes).
    _, model = from_saved_section(RunDir(PRETRAINED_CARRACING_DREAMER).read_config()["dreamer"])
    assert sliders.count() == model.stoch_size
    assert sliders.first.get_attribute("max") == str(model.stoch_classes - 1)
    action = "#latent-action output"
    action_before = page.locator(action).all_inner_texts()
    seen = int(sliders.nth(2).input_value())
    before = _move_slider(page, 2, str((seen + 4) % 8))  # another class for variable z2
    assert _decoded_frame_changed(page, before), "a new class for z2 left the decoded frame unchanged"
    # Some class of z2 moves the actor (one may leave a saturated steer where it was, to 2 decimals).
    for offset in (1, 2, 3, 5, 6, 7):
        if page.locator(action).all_inner_texts() != action_before:
            break
        _move_slider(page, 2, str((seen + offset) % 8))
        page.wait_for_timeout(200)
    assert page.locator(action).all_inner_texts() != action_before
    assert page.locator("#latent-sliders label.edited").count() == 1
    screenshot(page, "serve-latent-dreamer.png")
    _resume_latent(page)


PRETRAINED_CARRACING_DREAMER = PRETRAINED_WORLD_MODEL.parent / "dreamer-carracing-pixels"


def _serve_a_carracing_agent(server) -> str:
    """The shipped CarRacing-v3 DreamerV3 agent as the run `dreamer-carracing` (random without it);
    returns its label in the driver lists."""
    import shutil

    if not (PRETRAINED_CARRACING_DREAMER / "checkpoints").is_dir():
        return "random"
    shutil.copytree(PRETRAINED_CARRACING_DREAMER, server["root"] / "dreamer-carracing", dirs_exist_ok=True)
    return "dreamer-carracing: best"


def test_carracing_drive_view_the_ai_drives_then_you_take_the_wheel(server, page):
    from PIL import Image, ImageChops

    agent = _serve_a_carracing_agent(server)
    page.goto(server["base"])
    _start_drive(page, agent, env="carracing")
    page.wait_for_function("document.querySelector('#drive-mode').textContent.startsWith('AI:')")
    page.wait_for_timeout(1500)  # past CarRacing's zoom-in
    first = page.locator("#drive-frame").screenshot()
    page.wait_for_timeout(1000)
    second = page.locator("#drive-frame").screenshot()
    difference = ImageChops.difference(
        Image.open(io.BytesIO(first)).convert("RGB"), Image.open(io.BytesIO(second)).convert("RGB")
    )
    assert difference.getbbox() is not None, "the AI's car did not move"
    assert float(page.locator("#drive-fps").inner_text()) > 0
    screenshot(page, "serve-drive-carracing.png")
    page.keyboard.press("t")
    page.wait_for_function("document.querySelector('#drive-mode').textContent.includes('manual')")
    page.click("nav button[data-tab=runs]")


def test_carracing_race_against_the_ai_shows_both_cars_and_a_comparison(server, page):
    """CarRacing-v3: you (ArrowUp held) and the shipped DreamerV3 agent on one held-out track, one env
    each; both panes and both scores move, and a short race ends in a comparison on the leaderboard."""
    from PIL import Image, ImageChops

    agent = _serve_a_carracing_agent(server)
    page.goto(server["base"])
    _choose_driver(page, "race", agent, env="carracing")
    assert "heuristic" not in page.locator("#race-driver").inner_text()  # it cannot drive CarRacing
    page.fill("#race-form [name=track]", "5")
    page.fill("#race-form [name=max_steps]", "150")  # 3 s of CarRacing time: a short race
    page.click("#race-form button[type=submit]")
    page.keyboard.down("ArrowUp")
    both_drawn = (
        "['#race-frame', '#race-ai-frame'].every(s => document.querySelector(s).src.startsWith('blob:'))"
    )
    page.wait_for_function(both_drawn)
    scores = page.locator("#race-scores")
    page.wait_for_function("Number(document.querySelector('#race-scores').dataset.aiSteps) >= 10")
    first = [page.locator(s).screenshot() for s in ("#race-frame", "#race-ai-frame")]
    steps_before = int(scores.get_attribute("data-you-steps")), int(scores.get_attribute("data-ai-steps"))
    page.wait_for_function(
        f"Number(document.querySelector('#race-scores').dataset.aiSteps) >= {steps_before[1] + 20}"
    )
    second = [page.locator(s).screenshot() for s in ("#race-frame", "#race-ai-frame")]
    steps_after = int(scores.get_attribute("data-you-steps")), int(scores.get_attribute("data-ai-steps"))
    for name, before, after in zip(("your pane", "the AI's pane"), first, second, strict=True):
        difference = ImageChops.difference(
            Image.open(io.BytesIO(before)).convert("RGB"), Image.open(io.BytesIO(after)).convert("RGB")
        )
        assert difference.getbbox() is not None, f"{name} did not move"
    assert steps_after[0] > steps_before[0] and steps_after[1] > steps_before[1]
    # Each car's decision beside its score: yours is the held gas.
    assert "gas 1.00" in page.locator("tr[data-measure='action'] td.you").inner_text()
    assert "steer" in page.locator("tr[data-measure='action'] td.ai").inner_text()
    page.wait_for_selector("#race-result:not([hidden])", timeout=180_000)
    page.keyboard.up("ArrowUp")
    result = page.locator("#race-result").inner_text()
    assert "tiles" in result and "off the road" in result, result
    you_score = float(page.locator("tr[data-measure='score'] td.you").inner_text())
    assert you_score > 0, "holding ArrowUp drives over tiles: the score grows"
    assert page.locator("tr[data-measure='tiles'] td.ai").inner_text().endswith(tuple("0123456789"))
    page.wait_for_function("document.querySelectorAll('#leaderboard tbody tr').length >= 2")
    board = page.locator("#leaderboard").inner_text()
    assert "score" in board and "you" in board and "AI:" in board
    assert page.locator("#leaderboard tbody tr[data-kind='human']").count() >= 1
    screenshot(page, "serve-race-carracing.png")
    page.click("nav button[data-tab=runs]")


def test_rlcar_race_keeps_its_one_frame_with_the_ghost_and_a_lap_time_board(server, page):
    page.goto(server["base"])
    _choose_driver(page, "race", "heuristic")
    page.click("#race-form button[type=submit]")
    page.wait_for_function("document.querySelector('#race-frame').src.startsWith('blob:')")
    assert not page.locator("#race-ai-pane").is_visible() and not page.locator("#race-scores").is_visible()
    assert page.locator("#race-frame").bounding_box()["width"] >= 800  # full size, not squeezed
    page.wait_for_function("document.querySelector('#leaderboard thead').textContent.includes('lap time')")
    assert "RLCar" in page.locator("#board-env").inner_text()
    page.click("nav button[data-tab=runs]")


def test_a_bad_track_is_a_message_in_the_page_not_a_dead_frame(server, page):
    page.goto(server["base"])
    _choose_driver(page, "drive", "heuristic")
    page.fill("#drive-form [name=track]", "3000000000")
    page.click("#drive-form button[type=submit]")
    page.wait_for_function(
        "document.querySelector('#drive-state').textContent.includes('--track must be at most')"
    )
    assert page.locator("#drive-state.error").count() == 1 and not page.locator("#drive-frame").is_visible()
    page.fill("#drive-form [name=track]", "0")
    page.click("#drive-form button[type=submit]")
    assert "connecting" in page.locator("#drive-state").inner_text()  # shown until the first frame
    page.wait_for_function("document.querySelector('#drive-state').textContent === ''")
    assert page.locator("#drive-frame").is_visible()
    page.click("nav button[data-tab=runs]")


def test_a_run_without_metrics_says_why_its_charts_are_empty(server, page):
    _serve_the_shipped_world_model(server)
    page.goto(server["base"])
    page.click("#runs-table tbody tr[data-run='wm-pixels'] td:nth-child(2)")
    page.wait_for_selector("#runs-charts .empty")
    assert "no metrics.jsonl" in page.locator("#runs-charts .empty").inner_text()
    page.click("#runs-table tbody tr[data-run='demo-run'] td:nth-child(2)")
    page.wait_for_function("Number(document.querySelector('#runs-charts').dataset.points) >= 24")
    assert page.locator("#runs-charts .empty").count() == 0


def test_train_from_the_form_chart_then_stop_leaves_a_checkpoint(server, page):
    page.click("nav button[data-tab=train]")
    page.click("#train-form details summary")
    for name, value in TINY_TRAINING.items():
        field = page.locator(f"#train-form [name={name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.click("#train-form button[type=submit]")
    page.wait_for_selector("#train-jobs tbody tr td.state-running")
    # Episode records (and then losses) reach the chart while it trains.
    page.wait_for_function(
        "Number(document.querySelector('#train-charts').dataset.points) > 0", timeout=150_000
    )
    first = int(page.locator("#train-charts").get_attribute("data-points"))
    page.wait_for_function(
        f"Number(document.querySelector('#train-charts').dataset.points) > {first}", timeout=90_000
    )
    run = server["root"] / TINY_TRAINING["run"]
    # A second start of the same run is refused with the lock's message, shown in the page.
    page.click("#train-form button[type=submit]")
    page.wait_for_selector("#notice:not([hidden])")
    assert (
        "training" in page.locator("#notice").inner_text() or "in use" in page.locator("#notice").inner_text()
    )
    page.click("#train-jobs tbody tr button.stop")
    page.wait_for_selector("#train-jobs tbody tr td.state-stopped", timeout=120_000)
    steps = [p for p in (run / "checkpoints" / "dreamer").iterdir() if p.name.isdigit()]
    assert steps, f"no checkpoint in {run}"


def test_job_rows_update_in_place_and_a_disabled_stop_looks_disabled(server, page):
    """The page's side of the job table, against a scripted /api/jobs: a row (and its Stop button)
    survives the polls, so a click is never lost; Stop greys out while the job saves; a stopped job
    reads as stopped."""
    job = {"id": "7", "kind": "train", "run": "fake", "state": "running", "exit_code": None,
           "message": "episode 3", "output": None, "started": 1, "command": "rlcar train-dreamer"}  # fmt: skip

    def jobs(route):
        route.fulfill(status=200, content_type="application/json", body=json.dumps({"jobs": [job]}))

    def stop(route):
        job["state"] = "stopping"
        route.fulfill(status=200, content_type="application/json", body=json.dumps(job))

    page.route("**/api/jobs", jobs)
    page.route("**/api/jobs/7/stop", stop)
    try:
        page.goto(server["base"])
        page.click("nav button[data-tab=train]")
        row = "#train-jobs tbody tr[data-job='7']"
        page.wait_for_selector(f"{row} button.stop:not([disabled])")
        page.evaluate(f'document.querySelector("{row}").kept = true')
        colour = f'getComputedStyle(document.querySelector("{row} button.stop")).backgroundColor'
        enabled = page.evaluate(colour)
        page.wait_for_timeout(2500)  # two polls of the job list
        assert page.evaluate(f'document.querySelector("{row}").kept === true'), "the row was rebuilt"
        page.click(f"{row} button.stop")
        page.wait_for_selector(f"{row} button.stop[disabled]")
        assert page.evaluate(colour) != enabled, "a disabled Stop looks like an enabled one"
        assert page.locator(f"{row} button.stop").inner_text() == "stopping…"
        job.update(state="stopped", exit_code=130, message="interrupted: resume with the same command")
        page.wait_for_selector(f"{row} td.state-stopped")
        assert "error" not in page.locator(row).inner_text()
        assert not page.locator(f"{row} button.stop").is_visible()
    finally:
        page.unroute("**/api/jobs")
        page.unroute("**/api/jobs/7/stop")
    page.goto(server["base"])


def test_a_notice_goes_away_by_itself(server, page):
    page.goto(server["base"])
    page.evaluate("notice('train-web is already training from this page; stop it first')")
    assert page.locator("#notice").is_visible()
    page.wait_for_selector("#notice", state="hidden", timeout=15_000)


def test_t_in_keyboard_only_mode_says_why_it_does_nothing(server, page):
    _start_drive(page, "you (keyboard only)")
    page.keyboard.press("t")
    page.wait_for_function("document.querySelector('#drive-state').textContent.includes('T hands the car')")
    assert "keyboard only" in page.locator("#drive-state").inner_text()
    page.click("nav button[data-tab=runs]")


def test_the_runs_table_shows_a_shipped_agents_card_score(server, page):
    if _serve_a_carracing_agent(server) == "random":
        pytest.skip("pretrained/dreamer-carracing-pixels is missing")
    page.goto(server["base"])
    row = page.locator("#runs-table tbody tr[data-run='dreamer-carracing']")
    row.wait_for()
    score = read_card(PRETRAINED_CARRACING_DREAMER)["score"]
    assert f"{score['return_mean']:.1f} ± {score['return_std']:.1f} (20 episodes)" in row.inner_text()


def _raw_get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)  # http.client sends the path as written: no `..` folding
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.parametrize(
    "path",
    ["/../etc/passwd", "/files/../../etc/passwd", "/files/..%2F..%2Fetc%2Fpasswd", "/files//etc/passwd",
     "/files/%2Fetc%2Fpasswd", "/static/../../rlcar_core/errors.py"],
)  # fmt: skip
def test_paths_outside_the_root_get_404(server, path):
    assert _raw_get(server["port"], path) == 404


def test_ctrl_c_stops_a_server_and_its_trainer(tmp_path):
    """Ctrl-C reaches the server only (its children run in their own session); it SIGINTs each child
    trainer, waits for it to save, and exits."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rlcar_cli.main", "serve", "--root", str(tmp_path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while _try_get(port, "/api/jobs") is None:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
            time.sleep(0.2)
        # A loaded CI machine can take a while to check and start a job: generous, not a timing claim.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        body = json.dumps({**TINY_TRAINING, "run": "ctrl-c"})
        connection.request("POST", "/api/train", body, {"content-type": "application/json"})
        assert connection.getresponse().status == 202
        while not (tmp_path / "ctrl-c" / "metrics.jsonl").exists():  # the trainer is in its loop
            assert time.monotonic() < deadline + 90, "the trainer never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        # Ctrl-C is exit 130 for every command (the shell's convention), once the trainers have saved.
        assert process.wait(timeout=120) == 130
        assert "stopping 1 job: each saves first" in process.stderr.read().decode()  # not silent meanwhile
        (log,) = (tmp_path / ".serve").glob("job-*-train.log")
        assert "interrupted" in log.read_text(), log.read_text()  # it saved and said how to resume
    finally:
        if process.poll() is None:
            process.kill()


def _try_get(port: int, path: str) -> int | None:
    try:
        return _raw_get(port, path)
    except OSError:
        return None
