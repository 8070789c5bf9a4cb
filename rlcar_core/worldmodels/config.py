"""Hyper-parameters of the three World Models parts (V, M and C), as frozen dataclasses.

Defaults follow Ha & Schmidhuber (2018) for CarRacing. Each config round-trips through a plain
dict so it can live in `config.json` and inside checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from rlcar_core.errors import RlcarError

_Config = TypeVar("_Config")


def _config_from_dict(config_class: type[_Config], data: dict[str, Any]) -> _Config:
    known = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RlcarError(
            f"unknown {config_class.__name__} field(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    # JSON has no tuples; sequence-valued fields come back as lists and must be frozen again.
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in data.items()}
    return config_class(**values)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """ConvVAE (V): 64x64x3 frames <-> latent z."""

    z_dim: int = 32
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    decoder_channels: tuple[int, ...] = (128, 64, 32)
    # The paper stops pushing KL below this many nats per latent dimension, so the posterior keeps
    # enough information to reconstruct the road instead of collapsing onto the prior.
    kl_tolerance: float = 0.5
    learning_rate: float = 1e-4
    batch_size: int = 100

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        return _config_from_dict(cls, data)


@dataclasses.dataclass(frozen=True)
class MDNRNNConfig:
    """MDN-RNN (M): predicts p(z_{t+1} | z_t, a_t, h_t), the reward and whether the episode ends."""

    z_dim: int = 32
    action_dim: int = 3
    hidden_size: int = 256
    num_mixtures: int = 5
    learning_rate: float = 1e-3
    grad_clip_norm: float = 1.0
    batch_size: int = 100
    sequence_length: int = 100
    reward_loss_weight: float = 1.0
    done_loss_weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MDNRNNConfig:
        return _config_from_dict(cls, data)


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Linear controller (C) on [z, h] and the CMA-ES search that fits it."""

    z_dim: int = 32
    hidden_size: int = 256
    population_size: int = 64
    initial_sigma: float = 0.1
    generations: int = 100
    rollouts_per_candidate: int = 16
    dream_horizon: int = 1000
    # Above 1 the dream is noisier than the real world, which stops the controller from
    # exploiting the world model's mistakes (paper, section 4.5).
    dream_temperature: float = 1.15

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ControllerConfig:
        return _config_from_dict(cls, data)
