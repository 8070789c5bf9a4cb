"""What a run directory is: which agent it trained, on which env, from which observations; and the one
place where eval, play, export-video and dream turn `--run-dir` (with whatever `--agent`/`--env` were
given) into the agent and env to use.

`rlcar eval --run-dir pretrained/dreamer-carracing-pixels` then needs nothing else: the run's own
config.json (and a shipped agent's agent.json card) says what it is. An option that contradicts the
run is refused here, as one line naming both, before any checkpoint is restored, instead of failing
later on a shape mismatch.

Read as plain files only (config.json, the card, the checkpoint step folders), never through JAX or
orbax, so it costs nothing next to the restore that follows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlcar_core.agents import is_learned
from rlcar_core.apps.pretrained import read_card
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint_files import step_folders
from rlcar_core.io.runs import CONFIG_FILE

# The checkpoint folders of a World Models run, stage by stage.
_WORLD_MODEL_MODELS = ("vae", "mdnrnn", "controller")
_EXPECTED = (
    f"{CONFIG_FILE} and checkpoints/dreamer/<step> (rlcar train-dreamer) "
    "or checkpoints/controller/<step> (the World Models commands)"
)


@dataclass(frozen=True)
class RunIdentity:
    path: Path
    kind: str  # the run's kind: "dreamer" or "worldmodels" (as `rlcar runs` shows it)
    agent: str | None  # the learned agent that drives from it ("dreamer", "worldmodel"), None: none yet
    env: str | None  # None when config.json does not say (runs from before it was recorded)
    obs: str | None

    @property
    def trained_on(self) -> str:
        """`carracing pixels`, for messages."""
        return " ".join(part for part in (self.env, self.obs) if part) or "an env it does not record"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _section(document: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document if isinstance(document, dict) else {}


def _first_text(*values: Any) -> str | None:
    return next((value for value in values if isinstance(value, str) and value), None)


def _dreamer_env_obs(config: dict[str, Any]) -> tuple[str | None, str | None]:
    # config.json's "dreamer" section: {"train": {...}, "model": {...}}, or the older {"settings": ...}.
    train, model = _section(config, "dreamer", "train"), _section(config, "dreamer", "model")
    settings = _section(config, "dreamer", "settings")
    env = _first_text(train.get("env"), settings.get("env"), config.get("env"))
    obs = _first_text(
        model.get("obs_kind"),
        train.get("obs"),
        _section(settings, "model").get("obs_kind"),
        settings.get("obs"),
    )
    return env, obs


def _worldmodels_env(config: dict[str, Any]) -> str | None:
    # `collect` writes the env at the top; each model's section records what it was trained on.
    sections = ("controller", "mdnrnn", "vae", "collect")
    return _first_text(config.get("env"), *(_section(config, name).get("env") for name in sections))


def _has_steps(run: Path, model: str) -> bool:
    return bool(step_folders(run / "checkpoints" / model))


_STAGES = (("vae", "VAE", "train-vae"), ("mdnrnn", "MDN-RNN", "train-rnn"), ("controller", "controller", "train-controller"))  # fmt: skip


def next_world_models_stage(run_dir: str | Path, upto: str = "controller") -> str:
    """'run `rlcar <stage> --run-dir R` first' for the earliest World Models stage (up to `upto`) that has
    no checkpoint in the run, or '' when all have one: each stage trains on the one before, so naming
    a later one (train-controller on a run with only a VAE) would send the user to a second error."""
    path = Path(run_dir)
    if not (path / "data" / "manifest.json").is_file() and not _has_steps(path, "vae"):
        return f"run `rlcar collect --run-dir {path}` first"
    for model, label, command in _STAGES:
        if not _has_steps(path, model):
            return f"no {label} checkpoint yet: run `rlcar {command} --run-dir {path}` first"
        if model == upto:
            break
    return ""


def _is_worldmodels_run(run: Path, config: dict[str, Any]) -> bool:
    """A World Models run at any stage: collected data, a section of config.json, a checkpoint folder."""
    return (
        (run / "data" / "manifest.json").is_file()
        or any((run / "checkpoints" / model).is_dir() for model in _WORLD_MODEL_MODELS)
        or any(name in config for name in ("collect", *_WORLD_MODEL_MODELS))
    )


def identify_run(run_dir: str | os.PathLike, *, for_dream: bool = False) -> RunIdentity:
    """What the trained run at `run_dir` is. RlcarError (one line, saying what a run holds) when it is
    none: no folder, no config.json, or no checkpoint an agent acts from.

    `for_dream`: any DreamerV3 run with a checkpoint, or any World Models run whatever its stage (the
    World Models dream then names the stage still to run, and `dream --manual` needs no controller)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RlcarError(f"no run directory at {path}: expected a folder with {_EXPECTED}")
    config = _read_json(path / CONFIG_FILE)
    if _has_steps(path, "dreamer") and (for_dream or (path / CONFIG_FILE).is_file()):
        env, obs = _dreamer_env_obs(config)
        return _identity(path, "dreamer", "dreamer", env, obs)
    has_controller = _has_steps(path, "controller")
    if (for_dream and _is_worldmodels_run(path, config)) or (
        has_controller and (path / CONFIG_FILE).is_file()
    ):
        # V reads frames whatever the env offers: a World Models agent always acts on pixels.
        return _identity(
            path, "worldmodels", "worldmodel" if has_controller else None, _worldmodels_env(config), "pixels"
        )
    if not (path / CONFIG_FILE).is_file():
        raise RlcarError(f"{path} is not a trained run: it has no {CONFIG_FILE}; expected {_EXPECTED}")
    if _is_worldmodels_run(path, config):
        raise RlcarError(
            f"{path} is a World Models run without a trained controller (checkpoints/controller/<step>): "
            f"{next_world_models_stage(path)}"
        )
    raise RlcarError(f"{path} is not a trained run: it has no checkpoints; expected {_EXPECTED}")


def _identity(path: Path, kind: str, agent: str | None, env: str | None, obs: str | None) -> RunIdentity:
    # A shipped agent's card states env and obs outright.
    card = read_card(path) or {}
    return RunIdentity(
        path, kind, agent, _first_text(card.get("env"), env), _first_text(card.get("obs"), obs)
    )


def _trained_run_or_none(run_dir: Path) -> RunIdentity | None:
    try:
        return identify_run(run_dir)
    except RlcarError:
        return None


def _check_agrees(identity: RunIdentity, agent: str | None, env: str | None, obs: str | None) -> None:
    where = f"{identity.path} was trained"
    if agent is not None and is_learned(agent) and agent != identity.agent:
        raise RlcarError(
            f"{identity.path} holds a {identity.agent} agent ({identity.trained_on}), not {agent}; "
            f"drop --agent {agent}"
        )
    if env is not None and identity.env is not None and EnvName.parse(env) != EnvName.parse(identity.env):
        raise RlcarError(f"{where} on {identity.trained_on}; drop --env {env}")
    if obs is not None and identity.obs is not None and obs != identity.obs:
        raise RlcarError(f"{where} on {identity.trained_on}; drop --obs {obs}")


@dataclass(frozen=True)
class Driver:
    """Who drives and where: the resolved `--agent` and `--env`."""

    agent: str | None  # None only where the caller has no default driver (play: the person drives)
    env: str
    obs: str | None  # the run's observation kind, when a run was read
    run: RunIdentity | None  # the run read, when one was


def resolve_driver(
    agent: str | None,
    env: str | None,
    run_dir: str | os.PathLike | None,
    *,
    obs: str | None = None,
    default_agent: str | None = "heuristic",
    run_required: bool = True,
) -> Driver:
    """The agent and env a command uses, from what was given (None: not given) and `run_dir`.

    - No `run_dir`: `agent` (else `default_agent`) on `env` (else RLCar): what the commands always did.
    - `run_dir` and no `agent`: the run's own agent, on the run's env; an `env`/`obs` given that
      contradicts the run is refused (one line naming both). A `run_dir` that is no trained run is refused
      too, unless `run_required` is False (play: `--run-dir` is also where a person's runs are saved),
      which falls back to the first case.
    - `run_dir` and a learned `agent`: the same checks, and `env` defaults to the run's. A folder that is
      no recognisable run is left to the agent's loader, which says what it misses, as before.
    - A built-in `agent` (heuristic, random) reads no run: the first case.
    """
    if run_dir is None or (agent is not None and not is_learned(agent)):
        return Driver(agent or default_agent, str(EnvName.parse(env or EnvName.RLCAR)), obs, None)
    run_dir = Path(run_dir)
    identity = identify_run(run_dir) if agent is None and run_required else _trained_run_or_none(run_dir)
    if identity is None:
        return Driver(agent or default_agent, str(EnvName.parse(env or EnvName.RLCAR)), obs, None)
    _check_agrees(identity, agent, env, obs)
    resolved_env = env or identity.env or EnvName.RLCAR
    return Driver(agent or identity.agent, str(EnvName.parse(resolved_env)), identity.obs or obs, identity)


__all__ = ["Driver", "RunIdentity", "identify_run", "resolve_driver"]
