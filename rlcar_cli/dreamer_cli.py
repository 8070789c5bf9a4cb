"""`rlcar train-dreamer`: options in, one call to rlcar_core.dreamer.train, progress out.

The options are built from `rlcar_core.dreamer.train_config.TrainDreamerConfig`'s fields (name, type,
default, help, range), so each default lives in one line there. Only the options given on the command
line are passed on: a resumed run keeps its own values for the rest. JAX is imported inside the
command body, so `rlcar --help` stays fast (train_config itself imports JAX lazily through nothing
but the dataclass: it is read here for its fields only).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import typer

from rlcar_cli.options import Json, Progress, RunDir
from rlcar_cli.output import emit_json, progress_console, show_progress, stdout_console, training_outcomes

NARROW_COLUMNS = 100  # below this, the progress bar itself is shorter (10 characters, not 20)


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
        extra["metavar"] = "FIELD=VALUE"
    else:
        base = next(arg for arg in getattr(kind, "__args__", (kind,)) if arg is not type(None))
        annotation = Optional[base]  # noqa: UP045
        if meta["low"] is not None:
            extra["min"] = meta["low"]
        if field.name == "camera":
            extra["metavar"] = "NAME"  # a preset's name (with fields changed after a colon)
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
    """A Rich bar fed by the training loop's records. It follows the budget: env steps when the run
    has an --env-steps budget (and it is the nearer end), else episodes; the ETA uses the rate
    measured after the first update (compilation excluded). The status keeps to the width left on
    the line, dropping the least useful fields first, so the line never overflows ("drea…")."""

    # Status fields, most worth keeping first (they are shown in `_SHOWN_ORDER`).
    _KEEP = ("eta", "eval", "speed", "count", "episode", "losses")
    _SHOWN_ORDER = ("count", "episode", "losses", "speed", "eval", "eta")

    def __init__(self, enabled: bool, run_dir: Path, announce: bool, steps_budget: int | None = None):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = progress_console()
        self.bar_width = 20 if self.console.width >= NARROW_COLUMNS else 10
        self.bar = Progress(
            TextColumn("[bold]dreamer"),
            BarColumn(bar_width=self.bar_width),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self.task = self.bar.add_task("dreamer", total=None, count="", status="compiling")
        self.run_dir, self.announce = run_dir, announce
        self.steps_budget = steps_budget  # --env-steps as given now; the run's own is read at "start"
        self.shown: dict[str, str] = {}
        self.warm: tuple[float, float] | None = None  # (time, fraction done) at the first update

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", soft_wrap=True, highlight=False)

    def _read_steps_budget(self) -> None:
        """The run's env-steps budget: given now, else the one its config.json keeps (written, with
        the options given applied, before the loop's first record)."""
        from rlcar_core.io.runs import RunDir

        run = RunDir(self.run_dir)
        try:
            saved = run.read_config().get("dreamer", {}).get("train", {}) if run.has_config() else {}
        except Exception:  # noqa: BLE001 - the bar then counts episodes; the trainer reports real errors
            saved = {}
        budget = saved.get("env_steps") if isinstance(saved, dict) else None
        if isinstance(budget, int) and budget > 0:
            self.steps_budget = budget

    def position(self, record: dict[str, Any]) -> tuple[float, str, int, int]:
        """(fraction done, unit, done, total) of the budget nearer to its end."""
        episodes, episodes_total = record["episode"], max(1, record["episodes_total"])
        by_episodes = (episodes / episodes_total, "episodes", episodes, episodes_total)
        if not self.steps_budget:
            return by_episodes
        steps = record["env_steps"]
        by_steps = (min(1.0, steps / self.steps_budget), "env steps", steps, self.steps_budget)
        return max(by_steps, by_episodes, key=lambda position: position[0])

    def eta(self, record: dict[str, Any], fraction: float) -> str:
        if self.warm is None:
            if record["updates"] > 0:
                self.warm = (time.perf_counter(), fraction)
            return ""
        since, start = self.warm
        if fraction <= start:
            return ""
        rate = (fraction - start) / max(time.perf_counter() - since, 1e-9)
        return f"ETA {_format_eta((1.0 - fraction) / rate)}"

    def status(self, fields: dict[str, str], room: int) -> str:
        """The fields that fit in `room` characters, joined by " | "."""
        kept = [name for name in self._KEEP if fields.get(name)]
        while kept and len(" | ".join(fields[name] for name in kept)) > room:
            kept.pop()
        return " | ".join(fields[name] for name in self._SHOWN_ORDER if name in kept)

    def __call__(self, record: dict[str, Any]) -> None:
        kind = record["kind"]
        if kind == "start":
            self._read_steps_budget()
            if self.announce:
                resumed = record["resumed_from_episode"]
                state = (
                    "new"
                    if resumed is None
                    else f"resuming at episode {record['episode']}, {record['env_steps']:,} env steps"
                )
                if record.get("prior_steps"):
                    state += f"; its replay starts with {record['prior_steps']:,} steps of --prior-data"
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
        fraction, unit, done, total = self.position(record)
        count = f"{done:,}/{total:,} {unit}"
        other = f"episode {record['episode']:,}" if unit == "env steps" else f"{record['env_steps']:,} steps"
        fields = {**self.shown, "count": other, "eta": self.eta(record, fraction)}
        # "dreamer", the bar, the count and the elapsed time "0:00:00", one space between each.
        room = self.console.width - len("dreamer") - self.bar_width - len(count) - len("0:00:00") - 4
        self.bar.update(self.task, completed=done, total=total, count=count, status=self.status(fields, room))


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
        view = _ProgressView(show_progress(progress), run_dir, announce, given.get("env_steps"))
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


# `train-dreamer --help` in panels, the options a user sets most first, so that each panel's table is
# narrow enough for an 80-column terminal and `--episodes` is not behind the distributed options.
PANELS = {
    "Run": ("env", "obs", "camera", "run_dir", "seed", "num_tracks", "json_out", "progress"),
    "Budget": (
        "episodes", "env_steps", "max_steps", "patience", "checkpoint_every", "checkpoint_every_steps",
    ),
    "Model": (
        "size", "train_ratio", "batch_size", "batch_length", "replay_capacity", "action_repeat",
        "prefill_steps", "prefill_policy", "prior_data", "overrides",
    ),
    "Evaluation": ("eval_every", "eval_every_steps", "eval_episodes", "eval_actions", "log_every"),
    "Scale-out": (
        "num_envs", "overlap", "devices", "carracing_backend", "distributed", "coordinator_address", "num_processes",
        "process_id", "heartbeat_timeout",
    ),
}  # fmt: skip
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
_ORDER = [name for names in PANELS.values() for name in names]


# Short value names: Typer's "<int range> [x>=1]" takes a fifth of an 80-column help line.
_METAVARS = {int: "N", float: "X", Path: "PATH", bool: ""}  # a flag takes no value: no name


def _in_panel(parameter: inspect.Parameter) -> inspect.Parameter:
    """`parameter` with its Typer option shown in its panel of PANELS and a short value name (a copy:
    the shared option types of rlcar_cli.options stay as they are for the other commands)."""
    kind, *metadata = get_args(parameter.annotation)
    option = copy.copy(next(item for item in metadata if isinstance(item, typer.models.OptionInfo)))
    option.rich_help_panel = _PANEL_OF[parameter.name]
    base = next((arg for arg in get_args(kind) or (kind,) if arg is not type(None)), kind)
    if option.metavar is None and base in _METAVARS:
        option.metavar = _METAVARS[base]
    return parameter.replace(annotation=Annotated[kind, option])


def _build_signature() -> inspect.Signature:
    common = [
        inspect.Parameter("run_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RunDir),
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Progress),
    ]
    options = common + _cluster_parameters() + [_option_parameter(*entry) for entry in _config_fields()]
    missing = {parameter.name for parameter in options} - set(_PANEL_OF)
    if missing:  # a new TrainDreamerConfig field: name its panel above
        raise RuntimeError(f"train-dreamer options without a help panel: {', '.join(sorted(missing))}")
    options = sorted((_in_panel(parameter) for parameter in options), key=lambda p: _ORDER.index(p.name))
    context = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    return inspect.Signature([context, *options])


# Options of one invocation (which process this is), not of the run: not saved in config.json.
_CLUSTER_OPTIONS = {
    "distributed": (bool, False, "--distributed", "Join a multi-process run (jax.distributed): "
                    "coordinator, count and id from the options below, JAX_COORDINATOR_ADDRESS / "
                    "JAX_NUM_PROCESSES / JAX_PROCESS_ID, or SLURM's srun."),
    "coordinator_address": (Optional[str], None, "--coordinator-address", "Process 0's address."),  # noqa: UP045
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
        if name == "coordinator_address":
            extra["metavar"] = "HOST:PORT"
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
