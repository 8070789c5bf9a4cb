"""`TrainDreamerConfig`: every setting of a `train-dreamer` run besides the model, with its default
and its help, in one place (cleanrl's `Args`). The CLI builds its options from these fields.

Defaults that depend on the hardware are `None` here and resolved once, in `resolve`: a CPU trains
the tiny model at train ratio 64 with 8 x 16 batches and learning rates 4e-4; an accelerator trains
the paper-like small model at ratio 512 with 16 x 64 batches and the paper's learning rates.

A run records its resolved config in `config.json`; rerunning the command resumes with it, applying
only the options given again (`settle`). Options that fix the model's shapes or the replay's layout
(`FIXED_ON_RESUME`, and shape-defining `--set` fields) cannot change on resume. On RLCar the run also
records the camera its cars film with (`--camera`, and the whole spec under config.json's "camera"),
so evaluating, playing, dreaming and filming the run use the camera it was trained on.
"""

import dataclasses
import math
import typing
from typing import Any

from rlcar_core.dreamer.config import (
    ACTION_CHOICES,
    DEFAULT_ACTIONS,
    LEGACY_LOOP_FIELDS,
    PRESETS,
    DreamerConfig,
)
from rlcar_core.dreamer.overrides import architecture_changes, parse_overrides
from rlcar_core.envs.backends import CARRACING_BACKENDS, default_action_repeat
from rlcar_core.envs.camera_option import (
    camera_option,
    check_camera_request,
    default_camera,
    unrecorded_camera,
)
from rlcar_core.envs.names import ENV_NAMES, EnvName
from rlcar_core.errors import RlcarError, require_at_least
from rlcar_core.loop.options import cli_flag, field_named, option

# The CLI reads this module's dataclass to build its options, so everything that pulls in JAX or the
# simulator is imported inside the functions that need it.

ENVS = ENV_NAMES
OBS_KINDS = ("sensors", "pixels")
# Who drives while the replay is prefilled. "brownian": smooth random driving that holds the gas for
# a while, so the first data already shows what speed and steering do (a zero-mean actor brakes half
# the time and barely moves); "random": uniform random actions; "actor": the untrained actor itself.
PREFILL_POLICIES = ("brownian", "random", "actor")


@dataclasses.dataclass(frozen=True)
class TrainDreamerConfig:
    """How `rlcar train-dreamer` collects, trains, evaluates and checkpoints. None: resolved by `resolve`."""

    episodes: int = option(500, "Total finished episodes; a rerun resumes up to this count.", low=1)
    env_steps: int | None = option(None, "Also stop at this many env steps (summed over cars).", low=1)
    env: str = option(EnvName.RLCAR.value, "Environment: the JAX simulator or CarRacing-v3.", choices=ENVS)
    obs: str | None = option(
        None,
        "Observations (default: sensors on rlcar, pixels on carracing; RLCar's pixels are --camera's frames).",
        choices=OBS_KINDS,
    )
    size: str | None = option(
        None,
        "Model size preset (default: tiny on a CPU, small on an accelerator; mid: a CPU's wider model).",
        choices=tuple(PRESETS),
    )
    train_ratio: float | None = option(
        None, "Replayed steps per env step (default: 64 on a CPU, 512 on an accelerator).", low=0.0
    )
    batch_size: int | None = option(
        None, "Sequences per update (default: 8 on a CPU, 16 on an accelerator).", low=1
    )
    batch_length: int | None = option(
        None, "Steps per replayed sequence (default: 16 on a CPU, 64 on an accelerator).", low=1
    )
    replay_capacity: int | None = option(
        None, "Replay size in steps (default: 100,000 for tiny, 1,000,000 otherwise).", low=1
    )
    max_steps: int = option(1000, "Env frames per episode at most.", low=1)
    carracing_backend: str = option(
        "gymnasium",
        "Who simulates CarRacing-v3 for collection: Gymnasium, or EnvPool (the envpool extra; other "
        "tracks per seed). Evaluation always uses Gymnasium's.",
        choices=CARRACING_BACKENDS,
    )
    action_repeat: int | None = option(
        None,
        "Env frames each action lasts; env steps count frames (default: 2 on carracing, as in the "
        "Dreamer family; 1 on rlcar).",
        low=1,
    )
    patience: int = option(
        0,
        "CarRacing-v3 (Gymnasium's backend): end a training episode after this many frames in a row "
        "without reward, as World Models' --patience; 0: never. Evaluations play whole episodes.",
        low=0,
    )
    num_envs: int = option(8, "Cars collecting side by side.", low=1)
    overlap: bool = option(
        False,
        "Train while the cars step (CarRacing-v3's worker-process cars, one process): the same "
        "updates on the same data as without, the env's stepping hidden behind them.",
    )
    devices: int | None = option(
        None,
        "Local devices the batch and the cars are split over (default: all of this process's).",
        low=1,
    )
    num_tracks: int | None = option(None, "RLCar training tracks (default: the standard 32).", low=1)
    camera: str | None = camera_option()
    prefill_steps: int = option(2500, "Env steps collected before the first update.", low=0)
    prefill_policy: str = option("brownian", "Who drives during prefill.", choices=PREFILL_POLICIES)
    prior_data: str | None = option(
        None,
        "A `rlcar collect` dataset (or its run) whose episodes start a new run's replay, e.g. heuristic "
        "laps that pass the obstacles; they count as no env steps.",
    )
    checkpoint_every: int = option(10, "Save a checkpoint every N episodes.", low=1)
    checkpoint_every_steps: int | None = option(
        None,
        "Save a checkpoint every N env steps instead (for runs whose episodes --patience shortens).",
        low=1,
    )
    eval_every: int = option(20, "Evaluate on held-out tracks every N episodes.", low=1)
    eval_every_steps: int | None = option(
        None, "Evaluate every N env steps instead (learning curves).", low=1
    )
    eval_episodes: int = option(10, "Held-out tracks per evaluation.", low=1)
    eval_actions: str = option(
        DEFAULT_ACTIONS,
        "How evaluations pick the actor's actions: sample it (as DreamerV3 evaluates), take its mode, "
        "or its mean clipped sample (deterministic).",
        choices=ACTION_CHOICES,
    )
    log_every: int = option(10, "Updates per logged record of averaged losses.", low=1)
    seed: int = option(0, "Seed for every random choice; same seed, same result.", low=0)
    overrides: tuple[str, ...] = option(
        (), "Override a DreamerConfig field, e.g. --set actor_entropy=1e-3 (repeatable).", flags=("--set",)
    )

    def validate(self) -> None:
        """One clear line for any value out of range (the CLI checks most of them already)."""
        for field in dataclasses.fields(self):
            value, meta = getattr(self, field.name), field.metadata
            flag = cli_flag(field)
            if value is None or field.name == "overrides":
                continue
            if meta["choices"] and value not in meta["choices"]:
                raise RlcarError(f"unknown {flag} {value!r}; choose one of {', '.join(meta['choices'])}")
            if isinstance(value, float) and not math.isfinite(value):
                raise RlcarError(f"{flag} must be a finite number, got {value}")
            if meta["low"] is not None:
                if field.name == "train_ratio" and not value > 0:
                    raise RlcarError(f"--train-ratio must be a positive number, got {value}")
                require_at_least(flag, value, meta["low"])
        if self.num_tracks is not None and not EnvName.parse(self.env).has_track_bank:
            raise RlcarError(
                "--num-tracks applies to RLCar only; CarRacing-v3 makes a new track every episode"
            )
        if self.patience and not (
            EnvName.parse(self.env) is EnvName.CARRACING and self.carracing_backend == "gymnasium"
        ):
            raise RlcarError(
                "--patience ends CarRacing-v3 episodes on Gymnasium's backend only (its cars reset "
                "one by one); drop it, or use --env carracing --carracing-backend gymnasium"
            )
        from rlcar_core.envs.factory import check_backend_request, check_env_request

        env = check_env_request(self.env, self.obs or default_obs(self.env))
        check_backend_request(env, self.carracing_backend, self.action_repeat or default_action_repeat(env))
        check_camera_request(self.camera, self.env)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainDreamerConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        return cls(**{**values, "overrides": tuple(values.get("overrides", ()))})


def field_types() -> dict[str, Any]:
    """Each field's type (the CLI builds its options from them)."""
    return typing.get_type_hints(TrainDreamerConfig)


# -- hardware-dependent defaults, resolved in one place ---------------------------------------------

# action_repeat: a replay step and an env step (a frame) mean something else under another repeat.
# camera: the frames (and the world) the model and its replay were trained on.
# The CarRacing backend may change (both count frames alike; only the tracks per seed differ).
FIXED_ON_RESUME = (
    "env", "obs", "size", "num_envs", "num_tracks", "replay_capacity", "action_repeat", "camera",
)  # fmt: skip
# The sizes meant for a CPU, whose replay holds 100k steps (a million 64 x 64 frames would not fit in RAM).
CPU_SIZES = ("tiny", "mid")
CPU_DEFAULTS = {"size": "tiny", "train_ratio": 64.0, "batch_size": 8, "batch_length": 16}
ACCELERATOR_DEFAULTS = {"size": "small", "train_ratio": 512.0, "batch_size": 16, "batch_length": 64}
# What makes 100k env steps fit in ~30 minutes on two CPU cores and still learn: short 8 x 16 batches
# (imagination from every replayed step dominates the update, and small batches cost less per
# replayed step) give 50k updates at ratio 64, and learning rates above the paper's make up for an
# update budget ten times smaller than at ratio 512.
CPU_MODEL_DEFAULTS = {"model_lr": 4e-4, "actor_lr": 4e-4, "critic_lr": 4e-4}
# On any hardware: RLCar's episodes end in a crash far more often than by time or a lap, and a crash is
# a rare step (well under 1 % of replay) that a small model gives a 20-50 % chance rather than a sure
# one. Thresholding the continue head at 0.5 (the paper) then imagines almost no crash at all, so
# imagined returns use its probability instead (see DreamerConfig.imagined_continue).
TASK_MODEL_DEFAULTS = {"imagined_continue": "prob"}


def on_accelerator() -> bool:
    import jax

    return jax.default_backend() != "cpu"


def default_obs(env: str) -> str:
    return EnvName.parse(env).default_obs


def observation_shape(env: str, obs: str, camera_size: int | None = None) -> tuple[int, ...]:
    """The shape of one observation the model reads, known without building the env; `camera_size`:
    RLCar's frame side (None: today's 64)."""
    from rlcar_core.envs.spaces import observation_space
    from rlcar_core.sim.camera import CAMERA_SIZE
    from rlcar_core.sim.params import DEFAULT_RAY_ANGLES_DEG

    if not EnvName.parse(env).has_sensors:
        return (CAMERA_SIZE, CAMERA_SIZE, 3)
    size = camera_size or CAMERA_SIZE
    return tuple(observation_space(obs, len(DEFAULT_RAY_ANGLES_DEG), camera_size=size).shape)


def frame_model_defaults(obs_shape: tuple[int, ...]) -> dict[str, Any]:
    """The CNN halves a frame down to `cnn_min_resolution` (4 by default), so a side that is no power
    of two (a 96-pixel camera) ends at its 16th instead: 96 -> 6 x 6."""
    side = obs_shape[0]
    if len(obs_shape) != 3 or side & (side - 1) == 0:
        return {}
    return {"cnn_min_resolution": side // 16}


def camera_of(config: TrainDreamerConfig):
    """The `CameraSpec` that --camera names (None on CarRacing-v3, or before `resolve`)."""
    if config.camera is None:
        return None
    from rlcar_core.sim.camera_spec import parse_camera  # here: the simulator imports JAX

    return parse_camera(config.camera)


def resolve(config: TrainDreamerConfig) -> tuple[TrainDreamerConfig, DreamerConfig]:
    """A new run's config with every None filled in for this hardware, and the model it trains."""
    config.validate()
    accelerated = on_accelerator()
    hardware = ACCELERATOR_DEFAULTS if accelerated else CPU_DEFAULTS
    filled = {name: value for name, value in hardware.items() if getattr(config, name) is None}
    obs = config.obs or default_obs(config.env)
    config = dataclasses.replace(
        config,
        obs=obs,
        action_repeat=config.action_repeat or default_action_repeat(config.env),
        camera=config.camera or default_camera(config.env, obs),
        **filled,
    )
    if config.replay_capacity is None:
        capacity = 100_000 if config.size in CPU_SIZES else 1_000_000
        config = dataclasses.replace(config, replay_capacity=capacity)
    camera = camera_of(config)
    obs_shape = observation_shape(config.env, config.obs, camera.size if camera else None)
    model_defaults = {
        **({} if accelerated else CPU_MODEL_DEFAULTS),
        **TASK_MODEL_DEFAULTS,
        **frame_model_defaults(obs_shape),
    }
    model = DreamerConfig.preset(
        config.size,
        obs_kind=config.obs,
        obs_shape=obs_shape,
        **{**model_defaults, **parse_overrides(config.overrides)},
    )
    return config, model


def resume(
    saved: TrainDreamerConfig, model: DreamerConfig, given: dict[str, Any], run_dir
) -> tuple[TrainDreamerConfig, DreamerConfig]:
    """The saved run's config and model with the options given now applied; one clear line for those
    that cannot change."""
    if saved.action_repeat is None:  # a run from before the option stepped every frame
        saved = dataclasses.replace(saved, action_repeat=1)
    if saved.camera is None:  # a run from before the option filmed with today's camera (RLCar)
        saved = dataclasses.replace(saved, camera=unrecorded_camera(saved.env))
    for name in FIXED_ON_RESUME:
        if given.get(name) is not None and given[name] != getattr(saved, name):
            flag = cli_flag(field_named(TrainDreamerConfig, name))
            raise RlcarError(
                f"{run_dir} was trained with {flag} {getattr(saved, name)} (you asked for {given[name]}); "
                "drop the option to resume it, or use a new --run-dir"
            )
    config = dataclasses.replace(saved, **{k: v for k, v in given.items() if v is not None})
    config.validate()
    requested = dataclasses.replace(model, **parse_overrides(config.overrides))
    changes = architecture_changes(model, requested)
    if changes:
        raise RlcarError(
            f"{run_dir} holds a model with other shapes ({'; '.join(changes)}); "
            "drop those --set options to resume it, or use a new --run-dir"
        )
    return config, requested


def from_saved_section(section: dict[str, Any]) -> tuple[TrainDreamerConfig, DreamerConfig]:
    """config.json's "dreamer" section -> (config, model); also reads runs made before the config split."""
    if "train" in section:
        return TrainDreamerConfig.from_dict(section["train"]), DreamerConfig.from_dict(section["model"])
    settings = dict(section["settings"])  # the older layout: loop settings inside the model config
    model = dict(settings.pop("model"))
    loop = {name: model[name] for name in LEGACY_LOOP_FIELDS if name in model}
    config = TrainDreamerConfig.from_dict({**settings, **loop, "episodes": section.get("episodes", 500)})
    return config, DreamerConfig.from_dict(model)


def saved_section(config: TrainDreamerConfig, model: DreamerConfig) -> dict[str, Any]:
    return {"train": config.to_dict(), "model": model.to_dict()}
