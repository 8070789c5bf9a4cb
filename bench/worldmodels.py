"""`make bench-worldmodels`: the whole World Models pipeline on RLCar with a CPU-sized budget.

Collect (brownian exploration) -> train-vae -> train-rnn -> train-controller, once in the dream and once
in the real env, then both learned agents against the heuristic and random drivers on held-out tracks.
Prints and saves (runs/bench-worldmodels/results.json) the VAE's validation MSE per pixel, the MDN-RNN's
validation NLL, each driver's return and lap progress, and the wall-clock time of every stage. The
models are smaller than the paper's (see SIZES) so the run takes ten to fifteen minutes on two CPU
cores; `--scale` multiplies the training budgets.
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

from rlcar_core.agents.exploration import exploration_factory  # noqa: E402
from rlcar_core.apps.evaluate import EvalConfig, evaluate  # noqa: E402
from rlcar_core.worldmodels.collect import collect  # noqa: E402
from rlcar_core.worldmodels.config import (  # noqa: E402
    CollectConfig,
    TrainControllerConfig,
    TrainRNNConfig,
    TrainVAEConfig,
)
from rlcar_core.worldmodels.train_controller import train_controller  # noqa: E402
from rlcar_core.worldmodels.train_rnn import train_rnn  # noqa: E402
from rlcar_core.worldmodels.train_vae import train_vae  # noqa: E402

SIZES = {"z_dim": 32, "base_channels": 16, "hidden_size": 128}
EVAL_EPISODES = 20
VAE_TRAINING = {"batch_size": 64, "learning_rate": 1e-3, "eval_every": 400, "log_every": 50}
RNN_TRAINING = {"batch_size": 32, "sequence_length": 50, "eval_every": 250, "log_every": 50}
EVAL_MAX_STEPS = 1000


def _printer(stage: str, every: int = 1):
    def show(record: dict) -> None:
        kind = record.get("kind")
        if kind == "train" and record["step"] % every:
            return
        keys = [k for k in record if k not in ("kind", "total_steps", "total_generations", "time")]
        values = ", ".join(
            f"{k}={record[k]:.4g}" if isinstance(record[k], float) else f"{k}={record[k]}" for k in keys
        )
        print(f"  [{stage}] {kind}: {values}", flush=True)

    return show


# The two controller searches from the same V and M; they differ only in these settings.
CONTROLLER_SEARCHES = {
    "dream": {"in_dream": True, "generations": 80, "popsize": 32, "rollouts": 16, "eval_every": 10},
    "env": {"in_dream": False, "generations": 60, "popsize": 16, "rollouts": 2, "eval_every": 5},
}


def _search_controller(run_dir: Path, mode: str, budget) -> dict:
    search = dict(CONTROLLER_SEARCHES[mode])
    generations = budget(search.pop("generations"))
    config = TrainControllerConfig(
        run_dir=run_dir,
        generations=generations,
        dream_horizon=200,
        temperature=1.15,
        max_steps=300,
        eval_episodes=8,
        **search,
    )
    return train_controller(config, _printer(f"controller, {mode}", 10 if mode == "dream" else 1))


def _evaluate(agent: str, run_dir: Path | None) -> dict:
    summary = evaluate(
        EvalConfig(agent=agent, episodes=EVAL_EPISODES, max_steps=EVAL_MAX_STEPS, run_dir=run_dir)
    )
    row = {
        k: summary[k]
        for k in ("return_mean", "return_std", "progress_mean", "progress_std", "lap_rate", "crash_rate")
    }
    print(
        f"eval {agent}: return {row['return_mean']:.1f} ± {row['return_std']:.1f}, progress {row['progress_mean']:.3f}"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-worldmodels"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    args = parser.parse_args()
    run_dir = args.run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a benchmark starts from nothing

    def budget(value: int) -> int:
        return max(1, int(round(value * args.scale)))

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} cpu cores")
    seconds: dict[str, float] = {}
    results: dict = {"sizes": SIZES, "scale": args.scale}

    start = time.perf_counter()
    collected = collect(
        CollectConfig(run_dir=run_dir, episodes=budget(160), policy="brownian", max_steps=300, num_envs=16),
        exploration_factory("brownian", "rlcar", run_dir),
    )
    seconds["collect"] = time.perf_counter() - start
    results["collect"] = {
        k: collected[k] for k in ("episodes", "steps", "progress_mean", "frames_per_second")
    }
    print(
        f"collect: {collected['episodes']} episodes, {collected['steps']} steps in {seconds['collect']:.0f}s"
    )

    start = time.perf_counter()
    vae_settings = {"z_dim": SIZES["z_dim"], "base_channels": SIZES["base_channels"], **VAE_TRAINING}
    vae = train_vae(TrainVAEConfig(run_dir, steps=budget(1000), **vae_settings), _printer("vae", 100))
    seconds["train_vae"] = time.perf_counter() - start
    results["vae_validation_mse_per_pixel"] = vae["validation"]["validation_mse_per_pixel"]
    print(f"train-vae: validation MSE/pixel {results['vae_validation_mse_per_pixel']:.5f}")

    start = time.perf_counter()
    rnn_settings = {"hidden_size": SIZES["hidden_size"], **RNN_TRAINING}
    rnn = train_rnn(TrainRNNConfig(run_dir, steps=budget(1000), **rnn_settings), _printer("rnn", 100))
    seconds["train_rnn"] = time.perf_counter() - start
    results["rnn_validation_nll"] = rnn["validation"]["validation_nll"]
    results["rnn_validation"] = rnn["validation"]
    print(f"train-rnn: validation NLL {results['rnn_validation_nll']:.4f}")

    # C twice from the same V and M: first searched in the dream (cheap: whole populations per jitted
    # call), then, from scratch, in the real env. The dream-trained one is kept in checkpoints/controller-dream.
    start = time.perf_counter()
    dreamed = _search_controller(run_dir, "dream", budget)
    seconds["train_controller_dream"] = time.perf_counter() - start
    start = time.perf_counter()
    dream_summary = _evaluate("worldmodel", run_dir)
    seconds["evaluate_dream_controller"] = time.perf_counter() - start
    controllers = run_dir / "checkpoints" / "controller"
    shutil.rmtree(controllers.with_name("controller-dream"), ignore_errors=True)
    controllers.rename(controllers.with_name("controller-dream"))

    start = time.perf_counter()
    controller = _search_controller(run_dir, "env", budget)
    seconds["train_controller_env"] = time.perf_counter() - start
    results["controller_training"] = {
        mode: {k: summary.get(k) for k in ("generations", "best_fitness", "eval_return", "eval_progress")}
        for mode, summary in (("dream", dreamed), ("env", controller))
    }

    start = time.perf_counter()
    drivers = {
        "worldmodel, C in the dream": dream_summary,
        "worldmodel, C in the env": _evaluate("worldmodel", run_dir),
        "heuristic": _evaluate("heuristic", None),
        "random": _evaluate("random", None),
    }
    seconds["evaluate"] = time.perf_counter() - start
    results["held_out_tracks"] = drivers
    results["seconds"] = seconds
    results["total_seconds"] = sum(seconds.values())

    print(
        f"\nWorld Models on RLCar (held-out tracks, {EVAL_EPISODES} episodes of up to {EVAL_MAX_STEPS} steps)"
    )
    print(f"  VAE validation MSE per pixel: {results['vae_validation_mse_per_pixel']:.5f}")
    print(f"  MDN-RNN validation NLL:       {results['rnn_validation_nll']:.4f} (per latent dimension)")
    for agent, row in drivers.items():
        print(f"  {agent:26s} return {row['return_mean']:7.1f}  progress {row['progress_mean']:.3f}")
    print(
        "  wall clock: "
        + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
        + f"; total {results['total_seconds']:.0f}s"
    )
    output = run_dir / "results.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
