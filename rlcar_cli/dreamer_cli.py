"""`rlcar train-dreamer`: options in, one call to rlcar_core.dreamer.training_loop, progress out.

JAX is imported inside the command body, so `rlcar --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from rlcar_cli.options import EnvName, Json, Progress, RunDir
from rlcar_cli.output import (
    EXIT_BAD_INPUT,
    emit_json,
    make_progress,
    print_error,
    show_progress,
    stderr_console,
    training_outcomes,
)


class SizeName(str, Enum):
    tiny = "tiny"
    small = "small"
    medium = "medium"


class ObsName(str, Enum):
    sensors = "sensors"
    pixels = "pixels"


class PrefillName(str, Enum):
    brownian = "brownian"
    random = "random"
    actor = "actor"


def _value(option: Enum | None) -> str | None:
    return None if option is None else option.value


def _progress_view(progress_flag: bool | None, total: int):
    """A Rich bar over episodes, and `on_progress(record)` feeding it the training loop's records."""
    bar = make_progress(show_progress(progress_flag))
    task = bar.add_task("dreamer", total=total, status="compiling")
    shown: dict[str, str] = {}

    def on_progress(record: dict[str, Any]) -> None:
        kind = record["kind"]
        if kind == "episode":
            shown["episode"] = f"return {record['return']:.1f} progress {record['progress']:.2f}"
        elif kind == "train":
            shown["losses"] = " ".join(
                f"{label} {record[name]:.3g}"
                for label, name in (("wm", "wm/loss"), ("actor", "actor/loss"), ("critic", "critic/loss"))
            )
            shown["speed"] = (
                f"{record['env_steps_per_second']:,.0f} env/s {record['train_steps_per_second']:.1f} train/s"
            )
        elif kind == "eval":
            best = " (best)" if record["best"] else ""
            bar.console.print(
                f"episode {record['episode']}, {record['env_steps']:,} env steps: held-out progress "
                f"{record['progress_mean']:.3f}, laps {100 * record['lap_rate']:.0f} %, "
                f"return {record['return_mean']:.1f}{best}"
            )
        status = " | ".join([f"{record['env_steps']:,} steps", *shown.values()])
        bar.update(task, completed=record["episode"], total=record["episodes_total"], status=status)

    return bar, on_progress


def train_dreamer_command(
    run_dir: RunDir = None,
    episodes: Annotated[
        int, typer.Option("--episodes", min=1, help="Total episodes to collect (a rerun resumes up to this).")
    ] = 500,
    env_steps: Annotated[
        int | None,
        typer.Option("--env-steps", min=1, help="Also stop at this many env steps (summed over cars)."),
    ] = None,
    env: Annotated[
        EnvName | None, typer.Option("--env", help="Environment: rlcar (default) or carracing.")
    ] = None,
    size: Annotated[
        SizeName | None,
        typer.Option("--size", help="Model size preset (default: tiny on a CPU, small on an accelerator)."),
    ] = None,
    obs: Annotated[
        ObsName | None,
        typer.Option("--obs", help="Observations: sensors (RLCar default) or pixels (64x64 camera)."),
    ] = None,
    train_ratio: Annotated[
        float | None,
        typer.Option(
            "--train-ratio",
            min=0.0,
            help="Replayed steps per env step (default: 64 on a CPU, 512 on an accelerator).",
        ),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Steps per episode at most (default 1000).")
    ] = None,
    num_envs: Annotated[
        int | None, typer.Option("--num-envs", min=1, help="Cars collecting side by side (default 8).")
    ] = None,
    num_tracks: Annotated[
        int | None, typer.Option("--num-tracks", min=1, help="RLCar training tracks (default 32).")
    ] = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a DreamerConfig field, e.g. --set actor_entropy=1e-3 (repeatable).",
        ),
    ] = None,
    prefill_steps: Annotated[
        int | None,
        typer.Option(
            "--prefill-steps", min=0, help="Env steps collected before the first update (default 2500)."
        ),
    ] = None,
    prefill_policy: Annotated[
        PrefillName | None,
        typer.Option(
            "--prefill-policy", help="Who drives during prefill: brownian (default), random or actor."
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=1, help="Save a checkpoint every N episodes.")
    ] = 10,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=1, help="Evaluate on held-out tracks every N episodes.")
    ] = 20,
    eval_every_steps: Annotated[
        int | None,
        typer.Option(
            "--eval-every-steps", min=1, help="Evaluate every N env steps instead (learning curves)."
        ),
    ] = None,
    eval_episodes: Annotated[
        int, typer.Option("--eval-episodes", min=1, help="Held-out tracks per evaluation.")
    ] = 10,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed for every random choice (default 0).")
    ] = None,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Train a DreamerV3 agent: collect with the batched env, learn in imagination, checkpoint by episode."""
    if run_dir is None:
        print_error("--run-dir is required: the run directory that holds the checkpoints and the replay")
        raise typer.Exit(EXIT_BAD_INPUT)
    with training_outcomes():
        from rlcar_core.dreamer.training_loop import TrainDreamerConfig, train_dreamer

        config = TrainDreamerConfig(
            run_dir=run_dir,
            episodes=episodes,
            env_steps=env_steps,
            env=_value(env),
            obs=_value(obs),
            size=_value(size),
            train_ratio=train_ratio,
            max_steps=max_steps,
            num_envs=num_envs,
            num_tracks=num_tracks,
            seed=seed,
            overrides=tuple(set_values or ()),
            prefill_steps=prefill_steps,
            prefill_policy=_value(prefill_policy),
            checkpoint_every=checkpoint_every,
            eval_every=eval_every,
            eval_every_steps=eval_every_steps,
            eval_episodes=eval_episodes,
        )
        config.validate()
        bar, on_progress = _progress_view(progress, episodes)
        with bar:
            result = train_dreamer(config, on_progress)
    if json_out:
        emit_json(result)
    else:
        console = stderr_console()
        console.print(
            f"{result['episodes']} episodes, {result['env_steps']:,} env steps, {result['updates']:,} updates"
        )
        if result["eval"] is not None:
            console.print(
                f"held-out progress {result['eval']['progress_mean']:.3f} "
                f"(best {result['best_eval_progress']:.3f}), laps {100 * result['eval']['lap_rate']:.0f} %"
            )
        console.print(f"checkpoint: {result['checkpoint']} (best: {result['best_checkpoint']})")


def register(app: typer.Typer) -> None:
    """Add the DreamerV3 training command to the `rlcar` app."""
    app.command("train-dreamer")(train_dreamer_command)
