"""`rlcar train-vae`: fit the ConvVAE (V) on the run's frames, streamed from disk.

Validation uses frames of held-out episodes and reports the reconstruction error of the posterior
mean as MSE per pixel (channels in [0, 1]); a labelled grid of those reconstructions is saved as a PNG.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import atomic_path
from rlcar_core.io.data import iterate_frames, split_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.config import TrainVAEConfig, VAEConfig
from rlcar_core.worldmodels.latents import in_fixed_batches
from rlcar_core.worldmodels.storage import (
    VAE_MODEL,
    VALIDATION_FRACTION,
    abstract_vae_state,
    dataset_manifest,
    newest_saved_config,
    record_model_config,
    run_dir_of,
    saved_training_record,
    settle_config,
    training_session,
)
from rlcar_core.worldmodels.supervised import Schedule, StepCallback, fit, keyed_train_step, training_mesh
from rlcar_core.worldmodels.vae import IMAGE_SHAPE, init_vae_state, make_vae_update, vae_validation_fn

RECONSTRUCTIONS_FILE = "vae_reconstructions.png"
GRID_COLUMNS = 8
ROW_LABELS = ("real", "reconstructed")
LABEL_WIDTH = 112  # pixels left of each row for its label
# Parameter init is many threefry draws, which XLA:CPU's optimising backend compiles very slowly;
# unoptimised code is plenty fast for a one-off init.
_init_vae_state = jax.jit(
    init_vae_state, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)


@functools.cache
def vae_train_step_fn(config: VAEConfig) -> Callable:
    """Jitted `train_step(state, frames, stream) -> (state, metrics)`; cached: one compile per model shape."""
    return keyed_train_step(make_vae_update(config))


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


def _label_strip(labels: list[str], row_height: int) -> np.ndarray:
    """A black column with one white label per row, vertically centred (pygame's built-in font)."""
    from rlcar_core.render.hud import array_from_surface, pygame_module

    pygame = pygame_module()
    surface = pygame.Surface((LABEL_WIDTH, row_height * len(labels)))
    font = pygame.font.Font(None, 20)
    for row, label in enumerate(labels):
        text = font.render(label, True, (255, 255, 255))
        surface.blit(text, (6, row * row_height + (row_height - text.get_height()) // 2))
    return array_from_surface(surface)


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Pairs of rows, labelled on the left: held-out frames ("real") above their reconstructions
    ("reconstructed"), GRID_COLUMNS per row."""
    count = min(len(originals), 2 * GRID_COLUMNS)
    recon = np.clip(np.asarray(reconstructions[:count]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rows, labels = [], []
    for start in range(0, count, GRID_COLUMNS):
        stop = min(start + GRID_COLUMNS, count)
        pad = [np.zeros_like(originals[0])] * (GRID_COLUMNS - (stop - start))
        rows.append(np.concatenate(list(originals[start:stop]) + pad, axis=1))
        rows.append(np.concatenate(list(recon[start:stop]) + pad, axis=1))
        labels.extend(ROW_LABELS)
    grid = np.concatenate(rows, axis=0)
    return np.concatenate([_label_strip(labels, originals.shape[1]), grid], axis=1)


def _total_steps(config: TrainVAEConfig, train_frames: int) -> int:
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * train_frames / config.batch_size))
    return config.steps if config.steps is not None else config.DEFAULT_STEPS


def train_vae(config: TrainVAEConfig, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train (or resume training) the run's VAE; returns the final metrics and checkpoint paths."""
    config.validate()
    run = RunDir(run_dir_of(config))
    manifest = dataset_manifest(run)  # before the lock and any checkpoint folder: no data, no trace
    validation_frames = load_validation_frames(run.data_dir, config.validation_frames, config.seed)
    if validation_frames.shape[1:] != IMAGE_SHAPE:  # a camera of another frame size (see --camera)
        raise RlcarError(
            f"the VAE reads frames of shape {IMAGE_SHAPE}; {run.data_dir} holds frames of shape "
            f"{validation_frames.shape[1:]}: collect with a 64-pixel --camera"
        )
    mesh = training_mesh(config.devices, config.batch_size)
    with training_session(run, VAE_MODEL, on_step) as (stop, log, ckpt):
        saved = newest_saved_config(ckpt)
        vae_config = settle_config(
            VAEConfig,
            saved["vae"] if saved else None,
            config.model_options(),
            ("z_dim", "encoder_channels", "decoder_channels"),
            "this run's VAE",
        )
        restored = ckpt.resume(abstract_vae_state(vae_config))
        state = restored.state if restored else _init_vae_state(vae_config, jax.random.PRNGKey(config.seed))
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
        saved_config = record_model_config(run, VAE_MODEL, vae_config, saved_training_record(config))
        result = fit(
            stage=VAE_MODEL,
            ckpt=ckpt,
            log=log,
            stop=stop,
            state=state,
            train_step=vae_train_step_fn(vae_config),
            seed=config.seed,
            batches=batches,
            validate=validate,
            best_metric="validation_mse_per_pixel",
            saved_config=saved_config,
            schedule=Schedule(_total_steps(config, train_frames), config.eval_every, config.log_every),
            items_per_batch=config.batch_size,
            on_step=on_step,
            mesh=mesh,
        )
    return {**result, "run_dir": str(run.path), "reconstructions": str(grid_path), "z_dim": vae_config.z_dim}
