"""`dream` for DreamerV3 runs: the world model imagines forward from a real start, next to reality.

On a held-out track the agent first observes `context` real steps (the RSSM's posterior, the frame
shows its reconstruction), then the world model dreams open-loop with its prior: each action comes
from the actor reading the imagined state (or from `manual_actions`), and the decoder turns every
imagined state into an observation. The same actions are replayed in the real env, so each frame
shows what really happened (left) next to the dream (right): 64x64 camera frames for pixel runs, or
the sensor readings drawn as rays for sensor runs.

    frames, summary = dream_frames("runs/dreamer", "best", max_steps=200)
    write_video(frames, "dream.mp4", fps=10)   # or show each frame in a window
    print(summary)                              # complete once `frames` is exhausted
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlcar_core.dreamer.checkpoints import is_dreamer_run, load_saved_agent
from rlcar_core.dreamer.config import DEFAULT_ACTIONS, DreamerConfig, check_actions
from rlcar_core.dreamer.dream_panels import observation_panel, side_by_side
from rlcar_core.dreamer.math import symexp_twohot_mean, symlog_bins
from rlcar_core.dreamer.networks import actor_network, features, latent_noise, world_model_network
from rlcar_core.dreamer.policy import (
    from_env_action,
    initial_carry,
    jitted_policy,
    on_default_device,
    to_env_action,
)
from rlcar_core.dreamer.world_model import decode_observation
from rlcar_core.envs.heldout import one_track_env, reset_on_track, track_seed_for
from rlcar_core.errors import RlcarError, require_at_least

DEFAULT_CONTEXT = 5  # real steps observed before dreaming, as in DreamerV3's open-loop predictions
REAL_COLOUR, DREAM_COLOUR = (80, 200, 120), (200, 120, 255)
# Env actions [steer, gas, brake] for each step: a sequence, or a function of the step index (e.g. a
# window's keyboard) that returns None to stop.
ManualActions = Sequence[np.ndarray] | Callable[[int], np.ndarray | None]

__all__ = ["DEFAULT_CONTEXT", "ManualActions", "dream_frames", "is_dreamer_run"]


@functools.cache
def _dream_functions(config: DreamerConfig, actions: str) -> tuple[Callable, Callable]:
    """Jitted `reconstruct(params, latent)` and `imagine(params, latent, action, key) -> (latent,
    decoded obs, predicted reward, continue probability, actor's action)`, once per config and choice
    (`ACTION_CHOICES`: the actor's sample, its mode or its average clipped sample)."""
    world_model = world_model_network(config)
    actor = actor_network(config)
    bins = symlog_bins(config.num_bins, config.bins_low, config.bins_high)

    def reconstruct(params, latent):
        return decode_observation(params.world_model, features(latent), config)

    def imagine(params, latent, action, key):
        latent_key, action_key = jax.random.split(key)
        noise = latent_noise(latent_key, action.shape[:-1], config)
        prior = world_model.apply.img_step(params.world_model, latent, action, noise).prior
        feat = features(prior)
        decoded = decode_observation(params.world_model, feat, config)
        reward = symexp_twohot_mean(world_model.apply.reward_logits(params.world_model, feat), bins)
        continues = jax.nn.sigmoid(world_model.apply.continue_logit(params.world_model, feat))
        dist = actor.apply(params.actor, feat)
        next_action = dist.act(actions, action_key)
        return prior, decoded, reward, continues, next_action

    return jax.jit(reconstruct), jax.jit(imagine)


def _manual_source(manual_actions: ManualActions | None) -> Callable[[int], np.ndarray | None] | None:
    if manual_actions is None or callable(manual_actions):
        return manual_actions
    actions = list(manual_actions)
    return lambda step: np.asarray(actions[step], np.float32) if step < len(actions) else None


def _observation_error(decoded: np.ndarray, real: np.ndarray, obs_kind: str) -> float:
    # Pixels in [0, 1] so the number reads like the World Models dream's frame MSE.
    scale = 255.0 if obs_kind == "pixels" else 1.0
    return float(np.mean((decoded.astype(np.float64) / scale - real.astype(np.float64) / scale) ** 2))


def dream_frames(
    run_dir: str | Path,
    checkpoint: str = "best",
    max_steps: int = 200,
    seed: int = 0,
    manual_actions: ManualActions | None = None,
    *,
    track: int = 0,
    context: int = DEFAULT_CONTEXT,
    actions: str = DEFAULT_ACTIONS,
) -> tuple[Iterator[np.ndarray], dict[str, Any]]:
    """Frames (H, W, 3 uint8, real left and dream right, with a HUD) and a summary dict.

    The checkpoint is loaded and the options checked at once (RlcarError for bad input); the env
    starts when the first frame is asked for. The summary is filled in while the frames are consumed
    and is complete when the iterator is exhausted: steps, the real and the predicted return of the
    dreamed steps, the mean squared error between dreamed and real observations (sensor units, or
    pixels in [0, 1]), and why the dream ended. `manual_actions` (env
    actions) replace the actor, in the observed steps and in the dream alike; otherwise the actor
    acts by `actions` (sample, mode or mean).
    """
    check_actions(actions)
    require_at_least("--max-steps", max_steps, 1)
    require_at_least("--context", context, 1)
    if context >= max_steps:
        raise RlcarError(f"--max-steps ({max_steps}) must be larger than the observed context ({context})")
    saved = load_saved_agent(run_dir, checkpoint)
    track_seed = track_seed_for(saved.env, track)
    summary: dict[str, Any] = {
        "env": saved.env,
        "obs": saved.config.obs_kind,
        "checkpoint": f"ep{saved.step}",
        "track_seed": track_seed,
        "driver": "manual" if manual_actions is not None else "actor",
        "actions": None if manual_actions is not None else actions,
        "context_steps": 0,
        "steps": 0,
        "real_return": 0.0,
        "dream_return": 0.0,
        "obs_mse_mean": None,
        "ended_by": "max_steps",
    }
    return _frames(
        saved, track_seed, max_steps, seed, _manual_source(manual_actions), context, summary, actions
    ), summary


def _frames(saved, track_seed, max_steps, seed, manual, context, summary, actions) -> Iterator[np.ndarray]:
    config, params = saved.config, on_default_device(saved.params)
    obs_kind = config.obs_kind
    policy = jitted_policy(config, actions)
    reconstruct, imagine = _dream_functions(config, actions)
    env = one_track_env(saved.env, obs_kind, track_seed, max_steps, camera=saved.camera)
    obs, _ = reset_on_track(env, saved.env, track_seed, seed)
    key = jax.random.key(seed)
    errors: list[float] = []
    driver = "manual" if manual is not None else f"actor ep{saved.step}"

    def frame(real, dreamed, phase: str, step: int) -> np.ndarray:
        hud = {
            "left": "real",
            "right": f"dream ({phase})",
            "driver": driver,
            "step": str(step + 1),
            "return real / dream": f"{summary['real_return']:.1f} / {summary['dream_return']:.1f}",
        }
        return side_by_side(
            observation_panel(np.asarray(real), obs_kind, REAL_COLOUR),
            observation_panel(np.asarray(dreamed), obs_kind, DREAM_COLOUR),
            hud,
        )

    def env_step(actor_action: np.ndarray, dreaming: bool):
        summary["steps"] += 1
        next_obs, reward, terminated, truncated, _ = env.step(to_env_action(actor_action))
        if dreaming:  # compared with the dream's predicted rewards for the same steps
            summary["real_return"] += float(reward)
        return next_obs, terminated or truncated

    def chosen_action(step: int, actor_action: np.ndarray) -> np.ndarray | None:
        if manual is None:
            return actor_action
        action = manual(step)
        return None if action is None else from_env_action(np.asarray(action, np.float32).reshape(1, -1))

    try:
        # Observe: the posterior filters real observations; the panel shows its reconstruction.
        carry = on_default_device(initial_carry(1, config))
        for step in range(context):
            key, step_key = jax.random.split(key)
            actor_action, carry = policy(
                params, carry, np.asarray(obs)[None], np.array([step == 0]), step_key
            )
            action = chosen_action(step, np.asarray(actor_action))
            if action is None:
                summary["ended_by"] = "manual actions ended"
                return
            carry = carry._replace(prev_action=on_default_device(action))
            yield frame(obs, np.asarray(reconstruct(params, carry.latent))[0], "observing", step)
            summary["context_steps"] = step + 1
            obs, done = env_step(action[0], dreaming=False)
            if done:
                summary["ended_by"] = "real episode ended"
                return
        # Dream: the prior rolls forward from the last filtered state under the same actions as reality.
        latent, action = carry.latent, np.asarray(carry.prev_action)
        for step in range(context, max_steps):
            key, step_key = jax.random.split(key)
            latent, decoded, reward, continues, actor_action = imagine(params, latent, action, step_key)
            decoded = np.asarray(decoded)[0]
            summary["dream_return"] += float(reward[0])
            errors.append(_observation_error(decoded, np.asarray(obs), obs_kind))
            summary["obs_mse_mean"] = float(np.mean(errors))
            yield frame(obs, decoded, "dreaming", step)
            if float(continues[0]) < 0.5:
                summary["ended_by"] = "dream ended"
                return
            chosen = chosen_action(step, np.asarray(actor_action))
            if chosen is None:
                summary["ended_by"] = "manual actions ended"
                return
            action = chosen
            obs, done = env_step(action[0], dreaming=True)
            if done and summary["steps"] < max_steps:
                summary["ended_by"] = "real episode ended"
                return
    finally:
        env.close()
