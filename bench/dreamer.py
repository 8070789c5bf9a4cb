"""`make bench-dreamer`: DreamerV3 on RLCar (sensor observations) with the CPU defaults of train-dreamer.

Trains for a budget of env steps (default 100k) and evaluates on held-out tracks every few thousand
env steps, giving a learning curve of mean lap progress and lap rate against env steps and wall-clock
time (training only: evaluations are not counted). The heuristic driver and a random one are
evaluated on the same held-out tracks for reference. The curve is rewritten to
runs/bench-dreamer/results.json after every evaluation, so a long run can be watched while it goes.

    python bench/dreamer.py                          # defaults: 100k env steps, eval every 5k
    python bench/dreamer.py --set model_lr=3e-4      # any train-dreamer hyperparameter
    python bench/dreamer.py --obs pixels --seed 1    # the 64x64 camera instead of the ray sensors

Rerunning the same command after it was cut off continues the run (--fresh starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import jax  # noqa: E402

from rlcar_core.apps.evaluate import EvalConfig, evaluate  # noqa: E402
from rlcar_core.dreamer.train import train_dreamer  # noqa: E402
from rlcar_core.io.runs import write_json_atomic  # noqa: E402

EVAL_MAX_STEPS = 1000
TARGET_PROGRESS = 0.9
SUMMARY_KEYS = ("return_mean", "return_std", "progress_mean", "progress_std", "lap_rate", "crash_rate")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=100_000, help="training budget in env steps")
    parser.add_argument("--eval-every-steps", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10, help="held-out tracks per curve point")
    parser.add_argument("--final-episodes", type=int, default=20, help="held-out tracks for the final rows")
    parser.add_argument("--size", default=None, help="model preset (default: train-dreamer's)")
    parser.add_argument("--train-ratio", type=float, default=None)
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")
    parser.add_argument("--obs", choices=("sensors", "pixels"), default="sensors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/bench-dreamer/rlcar-<obs>-seed<seed>")
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of continuing an earlier, cut-off run"
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = Path("runs/bench-dreamer") / f"rlcar-{args.obs}-seed{args.seed}"
    return args


def evaluate_driver(agent: str, episodes: int, run_dir: Path | None = None, checkpoint: str = "best") -> dict:
    summary = evaluate(
        EvalConfig(
            agent=agent, episodes=episodes, max_steps=EVAL_MAX_STEPS, run_dir=run_dir, checkpoint=checkpoint
        )
    )
    row = {key: summary[key] for key in SUMMARY_KEYS}
    print(
        f"{agent:>10} {checkpoint if run_dir else '':>6}: progress {row['progress_mean']:.3f} "
        f"± {row['progress_std']:.3f}, laps {100 * row['lap_rate']:.0f} %, return {row['return_mean']:.1f}",
        flush=True,
    )
    return row


def main() -> None:
    args = parse_args()
    run_dir = args.out / "run"
    results_path = args.out / "results.json"
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    # A cut-off run resumes: train-dreamer continues from its newest checkpoint, and the curve points
    # already measured are kept (those past that checkpoint are measured again).
    earlier = json.loads(results_path.read_text()) if results_path.exists() and run_dir.exists() else None
    results: dict = earlier or {
        "device": str(jax.devices()[0]),
        "env": "rlcar",
        "obs": args.obs,
        "seed": args.seed,
        "budget_env_steps": args.env_steps,
        "target_progress": TARGET_PROGRESS,
        "baselines": {
            "heuristic": evaluate_driver("heuristic", args.final_episodes),
            "random": evaluate_driver("random", args.final_episodes),
        },
        "curve": [],
    }
    results["budget_env_steps"] = args.env_steps
    started = time.perf_counter()

    def on_progress(record: dict) -> None:
        if record["kind"] == "train" and record["updates"] % 500 == 0:
            print(
                f"  {record['env_steps']:>7} steps {record['updates']:>6} updates | wm {record['wm/loss']:.2f} "
                f"actor {record['actor/loss']:.3f} critic {record['critic/loss']:.2f} | "
                f"{record['env_steps_per_second']:.0f} env/s {record['train_steps_per_second']:.2f} upd/s",
                flush=True,
            )
        if record["kind"] != "eval":
            return
        results["curve"] = [p for p in results["curve"] if p["env_steps"] < record["env_steps"]]
        point = {
            key: record[key]
            for key in ("env_steps", "episode", "updates", "train_seconds", "wall_seconds", "progress_mean")
        }
        point.update(
            lap_rate=record["lap_rate"], return_mean=record["return_mean"], crash_rate=record["crash_rate"]
        )
        results["curve"].append(point)
        print(
            f"eval @ {point['env_steps']:>7} env steps, {point['train_seconds'] / 60:5.1f} min: "
            f"progress {point['progress_mean']:.3f}, laps {100 * point['lap_rate']:.0f} %, "
            f"return {point['return_mean']:.1f}",
            flush=True,
        )
        write_json_atomic(results_path, results)

    options = dict(
        episodes=10**9,  # the env-step budget ends the run
        env_steps=args.env_steps,
        env="rlcar",
        obs=args.obs,
        size=args.size,
        train_ratio=args.train_ratio,
        num_envs=args.num_envs,
        max_steps=EVAL_MAX_STEPS,
        seed=args.seed,
        overrides=tuple(args.overrides),
        eval_every_steps=args.eval_every_steps,
        eval_episodes=args.eval_episodes,
        checkpoint_every=50,
    )
    summary = train_dreamer(
        run_dir, options, on_progress, on_warning=lambda message: print(f"warning: {message}")
    )
    results["training"] = {
        key: summary[key] for key in ("size", "train_ratio", "num_envs", "episodes", "env_steps", "updates")
    }
    results["training"]["wall_seconds"] = time.perf_counter() - started
    results["settings"] = json.loads((run_dir / "config.json").read_text())["dreamer"]
    results["dreamer_latest"] = evaluate_driver("dreamer", args.final_episodes, run_dir, "latest")
    results["dreamer_best"] = evaluate_driver("dreamer", args.final_episodes, run_dir, "best")
    reached = [p for p in results["curve"] if p["progress_mean"] >= TARGET_PROGRESS]
    results["first_target_point"] = reached[0] if reached else None
    write_json_atomic(results_path, results)
    print(f"wrote {results_path}")


if __name__ == "__main__":
    main()
