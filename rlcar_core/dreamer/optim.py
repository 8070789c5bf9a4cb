"""Optimisers for the three DreamerV3 modules: gradient clipping followed by Adam or LaProp."""

from __future__ import annotations

import optax

from rlcar_core.dreamer.config import DreamerConfig


def _laprop(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """LaProp: normalise by the RMS first, then apply momentum to the normalised gradient.

    Decoupling momentum from the second moment keeps steps bounded even when the RMS estimate is
    tiny, which is why the 2025 DreamerV3 can use a very small epsilon.
    """
    return optax.chain(
        optax.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        optax.ema(decay=b1, debias=True),
    )


def make_optimizer(
    learning_rate: float, eps: float, grad_clip: float, config: DreamerConfig
) -> optax.GradientTransformation:
    """Clip (global norm, or adaptive per unit relative to parameter norm), scale, step."""
    if config.grad_clip_kind == "global_norm":
        clip = optax.clip_by_global_norm(grad_clip)
    else:
        clip = optax.adaptive_grad_clip(config.agc_clip)
    if config.optimizer == "adam":
        scale = optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=eps)
    else:
        scale = _laprop(config.adam_b1, config.adam_b2, eps)
    return optax.chain(clip, scale, optax.scale(-learning_rate))


def world_model_optimizer(config: DreamerConfig) -> optax.GradientTransformation:
    return make_optimizer(config.model_lr, config.model_eps, config.model_grad_clip, config)


def actor_optimizer(config: DreamerConfig) -> optax.GradientTransformation:
    return make_optimizer(config.actor_lr, config.actor_eps, config.actor_grad_clip, config)


def critic_optimizer(config: DreamerConfig) -> optax.GradientTransformation:
    return make_optimizer(config.critic_lr, config.critic_eps, config.critic_grad_clip, config)
