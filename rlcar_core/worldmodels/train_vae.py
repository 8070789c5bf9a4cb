"""`rlcar train-vae`: fit the ConvVAE (V) on the run's frames, streamed from disk.

Validation uses frames of held-out episodes and reports the reconstruction error of the posterior
mean as MSE per pixel (channels in [0, 1]); a grid of those reconstructions is saved as a PNG.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import atomic_path
from rlcar_core.io.data import iterate_frames, split_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.batching import in_fixed_batches
from rlcar_core.worldmodels.config import VAEConfig
from rlcar_core.worldmodels.saved_models import abstract_vae_state, saved_training_record
from rlcar_core.worldmodels.stages import (
    VAE_MODEL,
    VALIDATION_FRACTION,
    dataset_manifest,
    open_store,
    settle_config,
)
from rlcar_core.worldmodels.training_loop import Schedule, StepCallback, train_supervised, with_key_stream
from rlcar_core.worldmodels.vae import images_to_float, make_vae
from rlcar_core.worldmodels.vae_update import init_vae_state, make_vae_update

DEFAULT_STEPS = 2000
RECONSTRUCTIONS_FILE = "vae_reconstructions.png"
GRID_COLUMNS = 8
# Parameter init is many threefry draws, which XLA:CPU's optimising backend compiles very slowly;
# unoptimised code is plenty fast for a one-off init.
_init_vae_state = jax.jit(
    init_vae_state, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)


@dataclasses.dataclass(frozen=True)
class TrainVAEConfig:
    run_dir: Path
    steps: int | None = None  # total updates; a resumed run continues up to this count
    epochs: float | None = None  # alternative to steps: passes over the training frames
    batch_size: int = 100
    # Model options; None keeps the default, or the checkpoint's value when resuming.
    z_dim: int | None = None
    base_channels: int | None = None  # encoder widths c, 2c, 4c, 8c (the paper: 32)
    learning_rate: float | None = None
    eval_every: int = 500
    log_every: int = 10
    validation_frames: int = 512
    seed: int = 0

    def validate(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise RlcarError("give --steps or --epochs, not both")
        positive = {
            "--steps": self.steps,
            "--epochs": self.epochs,
            "--batch-size": self.batch_size,
            "--z-dim": self.z_dim,
            "--base-channels": self.base_channels,
            "--learning-rate": self.learning_rate,
            "--eval-every": self.eval_every,
            "--log-every": self.log_every,
            "--validation-frames": self.validation_frames,
        }
        for option, value in positive.items():
            if value is not None and not value > 0:
                raise RlcarError(f"{option} must be positive, got {value}")

    def model_options(self) -> dict[str, Any]:
        channels = self.base_channels
        return {
            "z_dim": self.z_dim,
            "encoder_channels": None
            if channels is None
            else (channels, 2 * channels, 4 * channels, 8 * channels),
            "decoder_channels": None if channels is None else (4 * channels, 2 * channels, channels),
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
        }


@functools.cache
def vae_train_step_fn(config: VAEConfig):
    """Jitted `train_step(state, frames) -> (state, metrics)`; cached: one compile per model shape."""
    return jax.jit(with_key_stream(make_vae_update(config)))


@functools.cache
def vae_validation_fn(config: VAEConfig):
    """Jitted `(params, frames) -> (mse per frame, KL per frame, reconstructions)` from the posterior mean,
    so validation error does not depend on sampling noise. Cached: one compile per model shape."""
    vae = make_vae(config)

    def validation(params: hk.Params, frames: jax.Array):
        mean, log_var = vae.apply.encode(params, frames)
        reconstruction = vae.apply.decode(params, mean)
        mse = jnp.mean(jnp.square(reconstruction - images_to_float(frames)), axis=(1, 2, 3))
        kl = -0.5 * jnp.sum(1.0 + log_var - jnp.square(mean) - jnp.exp(log_var), axis=-1)
        return mse, kl, reconstruction

    return jax.jit(validation)


def save_png(path: Path, image: np.ndarray) -> None:
    import imageio.v2 as imageio

    with atomic_path(path) as temp:
        imageio.imwrite(temp, image, format="png")


def load_validation_frames(data_dir: Path, count: int, seed: int) -> np.ndarray:
    """Up to `count` frames of held-out episodes, the same ones every time for a given seed."""
    stream = iterate_frames(
        data_dir,
        count,
        np.random.default_rng(seed),
        split="validation",
        validation_fraction=VALIDATION_FRACTION,
        buffer_episodes=32,
        drop_remainder=False,
    )
    return next(stream)


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Pairs of rows: held-out frames above their reconstructions, GRID_COLUMNS per row."""
    count = min(len(originals), 2 * GRID_COLUMNS)
    recon = np.clip(np.asarray(reconstructions[:count]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rows = []
    for start in range(0, count, GRID_COLUMNS):
        stop = min(start + GRID_COLUMNS, count)
        pad = [np.zeros_like(originals[0])] * (GRID_COLUMNS - (stop - start))
        rows.append(np.concatenate(list(originals[start:stop]) + pad, axis=1))
        rows.append(np.concatenate(list(recon[start:stop]) + pad, axis=1))
    return np.concatenate(rows, axis=0)


def _total_steps(config: TrainVAEConfig, train_frames: int) -> int:
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * train_frames / config.batch_size))
    return config.steps if config.steps is not None else DEFAULT_STEPS


def train_vae(config: TrainVAEConfig, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train (or resume training) the run's VAE; returns the final metrics and checkpoint paths."""
    config.validate()
    run = RunDir(config.run_dir)
    manifest = dataset_manifest(run)
    validation_frames = load_validation_frames(run.data_dir, config.validation_frames, config.seed)
    with open_store(run, VAE_MODEL) as store:
        latest = store.latest_step()
        saved = store.restore_config(latest)["vae"] if latest is not None else None
        vae_config = settle_config(
            VAEConfig,
            saved,
            config.model_options(),
            ("z_dim", "encoder_channels", "decoder_channels"),
            "this run's VAE",
        )
        if latest is not None:
            state = store.restore(latest, abstract_vae_state(vae_config))
        else:
            state = _init_vae_state(vae_config, jax.random.PRNGKey(config.seed))
        start_step = int(state.step)
        # Seeded by where training starts, so a resumed run draws new batches instead of replaying.
        batches = iterate_frames(
            run.data_dir,
            config.batch_size,
            np.random.default_rng([config.seed, start_step]),
            validation_fraction=VALIDATION_FRACTION,
            epochs=None,
        )
        validation_fn = vae_validation_fn(vae_config)
        grid_path = run.path / RECONSTRUCTIONS_FILE

        def validate(params) -> dict[str, float]:
            mse, kl, reconstructions = in_fixed_batches(
                lambda frames: validation_fn(params, frames), validation_frames, config.batch_size
            )
            save_png(grid_path, reconstruction_grid(validation_frames, reconstructions))
            return {
                "validation_mse_per_pixel": float(mse.mean()),
                "validation_kl": float(kl.mean()),
                "validation_frames": len(validation_frames),
            }

        train_files, _ = split_episodes(
            [entry["file"] for entry in manifest["episodes"]], VALIDATION_FRACTION
        )
        lengths = {entry["file"]: entry["length"] for entry in manifest["episodes"]}
        train_frames = sum(lengths[name] + 1 for name in train_files)
        saved_config = {"vae": vae_config.to_dict(), "training": saved_training_record(config)}
        run.update_config({"vae": saved_config})
        result = train_supervised(
            stage=VAE_MODEL,
            run=run,
            store=store,
            state=state,
            train_step=vae_train_step_fn(vae_config),
            batches=batches,
            validate=validate,
            best_metric="validation_mse_per_pixel",
            saved_config=saved_config,
            schedule=Schedule(_total_steps(config, train_frames), config.eval_every, config.log_every),
            items_per_batch=config.batch_size,
            on_step=on_step,
        )
    return {**result, "reconstructions": str(grid_path), "z_dim": vae_config.z_dim}
