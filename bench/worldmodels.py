"""`make bench-worldmodels`: the whole World Models pipeline on RLCar with a CPU-sized budget, per seed,
optionally with Ha & Schmidhuber's iterative procedure.

Round 0: collect (brownian exploration) -> train-vae -> train-rnn -> train-controller (in the dream,
or with --in-env in the real env). Each of --iterations more rounds collects with the current V+M+C
(plus exploration noise), refits V and M on all the data and searches C again (worldmodels.iterate).
After every round the controller drives held-out tracks; that is the seed's curve (held-out progress
against env frames collected and hours of training). The heuristic and random drivers are the
references.

Resumable: rerunning continues each seed where it stopped (finished stages are skipped, evaluations
already in results.json are kept); --fresh starts over. Each seed writes <run-dir>/seed<N>/results.json;
with bench/curves.py, all seeds are summarised in <run-dir>/summary.json and drawn in curves.png.
The models are smaller than the paper's (see SIZES); --scale multiplies the training budgets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/curves.py, run as a script

import curves  # noqa: E402
import jax  # noqa: E402

from rlcar_core.agents.exploration import collect_policy_factory  # noqa: E402
from rlcar_core.apps.evaluate import EvalConfig, builtin_driver_in_world, evaluate  # noqa: E402
from rlcar_core.envs.camera_option import PIXELS_CAMERA, check_camera_request, default_camera  # noqa: E402
from rlcar_core.errors import RlcarError  # noqa: E402
from rlcar_core.io.atomic import write_json_atomic  # noqa: E402
from rlcar_core.io.runs import RunDir  # noqa: E402
from rlcar_core.worldmodels.config import (  # noqa: E402
    CollectConfig,
    TrainControllerConfig,
    TrainRNNConfig,
    TrainVAEConfig,
)
from rlcar_core.worldmodels.iterate import (  # noqa: E402
    PipelineConfig,
    read_progress,
    run_iterations,
)

SIZES = {"z_dim": 32, "base_channels": 16, "hidden_size": 128}
EVAL_EPISODES = 20
EVAL_MAX_STEPS = 1000
VAE_TRAINING = {"batch_size": 64, "learning_rate": 1e-3, "eval_every": 400, "log_every": 50}
RNN_TRAINING = {"batch_size": 32, "sequence_length": 50, "eval_every": 250, "log_every": 50}
COLLECT = {"policy": "brownian", "max_steps": 300, "num_envs": 16}
# Per round: round 0 collects FIRST_EPISODES, each iteration ITERATION_EPISODES with the controller.
FIRST_EPISODES, ITERATION_EPISODES, ACTION_NOISE = 160, 80, 0.1
VAE_STEPS, RNN_STEPS = 1000, 1000
# The controller search of each round, in the dream (the default) or in the real env (--in-env).
CONTROLLER_SEARCHES = {
    "dream": {"in_dream": True, "generations": 80, "popsize": 32, "rollouts": 16, "eval_every": 10},
    "env": {"in_dream": False, "generations": 60, "popsize": 16, "rollouts": 2, "eval_every": 5},
}
CONTROLLER_SETTINGS = {"dream_horizon": 200, "temperature": 1.15, "max_steps": 300, "eval_episodes": 8}
ROW_KEYS = ("return_mean", "return_std", "progress_mean", "progress_std", "lap_rate", "crash_rate")
TARGET_PROGRESS = 0.9  # issue 11: World Models on RLCar pixels, held-out progress


def _printer(every: int = 100):
    def show(record: dict) -> None:
        kind = record.get("kind")
        if kind == "stage":
            print(f"round {record['round']} {record['stage']}: {record['status']}", flush=True)
            return
        if kind == "train" and record.get("step", 0) % every:
            return
        if kind not in ("train", "eval", "generation", "imitation"):
            return
        skip = ("kind", "total_steps", "total_generations", "time", "round", "stage")
        values = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k not in skip
        )
        print(f"  [{record.get('stage')}] {kind}: {values}", flush=True)

    return show


def pipeline_config(run_dir: Path, args: argparse.Namespace) -> PipelineConfig:
    def budget(value: int) -> int:
        return max(1, int(round(value * args.scale)))

    mode = "env" if args.in_env else "dream"
    search = dict(CONTROLLER_SEARCHES[mode])
    default_generations = budget(search.pop("generations"))
    generations = default_generations if args.generations is None else args.generations
    return PipelineConfig(
        collect=CollectConfig(
            run_dir=run_dir, episodes=budget(FIRST_EPISODES), seed=args.seed, camera=args.camera, **COLLECT
        ),
        vae=TrainVAEConfig(
            run_dir,
            steps=budget(VAE_STEPS),
            z_dim=SIZES["z_dim"],
            base_channels=SIZES["base_channels"],
            seed=args.seed,
            **VAE_TRAINING,
        ),
        rnn=TrainRNNConfig(
            run_dir, steps=budget(RNN_STEPS), hidden_size=SIZES["hidden_size"], seed=args.seed, **RNN_TRAINING
        ),
        controller=TrainControllerConfig(
            run_dir=run_dir,
            generations=generations,
            controller_hidden=args.controller_hidden,
            seed=args.seed,
            **CONTROLLER_SETTINGS,
            **search,
        ),
        iterations=args.iterations,
        iteration_episodes=budget(ITERATION_EPISODES),
        action_noise=ACTION_NOISE,
        # Whole laps: the heuristic needs up to an evaluation's length, more than the explorers' 300.
        heuristic_laps=args.heuristic_laps,
        heuristic_max_steps=EVAL_MAX_STEPS,
    )


def _evaluate(agent: str, run_dir: Path | None, seed: int, episodes: int, camera: str | None = None) -> dict:
    """A trained run (which drives with its run's camera), or a built-in driver in `camera`'s world."""
    config = EvalConfig(agent=agent, episodes=episodes, max_steps=EVAL_MAX_STEPS, run_dir=run_dir, seed=seed)
    summary = evaluate(config, None if run_dir else builtin_driver_in_world(config, camera))
    row = {key: summary[key] for key in ROW_KEYS}
    print(
        f"eval {agent}: return {row['return_mean']:.1f} ± {row['return_std']:.1f}, "
        f"progress {row['progress_mean']:.3f}, laps {row['lap_rate']:.0%}",
        flush=True,
    )
    return row


def _dataset_totals(rounds: list[dict[str, Any]], upto: int) -> tuple[int, float]:
    """(env steps collected, seconds of collection and training) through round `upto`."""
    steps, seconds = 0, 0.0
    for record in rounds[: upto + 1]:
        for stage in record["stages"].values():
            seconds += float(stage.get("wall_seconds", 0.0))
        steps += int(record["stages"].get("collect", {}).get("steps", 0))
    return steps, seconds


def run_seed(base: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One seed's rounds, each followed by a held-out evaluation; resumes from its results.json."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    run_dir = base / f"seed{seed}"
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    results_path = run_dir / "results.json"
    results: dict[str, Any] = {}
    if results_path.is_file():
        results = json.loads(results_path.read_text())
    config = pipeline_config(run_dir, args)
    results.update(
        {
            "seed": seed,
            "sizes": SIZES,
            "scale": args.scale,
            "mode": "env" if args.in_env else "dream",
            "controller_hidden": args.controller_hidden,
            "generations": config.controller.generations,
            "heuristic_laps": args.heuristic_laps,
            "camera": args.camera,
            "iterations": args.iterations,
            "settings": {
                "collect": dataclasses.asdict(config.collect) | {"run_dir": str(run_dir)},
                "iteration_episodes": config.iteration_episodes,
                "action_noise": config.action_noise,
            },
        }
    )
    curve: list[dict[str, Any]] = results.setdefault("curve", [])

    def save() -> None:
        RunDir(run_dir).create()
        write_json_atomic(results_path, results)

    print(f"seed {seed}: {run_dir}", flush=True)
    for round_index in range(args.iterations + 1):
        # run_iterations up to this round: finished stages of earlier rounds are skipped.
        run_iterations(
            dataclasses.replace(config, iterations=round_index), collect_policy_factory, _printer()
        )
        if any(point["round"] == round_index for point in curve):
            continue
        rounds = read_progress(run_dir)["rounds"]
        started = time.perf_counter()
        row = _evaluate("worldmodel", run_dir, seed, args.eval_episodes)
        steps, seconds = _dataset_totals(rounds, round_index)
        controller = rounds[round_index]["stages"]["controller"]
        curve.append(
            {
                "round": round_index,
                "env_steps": steps,
                "env_frames": steps,  # RLCar: one step is one frame
                "train_seconds": seconds,
                "eval_seconds": time.perf_counter() - started,
                "vae_validation_mse_per_pixel": rounds[round_index]["stages"]["vae"]["validation"].get(
                    "validation_mse_per_pixel"
                ),
                "rnn_validation_nll": rounds[round_index]["stages"]["rnn"]["validation"].get(
                    "validation_nll"
                ),
                "controller_eval_progress": controller.get("eval_progress"),
                **row,
            }
        )
        save()
    if "references" not in results:
        results["references"] = {
            name: _evaluate(name, None, seed, args.eval_episodes, args.camera)
            for name in ("heuristic", "random")
        }
    results["rounds"] = read_progress(run_dir)["rounds"][: args.iterations + 1]
    done = [point for point in curve if point["round"] <= args.iterations]
    results["final"] = done[-1] if done else None
    results["best"] = max(done, key=lambda point: point["progress_mean"]) if done else None
    save()
    final = results["final"]
    print(
        f"seed {seed}: held-out progress {final['progress_mean']:.3f}, laps {final['lap_rate']:.0%} "
        f"after {args.iterations} iteration(s); wrote {results_path}",
        flush=True,
    )
    return results


def summarize_seeds(base: Path, seeds: list[int], per_seed: list[dict[str, Any]]) -> None:
    """summary.json and curves.png over the seeds, with bench/curves.py (held-out progress per round)."""
    views = [
        curves.seed_view(seed, results["curve"], "progress_mean", results["final"], results["best"])
        for seed, results in zip(seeds, per_seed, strict=True)
    ]
    references = {
        f"{name} driver": per_seed[0]["references"][name]["progress_mean"] for name in ("heuristic", "random")
    }
    curves.write_summary(
        views,
        base / "summary.json",
        base / "curves.png",
        target=TARGET_PROGRESS,
        references=references,
        title=f"World Models on RLCar pixels: held-out progress, {len(seeds)} seed(s)",
        score_label="held-out progress",
        about={"agent": "worldmodel", "env": "rlcar", "obs": "pixels", "score": "progress_mean"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-worldmodels"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds, one after another")
    parser.add_argument(
        "--iterations", type=int, default=0, help="rounds after the first (the paper's procedure)"
    )
    parser.add_argument("--controller-hidden", type=int, default=0, help="tanh hidden units in C (0: linear)")
    parser.add_argument("--in-env", action="store_true", help="search C in the real env instead of the dream")
    parser.add_argument(
        "--heuristic-laps",
        type=int,
        default=0,
        help="first collect this many laps of the heuristic driver, so that V and M see obstacles "
        "(brownian cars starting at the line never reach them)",
    )
    parser.add_argument(
        "--generations",
        type=int,
        default=None,
        help="CMA-ES generations of each round's controller search (default: "
        + ", ".join(f"{search['generations']} in the {mode}" for mode, search in CONTROLLER_SEARCHES.items())
        + ", times --scale)",
    )
    parser.add_argument(
        "--camera",
        default=None,
        help="RLCar's camera, as collect --camera (NAME[:field=value,...]; default: "
        f"{PIXELS_CAMERA}); the "
        "reference drivers drive among its obstacles too",
    )
    parser.add_argument("--fresh", action="store_true", help="start every seed over instead of resuming")
    parser.add_argument(
        "--eval-episodes", type=int, default=EVAL_EPISODES, help="held-out episodes per evaluation"
    )
    args = parser.parse_args()
    try:  # one clear line for a camera that names none, before any evaluation or training
        check_camera_request(args.camera, "rlcar")
    except RlcarError as error:
        parser.error(str(error))
    # collect's choice for a new dataset, named here so that the reference drivers drive in its world
    # and a dataset filmed with another camera is refused rather than resumed.
    args.camera = args.camera or default_camera("rlcar", "pixels")
    if args.seed is not None and args.seeds is not None:
        parser.error("give --seed or --seeds, not both")
    if args.iterations < 0 or args.controller_hidden < 0:
        parser.error("--iterations and --controller-hidden must be at least 0")
    if args.generations is not None and args.generations < 1:
        parser.error("--generations must be at least 1")
    if args.heuristic_laps < 0:
        parser.error("--heuristic-laps must be at least 0")
    seeds = args.seeds or [args.seed or 0]

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} cpu cores")
    per_seed = [run_seed(args.run_dir, seed, args) for seed in seeds]
    try:
        summarize_seeds(args.run_dir, seeds, per_seed)
    except ImportError:  # bench/curves.py not there: the per-seed results.json files still are
        print("bench/curves.py is missing: no summary.json or curves.png")


if __name__ == "__main__":
    curves.run_resumable(main)
