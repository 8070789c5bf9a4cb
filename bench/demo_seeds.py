"""`make bench-demo`: does `make demo`'s training learn on any seed? Its settings, several seeds.

Each seed runs exactly the commands `make demo` runs (the same `rlcar train-dreamer` budget and
evaluation schedule, plus `--seed`), then evaluates the run's final state (`--checkpoint latest`, what
`make demo` films) and its best in-training checkpoint on 20 held-out tracks from --first-track (40 by
default: no training or in-training evaluation drives them). The table has one row per seed and the
mean across seeds; results.json under --root keeps every figure and is rewritten after each seed, so
a cut-off sweep resumes from the seeds it has not finished.

    python bench/demo_seeds.py                        # seeds 0-4, 36k env steps each (DEMO_STEPS)
    python bench/demo_seeds.py --seeds 0 1 --env-steps 20000 --root /tmp/demo-seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from rlcar_core.io.runs import write_json_atomic  # noqa: E402

TARGET_PROGRESS = 0.4  # issue 29: every seed of the demo's settings drives at least this far
RLCAR = [str(Path(sys.executable).with_name("rlcar"))]  # the venv's command, as `make demo` runs it


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--env-steps", type=int, default=36_000, help="the demo's budget (DEMO_STEPS)")
    parser.add_argument("--eval-every-steps", type=int, default=6_000, help="as `make demo`")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-track", type=int, default=40)
    parser.add_argument("--num-envs", type=int, default=4, help="cars side by side in each evaluation")
    parser.add_argument("--root", type=Path, default=Path.home() / "rlcar-bench" / "demo-seeds")
    args = parser.parse_args()
    if args.env_steps <= 0 or args.episodes <= 0:
        parser.error("--env-steps and --episodes must be positive")
    return args


def evaluate(run_dir: Path, checkpoint: str, args: argparse.Namespace) -> dict:
    command = RLCAR + [
        "eval", "--run-dir", str(run_dir), "--agent", "dreamer", "--checkpoint", checkpoint,
        "--episodes", str(args.episodes), "--first-track", str(args.first_track),
        "--num-envs", str(args.num_envs), "--json",
    ]  # fmt: skip
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    document = json.loads(output)
    summary = document[0] if isinstance(document, list) else document
    return {key: summary[key] for key in ("return_mean", "return_std", "progress_mean", "progress_std",
                                          "lap_rate", "crash_rate") if key in summary}  # fmt: skip


def main() -> None:
    args = parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    results_path = args.root / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    settings = {"env_steps": args.env_steps, "eval_every_steps": args.eval_every_steps,
                "episodes": args.episodes, "first_track": args.first_track}  # fmt: skip
    if results.get("settings", settings) != settings:
        sys.exit(f"error: {results_path} holds other settings; pass another --root")
    results["settings"] = settings
    seeds = results.setdefault("seeds", {})
    for seed in args.seeds:
        if str(seed) in seeds:
            continue
        run_dir = args.root / f"seed{seed}"
        started = time.monotonic()
        subprocess.run(
            RLCAR + ["train-dreamer", "--run-dir", str(run_dir), "--env-steps", str(args.env_steps),
                     "--eval-every-steps", str(args.eval_every_steps), "--seed", str(seed)],
            check=True,
        )  # fmt: skip
        train_seconds = time.monotonic() - started
        seeds[str(seed)] = {
            "train_seconds": round(train_seconds, 1),
            "latest": evaluate(run_dir, "latest", args),
            "best": evaluate(run_dir, "best", args),
        }
        write_json_atomic(results_path, results)
        print(f"seed {seed}: {json.dumps(seeds[str(seed)])}", file=sys.stderr, flush=True)

    print("| seed | final progress | best progress | final return | train min |")
    print("|---|---|---|---|---|")
    finals = []
    for seed, row in sorted(seeds.items(), key=lambda item: int(item[0])):
        latest, best = row["latest"], row["best"]
        finals.append(latest["progress_mean"])
        print(
            f"| {seed} | {latest['progress_mean']:.3f} ± {latest['progress_std']:.3f} "
            f"| {best['progress_mean']:.3f} ± {best['progress_std']:.3f} "
            f"| {latest['return_mean']:.1f} ± {latest['return_std']:.1f} | {row['train_seconds'] / 60:.1f} |"
        )
    if finals:
        mean = sum(finals) / len(finals)
        print(f"\nfinal-state progress over {len(finals)} seeds: mean {mean:.3f}, min {min(finals):.3f} "
              f"(target: every seed >= {TARGET_PROGRESS})")  # fmt: skip
        results["summary"] = {"final_progress_mean": mean, "final_progress_min": min(finals),
                              "all_seeds_reach_target": min(finals) >= TARGET_PROGRESS}  # fmt: skip
        write_json_atomic(results_path, results)


if __name__ == "__main__":
    main()
