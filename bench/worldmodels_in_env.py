"""`python bench/worldmodels_in_env.py`: is the dream what limits World Models on RLCar pixels?

For each finished `make bench-worldmodels` seed, take its final V and M and search a fresh controller
in the real env instead of the dream (CMA-ES, the paper's setting for CarRacing), then drive the same
20 held-out tracks. If this controller drives much further than the dream-trained one on the same V and
M, the representation is good enough and the dream is what fails to transfer.

Each seed works in a copy, <run-dir>/seed<N>, so the benchmark's own run is never touched. Resumable:
the controller search continues from its last checkpoint up to --generations, and seeds already
evaluated at that many generations are kept. Writes <run-dir>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/worldmodels.py, run as a script

import worldmodels  # noqa: E402

from rlcar_core.io.atomic import write_json_atomic  # noqa: E402
from rlcar_core.io.runs import RunDir  # noqa: E402
from rlcar_core.worldmodels.config import TrainControllerConfig  # noqa: E402
from rlcar_core.worldmodels.train_controller import train_controller  # noqa: E402

# The old bench's in-env search (popsize 16, 2 rollouts per candidate), run longer.
SEARCH = {
    "in_dream": False,
    "popsize": 16,
    "rollouts": 2,
    "max_steps": 300,
    "eval_every": 10,
    "eval_episodes": 8,
    "imitate": False,
    "initial_sigma": None,
}


def prepare_copy(source: Path, target: Path) -> None:
    """The seed's run with its data, V and M, but no controller: built aside, then renamed."""
    if target.exists():
        return
    if not (source / "results.json").is_file():
        raise SystemExit(
            f"{source} is not a finished bench-worldmodels seed: run make bench-worldmodels first"
        )
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(
        source,
        partial,
        ignore=shutil.ignore_patterns("controller*", "results.json", "metrics.jsonl", "events.*"),
    )
    partial.rename(target)


def search_seconds(run_dir: Path) -> float:
    """Seconds of the controller search, summed over its generations (across resumed calls)."""
    seconds: dict[int, float] = {}
    for record in RunDir(run_dir).iter_metrics():
        if record.get("kind") == "generation":
            seconds[record["controller/generation"]] = record["controller/seconds"]
    return sum(seconds.values())


def run_seed(source_base: Path, base: Path, seed: int, generations: int, episodes: int, search: dict) -> dict:
    """The seed's search continued to `generations`, then its held-out evaluation."""
    run_dir = base / f"seed{seed}"
    prepare_copy(source_base / f"seed{seed}", run_dir)
    summary = train_controller(
        TrainControllerConfig(run_dir=run_dir, generations=generations, seed=seed, **search),
        worldmodels._printer(),
    )
    dream = json.loads((source_base / f"seed{seed}" / "results.json").read_text())["final"]
    return {
        "seed": seed,
        "generations": generations,
        "search": search,
        "search_seconds": search_seconds(run_dir),
        "controller": {key: summary.get(key) for key in ("best_fitness", "eval_progress", "eval_return")},
        **({"imitation": summary["imitation"]} if "imitation" in summary else {}),
        "in_env": worldmodels._evaluate("worldmodel", run_dir, seed, episodes),
        "dream": {key: dream[key] for key in worldmodels.ROW_KEYS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("runs/bench-worldmodels"))
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-worldmodels-in-env"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--generations", type=int, default=200, help="total CMA-ES generations per seed")
    parser.add_argument("--eval-episodes", type=int, default=worldmodels.EVAL_EPISODES)
    # The levers of the search itself (issue 31: with V seeing obstacles, C's search is the limit).
    # A changed search needs its own --run-dir: a controller checkpoint resumes only its own search.
    parser.add_argument(
        "--popsize", type=int, default=SEARCH["popsize"], help="CMA-ES candidates a generation"
    )
    parser.add_argument(
        "--rollouts", type=int, default=SEARCH["rollouts"], help="episodes (tracks) a candidate drives"
    )
    parser.add_argument(
        "--max-steps", type=int, default=SEARCH["max_steps"], help="length of a training episode"
    )
    parser.add_argument("--controller-hidden", type=int, default=0, help="tanh hidden units in C (0: linear)")
    parser.add_argument(
        "--patience",
        type=int,
        default=0,
        help="end a training episode after this many steps without a reward (0: never)",
    )
    parser.add_argument(
        "--imitate",
        action="store_true",
        help="start C from a fit to the heuristic's laps in the dataset (needs --heuristic-laps data)",
    )
    parser.add_argument(
        "--initial-sigma",
        type=float,
        default=None,
        help="CMA-ES's first step (default 0.1; 0.02 with --imitate)",
    )
    args = parser.parse_args()
    for name, least in (("generations", 1), ("popsize", 2), ("rollouts", 1), ("max_steps", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    for name in ("controller_hidden", "patience"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    if args.initial_sigma is not None and not 0 < args.initial_sigma < float("inf"):
        parser.error("--initial-sigma must be a positive number")
    search = {
        **SEARCH,
        "popsize": args.popsize,
        "rollouts": args.rollouts,
        "max_steps": args.max_steps,
        "controller_hidden": args.controller_hidden,
        "patience": args.patience,
        "imitate": args.imitate,
        "initial_sigma": args.initial_sigma,
    }

    results_path = args.run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"seeds": {}}
    for seed in args.seeds:
        done = results["seeds"].get(str(seed), {})
        # Results written before the levers were flags recorded the default search without them.
        lever_defaults = {"controller_hidden": 0, "patience": 0, "imitate": False, "initial_sigma": None}
        done_search = {**lever_defaults, **done.get("search", SEARCH)}
        if done.get("generations") == args.generations and done_search == search:
            continue
        results["seeds"][str(seed)] = run_seed(
            args.source, args.run_dir, seed, args.generations, args.eval_episodes, search
        )
        write_json_atomic(results_path, results)

    rows = [results["seeds"][str(seed)] for seed in args.seeds]
    for name in ("in_env", "dream"):
        progress = worldmodels.curves.mean_std([row[name]["progress_mean"] for row in rows])
        laps = worldmodels.curves.mean_std([row[name]["lap_rate"] for row in rows])
        results[name] = {
            "progress_mean": progress["mean"],
            "progress_std": progress["std"],
            "lap_rate_mean": laps["mean"],
            "seeds": progress["seeds"],
        }
        print(
            f"C in the {name.replace('_', '-')}: held-out progress {progress['mean']:.3f} ± {progress['std']:.3f}, "
            f"laps {laps['mean']:.0%} over {progress['seeds']} seed(s)",
            flush=True,
        )
    write_json_atomic(results_path, results)
    print(f"wrote {results_path}", flush=True)


if __name__ == "__main__":
    worldmodels.curves.run_resumable(main)
