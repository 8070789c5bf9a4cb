"""Steps/s of CarRacing-v3's vector env as rlcar collects from it (64x64 uint8 frames without the HUD):
Gymnasium's `SyncVectorEnv` against EnvPool's, for a few car counts, with and without action repeat.

Counts env frames (summed over cars) and decisions per second, and the CPU time a frame costs (this
process's, all threads: the figure that holds on a shared machine, where wall time does not). The
EnvPool backend's frames include making Gymnasium's frame of its window (`GymnasiumFrames`: about
2 ms of the ~3.5 CPU-ms a frame costs; Gymnasium's own car costs ~8.5). Usage:

    .venv/bin/python bench/carracing_env.py --num-envs 2 8 --action-repeat 1 2 --seconds 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlcar_core.envs.factory import BACKENDS, make_env


def measure(backend: str, num_envs: int, action_repeat: int, seconds: float, seed: int) -> dict:
    env = make_env("carracing", obs="pixels", num_envs=num_envs, backend=backend, action_repeat=action_repeat)
    rng = np.random.default_rng(seed)
    try:
        env.reset(seed=seed)
        actions = np.zeros((num_envs, 3), np.float32)
        decisions = frames = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            actions[:, 0] = np.clip(actions[:, 0] + rng.normal(0, 0.2, num_envs), -1, 1)
            actions[:, 1] = 0.5
            obs, _, _, _, info = env.step(actions)
            assert obs.shape == (num_envs, 64, 64, 3) and obs.dtype == np.uint8
            decisions += num_envs
            frames += int(np.sum(info["frames"])) if "frames" in info else num_envs
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        env.close()
    return {
        "frames_per_s": frames / elapsed,
        "decisions_per_s": decisions / elapsed,
        "cpu_ms_per_frame": 1000 * cpu / max(frames, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--num-envs", nargs="+", type=int, default=[2, 8])
    parser.add_argument("--action-repeat", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for num_envs in args.num_envs:
        for repeat in args.action_repeat:
            for backend in args.backends:
                result = measure(backend, num_envs, repeat, args.seconds, args.seed)
                rows.append((backend, num_envs, repeat, result))
                print(
                    f"{backend:>10} envs={num_envs:<3} repeat={repeat}  "
                    f"{result['frames_per_s']:9.0f} frames/s  {result['decisions_per_s']:9.0f} decisions/s  "
                    f"{result['cpu_ms_per_frame']:6.2f} CPU-ms/frame",
                    flush=True,
                )
    print(
        "\n| backend | envs | action repeat | frames/s | decisions/s | x Gymnasium (frames) | CPU-ms/frame |"
    )
    print("|---|---|---|---|---|---|---|")
    baseline = {(n, k): r["frames_per_s"] for b, n, k, r in rows if b == "gymnasium"}
    for backend, num_envs, repeat, result in rows:
        base = baseline.get((num_envs, repeat))
        ratio = f"{result['frames_per_s'] / base:.1f}" if base else "-"
        print(
            f"| {backend} | {num_envs} | {repeat} | {result['frames_per_s']:.0f} | "
            f"{result['decisions_per_s']:.0f} | {ratio} | {result['cpu_ms_per_frame']:.2f} |"
        )


if __name__ == "__main__":
    main()
