"""Option types shared by every command, declared once so names and help stay consistent."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rlcar_core.envs.camera_option import CAMERA_NAMES  # JAX-free: the presets' names
from rlcar_core.envs.names import EnvName  # the core's own enum: --env's choices are its values


class ActionChoice(str, Enum):  # rlcar_core.dreamer.config.ACTION_CHOICES
    sample = "sample"
    mode = "mode"
    mean = "mean"


class AgentName(str, Enum):
    heuristic = "heuristic"
    random = "random"
    worldmodel = "worldmodel"
    dreamer = "dreamer"


Env = Annotated[
    EnvName, typer.Option("--env", help="Environment: rlcar (the JAX simulator) or carracing (CarRacing-v3).")
]
Seed = Annotated[
    int, typer.Option("--seed", min=0, help="Seed for every random choice; same seed, same result.")
]


def parse_run_dir(value: str | Path) -> Path:
    """--run-dir as a Path, refusing an empty one: Path('') is the current folder, so `--run-dir ''` (an
    unset shell variable) would otherwise write config.json, data/ and checkpoints/ right there."""
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("an empty path; name a folder, or leave the option out")
    return Path(value)


RunDir = Annotated[
    Path | None,
    typer.Option(
        "--run-dir", parser=parse_run_dir, help="Run directory (config, metrics, data, checkpoints)."
    ),
]
Json = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")
]
Progress = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Force progress bars on or off (default: on a terminal)."),
]
MaxSteps = Annotated[int, typer.Option("--max-steps", min=1, help="Steps per episode at most.")]
Track = Annotated[int, typer.Option("--track", min=0, help="Held-out evaluation track number to drive on.")]
Checkpoint = Annotated[
    str,
    typer.Option(
        "--checkpoint", help="Learned agents: checkpoint in --run-dir: best, latest, epN, or a path."
    ),
]
# Training commands take --camera from their config (rlcar_core.envs.camera_option); a trained agent
# drives with its run's camera, so only a command that can run without one takes this.
LookCamera = Annotated[
    str | None,
    typer.Option(
        "--camera",
        metavar="NAME",
        help=f"RLCar with no trained agent: the camera preset to look through, {', '.join(CAMERA_NAMES)} "
        "(default today). A trained agent brings its run's.",
    ),
]
Actions = Annotated[
    ActionChoice | None,
    typer.Option(
        "--actions",
        help="DreamerV3 agents: sample the actor, as DreamerV3 evaluates (default; repeatable under "
        "--seed), or take its mode.",
    ),
]
