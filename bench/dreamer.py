"""`make bench-dreamer`: DreamerV3 on RLCar (sensor or pixel observations) with the CPU defaults of train-dreamer.

Trains for a budget of env steps (default 100k) and evaluates on held-out tracks every few thousand
env steps, giving a learning curve of mean lap progress and lap rate against env steps and wall-clock
time (collection and training: evaluations are not counted). The heuristic driver and a random one
are evaluated on the same held-out tracks for reference. Each seed's curve is rewritten to
runs/bench-dreamer/rlcar-<obs>-seed<seed>/results.json after every evaluation, so a long run can be
watched while it goes; once the seeds are done (or with --plot-only, from whatever seeds exist)
runs/bench-dreamer/rlcar-<obs>-summary.json holds the final and best held-out progress as mean ± std
across seeds and rlcar-<obs>.png the curves, one line per seed (see bench/curves.py).

    python bench/dreamer.py                          # defaults: 100k env steps, eval every 5k
    python bench/dreamer.py --set model_lr=3e-4      # any train-dreamer hyperparameter
    python bench/dreamer.py --obs pixels --seed 1    # the 64x64 camera instead of the ray sensors
    python bench/dreamer.py --obs pixels --seeds 0 1 2   # three seeds one after another, then the summary
    python bench/dreamer.py --seeds 0 1 2 --jobs 2       # two seeds at a time, each in its own process
    python bench/dreamer.py --obs pixels --seeds 0 1 2 --plot-only   # summary and PNG of what exists

Rerunning the same command after it was cut off continues the run (--fresh starts over); the curve's
clock keeps counting from where the resumed checkpoint left it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/curves.py, however this is started

import curves  # noqa: E402
import jax  # noqa: E402

from rlcar_core.apps.evaluate import EvalConfig, builtin_driver_in_world, evaluate  # noqa: E402
from rlcar_core.dreamer.checkpoints import checkpoint_dir  # noqa: E402
from rlcar_core.dreamer.train import train_dreamer  # noqa: E402
from rlcar_core.envs.camera_option import (  # noqa: E402
    PIXELS_CAMERA,
    SENSORS_CAMERA,
    UNRECORDED_CAMERA,
    check_camera_request,
    default_camera,
)
from rlcar_core.errors import RlcarError  # noqa: E402
from rlcar_core.io.checkpoint import CheckpointNotFound  # noqa: E402
from rlcar_core.io.checkpoint_files import read_step_metrics  # noqa: E402
from rlcar_core.io.runs import RunDir, write_json_atomic  # noqa: E402

EVAL_MAX_STEPS = 1000
TARGET_PROGRESS = 0.9
SCORE_KEY = "progress_mean"
SUMMARY_KEYS = ("return_mean", "return_std", "progress_mean", "progress_std", "lap_rate", "crash_rate")
DEFAULT_ROOT = Path("runs/bench-dreamer")


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
    parser.add_argument(
        "--camera",
        default=None,
        help="RLCar's camera, as train-dreamer --camera (NAME[:field=value,...]; default: train-dreamer's, "
        f"{PIXELS_CAMERA} from pixels, {SENSORS_CAMERA} from sensors); the "
        "reference drivers drive among its obstacles too",
    )
    parser.add_argument(
        "--prior-laps",
        type=int,
        default=0,
        help="start each seed's replay with this many laps of the heuristic in the row's camera "
        "(train-dreamer --prior-data; collected once under --root); they count as no env steps",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="several seeds, one after another (default: --seed)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="seeds trained at once, each in its own process (a tiny model's update barely uses a second "
        "core, so two seeds side by side finish sooner than one after another)",
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the seeds' folders go")
    parser.add_argument(
        "--out", type=Path, default=None, help="one seed's folder (default: <root>/rlcar-<obs>-seed<seed>)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of continuing an earlier, cut-off run"
    )
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="only rewrite the summary and the PNG from the seeds' results so far (finished or not)",
    )
    args = parser.parse_args()
    try:  # one clear line for a camera that names none, before any evaluation or training
        check_camera_request(args.camera, "rlcar")
    except RlcarError as error:
        parser.error(str(error))
    # What train-dreamer would choose, named here so that the reference drivers drive in the same world.
    args.camera = args.camera or default_camera("rlcar", args.obs)
    args.seeds = args.seeds if args.seeds is not None else [args.seed]
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"each seed once, please: got {args.seeds}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.prior_laps < 0:
        parser.error(f"--prior-laps must be at least 0, got {args.prior_laps}")
    if args.out is not None:
        if len(args.seeds) > 1:
            parser.error("--out names one seed's folder; with several --seeds use --root")
        args.root = args.out.parent
    return args


def row_name(args: argparse.Namespace) -> str:
    """The row's name in folder and file names: rlcar-<obs>, the camera when it is not today's, and
    the prior laps when there are any."""
    todays = args.camera in (None, UNRECORDED_CAMERA)
    camera = "" if todays else "-" + re.sub(r"[^A-Za-z0-9._]+", "-", args.camera).strip("-")
    prior = f"-prior{args.prior_laps}" if args.prior_laps else ""
    return f"rlcar-{args.obs}{camera}{prior}"


def prior_laps_folder(args: argparse.Namespace) -> Path:
    """The row's heuristic laps, one dataset that every seed's replay starts with."""
    return args.root / f"{row_name(args)}-laps"


def collect_prior_laps(args: argparse.Namespace) -> None:
    """--prior-laps laps of the heuristic on the training tracks, in the row's camera, topped up as
    bench/worldmodels.py tops up its own; collected once for all seeds (before any --jobs child starts)."""
    from rlcar_core.agents.exploration import collect_policy_factory
    from rlcar_core.worldmodels.collect import top_up_heuristic_laps
    from rlcar_core.worldmodels.config import CollectConfig

    laps = CollectConfig(
        run_dir=prior_laps_folder(args), camera=args.camera, max_steps=EVAL_MAX_STEPS, seed=0
    )
    top_up_heuristic_laps(laps, args.prior_laps, collect_policy_factory)


def seed_folder(args: argparse.Namespace, seed: int) -> Path:
    return args.out if args.out is not None else args.root / f"{row_name(args)}-seed{seed}"


def evaluate_driver(
    agent: str,
    episodes: int,
    run_dir: Path | None = None,
    checkpoint: str = "best",
    camera: str | None = None,
) -> dict:
    """A trained run's checkpoint (which drives with its run's camera), or a built-in driver in the world
    of `camera`."""
    config = EvalConfig(
        agent=agent, episodes=episodes, max_steps=EVAL_MAX_STEPS, run_dir=run_dir, checkpoint=checkpoint
    )
    summary = evaluate(config, None if run_dir else builtin_driver_in_world(config, camera))
    row = {key: summary[key] for key in SUMMARY_KEYS}
    print(
        f"{agent:>10} {checkpoint if run_dir else '':>6}: progress {row['progress_mean']:.3f} "
        f"± {row['progress_std']:.3f}, laps {100 * row['lap_rate']:.0f} %, return {row['return_mean']:.1f}",
        flush=True,
    )
    return row


def baselines(args: argparse.Namespace) -> dict:
    """The heuristic and random rows on the held-out tracks: the same tracks and driver seeds for every
    training seed, so a sibling seed's rows are reused when they were measured with as many episodes."""
    for path in sorted(args.root.glob(f"{row_name(args)}-seed*/results.json")):
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        same_world = earlier.get("camera") == args.camera
        if (
            same_world
            and earlier.get("baseline_episodes", args.final_episodes) == args.final_episodes
            and earlier.get("baselines")
        ):
            return earlier["baselines"]
    return {
        "heuristic": evaluate_driver("heuristic", args.final_episodes, camera=args.camera),
        "random": evaluate_driver("random", args.final_episodes, camera=args.camera),
    }


def saved_counters(run_dir: Path, checkpoint: int) -> dict | None:
    """The counters (env steps, session-relative clocks) train-dreamer saved with a checkpoint."""
    metrics = read_step_metrics(checkpoint_dir(RunDir(run_dir)) / str(checkpoint))["metrics"]
    return metrics if "env_steps" in metrics else None


def train_seed(args: argparse.Namespace, seed: int) -> dict:
    out = seed_folder(args, seed)
    run_dir = out / "run"
    results_path = out / "results.json"
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # A cut-off run resumes: train-dreamer continues from its newest checkpoint, and the curve points
    # measured up to that checkpoint are kept (those past it are measured again).
    earlier = json.loads(results_path.read_text()) if results_path.exists() and run_dir.exists() else None
    results: dict = earlier or {
        "device": str(jax.devices()[0]),
        "env": "rlcar",
        "obs": args.obs,
        "camera": args.camera,
        "prior_laps": args.prior_laps,
        "seed": seed,
        "budget_env_steps": args.env_steps,
        "target_progress": TARGET_PROGRESS,
        "baselines": baselines(args),
        "baseline_episodes": args.final_episodes,
        "curve": [],
    }
    results["budget_env_steps"] = args.env_steps
    offset = curves.zero_clock()

    def on_progress(record: dict) -> None:
        nonlocal offset
        if record["kind"] == "start":
            resumed = record["resumed_from_episode"]
            offset = curves.begin_session(
                results,
                None
                if resumed is None
                else {
                    "checkpoint": resumed,
                    "env_steps": record["env_steps"],
                    "counters": saved_counters(run_dir, resumed),
                },
            )
            write_json_atomic(results_path, results)
            return
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
            key: record.get(key) for key in ("env_steps", "eval_mark", "episode", "updates", "progress_mean")
        }
        point.update(curves.cumulative_clock(record, offset), env_frames=record["env_steps"])
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
        camera=args.camera,
        size=args.size,
        train_ratio=args.train_ratio,
        num_envs=args.num_envs,
        max_steps=EVAL_MAX_STEPS,
        seed=seed,
        overrides=tuple(args.overrides),
        eval_every_steps=args.eval_every_steps,
        eval_episodes=args.eval_episodes,
        checkpoint_every=50,
        prior_data=str(prior_laps_folder(args)) if args.prior_laps else None,
    )
    summary = train_dreamer(
        run_dir, options, on_progress, on_warning=lambda message: print(f"warning: {message}")
    )
    results["training"] = {
        key: summary[key] for key in ("size", "train_ratio", "num_envs", "episodes", "env_steps", "updates")
    }
    # Cumulative over the sessions, as the curve's clock (a rerun of a finished run adds nothing).
    results["training"]["wall_seconds"] = offset["wall_seconds"] + summary["wall_seconds"]
    results["training"]["sessions"] = len(results.get("sessions", []))
    results["settings"] = json.loads((run_dir / "config.json").read_text())["dreamer"]
    results["dreamer_latest"] = evaluate_driver("dreamer", args.final_episodes, run_dir, "latest")
    try:
        results["dreamer_best"] = evaluate_driver("dreamer", args.final_episodes, run_dir, "best")
    except CheckpointNotFound:  # a budget too short for any evaluation to rank a checkpoint
        results["dreamer_best"] = results["dreamer_latest"]
    reached = [p for p in results["curve"] if p["progress_mean"] >= TARGET_PROGRESS]
    results["first_target_point"] = reached[0] if reached else None
    write_json_atomic(results_path, results)
    print(f"wrote {results_path}")
    return results


def existing_seeds(args: argparse.Namespace) -> list[int]:
    pattern = re.compile(rf"{re.escape(row_name(args))}-seed(\d+)$")
    found = (
        pattern.match(path.parent.name) for path in args.root.glob(f"{row_name(args)}-seed*/results.json")
    )
    return sorted(int(match.group(1)) for match in found if match)


def summary_seeds(args: argparse.Namespace) -> list[int]:
    """The seeds asked for and any other seed of this observation kind found under the root: two
    single-seed runs going side by side then each write the same summary of both."""
    if args.out is not None:
        return args.seeds
    return sorted(set(args.seeds) | set(existing_seeds(args)))


def write_summary(args: argparse.Namespace, seeds: list[int]) -> None:
    """<row>-summary.json and <row>.png (`row_name`) from the seeds' results.json (those that exist)."""
    views, references = [], {}
    for seed in seeds:
        path = seed_folder(args, seed) / "results.json"
        if not path.is_file():
            print(f"seed {seed}: no {path} yet")
            continue
        results = json.loads(path.read_text())
        views.append(
            curves.seed_view(
                seed, results["curve"], SCORE_KEY, results.get("dreamer_latest"), results.get("dreamer_best")
            )
        )
        references = {name: row[SCORE_KEY] for name, row in results.get("baselines", {}).items()}
    if not views:
        print(f"nothing to plot under {args.root}")
        return
    curves.write_summary(
        views,
        args.root / f"{row_name(args)}-summary.json",
        args.root / f"{row_name(args)}.png",
        target=TARGET_PROGRESS,
        references=references,
        title=f"DreamerV3 on RLCar ({args.obs}{'' if args.camera is None else ', camera ' + args.camera}): "
        f"held-out lap progress, {len(views)} seed(s)",
        score_label="held-out lap progress",
        about={
            "agent": "dreamer",
            "env": "rlcar",
            "obs": args.obs,
            "camera": args.camera,
            "score": SCORE_KEY,
        },
    )


def seed_command(args: argparse.Namespace, seed: int) -> list[str]:
    """This script for one seed with the same settings (a --jobs child)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--seed", str(seed), "--obs", args.obs]
    command += ["--root", str(args.root), "--env-steps", str(args.env_steps)]
    command += ["--eval-every-steps", str(args.eval_every_steps), "--eval-episodes", str(args.eval_episodes)]
    command += ["--final-episodes", str(args.final_episodes)]
    for flag, value in (
        ("--size", args.size),
        ("--train-ratio", args.train_ratio),
        ("--num-envs", args.num_envs),
        ("--camera", args.camera),
        ("--prior-laps", args.prior_laps or None),
    ):
        if value is not None:
            command += [flag, str(value)]
    for override in args.overrides:
        command += ["--set", override]
    return command + (["--fresh"] if args.fresh else [])


def train_seeds_side_by_side(args: argparse.Namespace) -> None:
    """Up to --jobs seeds at once, each a child process whose lines are prefixed with its seed. A child
    that fails stops nothing else. Ctrl-C (or SIGINT to this process) is passed on to the children,
    which save and stop; this waits for them, so none is cut off mid-save."""
    pending, running, failed, stopped = list(args.seeds), {}, [], False

    def relay(seed: int, process: subprocess.Popen) -> None:
        for line in process.stdout:
            print(f"[seed {seed}] {line}", end="", flush=True)

    def reap(seed: int) -> None:
        nonlocal stopped
        process, thread = running.pop(seed)
        thread.join()
        stopped |= process.returncode == curves.STOPPED_EXIT_CODE
        if process.returncode not in (0, curves.STOPPED_EXIT_CODE):
            failed.append(seed)

    try:
        while (pending and not stopped) or running:
            while pending and not stopped and len(running) < args.jobs:
                seed = pending.pop(0)
                process = subprocess.Popen(
                    seed_command(args, seed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                running[seed] = (process, threading.Thread(target=relay, args=(seed, process), daemon=True))
                running[seed][1].start()
            for seed in [seed for seed, (process, _) in running.items() if process.poll() is not None]:
                reap(seed)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for process, _ in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # a no-op for a child the terminal already signalled
        for seed in list(running):
            running[seed][0].wait()
            reap(seed)
        raise
    if failed:
        raise SystemExit(f"bench-dreamer: seed(s) {failed} failed; see their lines above")
    if stopped:
        raise KeyboardInterrupt("a seed was stopped")


def main() -> None:
    args = parse_args()
    if args.plot_only:
        write_summary(args, summary_seeds(args))
        return
    started = time.perf_counter()
    if args.prior_laps:
        collect_prior_laps(args)
    if args.jobs > 1 and len(args.seeds) > 1:
        train_seeds_side_by_side(args)
    else:
        for seed in args.seeds:
            print(f"== DreamerV3, RLCar {args.obs}, seed {seed}", flush=True)
            train_seed(args, seed)
    write_summary(args, summary_seeds(args))
    print(f"bench-dreamer: {len(args.seeds)} seed(s) in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    curves.run_resumable(main)
