"""`rlcar train-rnn`: fit the MDN-RNN (M) on the dataset encoded by the run's VAE.

The dataset is encoded once per VAE checkpoint (see latents.py); every batch then draws fresh
z ~ q(z | frame) from the stored posteriors, as in the paper. Validation uses the held-out episodes
(the same split as the VAE's) with a fixed draw of z, and reports the latent NLL per dimension.
`--vae-checkpoint` moves a trained MDN-RNN on to another VAE checkpoint (see storage.move_on).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.data import split_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.config import MDNRNNConfig, TrainRNNConfig
from rlcar_core.worldmodels.latents import (
    LatentEpisode,
    LatentSequences,
    all_windows,
    encode_dataset,
    sample_sequences,
)
from rlcar_core.worldmodels.mdnrnn import (
    MDNRNNBatch,
    init_mdnrnn_state,
    make_mdnrnn_evaluate,
    make_mdnrnn_update,
)
from rlcar_core.worldmodels.storage import (
    RNN_MODEL,
    VAE_MODEL,
    VALIDATION_FRACTION,
    abstract_rnn_state,
    dataset_manifest,
    load_vae,
    move_on,
    newest_saved_config,
    open_existing_store,
    record_model_config,
    requested_upstream,
    resume_or_warm_start,
    run_dir_of,
    saved_training_record,
    settle_config,
    training_session,
    warm_start,
)
from rlcar_core.worldmodels.supervised import Schedule, StepCallback, fit, keyed_train_step, training_mesh
from rlcar_core.worldmodels.vae import sample_latent

# Unoptimised compilation for the one-off parameter init, whose many random draws compile slowly.
_init_rnn_state = jax.jit(
    init_mdnrnn_state, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)


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
def rnn_train_step_fn(config: MDNRNNConfig) -> Callable:
    """Jitted `train_step(state, LatentSequences, stream) -> (state, metrics)`; cached per model shape."""
    return keyed_train_step(make_latent_sequence_update(config))


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
    run = RunDir(run_dir_of(config))
    dataset_manifest(run)
    # Checked before the session opens the MDN-RNN's checkpoint folder: a refusal leaves nothing behind.
    open_existing_store(run, VAE_MODEL).close()
    mesh = training_mesh(config.devices, config.batch_size)

    def move_on_to_the_requested_vae() -> None:
        if config.vae_checkpoint is not None:
            step = requested_upstream(run, VAE_MODEL, RNN_MODEL, None, "vae_step", config.vae_checkpoint)
            move_on(run, RNN_MODEL, VAE_MODEL, "vae_step", step)

    with training_session(run, RNN_MODEL, on_step, move_on_to_the_requested_vae) as (stop, log, ckpt):
        saved = newest_saved_config(ckpt)
        warm = None
        if saved is None and config.vae_checkpoint is not None:
            warm = warm_start(
                run, RNN_MODEL, lambda saved: abstract_rnn_state(MDNRNNConfig.from_dict(saved["mdnrnn"]))
            )
        vae_step = requested_upstream(run, VAE_MODEL, RNN_MODEL, saved, "vae_step", config.vae_checkpoint)
        vae_config, vae_params, _ = load_vae(run, vae_step)
        model_saved = saved if saved is not None else (warm.saved_config if warm is not None else None)
        rnn_config = settle_config(
            MDNRNNConfig,
            model_saved["mdnrnn"] if model_saved is not None else None,
            {"z_dim": vae_config.z_dim, **config.model_options()},
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
        _, state = resume_or_warm_start(ckpt, log, abstract_rnn_state(rnn_config), warm)
        if state is None:
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

        training = saved_training_record(config)
        saved_config = record_model_config(run, RNN_MODEL, rnn_config, training, vae_step=vae_step)
        result = fit(
            stage=RNN_MODEL,
            ckpt=ckpt,
            log=log,
            stop=stop,
            state=state,
            train_step=rnn_train_step_fn(rnn_config),
            seed=config.seed,
            batches=batches,
            validate=validate,
            best_metric="validation_loss",
            saved_config=saved_config,
            schedule=Schedule(config.steps or config.DEFAULT_STEPS, config.eval_every, config.log_every),
            items_per_batch=config.batch_size * config.sequence_length,
            on_step=on_step,
            mesh=mesh,
        )
    return {**result, "run_dir": str(run.path), "vae_step": vae_step, "hidden_size": rnn_config.hidden_size}
