"""What a `train-dreamer` run trains with: the options given now, or those of the run being resumed.

A new run resolves defaults (which depend on the accelerator) and records the result in
`config.json`; a resumed run starts from that record, so rerunning the same command continues the
same experiment. Options that would change the model's shapes or the replay's layout cannot change
on resume; anything else (learning rates, train ratio, episode budget) can.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from rlcar_core.dreamer.config import PRESETS, DreamerConfig
from rlcar_core.dreamer.overrides import architecture_changes, parse_overrides
from rlcar_core.envs.factory import check_env_request
from rlcar_core.envs.spaces import observation_space
from rlcar_core.errors import RlcarError
from rlcar_core.sim.camera import CAMERA_SIZE
from rlcar_core.sim.params import DEFAULT_RAY_ANGLES_DEG

# A CPU trains the tiny model; an accelerator trains the paper-like small model at the paper's train
# ratio (replayed steps per env step) and learning rates.
CPU_SIZE = "tiny"
ACCELERATOR_SIZE = "small"
CPU_TRAIN_RATIO = 64.0
ACCELERATOR_TRAIN_RATIO = 512.0
# What makes 100k env steps fit in ~30 minutes on two CPU cores and still learn: short 8 x 16 batches
# (imagination from every replayed step dominates the update, and small batches cost less per
# replayed step) give 50k updates at ratio 64, and learning rates above the paper's make up for an
# update budget ten times smaller than at ratio 512.
CPU_OVERRIDES = {
    "batch_size": 8,
    "batch_length": 16,
    "model_lr": 4e-4,
    "actor_lr": 4e-4,
    "critic_lr": 4e-4,
}
# On any hardware: RLCar's episodes end in a crash far more often than by time or a lap, and a crash is
# a rare step (well under 1 % of replay) that a small model gives a 20-50 % chance rather than a sure
# one. Thresholding the continue head at 0.5 (the paper) then imagines almost no crash at all, so
# imagined returns use its probability instead (see DreamerConfig.imagined_continue).
TASK_OVERRIDES = {"imagined_continue": "prob"}
DEFAULT_NUM_ENVS = 8
DEFAULT_MAX_STEPS = 1000
DEFAULT_PREFILL_STEPS = 2500
# Who drives while the replay is prefilled. "brownian": smooth random driving that holds the gas for
# a while, so the first data already shows what speed and steering do (a zero-mean actor brakes half
# the time and barely moves); "random": uniform random actions; "actor": the untrained actor itself.
PREFILL_POLICIES = ("brownian", "random", "actor")
DEFAULT_PREFILL_POLICY = "brownian"


def check_prefill_policy(name: str | None) -> None:
    if name is not None and name not in PREFILL_POLICIES:
        raise RlcarError(f"unknown prefill policy {name!r}; choose one of {', '.join(PREFILL_POLICIES)}")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Fixed for the life of a run (changing them needs a new run directory) except where noted."""

    env: str
    obs: str
    size: str
    num_envs: int
    num_tracks: int | None
    max_steps: int  # may change on resume
    seed: int  # may change on resume
    prefill_steps: int  # may change on resume
    prefill_policy: str  # may change on resume
    model: DreamerConfig  # architecture fixed; optimiser and loss settings may change on resume

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        return cls(**{**values, "model": DreamerConfig.from_dict(values["model"])})


@dataclasses.dataclass(frozen=True)
class RequestedSettings:
    """Options as given on the command line; None means "not given"."""

    env: str | None = None
    obs: str | None = None
    size: str | None = None
    num_envs: int | None = None
    num_tracks: int | None = None
    max_steps: int | None = None
    train_ratio: float | None = None
    seed: int | None = None
    prefill_steps: int | None = None
    prefill_policy: str | None = None
    overrides: tuple[str, ...] = ()  # --set key=value


def on_accelerator() -> bool:
    return jax.default_backend() != "cpu"


def observation_shape(env: str, obs: str) -> tuple[int, ...]:
    """The shape of one observation the model reads, known without building the env."""
    if env == "carracing":
        return (CAMERA_SIZE, CAMERA_SIZE, 3)
    return tuple(observation_space(obs, len(DEFAULT_RAY_ANGLES_DEG)).shape)


def new_run_settings(requested: RequestedSettings) -> RunSettings:
    """The requested options with every default filled in."""
    env = requested.env or "rlcar"
    obs = requested.obs or ("pixels" if env == "carracing" else "sensors")
    check_env_request(env, obs)
    if requested.num_tracks is not None and env != "rlcar":
        raise RlcarError("--num-tracks applies to RLCar only; CarRacing-v3 makes a new track every episode")
    accelerated = on_accelerator()
    size = requested.size or (ACCELERATOR_SIZE if accelerated else CPU_SIZE)
    if size not in PRESETS:
        raise RlcarError(f"unknown --size {size!r}; choose one of {', '.join(PRESETS)}")
    defaults: dict[str, Any] = {
        "train_ratio": ACCELERATOR_TRAIN_RATIO if accelerated else CPU_TRAIN_RATIO,
        **({} if accelerated else CPU_OVERRIDES),
        **TASK_OVERRIDES,
    }
    overrides = parse_overrides(requested.overrides)
    if requested.train_ratio is not None:
        overrides["train_ratio"] = requested.train_ratio
    model = DreamerConfig.preset(
        size, obs_kind=obs, obs_shape=observation_shape(env, obs), **{**defaults, **overrides}
    )
    return RunSettings(
        env=env,
        obs=obs,
        size=size,
        num_envs=requested.num_envs or DEFAULT_NUM_ENVS,
        num_tracks=requested.num_tracks,
        max_steps=requested.max_steps or DEFAULT_MAX_STEPS,
        seed=requested.seed or 0,
        prefill_steps=DEFAULT_PREFILL_STEPS if requested.prefill_steps is None else requested.prefill_steps,
        prefill_policy=requested.prefill_policy or DEFAULT_PREFILL_POLICY,
        model=model,
    )


def resumed_run_settings(saved: RunSettings, requested: RequestedSettings, run_dir) -> RunSettings:
    """`saved` with the options that may change applied; one clear error for those that may not."""
    fixed = {
        "env": ("--env", requested.env, saved.env),
        "obs": ("--obs", requested.obs, saved.obs),
        "size": ("--size", requested.size, saved.size),
        "num_envs": ("--num-envs", requested.num_envs, saved.num_envs),
        "num_tracks": ("--num-tracks", requested.num_tracks, saved.num_tracks),
    }
    for option, asked, existing in fixed.values():
        if asked is not None and asked != existing:
            raise RlcarError(
                f"{run_dir} was trained with {option} {existing} (you asked for {asked}); "
                "drop the option to resume it, or use a new --run-dir"
            )
    overrides = parse_overrides(requested.overrides)
    if requested.train_ratio is not None:
        overrides["train_ratio"] = requested.train_ratio
    model = dataclasses.replace(saved.model, **overrides)
    changes = architecture_changes(saved.model, model)
    if changes:
        raise RlcarError(
            f"{run_dir} holds a model with other shapes ({'; '.join(changes)}); "
            "drop those --set options to resume it, or use a new --run-dir"
        )
    return dataclasses.replace(
        saved,
        max_steps=requested.max_steps or saved.max_steps,
        seed=saved.seed if requested.seed is None else requested.seed,
        prefill_steps=saved.prefill_steps if requested.prefill_steps is None else requested.prefill_steps,
        prefill_policy=requested.prefill_policy or saved.prefill_policy,
        model=model,
    )
