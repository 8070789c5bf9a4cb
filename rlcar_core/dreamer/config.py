"""DreamerV3 hyperparameters: one frozen, hashable dataclass so it can be a static jit argument.

Only what `update` and the policy read lives here (model, loss and optimiser settings). How the
training loop runs (batch shape, replay, train ratio, schedules) is `train_config.TrainDreamerConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from rlcar_core.errors import RlcarError

OBS_KINDS = ("sensors", "pixels")
ACTOR_GRADS = ("dynamics", "reinforce")
IMAGINED_CONTINUES = ("mode", "prob")
OPTIMIZERS = ("adam", "laprop")
GRAD_CLIP_KINDS = ("global_norm", "agc")
# How a trained actor picks an action outside training: "sample" draws from its distribution, as
# DreamerV3's own evaluation does (danijar/dreamerv3 samples in its eval mode); "mode" takes the most
# likely action. The actor is trained on samples, and on CarRacing-v3 its mode drove far worse (172 vs
# 602 on the same 8 tracks, docs/results/dreamer-carracing-eval-mode-vs-sample.json), so sample is the
# default. "mean" takes the action the samples give on average, E[clip(sample)]
# (`ActionDistribution.clipped_mean`): deterministic like the mode, but where a mean saturated at a
# bound still steers with its std, as the sampling actor does (issue 28). All are repeatable under a
# seed.
ACTION_CHOICES = ("sample", "mode", "mean")
DEFAULT_ACTIONS = "sample"


def check_actions(actions: str) -> str:
    if actions not in ACTION_CHOICES:
        raise RlcarError(f"--actions must be one of {', '.join(ACTION_CHOICES)}, got {actions!r}")
    return actions


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
    """Every DreamerV3 hyperparameter. Defaults follow Hafner et al. (2023, arXiv v1) unless noted."""

    # Observation and action spaces.
    obs_kind: str = "sensors"
    obs_shape: tuple[int, ...] = (17,)
    action_dim: int = 3

    # Network sizes.
    deter_size: int = 256
    stoch_size: int = 32
    stoch_classes: int = 32
    hidden_size: int = 256
    mlp_layers: int = 2
    cnn_depth: int = 16
    cnn_min_resolution: int = 4
    layer_norm_eps: float = 1e-3

    # Latents and two-hot heads.
    unimix: float = 0.01
    num_bins: int = 255
    bins_low: float = -20.0
    bins_high: float = 20.0

    # World-model loss.
    free_bits: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    recon_scale: float = 1.0
    # Share of the reconstruction loss that is weighted towards the pixels (or sensor values) the
    # decoder currently gets most wrong: each pixel's weight is (1 - f) + f * error / mean error of its
    # frame, so the weights average 1 and f = 0 is the paper's plain MSE. Not in the paper: on RLCar's
    # camera an obstacle is about 16 of 4,096 pixels, too little of a plain MSE for a world model to
    # draw it at all (bench/pixel_probe.py), and weighting by error gives those pixels ~10x the pull
    # until they are learned, whatever the object is.
    recon_focus: float = 0.0
    # The error's exponent in those weights: 2 gives a pixel twice as wrong four times the pull.
    recon_focus_power: float = 1.0
    reward_scale: float = 1.0
    continue_scale: float = 1.0

    # Behaviour learning in imagination.
    horizon: int = 15
    discount: float = 1.0 - 1.0 / 333.0
    return_lambda: float = 0.95
    actor_entropy: float = 3e-4
    # "dynamics" backpropagates returns through the imagined dynamics (the paper's choice for
    # continuous actions); "reinforce" uses score-function gradients (the paper's discrete choice).
    actor_grad: str = "dynamics"
    # How imagined trajectories end: "mode" thresholds the continue head at 0.5 (the paper); "prob"
    # uses its probability as the expected discount, so a crash the model gives 30 % still costs
    # 30 % of the future, and "dynamics" actor gradients can steer away from it.
    imagined_continue: str = "mode"
    actor_min_std: float = 0.1
    actor_max_std: float = 1.0
    # Not in the paper (0: off, the paper's actor). A bound in (0, 1) on |mean| that the actor loss
    # enforces with a penalty, (|pre-tanh mean| - atanh(bound))^2 per dimension past it
    # (`behavior.mean_limit_penalty`). The mean is tanh(x): past |x| ~ 3 tanh' is below 0.01, the
    # mean's gradient all but vanishes and an x that wandered there never comes back, while the std
    # still moves the average clipped action. That is issue 28's CarRacing-v3 actor: its mode steers
    # at full lock (64 % of decisions) and drives off the road while its samples drive. The penalty
    # keeps x where tanh' >= 1 - bound^2, so the mean stays trainable; samples still reach the bounds.
    actor_mean_limit: float = 0.0
    actor_scale: float = 1.0
    critic_scale: float = 1.0
    slow_critic_fraction: float = 0.02
    slow_critic_update_every: int = 1
    slow_critic_reg_scale: float = 1.0
    return_norm_decay: float = 0.99
    return_norm_low_percentile: float = 5.0
    return_norm_high_percentile: float = 95.0
    return_norm_floor: float = 1.0

    # Optimisation. "adam" + "global_norm" is the 2023 paper; "laprop" + "agc" (clip 0.3) is the
    # 2025 Nature version's choice.
    optimizer: str = "adam"
    grad_clip_kind: str = "global_norm"
    agc_clip: float = 0.3
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    model_lr: float = 1e-4
    model_eps: float = 1e-8
    model_grad_clip: float = 1000.0
    actor_lr: float = 3e-5
    actor_eps: float = 1e-5
    actor_grad_clip: float = 100.0
    critic_lr: float = 3e-5
    critic_eps: float = 1e-5
    critic_grad_clip: float = 100.0

    # Execution only (what is computed is the same): how many steps of the RSSM's observe and
    # imagine scans XLA compiles as one loop body. Larger bodies let XLA fuse across steps and cost
    # fewer loop iterations; 0 unrolls the whole scan (also what makes XLA's cost analysis count
    # every step, since it counts a loop body once).
    scan_unroll: int = 1

    def __post_init__(self) -> None:
        # Accept lists (JSON) for the shape but store a tuple so the config stays hashable.
        object.__setattr__(self, "obs_shape", tuple(int(d) for d in self.obs_shape))
        _validate(self)

    @property
    def stoch_flat_size(self) -> int:
        return self.stoch_size * self.stoch_classes

    @property
    def unroll(self) -> int | bool:
        """`scan_unroll` as `lax.scan`'s `unroll` argument."""
        return True if self.scan_unroll == 0 else self.scan_unroll

    @property
    def feature_size(self) -> int:
        return self.deter_size + self.stoch_flat_size

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DreamerConfig:
        """A named size (`tiny`, `small`, `medium`) with any field overridden."""
        if name not in PRESETS:
            raise RlcarError(f"unknown DreamerV3 preset {name!r}; choose one of {sorted(PRESETS)}")
        _check_field_names(overrides)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DreamerConfig:
        """Inverse of `to_dict`; unknown keys are an error so typos in saved configs surface."""
        values = {key: value for key, value in values.items() if key not in LEGACY_LOOP_FIELDS}
        _check_field_names(values)
        return cls(**values)


# Loop settings that checkpoints written before the config split still carry in their model config.
LEGACY_LOOP_FIELDS = ("batch_size", "batch_length", "replay_capacity", "train_ratio")

PRESETS: dict[str, dict[str, Any]] = {
    # Tests and smoke runs on a CPU.
    "tiny": dict(
        deter_size=64,
        stoch_size=8,
        stoch_classes=8,
        hidden_size=64,
        mlp_layers=1,
        cnn_depth=8,
    ),
    # What 2 CPU cores train when tiny is not enough: small's RSSM and heads (4x tiny's width, so an
    # update costs about 2.4x tiny's) on tiny's CNN, with 16 x 16 latents. It took CarRacing-v3 from
    # 572 to 833 in 150 minutes (issue 28) and RLCar pixels from 0.775 to past 0.9 (issue 31).
    "mid": dict(
        deter_size=256,
        stoch_size=16,
        stoch_classes=16,
        hidden_size=256,
        mlp_layers=2,
        cnn_depth=8,
    ),
    # The accelerator default: a half-width version of the paper's S size (a CPU trains `tiny`).
    "small": dict(
        deter_size=256,
        hidden_size=256,
        mlp_layers=2,
        cnn_depth=16,
    ),
    # The paper's S size (deter 512, units 512, 2 layers, CNN depth 32), for an accelerator.
    "medium": dict(
        deter_size=512,
        hidden_size=512,
        mlp_layers=2,
        cnn_depth=32,
    ),
}


def _check_field_names(values: Mapping[str, Any]) -> None:
    known = {field.name for field in dataclasses.fields(DreamerConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RlcarError(f"unknown DreamerV3 config field(s): {', '.join(unknown)}")


def _validate(config: DreamerConfig) -> None:
    def require(condition: bool, message: str) -> None:
        if not condition:
            raise RlcarError(f"invalid DreamerV3 config: {message}")

    require(config.obs_kind in OBS_KINDS, f"obs_kind must be one of {OBS_KINDS}, got {config.obs_kind!r}")
    if config.obs_kind == "sensors":
        require(len(config.obs_shape) == 1, f"sensor obs_shape must be (dim,), got {config.obs_shape}")
    else:
        require(len(config.obs_shape) == 3, f"pixel obs_shape must be (H, W, C), got {config.obs_shape}")
        height, width, _ = config.obs_shape
        ratio = height // config.cnn_min_resolution
        require(
            height == width
            and height % config.cnn_min_resolution == 0
            and ratio >= 2
            and ratio & (ratio - 1) == 0,
            f"pixel obs must be square with side cnn_min_resolution * 2^k (k >= 1), got {config.obs_shape}",
        )
    require(all(d > 0 for d in config.obs_shape), "obs_shape entries must be positive")
    require(config.action_dim > 0, "action_dim must be positive")
    for name in ("deter_size", "stoch_size", "stoch_classes", "hidden_size", "cnn_depth", "horizon"):
        require(getattr(config, name) > 0, f"{name} must be positive")
    require(config.mlp_layers >= 0, "mlp_layers must be >= 0")
    require(config.scan_unroll >= 0, "scan_unroll must be >= 0 (0: unroll fully)")
    require(0.0 <= config.unimix < 1.0, "unimix must be in [0, 1)")
    require(0.0 <= config.recon_focus <= 1.0, "recon_focus must be in [0, 1]")
    require(0.0 < config.recon_focus_power <= 4.0, "recon_focus_power must be in (0, 4]")
    require(config.num_bins >= 2 and config.bins_low < config.bins_high, "need >= 2 bins and low < high")
    require(0.0 < config.discount <= 1.0, "discount must be in (0, 1]")
    require(0.0 <= config.return_lambda <= 1.0, "return_lambda must be in [0, 1]")
    require(config.actor_grad in ACTOR_GRADS, f"actor_grad must be one of {ACTOR_GRADS}")
    require(
        config.imagined_continue in IMAGINED_CONTINUES,
        f"imagined_continue must be one of {IMAGINED_CONTINUES}",
    )
    require(0.0 < config.actor_min_std < config.actor_max_std, "need 0 < actor_min_std < actor_max_std")
    require(0.0 <= config.actor_mean_limit < 1.0, "actor_mean_limit must be in [0, 1) (0: off)")
    require(0.0 < config.slow_critic_fraction <= 1.0, "slow_critic_fraction must be in (0, 1]")
    require(config.slow_critic_update_every >= 1, "slow_critic_update_every must be >= 1")
    require(0.0 <= config.return_norm_decay < 1.0, "return_norm_decay must be in [0, 1)")
    require(
        0.0 <= config.return_norm_low_percentile < config.return_norm_high_percentile <= 100.0,
        "need 0 <= low percentile < high percentile <= 100",
    )
    require(config.return_norm_floor > 0.0, "return_norm_floor must be positive")
    require(config.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}")
    require(config.grad_clip_kind in GRAD_CLIP_KINDS, f"grad_clip_kind must be one of {GRAD_CLIP_KINDS}")
    for name in (
        "model_lr",
        "actor_lr",
        "critic_lr",
        "model_grad_clip",
        "actor_grad_clip",
        "critic_grad_clip",
    ):
        value = getattr(config, name)
        require(math.isfinite(value) and value > 0.0, f"{name} must be a positive number")
