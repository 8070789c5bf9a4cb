"""`make bench`: environment steps per second of CarRacing-v3 and of RLCar, measured in one run.

RLCar is measured on its functional API (a whole rollout inside one jitted lax.scan, vmapped over a
batch of cars) and through `gymnasium.make_vec` (one jitted call per step from Python), for sensor and
pixel observations at several batch sizes. Random actions throughout; every observation is reduced
into a checksum so XLA cannot skip computing it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import rlcar_core  # noqa: E402,F401
from rlcar_core.envs import make_env  # noqa: E402
from rlcar_core.envs.tracks import make_track_bank  # noqa: E402
from rlcar_core.sim.env import RLCar  # noqa: E402

ACTION_LOW = jnp.array([-1.0, 0.0, 0.0])


def carracing_steps_per_second(seconds: float) -> float:
    env = gym.make("CarRacing-v3", continuous=True)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(rng.uniform([-1, 0, 0], [1, 1, 1]).astype(np.float32))
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def functional_steps_per_second(obs_kind: str, num_cars: int, num_steps: int, bank) -> float:
    env = RLCar(obs_kind)
    params = env.default_params(bank)

    @jax.jit
    def rollout(key):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_cars), params)

        def body(carry, step_key):
            state, checksum = carry
            action_key, env_key = jax.random.split(step_key)
            actions = jax.random.uniform(action_key, (num_cars, 3), minval=ACTION_LOW, maxval=1.0)
            keys = jax.random.split(env_key, num_cars)
            obs, state, reward, *_ = jax.vmap(env.step_autoreset, in_axes=(0, 0, 0, None))(
                keys, state, actions, params
            )
            return (state, checksum + jnp.sum(obs.astype(jnp.float32)) + jnp.sum(reward)), None

        (_, checksum), _ = jax.lax.scan(body, (state, 0.0), jax.random.split(key, num_steps))
        return checksum

    jax.block_until_ready(rollout(jax.random.PRNGKey(0)))  # compile
    start = time.perf_counter()
    jax.block_until_ready(rollout(jax.random.PRNGKey(1)))
    return num_cars * num_steps / (time.perf_counter() - start)


def make_vec_steps_per_second(obs_kind: str, num_envs: int, num_steps: int, num_tracks: int) -> float:
    env = make_env("rlcar", obs=obs_kind, num_envs=num_envs, num_tracks=num_tracks)
    rng = np.random.default_rng(0)
    actions = rng.uniform([-1, 0, 0], [1, 1, 1], size=(num_steps, num_envs, 3)).astype(np.float32)
    env.reset(seed=0)
    env.step(actions[0])  # compile
    start = time.perf_counter()
    for action in actions:
        obs, *_ = env.step(action)
    rate = num_envs * num_steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches and shorter runs")
    parser.add_argument("--output", type=Path, default=Path("runs/bench/simulator.json"))
    args = parser.parse_args()
    tracks = 16
    batches = [1, 64, 1024] if args.quick else [1, 64, 1024, 4096]
    vec_batches = [16, 256] if args.quick else [16, 256, 1024]
    bank = make_track_bank("train", tracks)

    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} cpu cores",
        flush=True,
    )
    baseline = carracing_steps_per_second(5.0 if args.quick else 10.0)
    print(f"CarRacing-v3 (gymnasium, 96x96 pixels): {baseline:10,.0f} steps/s", flush=True)
    # (path, label, batch sizes, steps for a batch of n, rate of obs kind/batch/steps)
    paths = [
        ("functional lax.scan", "functional", batches, lambda n: max(20, min(500, 200_000 // n)),
         lambda obs, n, steps: functional_steps_per_second(obs, n, steps, bank)),
        ("gymnasium.make_vec", "make_vec,  ", vec_batches, lambda n: max(20, min(300, 50_000 // n)),
         lambda obs, n, steps: make_vec_steps_per_second(obs, n, steps, tracks)),
    ]  # fmt: skip
    rows = []
    for obs_kind in ("sensors", "pixels"):
        for path, label, sizes, steps_for, steps_per_second in paths:
            for n in sizes:
                rate = steps_per_second(obs_kind, n, steps_for(n))
                rows.append({"path": path, "obs": obs_kind, "batch": n, "steps_per_s": rate})
                print(
                    f"RLCar {obs_kind:7s} {label}, batch {n:5d}: {rate:12,.0f} steps/s = {rate / baseline:8.0f}x",
                    flush=True,
                )

    def best(path, obs):
        return max(r["steps_per_s"] for r in rows if r["path"] == path and r["obs"] == obs) / baseline

    targets = {
        "pixels functional >= 200x": best("functional lax.scan", "pixels"),
        "pixels make_vec >= 100x": best("gymnasium.make_vec", "pixels"),
        "sensors functional >= 1000x": best("functional lax.scan", "sensors"),
    }
    print("\ntargets (best batch size):")
    for name, ratio in targets.items():
        threshold = float(name.split(">=")[1].rstrip("x"))
        print(f"  {name:30s} {ratio:8.0f}x  {'met' if ratio >= threshold else 'MISSED'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"carracing_steps_per_s": baseline, "rows": rows, "ratios": targets}, indent=2)
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
