"""The World Models commands: collect, train-vae, train-rnn, train-controller, train-worldmodels, dream.

Thin by design: each command's options are derived from its config dataclass in
`rlcar_core.worldmodels.config` (default and help written once, there; validated once, there), and the
command calls one core function and shows its progress. JAX is imported inside the command bodies, so
`rlcar --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer

from rlcar_cli.options import Json, Progress, parse_run_dir
from rlcar_cli.output import (
    emit_json,
    make_progress,
    show_progress,
    stderr_console,
    stdout_console,
    training_outcomes,
    user_errors,
)
from rlcar_core.loop.options import option_flags
from rlcar_core.worldmodels.config import (
    CollectConfig,
    DreamConfig,
    TrainControllerConfig,
    TrainRNNConfig,
    TrainVAEConfig,
    TrainWorldModelsConfig,
)

CommandBody = Callable[[Any, bool, bool | None], None]


def _option_parameters(config_class: type) -> list[inspect.Parameter]:
    """One Typer option per config field: the field's default, its flags and its help text."""
    hints = typing.get_type_hints(config_class)
    parameters = []
    for field in dataclasses.fields(config_class):
        flags = option_flags(field)
        help_text = field.metadata["help"]
        if field.metadata.get("choices"):
            help_text += f" One of: {', '.join(field.metadata['choices'])}."
        # --run-dir '' would be the current folder: refused, as every command's --run-dir is.
        extra = {"parser": parse_run_dir} if field.name == "run_dir" else {}
        option = typer.Option(
            field.default, *flags, help=help_text, show_default=field.default is not None, **extra
        )
        parameters.append(
            inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hints[field.name]
            )
        )
    return parameters


def command_from_config(config_class: type, body: CommandBody) -> Callable[..., None]:
    """A Typer command whose options are `config_class`'s fields plus --json and --progress; it builds
    the config and hands it to `body(config, json_out, progress)`."""

    def command(**options: Any) -> None:
        json_out, progress = options.pop("json_out"), options.pop("progress")
        body(config_class(**options), json_out, progress)

    shared = [
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Progress),
    ]
    command.__signature__ = inspect.Signature(_option_parameters(config_class) + shared)
    # The config's docstring says what the command does, after its "`rlcar name`: " prefix.
    summary = (config_class.__doc__ or "").split(": ", 1)[-1]
    command.__doc__ = summary[:1].upper() + summary[1:]
    return command


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _run_line(config: Any) -> Callable[[], None]:
    """Prints `run: runs/worldmodels (...)` once, when the command picked the default run; called when
    the work starts (after the inputs were checked, so a refusal stays one line)."""
    printed = False

    def announce() -> None:
        nonlocal printed
        if config.run_dir is None and not printed:
            from rlcar_core.worldmodels.storage import describe_run, run_dir_of

            path = run_dir_of(config)
            stderr_console().print(f"run: {path} ({describe_run(path)})", soft_wrap=True)
            printed = True

    return announce


def _training_bar(config: Any, progress_flag: bool | None, description: str, total: int, unit: str):
    """A Rich bar over `total` steps and `on_step(record)` feeding it the training records."""
    enabled = show_progress(progress_flag)
    bar = make_progress(enabled)
    task = bar.add_task(description, total=total, status="compiling")
    shown = ("loss", "reconstruction_loss", "kl_loss", "latent_nll", "reward_mse", "done_bce")
    announce = _run_line(config)

    def on_step(record: dict[str, Any]) -> None:
        kind = record.get("kind")
        announce()
        if kind == "warning":
            bar.console.print(f"warning: {record['message']}", soft_wrap=True)
        elif kind == "encode":
            bar.update(task, status=f"encoding episodes {record['episodes']}/{record['total_episodes']}")
        elif kind == "train":
            model = record["trainer"]
            bar.update(task, total=record["total_steps"])
            terms = " ".join(
                f"{name} {_format(record[f'{model}/{name}'])}"
                for name in shown
                if f"{model}/{name}" in record
            )
            rate = record[f"{model}/items_per_second"]
            bar.update(task, completed=record["step"], status=f"{terms} | {rate:,.0f} {unit}/s")
        elif kind == "eval" and enabled:
            prefix = f"{record['trainer']}/validation_"
            values = " ".join(
                f"{k[len(prefix) :]} {_format(v)}" for k, v in record.items() if k.startswith(prefix)
            )
            bar.console.print(f"step {record['step']}: validation {values}")

    return bar, on_step


def _print_summary(result: dict[str, Any], keys: tuple[str, ...]) -> None:
    console = stdout_console()  # what the stage produced: a result, on stdout
    for key in keys:
        if result.get(key) is not None:
            console.print(f"{key}: {_format(result[key])}", soft_wrap=True)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA …"
    minutes, seconds = divmod(int(seconds + 0.5), 60)
    return f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def _collect(config: CollectConfig, json_out: bool, progress: bool | None) -> None:
    with training_outcomes():
        from rlcar_core.agents.exploration import collect_policy_factory
        from rlcar_core.worldmodels.collect import collect

        config.validate()
        make_policy = collect_policy_factory(config)
        announce = _run_line(config)
        with make_progress(show_progress(progress)) as bar:
            task = bar.add_task(
                f"collect {config.policy} on {config.env}", total=config.episodes, status="compiling"
            )

            def on_progress(record: dict[str, Any]) -> None:
                announce()
                if record["kind"] == "progress":
                    status = f"{record['frames']:,} frames | {record['frames_per_second']:,.0f} frames/s | {_eta(record['eta_seconds'])}"
                    bar.update(task, completed=record["episodes_done"], status=status)

            result = collect(config, make_policy, on_progress)
    if json_out:
        emit_json(result)
    else:
        stdout_console().print(
            f"wrote {result['episodes']} episodes ({result['steps']:,} steps) to {result['data_dir']}; "
            f"the dataset now holds {result['dataset_episodes']} episodes",
            soft_wrap=True,
        )


def _supervised_body(name: str, unit: str, summary: tuple[str, ...]) -> CommandBody:
    """train-vae and train-rnn: the same bar, outcome handling and summary around a different trainer."""

    def body(config: Any, json_out: bool, progress: bool | None) -> None:
        with training_outcomes():
            if name == "train-vae":
                from rlcar_core.worldmodels.train_vae import train_vae as train
            else:
                from rlcar_core.worldmodels.train_rnn import train_rnn as train

            config.validate()
            bar, on_step = _training_bar(config, progress, name, config.steps or config.DEFAULT_STEPS, unit)
            with bar:
                result = train(config, on_step)
        if json_out:
            emit_json(result)
        else:
            _print_summary({**result, **result["validation"]}, summary)

    return body


def _train_controller(config: TrainControllerConfig, json_out: bool, progress: bool | None) -> None:
    with training_outcomes():
        from rlcar_core.worldmodels.train_controller import train_controller

        config.validate()
        enabled = show_progress(progress)
        announce = _run_line(config)
        with make_progress(enabled) as bar:
            task = bar.add_task(
                f"train-controller ({config.mode})", total=config.generations, status="compiling"
            )

            def on_generation(record: dict[str, Any]) -> None:
                announce()
                if record.get("kind") == "warning":
                    bar.console.print(f"warning: {record['message']}", soft_wrap=True)
                if record.get("kind") != "generation":
                    return
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


def _train_worldmodels(config: TrainWorldModelsConfig, json_out: bool, progress: bool | None) -> None:
    with training_outcomes():
        from rlcar_core.agents.exploration import collect_policy_factory
        from rlcar_core.worldmodels.iterate import STAGES, pipeline_from_options, run_iterations

        pipeline = pipeline_from_options(config)
        announce = _run_line(config)

        enabled = show_progress(progress)
        with make_progress(enabled) as bar:
            rounds = config.iterations + 1
            task = bar.add_task("train-worldmodels", total=rounds * len(STAGES), status="starting")

            def on_event(record: dict[str, Any]) -> None:
                announce()
                kind = record.get("kind")
                where = f"round {record.get('round')}/{config.iterations} {record.get('stage')}"
                if kind == "warning":
                    bar.console.print(f"warning: {record['message']}", soft_wrap=True)
                elif kind == "stage" and record["status"] in ("done", "skipped"):
                    bar.advance(task)
                    if record["stage"] == "controller" and record["status"] == "done" and enabled:
                        result = record["result"]
                        bar.console.print(
                            f"round {record['round']}: real-env return {_format(result.get('eval_return'))}, "
                            f"progress {_format(result.get('eval_progress'))}"
                        )
                elif kind == "stage":
                    bar.update(task, status=f"{where}: starting")
                elif kind == "train":
                    bar.update(task, status=f"{where}: step {record['step']}/{record['total_steps']}")
                elif kind == "generation":
                    bar.update(
                        task,
                        status=f"{where}: generation {record['generation']}/{record['total_generations']}",
                    )
                elif kind == "progress":
                    bar.update(task, status=f"{where}: {record['episodes']} episodes")

            result = run_iterations(pipeline, collect_policy_factory, on_event)
    if json_out:
        emit_json(result)
    else:
        last = result["rounds"][-1]["stages"]["controller"]
        _print_summary(
            {"run_dir": result["run_dir"], "rounds": len(result["rounds"]), **last},
            ("run_dir", "rounds", "eval_return", "eval_progress"),
        )


def _dream(config: DreamConfig, json_out: bool, progress: bool | None) -> None:
    with user_errors():
        import os

        if config.headless:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        from rlcar_core.apps.dream_dispatch import resolve_run, run_dream

        config.validate()
        if config.run_dir is None:
            config = resolve_run(config)
            stderr_console().print(f"run: {config.run_dir}", soft_wrap=True)
        with make_progress(show_progress(progress) and not config.manual) as bar:
            task = bar.add_task("dream", total=config.max_steps, status=str(config.output or ""))
            result = run_dream(config, on_step=lambda step: bar.update(task, completed=step))
    if json_out:
        emit_json(result)
    else:
        where = f", wrote {result['path']}" if "path" in result else ""
        stdout_console().print(
            f"dreamed {result['steps']} steps ({result['ended_by']}): return real {result['real_return']:.1f}, "
            f"dream {result['dream_return']:.1f}, frame MSE {_format(result['frame_mse_mean'])}{where}",
            soft_wrap=True,
        )


collect_command = command_from_config(CollectConfig, _collect)
train_vae_command = command_from_config(
    TrainVAEConfig,
    _supervised_body(
        "train-vae", "frames", ("step", "validation_mse_per_pixel", "checkpoint", "reconstructions")
    ),
)
train_rnn_command = command_from_config(
    TrainRNNConfig,
    _supervised_body("train-rnn", "steps", ("step", "validation_nll", "validation_loss", "checkpoint")),
)
train_controller_command = command_from_config(TrainControllerConfig, _train_controller)
train_worldmodels_command = command_from_config(TrainWorldModelsConfig, _train_worldmodels)
dream_command = command_from_config(DreamConfig, _dream)


def register(app: typer.Typer) -> None:
    """Add the World Models commands to the `rlcar` app."""
    app.command("collect")(collect_command)
    app.command("train-vae")(train_vae_command)
    app.command("train-rnn")(train_rnn_command)
    app.command("train-controller")(train_controller_command)
    app.command("train-worldmodels")(train_worldmodels_command)
    app.command("dream")(dream_command)
