"""Every World Models setting, written once: the model configs (V, M, C) and one config per command.

Model configs hold what the models and their `update` functions read; they round-trip through plain
dicts so they live in `config.json` and inside checkpoints. Command configs (cleanrl's `Args` style)
hold each command's options: a field's default and its `--help` text sit on one line (`option(...)`),
the CLI derives its options from these fields, and `validate()` is the one place each value is checked.

Defaults follow Ha & Schmidhuber (2018) for CarRacing where the paper gives one, scaled to CPU budgets
where it does not fit (the controller search). Nothing here imports JAX, so `rlcar --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, TypeVar

from rlcar_core.dreamer.config import ACTION_CHOICES  # plain Python, no JAX
from rlcar_core.envs.camera_option import camera_option, check_camera_request
from rlcar_core.envs.names import ENV_NAMES, EnvName
from rlcar_core.errors import RlcarError
from rlcar_core.loop.options import cli_flag, field_named, option

_Config = TypeVar("_Config")

# Fields older checkpoints saved in the model configs, which now belong to the command configs.
_LOOP_FIELDS = frozenset(
    {
        "batch_size",
        "sequence_length",
        "population_size",
        "initial_sigma",
        "generations",
        "rollouts_per_candidate",
        "dream_horizon",
        "dream_temperature",
    }
)


def _config_from_dict(config_class: type[_Config], data: dict[str, Any]) -> _Config:
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - known - _LOOP_FIELDS)
    if unknown:
        raise RlcarError(
            f"unknown {config_class.__name__} field(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    # JSON has no tuples; sequence-valued fields come back as lists and must be frozen again.
    values = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in data.items()
        if name in known
    }
    return config_class(**values)


class _DictConfig:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return _config_from_dict(cls, data)


# -- models ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VAEConfig(_DictConfig):
    """ConvVAE (V): 64x64x3 frames <-> latent z."""

    z_dim: int = 32
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    decoder_channels: tuple[int, ...] = (128, 64, 32)
    # The paper stops pushing KL below this many nats per latent dimension, so the posterior keeps
    # enough information to reconstruct the road instead of collapsing onto the prior.
    kl_tolerance: float = 0.5
    learning_rate: float = 1e-4


@dataclasses.dataclass(frozen=True)
class MDNRNNConfig(_DictConfig):
    """MDN-RNN (M): predicts p(z_{t+1} | z_t, a_t, h_t), the reward and whether the episode ends."""

    z_dim: int = 32
    action_dim: int = 3
    hidden_size: int = 256
    num_mixtures: int = 5
    learning_rate: float = 1e-3
    grad_clip_norm: float = 1.0
    reward_loss_weight: float = 1.0
    done_loss_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class ControllerConfig(_DictConfig):
    """Controller (C) on [z, h]: its shape is all there is; the search is TrainControllerConfig."""

    z_dim: int = 32
    hidden_size: int = 256  # the MDN-RNN's LSTM units: h's size, not a layer of C
    # 0: the paper's linear C; N: one tanh layer of N units before the action. Checkpoints from before
    # this field load as linear (the dataclass default fills it in).
    hidden_units: int = 0
    # False: C on z alone, the paper's ablation of M (V's code without the LSTM's memory). Checkpoints
    # from before this field load as [z, h].
    sees_hidden: bool = True


# -- commands ----------------------------------------------------------------------------------


def flag_of(config_class: type, name: str) -> str:
    """The command-line option of field `name`, as messages should quote it."""
    return cli_flag(field_named(config_class, name))


def _check(config: Any, name: str, ok: bool, requirement: str) -> None:
    if not ok:
        raise RlcarError(f"{flag_of(type(config), name)} {requirement}, got {getattr(config, name)}")


def _positive(config: Any, *names: str) -> None:
    """Each of `names` (None means unset) must be a finite number above zero: `inf` and `nan` are bad
    input, never a value written into config.json."""
    for name in names:
        value = getattr(config, name)
        _check(
            config, name, value is None or (math.isfinite(value) and value > 0), "must be a positive number"
        )


def _at_least(config: Any, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        _check(config, name, value is None or value >= minimum, f"must be at least {minimum}")


def _one_of(config: Any, name: str) -> None:
    choices = field_named(type(config), name).metadata["choices"]
    value = getattr(config, name)
    if value not in choices:
        raise RlcarError(
            f"unknown {flag_of(type(config), name)} {value!r}; choose one of {', '.join(choices)}"
        )


# Options several commands share, each written once.
def seed_option() -> Any:
    return option(0, "Seed for every random choice; same seed, same result.")


def eval_every_option() -> Any:
    return option(500, "Validate and checkpoint every N updates.")


def log_every_option() -> Any:
    return option(10, "Log the training losses every N updates.")


RUN_DIR_HELP = "Run directory (data, checkpoints, metrics); default runs/worldmodels."
ENVS = ENV_NAMES
# The built-in driver that reads RLCar's ray sensors: its laps show V and M the obstacles, and
# `train-controller --imitate` fits C to them.
HEURISTIC = "heuristic"
COLLECT_POLICIES = ("brownian", "random", HEURISTIC, "checkpoint")
CARRACING_BACKENDS = ("gymnasium", "envpool")
CONTROLLER_INPUTS = ("zh", "z")


def carracing_backend_option() -> Any:
    return option(
        "gymnasium",
        "CarRacing-v3: the Gymnasium env or EnvPool's (faster, needs the envpool package).",
        choices=CARRACING_BACKENDS,
    )


def action_repeat_option() -> Any:
    return option(1, "CarRacing-v3: frames each action is held for (steps and --max-steps count frames).")


def check_carracing_options(config: Any, env: str) -> None:
    """The CarRacing-only options keep their defaults on RLCar, whose step is already one decision."""
    _one_of(config, "carracing_backend")
    _at_least(config, 1, "action_repeat")
    if EnvName.parse(env).has_track_bank and (
        config.carracing_backend != "gymnasium" or config.action_repeat != 1
    ):
        raise RlcarError("--carracing-backend and --action-repeat apply to CarRacing-v3 only")


def carracing_env_options(config: Any, env: str, num_envs: int | None = None) -> dict[str, Any]:
    """The `make_env` keywords of the CarRacing-only options; none on RLCar. Several Gymnasium cars
    (`num_envs` > 1) each get a worker process: Box2D and rendering are single-threaded Python."""
    if EnvName.parse(env).has_track_bank:
        return {}
    options = {"backend": config.carracing_backend, "action_repeat": config.action_repeat}
    if config.carracing_backend == "gymnasium" and num_envs is not None and num_envs > 1:
        options["processes"] = True
    return options


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """`rlcar collect`: record episodes of an exploration policy into RUN_DIR/data."""

    run_dir: Path | None = option(None, RUN_DIR_HELP)
    env: str = option(EnvName.RLCAR.value, "Environment: the JAX simulator or CarRacing-v3.", choices=ENVS)
    episodes: int = option(100, "Episodes to add to the dataset.")
    policy: str = option(
        "brownian",
        "Who drives: smooth random exploration, uniform noise, the heuristic, or the run's controller.",
        choices=COLLECT_POLICIES,
    )
    max_steps: int = option(1000, "Steps per episode at most.")
    num_envs: int = option(16, "Cars driven side by side.")
    num_tracks: int | None = option(None, "RLCar: training tracks to drive on (default: all).")
    # A dataset is one camera's: default the camera its episodes were filmed with, else today's.
    camera: str | None = camera_option()
    checkpoint: str = option(
        "best", "--policy checkpoint: the run's controller checkpoint (best, latest, epN)."
    )
    action_noise: float = option(
        0.0, "--policy checkpoint: std of Gaussian noise added to each action, for exploration."
    )
    carracing_backend: str = carracing_backend_option()
    action_repeat: int = action_repeat_option()
    seed: int = seed_option()

    def validate(self) -> None:
        _one_of(self, "env")
        _one_of(self, "policy")
        _at_least(self, 1, "episodes", "max_steps", "num_envs", "num_tracks")
        _at_least(self, 0, "seed")
        _check(
            self,
            "action_noise",
            math.isfinite(self.action_noise) and self.action_noise >= 0,
            "must be zero or a positive number",
        )
        if self.action_noise and self.policy != "checkpoint":
            raise RlcarError("--action-noise applies to --policy checkpoint only")
        check_carracing_options(self, self.env)
        if self.num_tracks is not None and not EnvName.parse(self.env).has_track_bank:
            raise RlcarError(
                "--num-tracks applies to RLCar only; CarRacing-v3 makes a new track every episode"
            )
        if self.policy == "heuristic" and not EnvName.parse(self.env).has_sensors:
            raise RlcarError(
                "--policy heuristic reads RLCar's ray sensors; CarRacing-v3 has none (use brownian or random)"
            )
        check_camera_request(self.camera, self.env)


@dataclasses.dataclass(frozen=True)
class TrainVAEConfig:
    """`rlcar train-vae`: fit the ConvVAE on the collected frames. Model options left unset keep the
    model's default, or the checkpoint's value when resuming."""

    run_dir: Path | None = option(None, RUN_DIR_HELP)
    steps: int | None = option(None, "Total updates; a rerun resumes up to this (default 2000).")
    epochs: float | None = option(None, "Passes over the training frames (instead of --steps).")
    batch_size: int = option(100, "Frames per update.")
    z_dim: int | None = option(None, "Latent size (model default 32).")
    base_channels: int | None = option(None, "Encoder widths c, 2c, 4c, 8c (model default 32).")
    learning_rate: float | None = option(None, "Adam step size (model default 1e-4).")
    eval_every: int = eval_every_option()
    log_every: int = log_every_option()
    validation_frames: int = option(512, "Held-out frames to validate on.")
    devices: int | None = option(None, "Local devices the batch is split over (default: all).")
    seed: int = seed_option()

    DEFAULT_STEPS = 2000

    def validate(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise RlcarError("give --steps or --epochs, not both")
        _positive(self, "epochs", "learning_rate")
        _at_least(self, 1, "steps", "batch_size", "z_dim", "base_channels", "eval_every", "log_every")
        _at_least(self, 1, "validation_frames", "devices")
        _at_least(self, 0, "seed")

    def model_options(self) -> dict[str, Any]:
        """The VAEConfig fields these options set; None means not given."""
        channels = self.base_channels
        return {
            "z_dim": self.z_dim,
            "encoder_channels": None
            if channels is None
            else (channels, 2 * channels, 4 * channels, 8 * channels),
            "decoder_channels": None if channels is None else (4 * channels, 2 * channels, channels),
            "learning_rate": self.learning_rate,
        }


@dataclasses.dataclass(frozen=True)
class TrainRNNConfig:
    """`rlcar train-rnn`: fit the MDN-RNN on the dataset encoded by the run's VAE. Model options left
    unset keep the model's default, or the checkpoint's value when resuming."""

    run_dir: Path | None = option(None, RUN_DIR_HELP)
    steps: int | None = option(None, "Total updates; a rerun resumes up to this (default 2000).")
    batch_size: int = option(100, "Sequences per update.")
    sequence_length: int = option(100, "Steps per training sequence.")
    hidden_size: int | None = option(None, "LSTM units (model default 256).")
    num_mixtures: int | None = option(
        None, "Gaussians per latent dimension (model default 5).", flags=("--mixtures",)
    )
    learning_rate: float | None = option(None, "Adam step size (model default 1e-3).")
    eval_every: int = eval_every_option()
    log_every: int = log_every_option()
    validation_sequences: int = option(200, "Held-out sequences to validate on.")
    vae_checkpoint: str | None = option(
        None,
        "VAE checkpoint to train on (best, latest, epN); default: the one this MDN-RNN was trained on, "
        "else best. Another one moves the MDN-RNN on: its checkpoints go aside, training continues.",
    )
    devices: int | None = option(None, "Local devices the batch is split over (default: all).")
    seed: int = seed_option()

    DEFAULT_STEPS = 2000

    def validate(self) -> None:
        _positive(self, "learning_rate")
        _at_least(self, 1, "steps", "batch_size", "sequence_length", "hidden_size", "num_mixtures")
        _at_least(self, 1, "eval_every", "log_every", "validation_sequences", "devices")
        _at_least(self, 0, "seed")

    def model_options(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "num_mixtures": self.num_mixtures,
            "learning_rate": self.learning_rate,
        }


@dataclasses.dataclass(frozen=True)
class TrainControllerConfig:
    """`rlcar train-controller`: search the controller with CMA-ES, in the dream or in the env.
    A rerun continues the search up to --generations."""

    run_dir: Path | None = option(None, RUN_DIR_HELP)
    in_dream: bool | None = option(
        None,
        "Score candidates in the MDN-RNN's dream, or in the real env (default: the env on CarRacing-v3, "
        "as the paper did; the dream on RLCar).",
        flags=("--in-dream/--in-env",),
    )
    generations: int = option(50, "Total CMA-ES generations.")
    popsize: int = option(32, "Candidates per generation.")
    rollouts: int | None = option(
        None, "Per candidate: dream starts (default 16) or env episodes (default 2)."
    )
    temperature: float = option(1.15, "Dream temperature; above 1 makes the dream harder than reality.")
    dream_horizon: int = option(300, "Steps of each dream.")
    max_steps: int = option(1000, "Real-env steps per episode (--in-env and evaluation).")
    patience: int | None = option(
        None,
        "--in-env: end a candidate's episode after this many frames without reward; 0: never "
        "(default: 100 on CarRacing-v3, 0 on RLCar).",
    )
    num_envs: int | None = option(
        None,
        "--in-env: cars driven side by side (default: every rollout of a generation, at most 16 on "
        "CarRacing-v3 and 32 on RLCar).",
    )
    initial_sigma: float | None = option(
        None,
        "CMA-ES initial step size (default 0.1; 0.02 from an --imitate start, whose fit a wide step would "
        "undo).",
    )
    imitate: bool = option(
        False,
        "Start a new search from C fitted to the heuristic's laps in the dataset (behaviour cloning; "
        "RLCar data collected with --policy heuristic) instead of the paper's all-zero C.",
        flags=("--imitate",),
    )
    eval_every: int = option(5, "Generations between real-env evaluations of the search mean.")
    eval_episodes: int = option(8, "Real episodes per evaluation.")
    num_tracks: int | None = option(None, "RLCar: training tracks to drive on (default: all).")
    controller_hidden: int | None = option(
        None,
        "Units of a tanh hidden layer in C; 0 is the paper's linear C (default: 0, or the checkpoint's).",
    )
    controller_inputs: str | None = option(
        None,
        "What C reads: zh, the paper's z and h; or z alone, the paper's ablation of M (default: zh, or "
        "the checkpoint's).",
        choices=CONTROLLER_INPUTS,
    )
    rnn_checkpoint: str | None = option(
        None,
        "MDN-RNN checkpoint to train on (best, latest, epN); default: the one this controller was trained "
        "on, else best. Another one moves C on: its checkpoints go aside, the search continues from its mean.",
    )
    carracing_backend: str = carracing_backend_option()
    action_repeat: int = action_repeat_option()
    devices: int | None = option(None, "Local devices the dream population is split over (default: all).")
    seed: int = seed_option()

    DEFAULT_ROLLOUTS = {"dream": 16, "env": 2}
    DEFAULT_SIGMA = 0.1
    # Candidates 0.02 from an imitated C still drive like it (four such candidates on 8 RLCar tracks
    # scored 0.39-1.0 progress; at 0.05, 0.22-0.49): the hidden layer's fitted weights are ~0.08.
    IMITATION_SIGMA = 0.02
    # CarRacing-v3 pays -0.1 a frame and a tile's share of 1000 when the car reaches it: 100 frames
    # (2 s) without a tile means parked or lost on the grass.
    CARRACING_PATIENCE = 100

    def for_env(self, env: str) -> TrainControllerConfig:
        """The env-dependent defaults filled in: where C is scored, and the in-env patience."""
        carracing = not EnvName.parse(env).has_track_bank
        in_dream = self.in_dream if self.in_dream is not None else not carracing
        patience = self.patience
        if patience is None:
            patience = self.CARRACING_PATIENCE if carracing and not in_dream else 0
        return dataclasses.replace(self, in_dream=in_dream, patience=patience)

    def validate(self) -> None:
        _at_least(self, 1, "generations", "rollouts", "dream_horizon", "max_steps", "eval_every")
        _at_least(self, 1, "eval_episodes", "num_tracks", "devices")
        _at_least(self, 2, "popsize")
        _at_least(self, 0, "seed", "controller_hidden", "patience")
        _at_least(self, 1, "num_envs")
        _positive(self, "temperature", "initial_sigma")
        _one_of(self, "carracing_backend")
        _at_least(self, 1, "action_repeat")
        if self.controller_inputs is not None:
            _one_of(self, "controller_inputs")

    @property
    def sees_hidden(self) -> bool | None:
        """ControllerConfig.sees_hidden as asked for; None: not asked (a new C reads [z, h])."""
        return None if self.controller_inputs is None else self.controller_inputs == "zh"

    @property
    def start_sigma(self) -> float:
        """CMA-ES's step size for a new search: as asked, else by where the search starts."""
        if self.initial_sigma is not None:
            return self.initial_sigma
        return self.IMITATION_SIGMA if self.imitate else self.DEFAULT_SIGMA

    @property
    def mode(self) -> str:
        """Where candidates are scored; "auto" until `for_env` has settled it."""
        return {True: "dream", False: "env", None: "auto"}[self.in_dream]

    @property
    def rollouts_per_candidate(self) -> int:
        return self.rollouts if self.rollouts is not None else self.DEFAULT_ROLLOUTS[self.mode]


@dataclasses.dataclass(frozen=True)
class DreamConfig:
    """`rlcar dream`: the world model imagines next to reality (real left, dream right)."""

    run_dir: Path | None = option(
        None, "Run directory; default: the run under runs/ (dreamer or worldmodels) trained most recently."
    )
    checkpoint: str = option("best", "Checkpoint in the run: best, latest, epN, or a path.")
    output: Path | None = option(
        None, "Write a video (.mp4 or .gif) instead of showing a window.", flags=("-o", "--output")
    )
    manual: bool = option(False, "Drive the dream with arrows/WASD.", flags=("--manual",))
    temperature: float = option(1.0, "Dream temperature (World Models).")
    actions: str | None = option(
        None,
        "DreamerV3 runs: sample the actor (default, as DreamerV3 evaluates) or take its mode.",
        choices=ACTION_CHOICES,
    )
    max_steps: int = option(300, "Steps per episode at most.")
    headless: bool = option(False, "No window; only the numbers (for CI).", flags=("--headless",))
    track: int = option(0, "Held-out evaluation track number to drive on.")
    fps: int = option(0, "Video frames per second (0: the env's rate).")
    seed: int = seed_option()

    def validate(self) -> None:
        _at_least(self, 1, "max_steps")
        _at_least(self, 0, "fps", "track", "seed")
        _positive(self, "temperature")
        if self.manual and self.headless:
            raise RlcarError("--manual needs a window to read the keyboard; drop --headless")
        if self.output is not None:
            from rlcar_core.io.video import check_video_path

            check_video_path(self.output)


@dataclasses.dataclass(frozen=True)
class TrainWorldModelsConfig:
    """`rlcar train-worldmodels`: the whole pipeline, collect -> V -> M -> C, then --iterations rounds
    of the paper's procedure (collect with the current controller, refit V and M, search C again).
    A rerun skips the stages already done (RUN_DIR/pipeline.json)."""

    run_dir: Path | None = option(None, RUN_DIR_HELP)
    env: str = option(EnvName.RLCAR.value, "Environment: the JAX simulator or CarRacing-v3.", choices=ENVS)
    episodes: int = option(100, "Episodes of exploration (brownian) collected first.")
    heuristic_laps: int = option(
        0,
        "RLCar: episodes of the built-in heuristic collected before the explorers'; they show V and M "
        "the obstacles, which explorers never reach.",
    )
    imitate: bool = option(
        False,
        "Start C from a fit to the heuristic's laps (needs --heuristic-laps) instead of all zeros.",
        flags=("--imitate",),
    )
    iterations: int = option(0, "Rounds after the first: collect with C, refit V and M, search C again.")
    iteration_episodes: int = option(100, "Episodes each iteration collects with the current controller.")
    action_noise: float = option(
        0.1, "Std of the Gaussian noise on the controller's actions while it collects."
    )
    max_steps: int = option(1000, "Steps per episode at most (collecting and evaluating).")
    num_envs: int = option(16, "Cars driven side by side while collecting.")
    num_tracks: int | None = option(None, "RLCar: training tracks to drive on (default: all).")
    camera: str | None = camera_option()
    vae_steps: int = option(2000, "VAE updates per round (each refit continues from the last).")
    rnn_steps: int = option(2000, "MDN-RNN updates per round.")
    generations: int = option(50, "CMA-ES generations per round.")
    in_dream: bool | None = option(
        None,
        "Search C in the MDN-RNN's dream, or in the real env (default: the env on CarRacing-v3, "
        "the dream on RLCar).",
        flags=("--in-dream/--in-env",),
    )
    popsize: int = option(32, "Candidates per generation.")
    temperature: float = option(1.15, "Dream temperature; above 1 makes the dream harder than reality.")
    controller_hidden: int = option(0, "Units of a tanh hidden layer in C; 0 is the paper's linear C.")
    z_dim: int | None = option(None, "Latent size (model default 32).")
    hidden_size: int | None = option(None, "LSTM units (model default 256).")
    carracing_backend: str = carracing_backend_option()
    action_repeat: int = action_repeat_option()
    seed: int = seed_option()

    def validate(self) -> None:
        _one_of(self, "env")
        _at_least(self, 0, "iterations", "seed", "controller_hidden", "heuristic_laps")
        _at_least(self, 1, "episodes", "iteration_episodes", "max_steps", "num_envs", "num_tracks")
        if self.heuristic_laps and not EnvName.parse(self.env).has_sensors:
            raise RlcarError("--heuristic-laps needs RLCar's ray sensors; CarRacing-v3 has none")
        if self.imitate and not self.heuristic_laps:
            raise RlcarError("--imitate fits C to the heuristic's laps: add --heuristic-laps N (e.g. 240)")
        _at_least(self, 1, "vae_steps", "rnn_steps", "generations", "z_dim", "hidden_size")
        _at_least(self, 2, "popsize")
        _positive(self, "temperature")
        _check(
            self,
            "action_noise",
            math.isfinite(self.action_noise) and self.action_noise >= 0,
            "must be zero or a positive number",
        )
        check_carracing_options(self, self.env)
        check_camera_request(self.camera, self.env)
        check_vae_frame_size(self.camera)


def check_vae_frame_size(camera: str | None) -> None:
    """World Models' ConvVAE reads 64x64 frames: one clear line for a camera of another size."""
    if camera is None:
        return
    from rlcar_core.sim.camera_spec import parse_camera  # here: the simulator imports JAX
    from rlcar_core.worldmodels.vae import IMAGE_SHAPE

    size = parse_camera(camera).size
    if (size, size) != IMAGE_SHAPE[:2]:
        raise RlcarError(
            f"World Models' VAE reads {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} frames; camera {camera!r} films "
            f"{size}x{size} (DreamerV3 takes any size)"
        )
