"""The World Models commands: collect, train-vae, train-rnn, train-controller, dream.

Thin by design: each command checks its options, calls one function of rlcar_core.worldmodels and
shows its progress. JAX is imported inside the command bodies, so `rlcar --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from rlcar_cli.options import Checkpoint, Env, EnvName, Json, MaxSteps, Progress, RunDir, Seed, Track
from rlcar_cli.output import (
    EXIT_BAD_INPUT,
    emit_json,
    make_progress,
    print_error,
    show_progress,
    stderr_console,
    training_outcomes,
    user_errors,
)


class PolicyName(str, Enum):
    brownian = "brownian"
    random = "random"
    heuristic = "heuristic"
    checkpoint = "checkpoint"


Steps = Annotated[
    int | None, typer.Option("--steps", min=1, help="Total updates (a rerun resumes up to this).")
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Items per update.")]
EvalEvery = Annotated[
    int, typer.Option("--eval-every", min=1, help="Validate and checkpoint every N updates.")
]
LearningRate = Annotated[float | None, typer.Option("--learning-rate", min=0.0, help="Adam step size.")]
ZDim = Annotated[int | None, typer.Option("--z-dim", min=1, help="Latent size (default 32).")]
BaseChannels = Annotated[
    int | None, typer.Option("--base-channels", min=1, help="VAE encoder widths c, 2c, 4c, 8c (default 32).")
]
HiddenSize = Annotated[int | None, typer.Option("--hidden-size", min=1, help="LSTM units (default 256).")]
Mixtures = Annotated[
    int | None, typer.Option("--mixtures", min=1, help="Gaussians per latent dimension (default 5).")
]
Rollouts = Annotated[
    int | None,
    typer.Option(
        "--rollouts", min=1, help="Per candidate: dream starts (default 16) or env episodes (default 2)."
    ),
]


def _require_run_dir(run_dir: Path | None) -> Path:
    if run_dir is None:
        print_error("--run-dir is required: the run directory that holds the data and the checkpoints")
        raise typer.Exit(EXIT_BAD_INPUT)
    return run_dir


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _training_bar(progress_flag: bool | None, description: str, total: int, unit: str):
    """A Rich bar over `total` steps and `on_step(record)` feeding it the loop's records."""
    enabled = show_progress(progress_flag)
    bar = make_progress(enabled)
    task = bar.add_task(description, total=total, status="compiling")
    shown = ("loss", "reconstruction_loss", "kl_loss", "latent_nll", "reward_mse", "done_bce")

    def on_step(record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "encode":
            bar.update(task, status=f"encoding episodes {record['episodes']}/{record['total_episodes']}")
        elif kind == "train":
            bar.update(task, total=record["total_steps"])
            terms = " ".join(f"{name} {_format(record[name])}" for name in shown if name in record)
            bar.update(
                task, completed=record["step"], status=f"{terms} | {record['items_per_second']:,.0f} {unit}/s"
            )
        elif kind == "validation" and enabled:
            values = " ".join(
                f"{k[len('validation_') :]} {_format(v)}"
                for k, v in record.items()
                if k.startswith("validation_")
            )
            bar.console.print(f"step {record['step']}: validation {values}")

    return bar, on_step


def _print_summary(result: dict[str, Any], keys: tuple[str, ...]) -> None:
    console = stderr_console()
    for key in keys:
        if result.get(key) is not None:
            console.print(f"{key}: {_format(result[key])}")


def collect_command(
    run_dir: RunDir = None,
    env: Env = EnvName.rlcar,
    episodes: Annotated[int, typer.Option("--episodes", min=1, help="Episodes to add to the dataset.")] = 100,
    policy: Annotated[
        PolicyName,
        typer.Option(
            "--policy", help="Who drives: brownian (smooth random, default), random, heuristic, checkpoint."
        ),
    ] = PolicyName.brownian,
    max_steps: MaxSteps = 1000,
    num_envs: Annotated[int, typer.Option("--num-envs", min=1, help="Cars driven side by side.")] = 16,
    num_tracks: Annotated[
        int | None,
        typer.Option("--num-tracks", min=1, help="RLCar: training tracks to drive on (default 32)."),
    ] = None,
    checkpoint: Checkpoint = "best",
    seed: Seed = 0,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Collect rollouts into RUN_DIR/data: 64x64 frames, actions, rewards, one .npz per episode."""
    run_dir = _require_run_dir(run_dir)
    with user_errors():
        from rlcar_core.worldmodels.collect import CollectConfig, collect

        config = CollectConfig(
            run_dir=run_dir,
            env=env.value,
            episodes=episodes,
            policy=policy.value,
            max_steps=max_steps,
            num_envs=num_envs,
            num_tracks=num_tracks,
            seed=seed,
            checkpoint=checkpoint,
        )
        config.validate()
        with make_progress(show_progress(progress)) as bar:
            task = bar.add_task(f"collect {policy.value} on {env.value}", total=episodes, status="starting")

            def on_progress(record: dict[str, Any]) -> None:
                bar.update(
                    task,
                    completed=record["episodes"],
                    status=f"{record['frames']:,} frames | {record['frames_per_second']:,.0f} frames/s",
                )

            result = collect(config, on_progress)
    if json_out:
        emit_json(result)
    else:
        stderr_console().print(
            f"wrote {result['episodes']} episodes ({result['steps']:,} steps) to {result['data_dir']}; "
            f"the dataset now holds {result['dataset_episodes']} episodes"
        )


def train_vae_command(
    run_dir: RunDir = None,
    steps: Steps = None,
    epochs: Annotated[
        float | None,
        typer.Option("--epochs", min=0.0, help="Passes over the training frames (instead of --steps)."),
    ] = None,
    batch_size: BatchSize = 100,
    z_dim: ZDim = None,
    base_channels: BaseChannels = None,
    learning_rate: LearningRate = None,
    eval_every: EvalEvery = 500,
    validation_frames: Annotated[
        int, typer.Option("--validation-frames", min=1, help="Held-out frames to validate on.")
    ] = 512,
    seed: Seed = 0,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Train the ConvVAE on the collected frames; reports validation MSE per pixel."""
    run_dir = _require_run_dir(run_dir)
    with training_outcomes():
        from rlcar_core.worldmodels.train_vae import DEFAULT_STEPS, TrainVAEConfig, train_vae

        config = TrainVAEConfig(
            run_dir=run_dir,
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            z_dim=z_dim,
            base_channels=base_channels,
            learning_rate=learning_rate,
            eval_every=eval_every,
            validation_frames=validation_frames,
            seed=seed,
        )
        config.validate()
        bar, on_step = _training_bar(progress, "train-vae", steps or DEFAULT_STEPS, "frames")
        with bar:
            result = train_vae(config, on_step)
    if json_out:
        emit_json(result)
    else:
        _print_summary(
            {**result, **result["validation"]},
            ("step", "validation_mse_per_pixel", "checkpoint", "reconstructions"),
        )


def train_rnn_command(
    run_dir: RunDir = None,
    steps: Steps = None,
    batch_size: BatchSize = 100,
    sequence_length: Annotated[
        int, typer.Option("--sequence-length", min=1, help="Steps per training sequence.")
    ] = 100,
    hidden_size: HiddenSize = None,
    mixtures: Mixtures = None,
    learning_rate: LearningRate = None,
    eval_every: EvalEvery = 500,
    seed: Seed = 0,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Train the MDN-RNN on VAE-encoded sequences; reports validation NLL."""
    run_dir = _require_run_dir(run_dir)
    with training_outcomes():
        from rlcar_core.worldmodels.train_rnn import DEFAULT_STEPS, TrainRNNConfig, train_rnn

        config = TrainRNNConfig(
            run_dir=run_dir,
            steps=steps,
            batch_size=batch_size,
            sequence_length=sequence_length,
            hidden_size=hidden_size,
            num_mixtures=mixtures,
            learning_rate=learning_rate,
            eval_every=eval_every,
            seed=seed,
        )
        config.validate()
        bar, on_step = _training_bar(progress, "train-rnn", steps or DEFAULT_STEPS, "steps")
        with bar:
            result = train_rnn(config, on_step)
    if json_out:
        emit_json(result)
    else:
        _print_summary(
            {**result, **result["validation"]}, ("step", "validation_nll", "validation_loss", "checkpoint")
        )


def train_controller_command(
    run_dir: RunDir = None,
    in_dream: Annotated[
        bool,
        typer.Option(
            "--in-dream/--in-env", help="Score candidates in the MDN-RNN's dream, or in the real env."
        ),
    ] = True,
    generations: Annotated[int, typer.Option("--generations", min=1, help="Total CMA-ES generations.")] = 50,
    popsize: Annotated[int, typer.Option("--popsize", min=2, help="Candidates per generation.")] = 32,
    rollouts: Rollouts = None,
    temperature: Annotated[
        float,
        typer.Option("--temperature", min=0.0, help="Dream temperature; above 1 is harder than reality."),
    ] = 1.15,
    dream_horizon: Annotated[int, typer.Option("--dream-horizon", min=1, help="Steps of each dream.")] = 300,
    max_steps: MaxSteps = 1000,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=1, help="Generations between real-env evaluations.")
    ] = 5,
    eval_episodes: Annotated[
        int, typer.Option("--eval-episodes", min=1, help="Real episodes per evaluation.")
    ] = 8,
    num_tracks: Annotated[
        int | None, typer.Option("--num-tracks", min=1, help="RLCar: training tracks.")
    ] = None,
    initial_sigma: Annotated[
        float, typer.Option("--initial-sigma", min=0.0, help="CMA-ES initial step size.")
    ] = 0.1,
    seed: Seed = 0,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Train the linear controller (on the latent z and the LSTM state h) with CMA-ES, in the dream or in the env."""
    run_dir = _require_run_dir(run_dir)
    with training_outcomes():
        from rlcar_core.worldmodels.train_controller import TrainControllerConfig, train_controller

        config = TrainControllerConfig(
            run_dir=run_dir,
            mode="dream" if in_dream else "env",
            generations=generations,
            popsize=popsize,
            rollouts=rollouts,
            temperature=temperature,
            dream_horizon=dream_horizon,
            max_steps=max_steps,
            initial_sigma=initial_sigma,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            num_tracks=num_tracks,
            seed=seed,
        )
        config.validate()
        enabled = show_progress(progress)
        with make_progress(enabled) as bar:
            task = bar.add_task(f"train-controller ({config.mode})", total=generations, status="compiling")

            def on_generation(record: dict[str, Any]) -> None:
                status = (
                    f"fitness mean {record['mean_fitness']:.2f} max {record['max_fitness']:.2f} "
                    f"| sigma {record['sigma']:.3f} | {record['seconds']:.1f} s/gen"
                )
                bar.update(task, completed=record["generation"], status=status)
                if "eval_return" in record and enabled:
                    bar.console.print(
                        f"generation {record['generation']}: real-env return {record['eval_return']:.2f}, "
                        f"progress {record['eval_progress']:.3f}"
                    )

            result = train_controller(config, on_generation)
    if json_out:
        emit_json(result)
    else:
        _print_summary(result, ("generations", "best_fitness", "eval_return", "eval_progress", "checkpoint"))


def dream_command(
    run_dir: RunDir = None,
    checkpoint: Checkpoint = "best",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write a video (.mp4 or .gif).")
    ] = None,
    manual: Annotated[bool, typer.Option("--manual", help="Drive the dream with arrows/WASD.")] = False,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Dream temperature.")] = 1.0,
    max_steps: MaxSteps = 300,
    headless: Annotated[
        bool, typer.Option("--headless", help="No window; only the numbers (for CI).")
    ] = False,
    track: Track = 0,
    fps: Annotated[
        int, typer.Option("--fps", min=0, help="Video frames per second (0: the env's rate).")
    ] = 0,
    seed: Seed = 0,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Show what the world model imagines (right) next to what really happens (left)."""
    run_dir = _require_run_dir(run_dir)
    with user_errors():
        import os

        if headless:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        from rlcar_core.worldmodels.dream_session import DreamConfig, run_dream

        config = DreamConfig(
            run_dir=run_dir,
            checkpoint=checkpoint,
            output=output,
            manual=manual,
            temperature=temperature,
            max_steps=max_steps,
            headless=headless,
            track=track,
            seed=seed,
            fps=fps,
        )
        config.validate()
        with make_progress(show_progress(progress) and not manual) as bar:
            task = bar.add_task("dream", total=max_steps, status=str(output or ""))
            result = run_dream(config, on_step=lambda step: bar.update(task, completed=step))
    if json_out:
        emit_json(result)
    else:
        where = f", wrote {result['path']}" if "path" in result else ""
        stderr_console().print(
            f"dreamed {result['steps']} steps ({result['ended_by']}): return real {result['real_return']:.1f}, "
            f"dream {result['dream_return']:.1f}, frame MSE {_format(result['frame_mse_mean'])}{where}"
        )


def register(app: typer.Typer) -> None:
    """Add the World Models commands to the `rlcar` app."""
    app.command("collect")(collect_command)
    app.command("train-vae")(train_vae_command)
    app.command("train-rnn")(train_rnn_command)
    app.command("train-controller")(train_controller_command)
    app.command("dream")(dream_command)
