"""`make bench-carracing`: DreamerV3 and World Models learning Gymnasium's CarRacing-v3 from pixels
within a wall-time budget (default 2.5 hours of collection and training per agent and seed).

Score: the standard CarRacing-v3 episode return (1000 steps, its own reward, nothing reshaped) on
Gymnasium's env, on held-out tracks: reset seeds from rlcar's evaluation offset on, which training never
draws (see rlcar_core/envs/heldout.py). Curve points use a few episodes (--eval-episodes, default 5)
about every --eval-every-minutes of budget; the final rows use 20. A random driver on the same tracks
is the reference (the heuristic driver reads RLCar's ray sensors, which CarRacing-v3 lacks).

- DreamerV3: `train_dreamer(env="carracing", obs="pixels")` with train-dreamer's CPU defaults. Its own
  held-out evaluations (every --dreamer-eval-every-steps env steps, an estimate of the 20-minute mark
  from the measured rate) are the curve. The budget ends it at the first checkpoint past the budget
  (at most one checkpoint interval late: a round of episodes, minutes).
- World Models: collect (brownian exploration) -> train-vae -> train-rnn -> train-controller, with the
  paper's CarRacing model sizes. The budget is split between the stages (STAGE_SPLIT). The controller
  is searched in the real env by default, as the paper did for CarRacing (--controller-in dream: in
  the MDN-RNN's dream, the paper's VizDoom procedure, kept as the comparison): CMA-ES with a
  population of 16 and 2 training tracks per candidate (--wm-popsize, --wm-rollouts), 16 cars
  (Gymnasium's in worker processes, or EnvPool's with --backend envpool), episodes ended after 100
  unrewarded frames (training only), the search mean driving 16 training tracks every 5 generations
  to rank `best`. --wm-controller-inputs z searches a C on z alone (the paper's ablation of M). The
  search runs in segments of --eval-every-minutes, each followed by a held-out evaluation of its
  newest checkpoint (a resumed search keeps its mean and step size, see
  rlcar_core/worldmodels/train_controller.py). Its env frames are the frames collected plus the
  controller's own episodes.

The budget ends a trainer the way Ctrl-C does (`BudgetStop`): the benchmark raises SIGINT in its own
process from the trainer's progress callback, the trainer's stop flag (rlcar_core/loop/stop.py) is set,
the loop saves a checkpoint at the next safe point and raises TrainingInterrupted, which the benchmark
then takes as "budget reached". A real Ctrl-C still stops the benchmark.

Every benchmark resumes: rerunning the same command continues from the newest checkpoints (and, for
World Models, the stage it was in), keeps the curve points measured so far, and the budget counts the
time already spent (see bench/curves.py for the cumulative clock). Each agent and seed writes
runs/bench-carracing/<agent>-seed<k>/results.json; once the seeds are done (or with --plot-only)
<agent>-summary.json and <agent>.png hold the mean ± std across seeds and the curves.

    python bench/carracing.py                              # both agents, seed 0, 2.5 hours each
    python bench/carracing.py --agent dreamer --seeds 0 1 2
    python bench/carracing.py --agent dreamer --smoke      # a couple of minutes: the plumbing, end to end
    python bench/carracing.py --agent dreamer --dreamer-action-repeat 4 --dreamer-patience 100 \
        --dreamer-set actor_mean_limit=0.98 --dreamer-overlap   # issue 28's levers (--dreamer-*)
    python bench/carracing.py --agent worldmodels --backend envpool --hours 2.0   # C searched on EnvPool
    python bench/carracing.py --plot-only                  # summary and PNG of what exists
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/curves.py, however this is started

import curves  # noqa: E402
import jax  # noqa: E402

from rlcar_core.apps.evaluate import EvalConfig, evaluate  # noqa: E402
from rlcar_core.dreamer.config import PRESETS  # noqa: E402
from rlcar_core.errors import RlcarError  # noqa: E402
from rlcar_core.io.runs import write_json_atomic  # noqa: E402
from rlcar_core.loop.outcomes import TrainingInterrupted  # noqa: E402

ENV = "carracing"
SCORE_KEY = "return_mean"
ROW_KEYS = ("return_mean", "return_std", "progress_mean", "progress_std", "lap_rate", "episodes")
AGENTS = {"dreamer": "dreamer", "worldmodels": "worldmodel"}  # benchmark name -> rlcar agent name
TITLES = {"dreamer": "DreamerV3", "worldmodels": "World Models"}
CONTROLLER_WHERE = {"env": "controller in the real env", "dream": "controller in the dream"}
TARGET_RETURN = 700.0  # DESIGN.md: >= 700 on CarRacing-v3 within 3 CPU-hours
EPISODE_STEPS = 1000  # CarRacing-v3's standard episode
# DreamerV3 env steps (frames) per second of budget on 2 idle cores, estimated: the tiny pixel model at
# ratio 64 on 8 x 16 batches runs ~5-8 updates/s, and with action repeat 2 an update is owed every 4
# frames. It only turns --eval-every-minutes into train-dreamer's --eval-every-steps (not measured on an
# idle machine yet: the smoke runs shared the cores with two other benchmarks).
DREAMER_STEPS_PER_SECOND = 20.0
# World Models: the cumulative fraction of the budget at which each stage ends.
STAGE_SPLIT = {"collect": 0.08, "vae": 0.36, "rnn": 0.46, "controller": 1.0}
# The paper's CarRacing sizes (Ha & Schmidhuber 2018): z 32, VAE widths 32..256, LSTM 256, 5 Gaussians.
WM_SIZES = {"z_dim": 32, "base_channels": 32, "hidden_size": 256, "num_mixtures": 5}
UNBOUNDED = 10**7  # step counts the budget, not the count, ends
CLOCK_SAVE_SECONDS = 30.0  # how often a World Models stage's clock is written while it runs


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a benchmark size fixes; `--smoke` shrinks every budget to check the plumbing in minutes."""

    budget_seconds: float
    eval_every_seconds: float
    eval_episodes: int
    final_episodes: int
    max_steps: int = EPISODE_STEPS
    dreamer_eval_every_steps: int | None = None
    # train-dreamer options of issue 28's levers, None: train-dreamer's own default (see
    # `dreamer_levers`).
    dreamer_levers: tuple[tuple[str, Any], ...] = ()
    dreamer_num_envs: int = 8
    dreamer_prefill_steps: int | None = None
    dreamer_checkpoint_every: int = 8
    collect_chunk: int = 16  # episodes per collect call (one per car), so a stage never ends mid-episode
    vae_batch: int = 64
    vae_eval_every: int = 250
    rnn_batch: int = 32
    rnn_sequence: int = 100
    rnn_eval_every: int = 250
    # C in the real env (the paper's CarRacing procedure, scaled to 2 cores): a generation is
    # popsize x rollouts episodes on 16 worker-process cars, each ended after `controller_patience`
    # unrewarded frames; the search mean drives 16 training tracks every `controller_eval_every`
    # generations, which ranks `best`.
    controller_popsize: int = 16
    controller_rollouts: int = 2
    controller_patience: int = 100
    controller_eval_every: int = 5
    controller_eval_episodes: int = 16
    controller_inputs: str = "zh"  # "z": C on V's code alone, the paper's ablation of M
    # C in the dream (--controller-in dream): the paper's VizDoom procedure.
    dream_popsize: int = 32
    dream_rollouts: int = 16
    dream_horizon: int = EPISODE_STEPS


def settings_from(args: argparse.Namespace) -> Settings:
    if args.smoke:
        return Settings(
            dreamer_levers=dreamer_levers(args),
            budget_seconds=150.0,
            eval_every_seconds=50.0,
            eval_episodes=2,
            final_episodes=2,
            max_steps=200,
            dreamer_eval_every_steps=400,
            dreamer_num_envs=4,
            dreamer_prefill_steps=400,
            dreamer_checkpoint_every=2,
            collect_chunk=4,
            vae_batch=16,
            vae_eval_every=20,
            rnn_batch=4,
            rnn_sequence=20,
            rnn_eval_every=20,
            controller_popsize=4,
            controller_rollouts=1,
            controller_patience=50,
            controller_eval_every=2,
            controller_eval_episodes=2,
            dream_popsize=8,
            dream_rollouts=2,
            dream_horizon=50,
        )
    eval_every_steps = args.dreamer_eval_every_steps or int(
        dreamer_steps_per_second(args) * args.eval_every_minutes * 60
    )
    search = {
        field: value
        for field, value in (
            ("controller_popsize", args.wm_popsize),
            ("controller_rollouts", args.wm_rollouts),
            ("controller_inputs", args.wm_controller_inputs),
        )
        if value is not None
    }
    return Settings(
        dreamer_levers=dreamer_levers(args),
        budget_seconds=args.hours * 3600.0,
        eval_every_seconds=args.eval_every_minutes * 60.0,
        eval_episodes=args.eval_episodes,
        final_episodes=args.final_episodes,
        dreamer_eval_every_steps=eval_every_steps,
        **search,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--agent", action="append", choices=tuple(AGENTS), default=None, help="repeatable (default: both)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--hours", type=float, default=2.5, help="collection + training budget per agent (one run <= 150 min)"
    )
    parser.add_argument(
        "--eval-every-minutes", type=float, default=20.0, help="of budget, between curve points"
    )
    parser.add_argument("--eval-episodes", type=int, default=5, help="held-out episodes per curve point")
    parser.add_argument("--final-episodes", type=int, default=20, help="held-out episodes for the final rows")
    parser.add_argument(
        "--dreamer-eval-every-steps",
        type=int,
        default=None,
        help="default: --eval-every-minutes at the measured rate",
    )
    levers = parser.add_argument_group(
        "DreamerV3 levers (issue 28)", "train-dreamer options; left out, train-dreamer's own default"
    )
    levers.add_argument(
        "--dreamer-size", choices=tuple(PRESETS), default=None, help="model size preset (tiny on a CPU)"
    )
    levers.add_argument("--dreamer-action-repeat", type=int, default=None, help="frames per decision (2)")
    levers.add_argument(
        "--dreamer-train-ratio", type=float, default=None, help="replayed steps per decision (64 on a CPU)"
    )
    levers.add_argument(
        "--dreamer-patience",
        type=int,
        default=None,
        help="end a training episode after this many frames in a row without reward (0: never)",
    )
    levers.add_argument(
        "--dreamer-eval-actions",
        choices=("sample", "mode", "mean"),
        default=None,
        help="how the in-run evaluations act (sample); the final rows always sample, as rlcar eval does",
    )
    levers.add_argument(
        "--dreamer-overlap",
        action="store_true",
        default=None,
        help="train while the cars step (train-dreamer --overlap: same updates, the env hidden behind them)",
    )
    levers.add_argument(
        "--dreamer-set",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="a DreamerConfig field, as train-dreamer --set (repeatable), e.g. actor_mean_limit=0.98",
    )
    wm_levers = parser.add_argument_group(
        "World Models levers", "C's search in the real env; each flag left out keeps its default"
    )
    wm_levers.add_argument("--wm-popsize", type=int, default=None, help="CMA-ES candidates a generation (16)")
    wm_levers.add_argument(
        "--wm-rollouts", type=int, default=None, help="training tracks each candidate drives (2)"
    )
    wm_levers.add_argument(
        "--wm-controller-inputs",
        choices=("zh", "z"),
        default=None,
        help="what C reads: z and h (zh, the paper's), or z alone (the paper's ablation of M)",
    )
    parser.add_argument(
        "--backend",
        choices=("gymnasium", "envpool"),
        default="gymnasium",
        help="who simulates CarRacing-v3 for training (evaluation is always Gymnasium's); EnvPool's port "
        "costs ~2.6x less CPU a frame, with Gymnasium's frames rebuilt from its window",
    )
    parser.add_argument(
        "--controller-in",
        choices=tuple(CONTROLLER_WHERE),
        default="env",
        help="World Models: search C in the real env (the paper's CarRacing procedure) or in the dream",
    )
    parser.add_argument("--root", type=Path, default=None, help="default: runs/bench-carracing(-smoke)")
    parser.add_argument(
        "--smoke", action="store_true", help="a couple of minutes per agent: check the plumbing"
    )
    parser.add_argument("--fresh", action="store_true", help="start over instead of continuing")
    parser.add_argument("--plot-only", action="store_true", help="only rewrite the summaries and PNGs")
    args = parser.parse_args()
    if args.backend == "envpool" and not importlib.util.find_spec("envpool"):
        parser.error('--backend envpool needs the envpool package: pip install "rlcar[envpool]"')
    args.agent = args.agent or list(AGENTS)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"each seed once, please: got {args.seeds}")
    if args.hours <= 0 or args.eval_every_minutes <= 0:
        parser.error("--hours and --eval-every-minutes must be positive")
    if args.wm_popsize is not None and args.wm_popsize < 2:
        parser.error(f"--wm-popsize must be 2 or more, got {args.wm_popsize}")
    if args.wm_rollouts is not None and args.wm_rollouts < 1:
        parser.error(f"--wm-rollouts must be 1 or more, got {args.wm_rollouts}")
    if args.root is None:
        args.root = Path("runs/bench-carracing-smoke" if args.smoke else "runs/bench-carracing")
    try:  # a bad lever is one line before anything runs
        from rlcar_core.dreamer.overrides import parse_overrides

        parse_overrides(args.dreamer_set or ())
        for name in ("dreamer_action_repeat", "dreamer_train_ratio", "dreamer_patience"):
            value = getattr(args, name)
            if value is not None and (value < 0 or (value == 0 and name != "dreamer_patience")):
                raise RlcarError(f"--{name.replace('_', '-')} must be positive, got {value}")
    except RlcarError as error:
        parser.error(str(error))
    return args


def dreamer_levers(args: argparse.Namespace) -> tuple[tuple[str, Any], ...]:
    """The train-dreamer options the --dreamer-* levers give (only those given)."""
    levers = {
        "size": args.dreamer_size,
        "action_repeat": args.dreamer_action_repeat,
        "train_ratio": args.dreamer_train_ratio,
        "patience": args.dreamer_patience,
        "eval_actions": args.dreamer_eval_actions,
        "overlap": args.dreamer_overlap,
        "overrides": tuple(args.dreamer_set) if args.dreamer_set else None,
    }
    return tuple((name, value) for name, value in levers.items() if value is not None)


def dreamer_steps_per_second(args: argparse.Namespace) -> float:
    """DREAMER_STEPS_PER_SECOND for the levers given: frames per decision times decisions per update
    (train ratio 64 and action repeat 2 are what the estimate is of)."""
    repeat = args.dreamer_action_repeat or 2
    ratio = args.dreamer_train_ratio or 64.0
    return DREAMER_STEPS_PER_SECOND * (repeat / 2) * (64.0 / ratio)


# -- the budget ----------------------------------------------------------------------------------


class BudgetStop:
    """Stops the trainer running now once `spent()` reaches `deadline` seconds, through the trainer's
    own stop flag: SIGINT raised in this process while the trainer's `graceful_stop` handler is
    installed (it only is inside a trainer, where every progress callback runs). Raised once: a
    second SIGINT would mean "stop now" to that handler."""

    def __init__(self, deadline: float, spent: Callable[[], float]):
        self.deadline, self.spent = deadline, spent
        self.requested = False

    def check(self) -> None:
        if not self.requested and self.spent() >= self.deadline:
            self.requested = True
            signal.raise_signal(signal.SIGINT)


def run_until_budget(train: Callable[[], Any], budget: BudgetStop) -> Any:
    """`train()`, taking the interruption that `budget` asked for as a normal end (None)."""
    try:
        return train()
    except TrainingInterrupted:
        if not budget.requested:
            raise  # a real Ctrl-C
        return None


# -- shared pieces -------------------------------------------------------------------------------


def evaluate_row(agent: str, episodes: int, max_steps: int, run_dir: Path | None = None, checkpoint="latest"):
    summary = evaluate(
        EvalConfig(
            env=ENV,
            agent=agent,
            episodes=episodes,
            max_steps=max_steps,
            run_dir=run_dir,
            checkpoint=checkpoint,
        )
    )
    row = {key: summary[key] for key in ROW_KEYS}
    print(
        f"  {agent:>10} {checkpoint if run_dir else '':>6}: return {row['return_mean']:.1f} ± "
        f"{row['return_std']:.1f} over {episodes} held-out tracks (progress {row['progress_mean']:.3f})",
        flush=True,
    )
    return row


def random_reference(args: argparse.Namespace, settings: Settings) -> dict:
    """The random driver on the final rows' held-out tracks, measured once per root."""
    path = args.root / "references.json"
    key = f"random-{settings.final_episodes}x{settings.max_steps}"
    references = json.loads(path.read_text()) if path.is_file() else {}
    if key not in references:
        print("random driver (reference):", flush=True)
        references[key] = evaluate_row("random", settings.final_episodes, settings.max_steps)
        write_json_atomic(path, references)
    return references[key]


def load_results(path: Path, run_dir: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """The seed's results so far (when its run still exists), else `fresh`."""
    if path.is_file() and run_dir.exists():
        return json.loads(path.read_text())
    return fresh


def new_results(agent: str, seed: int, settings: Settings, reference: dict) -> dict[str, Any]:
    return {
        "agent": agent,
        "env": ENV,
        "obs": "pixels",
        "seed": seed,
        "device": str(jax.devices()[0]),
        "score": SCORE_KEY,
        "target_return": TARGET_RETURN,
        "budget_seconds": settings.budget_seconds,
        "max_steps": settings.max_steps,
        "references": {"random": reference},
        "curve": [],
        "sessions": [],
    }


def finish(results: dict, results_path: Path, agent_name: str, run_dir: Path, settings: Settings) -> None:
    print("final evaluation:", flush=True)
    episodes, steps = settings.final_episodes, settings.max_steps
    results["final"] = evaluate_row(agent_name, episodes, steps, run_dir, "latest")
    if agent_name == "dreamer" or results.get("controller_in") == "env":  # ranked by in-run evaluations
        try:
            results["best"] = evaluate_row(agent_name, episodes, steps, run_dir, "best")
        except RlcarError as error:  # no evaluation ranked a checkpoint yet (a tiny budget)
            print(f"  no best checkpoint: {error}")
    results["finished"] = True
    write_json_atomic(results_path, results)
    print(f"wrote {results_path}", flush=True)


# -- DreamerV3 -----------------------------------------------------------------------------------


def backend_option(config_class: type, backend: str) -> dict[str, str]:
    """Who simulates CarRacing-v3 for collection, for trainers whose config has the option (evaluation
    always uses Gymnasium's). Gymnasium's by default. EnvPool's own 96x96 frames differed from
    Gymnasium's (a DreamerV3 agent trained on them scored 238 and 277 there but -30 and 0 on Gymnasium's
    env); the adapter now rebuilds Gymnasium's frame from EnvPool's full window, and the shipped World
    Models agent scores alike on both (docs/commands.md, EnvPool). An EnvPool-trained agent has not
    been scored on Gymnasium's env since, so the default stays Gymnasium's."""
    if "carracing_backend" not in config_class.__dataclass_fields__:
        return {}
    return {"carracing_backend": backend}


def dreamer_options(seed: int, settings: Settings, backend: str) -> dict[str, Any]:
    from rlcar_core.dreamer.train_config import TrainDreamerConfig

    options = dict(
        episodes=10**9,  # the wall-time budget ends the run
        env=ENV,
        obs="pixels",
        max_steps=settings.max_steps,
        num_envs=settings.dreamer_num_envs,
        seed=seed,
        eval_every_steps=settings.dreamer_eval_every_steps,
        eval_episodes=settings.eval_episodes,
        checkpoint_every=settings.dreamer_checkpoint_every,
        prefill_steps=settings.dreamer_prefill_steps,
        **dict(settings.dreamer_levers),
    )
    if options.get("patience"):
        # Episodes that patience ends early would checkpoint, and write the replay (1.2 GB when
        # full), several times as often: checkpoint every so many whole episodes' frames instead.
        options["checkpoint_every_steps"] = settings.dreamer_checkpoint_every * settings.max_steps
    return {**options, **backend_option(TrainDreamerConfig, backend)}


def dreamer_spent(run_dir: Path, results: dict) -> float:
    """Budget seconds already spent: the cumulative clock at the run's newest saved checkpoint."""
    from rlcar_core.dreamer.checkpoints import checkpoint_dir
    from rlcar_core.io.checkpoint_files import read_step_metrics, step_folders
    from rlcar_core.io.runs import RunDir

    folders = step_folders(checkpoint_dir(RunDir(run_dir)))
    for step in sorted(folders, reverse=True):
        counters = read_step_metrics(folders[step])["metrics"]
        if "env_steps" in counters:
            return curves.clock_at_checkpoint(results.get("sessions", []), counters)[curves.TIME_KEY]
    return 0.0


def bench_dreamer(args: argparse.Namespace, seed: int, settings: Settings, reference: dict) -> dict:
    from rlcar_core.dreamer.checkpoints import checkpoint_dir
    from rlcar_core.dreamer.train import train_dreamer
    from rlcar_core.io.checkpoint_files import read_step_metrics
    from rlcar_core.io.runs import RunDir

    out = args.root / f"dreamer-seed{seed}"
    run_dir, results_path = out / "run", out / "results.json"
    results = load_results(results_path, run_dir, new_results("dreamer", seed, settings, reference))
    if results.get("finished") and results.get("budget_seconds") == settings.budget_seconds:
        print(f"dreamer seed {seed}: finished earlier ({results_path})")
        return results
    results["budget_seconds"] = settings.budget_seconds
    offset = curves.zero_clock()  # the cumulative clock at the checkpoint this session resumed from
    latest = curves.zero_clock()  # the session-relative clock of the newest record
    budget = BudgetStop(settings.budget_seconds, lambda: offset[curves.TIME_KEY] + latest[curves.TIME_KEY])

    def on_progress(record: dict) -> None:
        nonlocal offset
        kind = record["kind"]
        if kind == "start":
            resumed = record["resumed_from_episode"]
            counters = None
            if resumed is not None:
                counters = read_step_metrics(checkpoint_dir(RunDir(run_dir)) / str(resumed))["metrics"]
            offset = curves.begin_session(
                results,
                None
                if resumed is None
                else {"checkpoint": resumed, "env_steps": record["env_steps"], "counters": counters},
            )
            write_json_atomic(results_path, results)
            return
        for key in curves.CLOCK_KEYS:
            latest[key] = record.get(key, latest[key])
        if kind == "train" and record["updates"] % 500 == 0:
            print(
                f"  {record['env_steps']:>7} steps {record['updates']:>6} updates | wm {record['wm/loss']:.2f} "
                f"| {record['env_steps_per_second']:.1f} env/s | {budget.spent() / 60:.1f} of "
                f"{settings.budget_seconds / 60:.0f} min",
                flush=True,
            )
        if kind == "eval":
            point = {
                key: record.get(key)
                for key in ("env_steps", "eval_mark", "episode", "updates", "return_mean", "progress_mean")
            }
            point.update(curves.cumulative_clock(record, offset))
            point["env_frames"] = record["env_steps"]  # train-dreamer counts frames, action repeat or not
            point["episodes_evaluated"] = settings.eval_episodes
            results["curve"] = [p for p in results["curve"] if p["env_steps"] < record["env_steps"]] + [point]
            write_json_atomic(results_path, results)
            print(
                f"eval @ {point['env_steps']:>7} env steps, {point['train_seconds'] / 60:5.1f} min: "
                f"return {point['return_mean']:.1f}, progress {point['progress_mean']:.3f}",
                flush=True,
            )
        # Only right after a checkpoint: train-dreamer saves nothing on a stop when its episode count
        # is already saved, so a stop between checkpoints would lose the steps since the last one (and
        # a rerun would train them again). The budget thus ends at the first checkpoint past it: an
        # overshoot of at most one checkpoint interval, and the spent time is the checkpoint's clock.
        if kind == "checkpoint" and not record.get("interrupted"):
            budget.check()

    out.mkdir(parents=True, exist_ok=True)
    if dreamer_spent(run_dir, results) < settings.budget_seconds:
        options = dreamer_options(seed, settings, args.backend)
        results["options"] = {key: value for key, value in options.items() if key != "episodes"}
        summary = run_until_budget(
            lambda: train_dreamer(run_dir, options, on_progress, on_warning=lambda m: print(f"warning: {m}")),
            budget,
        )
        results["training"] = {
            "stopped_by": "budget" if summary is None else "completed",
            "train_seconds": dreamer_spent(run_dir, results),
            "sessions": len(results["sessions"]),
        }
        if summary is not None:
            results["training"].update(
                {key: summary[key] for key in ("size", "train_ratio", "env_steps", "updates")}
            )
    write_json_atomic(results_path, results)
    finish(results, results_path, "dreamer", run_dir, settings)
    return results


# -- World Models ----------------------------------------------------------------------------------


def spent_seconds(results: dict) -> float:
    return sum(stage.get("seconds", 0.0) for stage in results["stages"].values())


class StageClock:
    """A World Models stage's share of the budget, kept in results.json while the stage runs (written
    at most every CLOCK_SAVE_SECONDS, so a kill forgets at most that much)."""

    def __init__(self, results: dict, stage: str, save: Callable[[], None]):
        self.results, self.save = results, save
        self.entry = results["stages"].setdefault(stage, {"seconds": 0.0, "done": False})
        self.base, self.started = self.entry["seconds"], time.perf_counter()
        self.saved_at = self.started

    def tick(self) -> None:
        now = time.perf_counter()
        self.entry["seconds"] = self.base + now - self.started
        if now - self.saved_at >= CLOCK_SAVE_SECONDS:
            self.saved_at = now
            self.save()

    def close(self, done: bool) -> None:
        self.tick()
        self.entry["done"] = done
        self.save()


def dataset_frames(run_dir: Path) -> tuple[int, int]:
    """(episodes, env frames) in the run's dataset."""
    from rlcar_core.io.data import load_manifest

    try:
        manifest = load_manifest(run_dir / "data")
    except Exception:  # noqa: BLE001 - no dataset yet
        return 0, 0
    return len(manifest["episodes"]), sum(int(entry["length"]) for entry in manifest["episodes"])


def bench_worldmodels(args: argparse.Namespace, seed: int, settings: Settings, reference: dict) -> dict:
    from rlcar_core.agents.exploration import exploration_factory
    from rlcar_core.worldmodels.collect import collect
    from rlcar_core.worldmodels.config import (
        CollectConfig,
        TrainControllerConfig,
        TrainRNNConfig,
        TrainVAEConfig,
    )
    from rlcar_core.worldmodels.train_controller import train_controller
    from rlcar_core.worldmodels.train_rnn import train_rnn
    from rlcar_core.worldmodels.train_vae import train_vae

    out = args.root / f"worldmodels-seed{seed}"
    run_dir, results_path = out / "run", out / "results.json"
    results = load_results(results_path, run_dir, new_results("worldmodels", seed, settings, reference))
    if results.get("finished") and results.get("budget_seconds") == settings.budget_seconds:
        print(f"worldmodels seed {seed}: finished earlier ({results_path})")
        return results
    results["budget_seconds"] = settings.budget_seconds
    results.setdefault("stages", {})
    results["sizes"] = WM_SIZES
    # The search's settings as of the latest resume (CMA-ES keeps only its mean and step size, so a
    # resumed search may take another population; C's inputs are its shape, which a resume keeps).
    results["controller_search"] = {
        "popsize": settings.controller_popsize,
        "rollouts": settings.controller_rollouts,
        "patience": settings.controller_patience,
        "inputs": settings.controller_inputs,
    }
    if results.setdefault("controller_in", args.controller_in) != args.controller_in:
        sys.exit(
            f"error: {out} searched its controller in the {results['controller_in']}; "
            f"pass --controller-in {results['controller_in']}, --fresh, or another --root"
        )
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        write_json_atomic(results_path, results)

    def deadline(stage: str) -> float:
        return STAGE_SPLIT[stage] * settings.budget_seconds

    def train_stage(stage: str, train: Callable[[Callable[[dict], None]], Any]) -> None:
        """Run `train(on_step)` until it finishes or the stage's share of the budget is spent."""
        if results["stages"].get(stage, {}).get("done"):
            return
        clock = StageClock(results, stage, save)
        budget = BudgetStop(deadline(stage), lambda: spent_seconds(results))

        def on_step(record: dict) -> None:
            clock.tick()
            if record.get("kind") == "eval":
                print(
                    f"  [{stage}] step {record['step']}: "
                    + ", ".join(
                        f"{k}={v:.4g}" for k, v in record.items() if k.endswith(("mse_per_pixel", "nll"))
                    ),
                    flush=True,
                )
            budget.check()

        print(f"{stage}: until {deadline(stage) / 60:.1f} min of budget", flush=True)
        run_until_budget(lambda: train(on_step), budget)
        clock.close(done=True)

    # Collect in chunks of one episode per car until the stage's share is spent: a chunk always ends
    # with whole episodes, and the dataset grows across resumes.
    collect_stage = results["stages"].setdefault("collect", {"seconds": 0.0, "done": False})
    if not collect_stage["done"]:
        print(f"collect: until {deadline('collect') / 60:.1f} min of budget", flush=True)
    while not collect_stage["done"]:
        if spent_seconds(results) >= deadline("collect") and dataset_frames(run_dir)[0] > 0:
            collect_stage["done"] = True
            break
        clock = StageClock(results, "collect", save)
        collected = collect(
            CollectConfig(
                run_dir=run_dir,
                env=ENV,
                episodes=settings.collect_chunk,
                policy="brownian",
                max_steps=settings.max_steps,
                num_envs=settings.collect_chunk,
                seed=seed,
                **backend_option(CollectConfig, args.backend),
            ),
            exploration_factory("brownian", ENV, run_dir),
            lambda record, clock=clock: clock.tick(),
        )
        clock.close(done=False)
        episodes, frames = dataset_frames(run_dir)
        collect_stage.update(episodes=episodes, frames=frames)
        print(
            f"  collect: {episodes} episodes, {frames} frames ({collected['frames_per_second']:.0f} frames/s), "
            f"{spent_seconds(results) / 60:.1f} min",
            flush=True,
        )
    save()
    frames = collect_stage.get("frames") or dataset_frames(run_dir)[1]

    vae_options = dict(z_dim=WM_SIZES["z_dim"], base_channels=WM_SIZES["base_channels"])
    train_stage(
        "vae",
        lambda on_step: train_vae(
            TrainVAEConfig(
                run_dir,
                steps=UNBOUNDED,
                batch_size=settings.vae_batch,
                eval_every=settings.vae_eval_every,
                log_every=10,
                seed=seed,
                **vae_options,
            ),
            on_step,
        ),
    )
    train_stage(
        "rnn",
        lambda on_step: train_rnn(
            TrainRNNConfig(
                run_dir,
                steps=UNBOUNDED,
                batch_size=settings.rnn_batch,
                sequence_length=settings.rnn_sequence,
                hidden_size=WM_SIZES["hidden_size"],
                num_mixtures=WM_SIZES["num_mixtures"],
                eval_every=settings.rnn_eval_every,
                log_every=10,
                seed=seed,
            ),
            on_step,
        ),
    )

    # The controller in segments: a held-out evaluation of its newest checkpoint after each. A segment
    # resumes the search from its saved mean and step size (train-controller's resume).
    in_env = args.controller_in == "env"
    controller = results["stages"].setdefault("controller", {"seconds": 0.0, "done": False})
    controller.setdefault("env_frames", 0)
    while spent_seconds(results) < settings.budget_seconds:
        segment_end = min(settings.budget_seconds, spent_seconds(results) + settings.eval_every_seconds)
        clock = StageClock(results, "controller", save)
        budget = BudgetStop(segment_end, lambda: spent_seconds(results))
        generation = {"done": controller.get("generations", 0)}

        def on_generation(record: dict, clock=clock, budget=budget, generation=generation) -> None:
            clock.tick()
            if record.get("kind") == "generation":
                generation["done"] = record["generation"]
                controller["env_frames"] += int(record.get("env_frames", 0))
                if "frames_per_second" in record:
                    controller["frames_per_second"] = record["frames_per_second"]
                if in_env or record["generation"] % 10 == 0:
                    print(
                        f"  [controller] generation {record['generation']}: {args.controller_in} return "
                        f"mean {record['mean_fitness']:.1f}, max {record['max_fitness']:.1f}, "
                        f"best {record['best_fitness']:.1f}"
                        + (
                            f", {record['frames_per_second']:.0f} frames/s"
                            if "frames_per_second" in record
                            else ""
                        )
                        + (f"; mean's return {record['eval_return']:.1f}" if "eval_return" in record else ""),
                        flush=True,
                    )
            budget.check()

        if in_env:
            search = dict(
                in_dream=False,
                popsize=settings.controller_popsize,
                rollouts=settings.controller_rollouts,
                patience=settings.controller_patience,
                eval_every=settings.controller_eval_every,
                eval_episodes=settings.controller_eval_episodes,
            )
        else:
            search = dict(
                in_dream=True,
                popsize=settings.dream_popsize,
                rollouts=settings.dream_rollouts,
                temperature=1.15,
                dream_horizon=settings.dream_horizon,
                eval_every=UNBOUNDED,  # the held-out evaluations below are the curve
                eval_episodes=1,  # (never used: eval_every is never reached) one car instead of eight
            )
        config = TrainControllerConfig(
            run_dir=run_dir,
            generations=UNBOUNDED,
            max_steps=settings.max_steps,
            seed=seed,
            **search,
            controller_inputs=settings.controller_inputs,
            **backend_option(TrainControllerConfig, args.backend),
        )
        run_until_budget(lambda config=config, on=on_generation: train_controller(config, on), budget)
        clock.close(done=False)
        controller["generations"] = generation["done"]
        print(f"held-out evaluation at {spent_seconds(results) / 60:.1f} min:", flush=True)
        row = evaluate_row("worldmodel", settings.eval_episodes, settings.max_steps, run_dir, "latest")
        spent = spent_seconds(results)
        env_frames = frames + controller["env_frames"]  # the controller's own episodes are env frames too
        point = {
            "env_steps": env_frames,
            "env_frames": env_frames,
            "generation": generation["done"],
            "train_seconds": spent,
            "wall_seconds": spent,
            "return_mean": row["return_mean"],
            "return_std": row["return_std"],
            "progress_mean": row["progress_mean"],
            "episodes_evaluated": settings.eval_episodes,
        }
        results["curve"].append(point)
        save()
    controller["done"] = True
    finish(results, results_path, "worldmodel", run_dir, settings)
    return results


# -- summaries -------------------------------------------------------------------------------------


def existing_seeds(root: Path, agent: str) -> list[int]:
    pattern = re.compile(rf"{agent}-seed(\d+)$")
    found = (pattern.match(path.parent.name) for path in root.glob(f"{agent}-seed*/results.json"))
    return sorted(int(match.group(1)) for match in found if match)


def write_summary(root: Path, agent: str, seeds: list[int]) -> None:
    views, references = [], {}
    for seed in sorted(set(seeds) | set(existing_seeds(root, agent))):
        path = root / f"{agent}-seed{seed}" / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        views.append(
            curves.seed_view(seed, results["curve"], SCORE_KEY, results.get("final"), results.get("best"))
        )
        references = {name: row[SCORE_KEY] for name, row in results.get("references", {}).items()}
    if not views:
        print(f"{agent}: nothing to plot under {root}")
        return
    curves.write_summary(
        views,
        root / f"{agent}-summary.json",
        root / f"{agent}.png",
        target=TARGET_RETURN,
        references=references,
        title=f"{TITLES[agent]} on CarRacing-v3 (pixels): held-out return, {len(views)} seed(s)",
        score_label="CarRacing-v3 return (held-out tracks)",
        about={"agent": agent, "env": ENV, "obs": "pixels", "score": SCORE_KEY},
        score_format=".1f",
    )


def main() -> None:
    args = parse_args()
    if args.plot_only:
        for agent in args.agent:
            write_summary(args.root, agent, args.seeds)
        return
    settings = settings_from(args)
    if args.fresh:
        for agent in args.agent:
            for seed in args.seeds:
                shutil.rmtree(args.root / f"{agent}-seed{seed}", ignore_errors=True)
    args.root.mkdir(parents=True, exist_ok=True)
    print(
        f"device: {jax.devices()[0]}, {os.cpu_count()} cpu cores; budget {settings.budget_seconds / 3600:.2f} h per agent and seed"
    )
    reference = random_reference(args, settings)
    benches = {"dreamer": bench_dreamer, "worldmodels": bench_worldmodels}
    for agent in args.agent:
        for seed in args.seeds:
            print(f"== {TITLES[agent]}, CarRacing-v3 pixels, seed {seed}", flush=True)
            started = time.perf_counter()
            benches[agent](args, seed, settings, reference)
            print(f"== {agent} seed {seed}: {(time.perf_counter() - started) / 60:.1f} min in this session")
        write_summary(args.root, agent, args.seeds)


if __name__ == "__main__":
    curves.run_resumable(main)
