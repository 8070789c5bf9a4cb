"""Dreams: the controller driving the MDN-RNN's imagined world, as pure maths and as `rlcar dream`.

The maths (`make_dream_rollout`, `make_dream_fitness`) is a pure function of (params, start latents,
temperature, key) built with `lax.scan`, so a whole CMA-ES population is scored in one jitted, vmapped
call. The session (`run_dream`) encodes a real frame of a held-out track, imagines forward from there,
driven by the controller acting on the dreamed [z, h] (or by the keyboard with `manual`), decodes every
imagined z and replays the same actions in the real env, so the two show side by side (real left,
dream right) in a window, in a video, or only as numbers (`headless`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.envs.heldout import one_track_env, reset_on_track, track_seed_for
from rlcar_core.envs.names import frames_per_second
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir
from rlcar_core.io.video import write_video
from rlcar_core.worldmodels.config import ControllerConfig, DreamConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.controller import (
    ControllerParams,
    WorldModelParams,
    controller_action,
    num_controller_params,
    vector_to_params,
)
from rlcar_core.worldmodels.mdnrnn import (
    initial_rnn_state,
    make_mdnrnn,
    sample_done,
    sample_next_latent,
)
from rlcar_core.worldmodels.storage import (
    CONTROLLER_MODEL,
    RNN_MODEL,
    VAE_MODEL,
    WorldModel,
    camera_of_run,
    dataset_manifest,
    load_rnn,
    load_vae,
    load_world_model,
    open_existing_store,
    upstream_step,
)
from rlcar_core.worldmodels.vae import encoder_fn, make_vae


class DreamRollout(NamedTuple):
    latents: jax.Array  # (B, horizon + 1, z_dim); latents[:, 0] is the given start
    actions: jax.Array  # (B, horizon, 3)
    rewards: jax.Array  # (B, horizon), predicted reward of each step
    dones: jax.Array  # (B, horizon) bool, the dream ended at this step
    # (B, horizon) float: 1 up to and including the first done. The dream keeps running after a done
    # (shapes stay static under jit); this mask says which steps count.
    alive: jax.Array


DreamRolloutFn = Callable[[hk.Params, ControllerParams, jax.Array, jax.Array, jax.Array], DreamRollout]
DreamFitnessFn = Callable[[hk.Params, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def _check_compatible(rnn_config: MDNRNNConfig, controller_config: ControllerConfig) -> None:
    rnn_sizes = (rnn_config.z_dim, rnn_config.hidden_size)
    if rnn_sizes != (controller_config.z_dim, controller_config.hidden_size):
        raise ValueError(
            f"controller expects z_dim={controller_config.z_dim}, hidden_size={controller_config.hidden_size} "
            f"but the MDN-RNN has z_dim={rnn_config.z_dim}, hidden_size={rnn_config.hidden_size}"
        )


def make_dream_rollout(
    rnn_config: MDNRNNConfig, controller_config: ControllerConfig, horizon: int
) -> DreamRolloutFn:
    """`rollout(rnn_params, controller_params, start_latents (B, z), temperature, key) -> DreamRollout`."""
    _check_compatible(rnn_config, controller_config)
    rnn = make_mdnrnn(rnn_config)

    def rollout(rnn_params, controller_params, start_latents, temperature, key) -> DreamRollout:
        def step(carry, step_key):
            latent, rnn_state, alive = carry
            action = controller_action(controller_params, latent, rnn_state.hidden)
            prediction, rnn_state = rnn.apply.step(rnn_params, latent, action, rnn_state)
            latent_key, done_key = jax.random.split(step_key)
            next_latent = sample_next_latent(prediction, latent_key, temperature)
            done = sample_done(prediction, done_key)
            next_alive = alive * (1.0 - done.astype(alive.dtype))
            return (next_latent, rnn_state, next_alive), (next_latent, action, prediction.reward, done, alive)

        batch_size = start_latents.shape[0]
        carry = (
            start_latents,
            initial_rnn_state(rnn_config, batch_size),
            jnp.ones((batch_size,), jnp.float32),
        )
        _, (latents, actions, rewards, dones, alive) = jax.lax.scan(
            step, carry, jax.random.split(key, horizon)
        )
        latents = jnp.concatenate([start_latents[None], latents], axis=0)
        # scan stacks time first; callers index episodes first, like the rest of the code.
        return DreamRollout(*(jnp.swapaxes(x, 0, 1) for x in (latents, actions, rewards, dones, alive)))

    return rollout


def dream_returns(rollout: DreamRollout) -> jax.Array:
    """(B,) sum of predicted rewards up to each dream's first done."""
    return jnp.sum(rollout.rewards * rollout.alive, axis=-1)


def make_dream_fitness(
    rnn_config: MDNRNNConfig, controller_config: ControllerConfig, horizon: int
) -> DreamFitnessFn:
    """`fitness(rnn_params, candidates (P, n), start_latents (B, z), temperature, key) -> (P,)`:
    the mean dream return of each flat controller vector over the B start latents."""
    rollout = make_dream_rollout(rnn_config, controller_config, horizon)

    def candidate_fitness(rnn_params, vector, start_latents, temperature, key):
        params = vector_to_params(vector, controller_config)
        return jnp.mean(dream_returns(rollout(rnn_params, params, start_latents, temperature, key)))

    def fitness(rnn_params, candidates, start_latents, temperature, key):
        # Every candidate dreams with the same key (common random numbers): differences in fitness
        # then come from the controllers, not from luckier dream noise.
        return jax.vmap(candidate_fitness, in_axes=(None, 0, None, None, None))(
            rnn_params, candidates, start_latents, temperature, key
        )

    return fitness


# -- the dream session (`rlcar dream`) -----------------------------------------------------------

PANEL_SCALE = 4  # 64x64 frames shown at 256x256
CAPTION_HEIGHT = 96  # room for the four caption lines the HUD draws


@functools.cache
def dream_step_fn(
    vae_config: VAEConfig, rnn_config: MDNRNNConfig, controller_config: ControllerConfig
) -> Callable:
    """Jitted `(params, controller_vector, latent (1, z), rnn_state, manual_action (1, 3), use_manual,
    temperature, key) -> (action, next_latent, rnn_state, reward, done_probability, dreamed_frame)`."""
    vae_decode = make_vae(vae_config).apply.decode
    rnn = make_mdnrnn(rnn_config)

    def step(
        params: WorldModelParams, vector, latent, rnn_state, manual_action, use_manual, temperature, key
    ):
        controller = vector_to_params(vector, controller_config)
        action = jnp.where(use_manual, manual_action, controller_action(controller, latent, rnn_state.hidden))
        prediction, rnn_state = rnn.apply.step(params.rnn, latent, action, rnn_state)
        next_latent = sample_next_latent(prediction, key, temperature)
        frame = vae_decode(params.vae, next_latent)
        return action, next_latent, rnn_state, prediction.reward, jax.nn.sigmoid(prediction.done_logit), frame

    return jax.jit(step)


def _keyboard_world_model(run: RunDir) -> WorldModel:
    """V and M without a controller (for --manual before any controller exists)."""
    rnn_config, rnn_params, rnn_step, vae_step = load_rnn(run, upstream_step(run, RNN_MODEL))
    vae_config, vae_params, _ = load_vae(run, vae_step)
    controller_config = ControllerConfig(z_dim=rnn_config.z_dim, hidden_size=rnn_config.hidden_size)
    return WorldModel(
        vae_config,
        rnn_config,
        controller_config,
        WorldModelParams(vae_params, rnn_params),
        np.zeros(num_controller_params(controller_config), np.float32),
        dataset_manifest(run)["env_name"],
        {VAE_MODEL: vae_step, RNN_MODEL: rnn_step},
        camera_of_run(run, dataset_manifest(run)["env_name"]),
    )


def _load(run: RunDir, config: DreamConfig) -> WorldModel:
    if config.manual:
        try:
            open_existing_store(run, CONTROLLER_MODEL).close()
        except RlcarError:
            return _keyboard_world_model(run)
    return load_world_model(run, config.checkpoint)


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(frame) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def side_by_side(real: np.ndarray, dreamed: np.ndarray, caption: dict[str, str]) -> np.ndarray:
    """Real (left) and dreamed (right) 64x64 frames, each enlarged PANEL_SCALE times, under a caption
    strip, so the text never hides the frames."""
    from rlcar_core.render.hud import with_hud

    big = [np.repeat(np.repeat(frame, PANEL_SCALE, axis=0), PANEL_SCALE, axis=1) for frame in (real, dreamed)]
    gap = np.full((big[0].shape[0], 4, 3), 255, np.uint8)
    frames = np.concatenate([big[0], gap, big[1]], axis=1)
    strip = np.zeros((CAPTION_HEIGHT, frames.shape[1], 3), np.uint8)
    return np.concatenate([with_hud(strip, caption), frames], axis=0)


def _real_env(env_name: str, track_seed: int, config: DreamConfig, camera=None):
    """The env that replays the dream's actions, reset on the chosen held-out track, filmed with the
    run's `camera`: (env, first frame)."""
    env = one_track_env(env_name, "pixels", track_seed, config.max_steps, camera=camera)
    frame, _ = reset_on_track(env, env_name, track_seed, config.seed)
    return env, np.asarray(frame)


class _DreamEpisode:
    """One dream next to its real replay; `frames()` yields the side-by-side images as it goes."""

    def __init__(self, model: WorldModel, env, first_frame: np.ndarray, window, config: DreamConfig):
        self.model, self.env, self.first_frame, self.window, self.config = (
            model,
            env,
            first_frame,
            window,
            config,
        )
        self.steps = 0
        self.real_return = 0.0
        self.dream_return = 0.0
        self.frame_errors: list[float] = []
        self.ended_by = "max_steps"

    def frames(self, on_step: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        model, config = self.model, self.config
        step_fn = dream_step_fn(model.vae_config, model.rnn_config, model.controller_config)
        latent, _ = encoder_fn(model.vae_config)(model.params.vae, self.first_frame[None])
        rnn_state = initial_rnn_state(model.rnn_config, 1)
        key = jax.random.PRNGKey(config.seed)
        driver = "keyboard" if config.manual else f"controller ep{model.steps[CONTROLLER_MODEL]}"
        for step in range(1, config.max_steps + 1):
            keys_action = np.zeros((1, 3), np.float32)
            if self.window is not None:
                controls = self.window.poll()
                if controls.quit:
                    self.ended_by = "quit"
                    return
                keys_action = controls.action[None]
            key, step_key = jax.random.split(key)
            action, latent, rnn_state, reward, done_probability, dream_frame = step_fn(
                model.params,
                model.policy,
                latent,
                rnn_state,
                keys_action,
                config.manual,
                config.temperature,
                step_key,
            )
            real_frame, real_reward, terminated, truncated, _ = self.env.step(np.asarray(action)[0])
            real_frame, dreamed = np.asarray(real_frame), _to_uint8(dream_frame[0])
            self.steps = step
            self.real_return += float(real_reward)
            self.dream_return += float(reward[0])
            self.frame_errors.append(float(np.mean(np.square(dreamed / 255.0 - real_frame / 255.0))))
            caption = {
                "left | right": f"real | dream (temperature {config.temperature:g})",
                "driver": driver,
                "step": str(step),
                "return real | dream": f"{self.real_return:.1f} | {self.dream_return:.1f}",
            }
            composed = side_by_side(real_frame, dreamed, caption)
            if self.window is not None:
                self.window.show(composed)
            if on_step is not None:
                on_step(step)
            yield composed
            if float(done_probability[0]) > 0.5:
                self.ended_by = "dream ended"
                return
            if terminated:
                self.ended_by = "real episode ended"
                return
            if truncated:
                return  # at max_steps, the limit of both


def run_dream(config: DreamConfig, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Play one dream (window, video or headless); returns what happened in the dream and in reality."""
    config.validate()
    if config.run_dir is None:
        raise RlcarError("dream needs a run directory")  # the dispatch picks one when none is given
    model = _load(RunDir(config.run_dir), config)
    track_seed = track_seed_for(model.env, config.track)
    env, first_frame = _real_env(model.env, track_seed, config, model.camera)
    window = None
    result: dict[str, Any] = {}
    try:
        # A window unless told otherwise (headless, or a video instead); the keyboard always needs one.
        if (not config.headless and config.output is None) or config.manual:
            from rlcar_core.render.window import Window

            height, width, _ = side_by_side(first_frame, first_frame, {}).shape
            window = Window(
                (width, height), title="rlcar dream: real | dream", fps=frames_per_second(model.env)
            )
        episode = _DreamEpisode(model, env, first_frame, window, config)
        if config.output is not None:
            count = write_video(
                episode.frames(on_step), config.output, fps=config.fps or frames_per_second(model.env)
            )
            result = {"path": str(config.output), "frames": count}
        else:
            for _ in episode.frames(on_step):
                pass
    finally:
        env.close()
        if window is not None:
            window.close()
    return {
        "steps": episode.steps,
        "ended_by": episode.ended_by,
        "real_return": episode.real_return,
        "dream_return": episode.dream_return,
        "frame_mse_mean": float(np.mean(episode.frame_errors)) if episode.frame_errors else None,
        **result,
        "env": model.env,
        "track_seed": track_seed,
        "temperature": config.temperature,
        "driver": "keyboard" if config.manual else "controller",
        "checkpoints": {name: f"ep{step}" for name, step in model.steps.items()},
    }
