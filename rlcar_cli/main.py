"""``rlcar``: the command line. Each command parses options, calls one core function and shows progress.

JAX and the simulator are imported inside the commands, never at module level, so ``rlcar --help``
answers without loading them.
"""

from __future__ import annotations

# First, before anything heavy loads: a Ctrl-C while the CLI imports is recorded, never raised. The
# imports below come after this call on purpose:
# ruff: noqa: E402
from rlcar_cli import interrupts

interrupts.arm_for_import()

import dataclasses
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from rlcar_cli.dreamer_cli import register as register_dreamer
from rlcar_cli.options import (
    Actions,
    AgentName,
    Checkpoint,
    EnvName,
    Json,
    LookCamera,
    MaxSteps,
    Progress,
    RunDir,
    Seed,
    Track,
    parse_run_dir,
)
from rlcar_cli.output import (
    emit_json,
    make_progress,
    print_error,
    print_result,
    print_stopped,
    show_progress,
    stderr_console,
    stdout_console,
    user_errors,
)
from rlcar_cli.runs_cli import register as register_runs
from rlcar_cli.serve_cli import register as register_serve
from rlcar_cli.ship_cli import register as register_ship
from rlcar_cli.worldmodels_cli import register as register_worldmodels

app = typer.Typer(
    name="rlcar",
    help="World-model reinforcement learning on car racing: simulate, drive, collect, train, dream, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AgentOption = Annotated[
    AgentName | None,
    typer.Option(
        "--agent",
        help="Who drives: heuristic, random, worldmodel or dreamer (default: the --run-dir's own agent, "
        "else heuristic).",
    ),
]
# None until resolved: a --run-dir alone brings its own env (rlcar_core.apps.run_identity), else rlcar.
RunEnv = Annotated[
    EnvName | None,
    typer.Option(
        "--env",
        help="Environment: rlcar (the JAX simulator) or carracing (CarRacing-v3); default: the env "
        "--run-dir was trained on, else rlcar.",
    ),
]

register_worldmodels(app)
register_dreamer(app)
register_serve(app)
register_runs(app)
register_ship(app)


AgentsOption = Annotated[
    list[AgentName] | None,
    typer.Option(
        "--agent",
        help="Who drives: heuristic, random, worldmodel or dreamer (default: the --run-dir's own agent, "
        "else heuristic). Repeat it to compare agents on the same tracks; learned agents without "
        "--run-dir use runs/dreamer or runs/worldmodels.",
    ),
]


def announce_default_run(agent: str, run_dir: Path | None) -> None:
    """One stderr line when a learned agent's run was picked by default, so the user knows which."""
    from rlcar_core.agents import agent_run_dir

    if run_dir is None:
        picked = agent_run_dir(agent, None)
        if picked is not None:
            stderr_console().print(f"run: {picked}", soft_wrap=True, highlight=False)


NO_BEST_YET = "no best checkpoint in "  # how CheckpointStore.resolve says no evaluation ranked one yet


def best_or_latest(context: typer.Context, run: Callable[[str], Any]) -> Any:
    """`run(checkpoint)` with the --checkpoint asked for. Left at its default (best) on a run that no
    evaluation has ranked yet (a short run), `latest` is what "the trained agent" means: it is used,
    with a note on stderr, instead of exit 2."""
    from rlcar_core.io.checkpoint import CheckpointNotFound

    asked = context.params["checkpoint"]
    source = context.get_parameter_source("checkpoint")
    try:
        return run(asked)
    except CheckpointNotFound as error:
        if asked != "best" or (source is not None and source.name == "COMMANDLINE"):
            raise
        if not str(error).startswith(NO_BEST_YET):
            raise
        where = str(error)[len(NO_BEST_YET) :].split(":")[0]
        stderr_console().print(
            f"note: no evaluation has ranked a best checkpoint in {where} yet; using latest",
            soft_wrap=True,
            highlight=False,
        )
        return run("latest")


@app.command("eval")
def eval_command(
    context: typer.Context,
    env: RunEnv = None,
    agent: AgentsOption = None,
    episodes: Annotated[
        int, typer.Option("--episodes", min=1, help="Episodes, one per held-out track.")
    ] = 10,
    seed: Seed = 0,
    max_steps: MaxSteps = 1000,
    num_envs: Annotated[int, typer.Option("--num-envs", min=1, help="Episodes run side by side.")] = 16,
    first_track: Annotated[
        int,
        typer.Option(
            "--first-track",
            min=0,
            help="Start at this held-out track (scores an agent on tracks its training evaluations never drove).",
        ),
    ] = 0,
    human: Annotated[
        Path | None,
        typer.Option("--human", help="A recorded `play --manual` run (file or run dir) to compare with."),
    ] = None,
    run_dir: RunDir = None,
    checkpoint: Checkpoint = "best",
    actions: Actions = None,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Evaluate agents on held-out tracks: mean ± std return, progress, laps, crashes."""
    with user_errors():
        from rlcar_core.apps.evaluate import EvalConfig, evaluate_agents, resolve_agents, with_recorded_env
        from rlcar_core.apps.human import load_human_run

        recorded = load_human_run(human) if human is not None else None
        config = app_config(EvalConfig, locals(), agent=None)  # evaluate_agents sets each agent
        config, names = resolve_agents(with_recorded_env(config, recorded), [a.value for a in agent or ()])
        for name in names:
            announce_default_run(name, run_dir)
        from rlcar_core.loop.stop import graceful_stop

        def evaluate_with(checkpoint: str) -> list[dict]:
            with graceful_stop() as stop, make_progress(show_progress(progress)) as bar:
                task = bar.add_task(f"eval on {config.env}", total=episodes * len(names), status=names[0])

                def advance(name: str, record) -> None:
                    bar.update(task, advance=1, status=name)
                    stop_here(stop)

                chosen = dataclasses.replace(config, checkpoint=checkpoint)
                return evaluate_agents(chosen, names, recorded, on_episode=advance)

        results = best_or_latest(context, evaluate_with)
    document = results[0] if len(results) == 1 else comparison_document(results)
    if json_out:
        emit_json(document)
    else:
        print_eval_table(results)


def app_config(config_class: type, parameters: dict[str, Any], **given: Any):
    """The app's config from the command's `parameters` (its `locals()`) named like the config's
    fields, choices as their values: each option is written once, as the command's parameter."""
    fields = {field.name for field in dataclasses.fields(config_class)}
    values = {
        name: value.value if isinstance(value, Enum) else value
        for name, value in parameters.items()
        if name in fields
    }
    return config_class(**{**values, **given})


def stop_here(stop) -> None:
    """A safe point (between JAX calls, on the main thread): Ctrl-C, noted by the flag, ends the
    command here with exit 130, never inside JAX."""
    if stop.requested:
        raise KeyboardInterrupt("interrupted")


def comparison_document(results: list[dict]) -> dict:
    """Several agents: what they share once, then one summary per agent (each as a single --agent gives)."""
    first = results[0]
    return {
        "env": first["env"],
        "episodes": first["episodes"],
        "seed": first["seed"],
        "agents": results,
    }


def print_eval_table(results: list[dict]) -> None:
    from rich.table import Table

    from rlcar_core.envs.names import EnvName

    first = results[0]
    step_seconds = EnvName.parse(first["env"]).step_seconds
    drivers = ", ".join(result["agent"] for result in results)
    table = Table(title=f"{drivers} on {first['env']} held-out tracks ({first['episodes']} episodes)")
    table.add_column("driver")
    for column in ("return", "progress", "laps", "crashes", "lap time"):
        table.add_column(column, justify="right")
    for result in results:
        lap_time = result["lap_time_mean"]
        table.add_row(
            result["agent"],
            f"{result['return_mean']:.1f} ± {result['return_std']:.1f}",
            f"{result['progress_mean']:.3f} ± {result['progress_std']:.3f}",
            f"{100 * result['lap_rate']:.0f} %",
            f"{100 * result['crash_rate']:.0f} %",
            f"{lap_time:.1f} s" if lap_time is not None else "-",
        )
    if "human" in first:
        rows = [("human (recorded)", first["human"]["recorded"])]
        rows += [(f"{r['agent']} on that track", r["human"]["agent_on_same_track"]) for r in results]
        table.add_section()
        for label, run in rows:
            # A lap time exists only for a lap: an unfinished run shows its duration nowhere.
            lap = run["lap_complete"]
            table.add_row(
                label,
                f"{run['episode_return']:.1f}",
                f"{run['progress']:.3f}",
                "yes" if lap else "no",
                "yes" if run["crashed"] else "no",
                f"{run['steps'] * step_seconds:.1f} s" if lap else "-",
            )
    print_result(table)


@app.command("play")
def play_command(
    manual: Annotated[
        bool,
        typer.Option(
            "--manual", help="Drive yourself (arrows/WASD); T hands the car to --agent (default heuristic)."
        ),
    ] = False,
    agent: Annotated[
        AgentName | None,
        typer.Option(
            "--agent",
            help="Agent that drives; T takes the wheel from it (default: a trained --run-dir's own agent).",
        ),
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No window (for CI): the agent, or nobody, drives.")
    ] = False,
    env: RunEnv = None,
    max_steps: MaxSteps = 1000,
    episodes: Annotated[int, typer.Option("--episodes", min=1, help="Episodes to run when --headless.")] = 1,
    track: Track = 0,
    seed: Seed = 0,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            parser=parse_run_dir,
            help="Where human runs are saved (default runs/play); a learned --agent loads from it too "
            "(default: that agent's own run).",
        ),
    ] = None,
    checkpoint: Checkpoint = "best",
    actions: Actions = None,
    camera: LookCamera = None,
    json_out: Json = False,
) -> None:
    """Drive a held-out track in a pygame window, or watch an agent drive. Every attempt you drive is saved for eval --human."""
    with user_errors():
        import os

        if headless:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        from rlcar_core.apps.play import PlayConfig, partner_for, play, resolve_play

        config = app_config(PlayConfig, locals())
        config.validate()
        config.check_display()  # before an agent loads: a window with no display fails late otherwise
        config = resolve_play(config)
        partner = partner_for(config)
        if partner is not None:
            announce_default_run(partner, run_dir)
        console = stdout_console()  # each episode's summary is a result: stdout, like eval's table

        def report(summary: dict) -> None:
            saved = f", saved {summary['saved']}" if "saved" in summary else ""
            console.print(
                f"{summary['ended']}: return {summary['episode_return']:.1f}, "
                f"progress {summary['progress']:.3f}, {summary['steps']} steps{saved}",
                soft_wrap=True,
                highlight=False,
            )

        from rlcar_core.loop.stop import graceful_stop

        with graceful_stop() as stop:
            result = play(config, on_episode=None if json_out else report, should_stop=lambda: stop.requested)
    if json_out:
        emit_json(result)


@app.command("export-video")
def export_video_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Video file to write: .mp4 or .gif.")],
    env: RunEnv = None,
    agent: AgentOption = None,
    max_steps: MaxSteps = 1000,
    track: Track = 0,
    seed: Seed = 0,
    fps: Annotated[int, typer.Option("--fps", min=0, help="Frames per second (0: the env's own rate).")] = 0,
    run_dir: RunDir = None,
    checkpoint: Checkpoint = "best",
    actions: Actions = None,
    json_out: Json = False,
    progress: Progress = None,
) -> None:
    """Render one episode of an agent on a held-out track, with a HUD and its camera, to mp4 or gif."""
    with user_errors():
        from rlcar_core.apps.export import ExportConfig, export_video, resolve_export

        config = app_config(ExportConfig, locals())
        config.validate()  # the output path too: fail before the episode is rendered
        config = resolve_export(config)
        announce_default_run(config.agent, run_dir)
        from rlcar_core.loop.stop import graceful_stop

        with graceful_stop() as stop, make_progress(show_progress(progress)) as bar:
            task = bar.add_task(f"export {config.agent}", total=max_steps, status=output.name)

            def advance(step: int) -> None:
                bar.update(task, completed=step)
                stop_here(stop)  # the video is written atomically: an interrupted export leaves none

            result = export_video(config, on_frame=advance)
            bar.update(task, total=result["steps"], completed=result["steps"])  # an early end fills the bar
    if json_out:
        emit_json(result)
    else:
        # CarRacing's zoom-in intro is driven but not filmed: say so, or --max-steps 200 writing 152
        # frames looks like a bug.
        intro = result.get("intro_steps") or 0
        why = f" (its first {intro} steps, CarRacing's zoom-in intro, are not filmed)" if intro else ""
        stdout_console().print(
            f"wrote {result['frames']} frames to {result['path']}{why}", soft_wrap=True, highlight=False
        )


def main() -> None:
    """Console entry point: usage errors become one line and exit code 2, like every other bad input.
    Ctrl-C or SIGTERM before a command's graceful stop is armed ends it with one line and exit 130
    (rlcar_cli.interrupts)."""
    interrupts.take_over()
    from typer.exceptions import Abort, TyperException

    from rlcar_cli.output import finish_cleanly, quiet_library_logs

    quiet_library_logs()
    command = typer.main.get_command(app)
    with finish_cleanly() as outcome:  # any failure outside a command's own boundary: one line too
        try:
            code = command.main(args=sys.argv[1:] or ["--help"], prog_name="rlcar", standalone_mode=False)
        except TyperException as error:  # bad options and values: Typer's usage errors carry exit code 2
            print_error(error.format_message())
            code = error.exit_code
        except Abort:
            print_stopped("aborted")  # Ctrl-C at a prompt: asked for, not an error
            code = 130
        outcome.code = code if isinstance(code, int) else 0
    interrupts.finished(outcome.code)
    sys.exit(outcome.code)


interrupts.imported()  # the last line of the import: importing the CLI leaves signal handlers as they were

if __name__ == "__main__":
    main()
