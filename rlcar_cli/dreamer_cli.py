"""`rlcar train-dreamer`: options in, one call to rlcar_core.dreamer.train, progress out.

The options are built from `rlcar_core.dreamer.train_config.TrainDreamerConfig`'s fields (name, type,
default, help, range), so each default lives in one line there. Only the options given on the command
line are passed on: a resumed run keeps its own values for the rest. JAX is imported inside the
command body, so `rlcar --help` stays fast (train_config itself imports JAX lazily through nothing
but the dataclass: it is read here for its fields only).
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rlcar_cli.options import Json, Progress, RunDir
from rlcar_cli.output import emit_json, show_progress, stderr_console, stdout_console, training_outcomes

NARROW_COLUMNS = 100  # below this, the progress line shows only episodes, speed, held-out and ETA


def _config_fields():
    from rlcar_core.dreamer.train_config import TrainDreamerConfig, field_types
    from rlcar_core.loop.options import cli_flag

    types = field_types()
    return [(field, types[field.name], cli_flag(field)) for field in dataclasses.fields(TrainDreamerConfig)]


def _option_parameter(field: dataclasses.Field, kind: Any, flag: str) -> inspect.Parameter:
    """One Typer option from one config field."""
    meta = field.metadata
    default = field.default
    extra: dict[str, Any] = {}
    if meta["choices"]:
        enum = Enum(f"{field.name.title().replace('_', '')}Choice", {c: c for c in meta["choices"]}, type=str)
        annotation = Optional[enum]  # noqa: UP045 - a runtime type for Typer
        default = None if default is None else enum(default)
    elif field.name == "overrides":
        annotation, default = Optional[list[str]], None  # noqa: UP045
    else:
        base = next(arg for arg in getattr(kind, "__args__", (kind,)) if arg is not type(None))
        annotation = Optional[base]  # noqa: UP045
        if meta["low"] is not None:
            extra["min"] = meta["low"]
    option = typer.Option(flag, help=meta["help"], show_default=default is not None, **extra)
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option]
    )


def _given(context: typer.Context, options: dict[str, Any]) -> dict[str, Any]:
    """The options typed on the command line (a resumed run keeps its own for the others)."""
    given = {}
    for name, value in options.items():
        source = context.get_parameter_source(name)
        if source is None or source.name != "COMMANDLINE":
            continue
        if isinstance(value, Enum):
            value = value.value
        if name == "overrides":
            value = tuple(value or ())
        given[name] = value
    return given


def _format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _ProgressView:
    """A Rich bar over episodes fed by the training loop's records. The ETA uses the episode rate
    measured after the first update (compilation excluded); a narrow terminal gets fewer fields."""

    def __init__(self, enabled: bool, run_dir: Path, announce: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = stderr_console()
        self.bar = Progress(
            TextColumn("[bold]dreamer"),
            BarColumn(bar_width=None if self.wide else 12),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self.task = self.bar.add_task("dreamer", total=None, status="compiling")
        self.run_dir, self.announce = run_dir, announce
        self.shown: dict[str, str] = {}
        self.warm: tuple[float, int] | None = None  # (time, episodes) at the first update

    @property
    def wide(self) -> bool:
        return shutil.get_terminal_size((80, 24)).columns >= NARROW_COLUMNS

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", soft_wrap=True, highlight=False)

    def eta(self, record: dict[str, Any]) -> str:
        episodes, total = record["episode"], record["episodes_total"]
        if self.warm is None:
            if record["updates"] > 0:
                self.warm = (time.perf_counter(), episodes)
            return ""
        since, start = self.warm
        if episodes <= start:
            return ""
        rate = (episodes - start) / max(time.perf_counter() - since, 1e-9)
        return f"ETA {_format_eta((total - episodes) / rate)}"

    def __call__(self, record: dict[str, Any]) -> None:
        kind = record["kind"]
        if kind == "start":
            if self.announce:
                resumed = record["resumed_from_episode"]
                state = "new" if resumed is None else f"resuming at episode {resumed}"
                self.console.print(f"run: {self.run_dir} ({state})", soft_wrap=True, highlight=False)
        elif kind == "episode":
            self.shown["episode"] = f"return {record['return']:.1f} progress {record['progress']:.2f}"
        elif kind == "train":
            self.shown["losses"] = " ".join(
                f"{label} {record[name]:.3g}"
                for label, name in (("wm", "wm/loss"), ("actor", "actor/loss"), ("critic", "critic/loss"))
            )
            self.shown["speed"] = f"{record['env_steps_per_second']:,.0f} env/s"
        elif kind == "eval":
            self.shown["eval"] = f"held-out {record['progress_mean']:.2f}"
            best = " (best)" if record["best"] else ""
            self.bar.console.print(
                f"episode {record['episode']}, {record['env_steps']:,} env steps: held-out progress "
                f"{record['progress_mean']:.3f}, laps {100 * record['lap_rate']:.0f} %, "
                f"return {record['return_mean']:.1f}{best}",
                soft_wrap=True,
            )
        fields = ["speed", "eval"] if not self.wide else ["episode", "losses", "speed", "eval"]
        status = " | ".join(
            [
                f"{record['env_steps']:,} steps",
                *(self.shown[k] for k in fields if k in self.shown),
                self.eta(record),
            ]
        ).strip(" |")
        self.bar.update(self.task, completed=record["episode"], total=record["episodes_total"], status=status)


def train_dreamer_command(
    context: typer.Context, run_dir, json_out, progress, cluster=None, **options
) -> None:
    """Train a DreamerV3 agent: collect with the batched env, learn in imagination, checkpoint by episode."""
    given = _given(context, options)
    announce = run_dir is None
    with training_outcomes():
        from rlcar_core.loop import distributed

        # Before anything imports the simulator: its modules build arrays, which starts JAX's backend.
        if distributed.initialize(cluster or distributed.DistributedConfig()):
            distributed.keep_stdout_for_python()
        from rlcar_core.dreamer.train import train_dreamer
        from rlcar_core.io.runs import default_run_dir

        run_dir = default_run_dir("dreamer") if run_dir is None else run_dir
        view = _ProgressView(show_progress(progress), run_dir, announce)
        with view.bar:
            result = train_dreamer(run_dir, given, on_progress=view, on_warning=view.warn, cluster=cluster)
    if json_out:
        emit_json(result)
        return
    console = stdout_console()  # the run's outcome is the result; the lines above were progress
    console.print(
        f"{result['episodes']} episodes, {result['env_steps']:,} env steps, {result['updates']:,} updates"
    )
    if result["eval"] is not None:
        best = result["best_eval_progress"]
        best_text = "" if best is None else f" (best {best:.3f})"
        console.print(
            f"held-out progress {result['eval']['progress_mean']:.3f}{best_text}, "
            f"laps {100 * result['eval']['lap_rate']:.0f} %"
        )
    console.print(f"checkpoint: {result['checkpoint']} (best: {result['best_checkpoint']})", soft_wrap=True)


def _build_signature() -> inspect.Signature:
    common = [
        inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        inspect.Parameter("run_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RunDir),
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Progress),
    ]
    return inspect.Signature(
        common + _cluster_parameters() + [_option_parameter(*entry) for entry in _config_fields()]
    )


# Options of one invocation (which process this is), not of the run: not saved in config.json.
_CLUSTER_OPTIONS = {
    "distributed": (bool, False, "--distributed/--no-distributed", "Join a multi-process run (jax.distributed): "
                    "coordinator, count and id from the options below, JAX_COORDINATOR_ADDRESS / "
                    "JAX_NUM_PROCESSES / JAX_PROCESS_ID, or SLURM's srun."),
    "coordinator_address": (Optional[str], None, "--coordinator-address", "HOST:PORT of process 0."),  # noqa: UP045
    "num_processes": (Optional[int], None, "--num-processes", "Processes in the run."),  # noqa: UP045
    "process_id": (Optional[int], None, "--process-id", "This process's index, 0 .. N-1."),  # noqa: UP045
    "heartbeat_timeout": (int, 60, "--heartbeat-timeout", "Seconds a silent process is waited for before the "
                          "others stop with an error."),
}  # fmt: skip


def _cluster_parameters() -> list[inspect.Parameter]:
    parameters = []
    for name, (kind, default, flag, help_text) in _CLUSTER_OPTIONS.items():
        extra = (
            {"min": 1}
            if name == "heartbeat_timeout"
            else {"min": 0}
            if name != "coordinator_address" and kind is not bool
            else {}
        )
        option = typer.Option(flag, help=help_text, **extra)
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
            )
        )
    return parameters


def register(app: typer.Typer) -> None:
    """Add the DreamerV3 training command to the `rlcar` app, its options built from TrainDreamerConfig."""

    def command(**kwargs) -> None:
        context, run_dir = kwargs.pop("context"), kwargs.pop("run_dir")
        json_out, progress = kwargs.pop("json_out"), kwargs.pop("progress")
        from rlcar_core.loop.distributed import DistributedConfig

        cluster = DistributedConfig(
            distributed=kwargs.pop("distributed"),
            coordinator_address=kwargs.pop("coordinator_address"),
            num_processes=kwargs.pop("num_processes"),
            process_id=kwargs.pop("process_id"),
            heartbeat_timeout=kwargs.pop("heartbeat_timeout"),
        )
        train_dreamer_command(context, run_dir, json_out, progress, cluster=cluster, **kwargs)

    signature = _build_signature()
    command.__signature__ = signature
    command.__annotations__ = {name: p.annotation for name, p in signature.parameters.items()}
    command.__doc__ = train_dreamer_command.__doc__
    app.command("train-dreamer")(command)
