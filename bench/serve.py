"""`make bench-serve`: the live view's frame rate and its key-to-car latency, on RLCar (640x640 track)
and on CarRacing-v3 (Gymnasium's 600x350 view), and the frame rate of a CarRacing race (two panes).

Starts the real `rlcar serve` on a free local port, opens the live-drive WebSocket as the page does,
and measures on the receiving side:
- frames per second, for the server's default rate and for the most it is asked for (headroom);
- key-to-car latency: from sending ArrowUp to receiving the first frame drawn after the car was
  stepped with gas on (each frame's status says which action the car last received), repeated.
Results go to stdout and runs/bench/serve.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlcar_core.apps.serve.app import DEFAULT_FPS

FRAME_SECONDS = float(os.environ.get("RLCAR_BENCH_SECONDS", "10"))  # per frame-rate measurement
LATENCY_TRIALS = int(os.environ.get("RLCAR_BENCH_PRESSES", "30"))
OUTPUT = Path("runs/bench/serve.json")
ENVS = ("rlcar", "carracing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(root: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "rlcar_cli.main", "serve", "--root", root, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("rlcar serve did not start") from None
            time.sleep(0.2)


async def next_frame(socket_) -> tuple[dict, bytes]:
    """One status and its frames (two in a CarRacing race); the first frame is returned."""
    meta = json.loads(await socket_.recv())
    frames = [await socket_.recv() for _ in range(meta.get("panes", 1))]
    return meta, frames[0]


async def frame_rate(url: str, fps: int) -> dict:
    from PIL import Image
    from websockets.asyncio.client import connect

    async with connect(f"{url}&fps={fps}", max_size=None, open_timeout=60) as socket_:
        warm_until = time.monotonic() + 3.0  # compilation and the first frames
        while time.monotonic() < warm_until:
            meta, frame = await next_frame(socket_)
        size = Image.open(io.BytesIO(frame)).size
        count, start = 0, time.monotonic()
        while time.monotonic() - start < FRAME_SECONDS:
            await next_frame(socket_)
            count += 1
        elapsed = time.monotonic() - start
    return {"requested_fps": fps, "fps": count / elapsed, "frame_size": list(size), "frames": count}


async def key_latency(url: str) -> dict:
    from websockets.asyncio.client import connect

    latencies = []
    async with connect(url, max_size=None, open_timeout=60) as socket_:
        for _ in range(30):  # warm-up frames
            await next_frame(socket_)
        for _ in range(LATENCY_TRIALS):
            await socket_.send(json.dumps({"type": "key", "key": "ArrowUp", "down": False}))
            # Settle: a while, and until a frame shows the car stepped without gas (slow on a busy machine).
            settle = time.monotonic() + 0.35
            meta, _ = await next_frame(socket_)
            while time.monotonic() < settle or meta["action"][1] != 0.0 or meta["step"] == 0:
                meta, _ = await next_frame(socket_)
            sent = time.monotonic()
            await socket_.send(json.dumps({"type": "key", "key": "ArrowUp", "down": True}))
            while True:
                meta, _ = await next_frame(socket_)
                if meta["action"][1] == 1.0:
                    latencies.append(1000 * (time.monotonic() - sent))
                    break
            await socket_.send(json.dumps({"type": "reset"}))
    latencies.sort()
    return {
        "trials": len(latencies),
        "median_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
    }


def main() -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    port = free_port()
    with tempfile.TemporaryDirectory() as root:
        server = start_server(root, port)
        try:
            base = f"ws://127.0.0.1:{port}/ws/drive?track=0"
            results = {"cpus": os.cpu_count()}
            for env in ENVS:
                url = f"{base}&env={env}"
                results[env] = {
                    "default_rate": asyncio.run(frame_rate(url, DEFAULT_FPS)),
                    "most_asked": asyncio.run(frame_rate(url, 60)),
                    "key_to_car": asyncio.run(key_latency(url)),
                }
            race = f"{base}&env=carracing&race=1&agent=random"
            results["carracing"]["race_two_panes"] = asyncio.run(frame_rate(race, DEFAULT_FPS))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(results, indent=2) + "\n")
    for env in ENVS:
        default, most, keys = (results[env][k] for k in ("default_rate", "most_asked", "key_to_car"))
        width, height = default["frame_size"]
        print(f"{env} live view {width}x{height}: {default['fps']:.1f} frames/s at the default {DEFAULT_FPS} "
              f"(target >= 20), {most['fps']:.1f} frames/s when asked for 60")  # fmt: skip
        print(f"{env} key to car: median {keys['median_ms']:.0f} ms, p95 {keys['p95_ms']:.0f} ms, "
              f"max {keys['max_ms']:.0f} ms over {keys['trials']} presses (target < 100 ms)")  # fmt: skip
    race = results["carracing"]["race_two_panes"]
    print(f"carracing race, two panes: {race['fps']:.1f} frames/s at the default {DEFAULT_FPS}")
    print(f"saved {OUTPUT}")


if __name__ == "__main__":
    main()
