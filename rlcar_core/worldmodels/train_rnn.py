"""`rlcar train-rnn`: fit the MDN-RNN (M) on the dataset encoded by the run's VAE.

The dataset is encoded once per VAE checkpoint (see latents.py); every batch then draws fresh
z ~ q(z | frame) from the stored posteriors, as in the paper. Validation uses the held-out episodes
(the same split as the VAE's) with a fixed draw of z, and reports the latent NLL per dimension.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.data import split_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.config import MDNRNNConfig
from rlcar_core.worldmodels.latents import (
    LatentEpisode,
    LatentSequences,
    all_windows,
    encode_dataset,
    sample_sequences,
)
from rlcar_core.worldmodels.mdnrnn_update import (
    MDNRNNBatch,
    init_mdnrnn_state,
    make_mdnrnn_evaluate,
    make_mdnrnn_update,
)
from rlcar_core.worldmodels.saved_models import abstract_rnn_state, load_vae, saved_training_record
from rlcar_core.worldmodels.stages import (
    RNN_MODEL,
    VAE_MODEL,
    VALIDATION_FRACTION,
    dataset_manifest,
    open_store,
    pinned_step,
    settle_config,
    upstream_step,
)
from rlcar_core.worldmodels.training_loop import Schedule, StepCallback, train_supervised, with_key_stream
from rlcar_core.worldmodels.vae import sample_latent

DEFAULT_STEPS = 2000
# Unoptimised compilation for the one-off parameter init, whose many random draws compile slowly.
_init_rnn_state = jax.jit(
    init_mdnrnn_state, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)


@dataclasses.dataclass(frozen=True)
class TrainRNNConfig:
    run_dir: Path
    steps: int | None = None  # total updates; a resumed run continues up to this count
    batch_size: int = 100
    sequence_length: int = 100
    # Model options; None keeps the default, or the checkpoint's value when resuming.
    hidden_size: int | None = None
    num_mixtures: int | None = None
    learning_rate: float | None = None
    eval_every: int = 500
    log_every: int = 10
    validation_sequences: int = 200
    seed: int = 0

    def validate(self) -> None:
        positive = {
            "--steps": self.steps,
            "--batch-size": self.batch_size,
            "--sequence-length": self.sequence_length,
            "--hidden-size": self.hidden_size,
            "--mixtures": self.num_mixtures,
            "--learning-rate": self.learning_rate,
            "--eval-every": self.eval_every,
            "--log-every": self.log_every,
            "--validation-sequences": self.validation_sequences,
        }
        for option, value in positive.items():
            if value is not None and not value > 0:
                raise RlcarError(f"{option} must be positive, got {value}")


def make_latent_sequence_update(config: MDNRNNConfig):
    """`update(state, LatentSequences, key)`: draw z from the stored posteriors, then one MDN-RNN step."""
    update = make_mdnrnn_update(config)

    def latent_update(state, sequences: LatentSequences, key):
        sample_key, update_key = jax.random.split(key)
        latents = sample_latent(sequences.mean, sequences.log_var, sample_key)
        batch = MDNRNNBatch(latents, sequences.action, sequences.reward, sequences.terminated, sequences.mask)
        return update(state, batch, update_key)

    return latent_update


@functools.cache
def rnn_train_step_fn(config: MDNRNNConfig):
    """Jitted `train_step(state, LatentSequences) -> (state, metrics)`; cached per model shape."""
    return jax.jit(with_key_stream(make_latent_sequence_update(config)))


@functools.cache
def rnn_evaluate_fn(config: MDNRNNConfig):
    return jax.jit(make_mdnrnn_evaluate(config))


def _training_batches(
    episodes: list[LatentEpisode], config: TrainRNNConfig, rng: np.random.Generator
) -> Iterator[LatentSequences]:
    while True:
        yield sample_sequences(episodes, config.batch_size, config.sequence_length, rng)


def _fixed_latent_batches(windows: LatentSequences, batch_size: int, seed: int) -> list[MDNRNNBatch]:
    """Validation batches with one fixed draw of z, padded to whole batches with masked-out rows."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(windows.mean.shape).astype(np.float32)
    latents = windows.mean + np.exp(0.5 * windows.log_var) * noise
    batches = []
    for start in range(0, len(latents), batch_size):
        rows = slice(start, start + batch_size)
        pad = batch_size - len(latents[rows])

        def padded(values: np.ndarray, pad: int = pad) -> np.ndarray:
            return np.pad(values, [(0, pad)] + [(0, 0)] * (values.ndim - 1)) if pad else values

        batches.append(
            MDNRNNBatch(
                padded(latents[rows]),
                padded(windows.action[rows]),
                padded(windows.reward[rows]),
                padded(windows.terminated[rows]),
                padded(windows.mask[rows]),
            )
        )
    return batches


def train_rnn(config: TrainRNNConfig, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train (or resume training) the run's MDN-RNN; returns the final metrics and checkpoint paths."""
    config.validate()
    run = RunDir(config.run_dir)
    dataset_manifest(run)
    with open_store(run, RNN_MODEL) as store:
        latest = store.latest_step()
        saved = store.restore_config(latest) if latest is not None else None
        if saved is not None:
            # A resumed MDN-RNN must keep reading the latents of the VAE it started with.
            vae_step = pinned_step(run, VAE_MODEL, int(saved["vae_step"]), RNN_MODEL)
        else:
            vae_step = upstream_step(run, VAE_MODEL)
        vae_config, vae_params, _ = load_vae(run, vae_step)
        rnn_config = settle_config(
            MDNRNNConfig,
            saved["mdnrnn"] if saved is not None else None,
            {
                "z_dim": vae_config.z_dim,
                "hidden_size": config.hidden_size,
                "num_mixtures": config.num_mixtures,
                "learning_rate": config.learning_rate,
                "batch_size": config.batch_size,
                "sequence_length": config.sequence_length,
            },
            ("z_dim", "hidden_size", "num_mixtures"),
            "this run's MDN-RNN",
        )

        def report_encoding(done: int, total: int) -> None:
            if on_step is not None:
                on_step({"kind": "encode", "episodes": done, "total_episodes": total})

        episodes = encode_dataset(run, vae_config, vae_params, vae_step, report_encoding)
        train_files, validation_files = split_episodes(list(episodes), VALIDATION_FRACTION)
        if not validation_files:
            raise RlcarError(
                f"the dataset in {run.path} needs at least 2 episodes to hold some out for validation"
            )

        if latest is not None:
            state = store.restore(latest, abstract_rnn_state(rnn_config))
        else:
            state = _init_rnn_state(rnn_config, jax.random.PRNGKey(config.seed))
        start_step = int(state.step)
        batches = _training_batches(
            [episodes[name] for name in train_files], config, np.random.default_rng([config.seed, start_step])
        )
        validation_windows = all_windows(
            [episodes[name] for name in validation_files], config.sequence_length, config.validation_sequences
        )
        validation_batches = _fixed_latent_batches(validation_windows, config.batch_size, config.seed)
        evaluate = rnn_evaluate_fn(rnn_config)

        def validate(params) -> dict[str, float]:
            totals: dict[str, float] = {}
            weight_sum = 0.0
            for batch in validation_batches:
                weight = float(batch.mask.sum())
                for name, value in jax.device_get(evaluate(params, batch)).items():
                    totals[name] = totals.get(name, 0.0) + weight * float(value)
                weight_sum += weight
            means = {name: total / max(weight_sum, 1.0) for name, total in totals.items()}
            return {
                "validation_loss": means["loss"],
                "validation_nll": means["latent_nll"],
                "validation_reward_mse": means["reward_mse"],
                "validation_done_bce": means["done_bce"],
                "validation_sequences": len(validation_windows.mask),
            }

        saved_config = {
            "mdnrnn": rnn_config.to_dict(),
            "vae_step": vae_step,
            "training": saved_training_record(config),
        }
        run.update_config({"mdnrnn": saved_config})
        result = train_supervised(
            stage=RNN_MODEL,
            run=run,
            store=store,
            state=state,
            train_step=rnn_train_step_fn(rnn_config),
            batches=batches,
            validate=validate,
            best_metric="validation_loss",
            saved_config=saved_config,
            schedule=Schedule(config.steps or DEFAULT_STEPS, config.eval_every, config.log_every),
            items_per_batch=config.batch_size * config.sequence_length,
            on_step=on_step,
        )
    return {**result, "vae_step": vae_step, "hidden_size": rnn_config.hidden_size}
