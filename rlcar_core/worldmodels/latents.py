"""The dataset in latent space: every frame encoded once by one VAE checkpoint, cached on disk.

The MDN-RNN and the dream train on latents, not pixels. Each episode keeps the posterior `mean` and
`log_var` of every frame (so training can draw a fresh z each time, as in the paper) along with the
actions, rewards and terminations. A latent frame is ~50x smaller than a pixel frame, so the latent
dataset is held in memory; the cache file is named after the VAE step and grows as episodes are added.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import haiku as hk
import jax
import numpy as np

from rlcar_core.io.atomic import atomic_path
from rlcar_core.io.data import load_episode
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.config import VAEConfig
from rlcar_core.worldmodels.storage import dataset_manifest
from rlcar_core.worldmodels.vae import encoder_fn

LATENTS_DIR = "latents"
ENCODE_BATCH = 256
_EPISODES_PER_READ = 16  # episodes decoded from disk and encoded together, to fill whole batches


class LatentEpisode(NamedTuple):
    mean: np.ndarray  # (T + 1, z) float32: posterior mean of each frame
    log_var: np.ndarray  # (T + 1, z) float32
    action: np.ndarray  # (T, A) float32
    reward: np.ndarray  # (T,) float32
    terminated: np.ndarray  # (T,) bool


class LatentSequences(NamedTuple):
    """Fixed-length windows of latent episodes, batch-major; padding past an episode's end is masked."""

    mean: np.ndarray  # (B, L + 1, z)
    log_var: np.ndarray  # (B, L + 1, z)
    action: np.ndarray  # (B, L, A)
    reward: np.ndarray  # (B, L)
    terminated: np.ndarray  # (B, L)
    mask: np.ndarray  # (B, L) bool


def in_fixed_batches(function: Callable, items: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
    """Apply `function` (batch -> tuple of per-item arrays) to all `items`, zero-padding the last batch
    so one compile serves every batch; returns each output concatenated over the items."""
    pieces = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        padding = np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)
        outputs = jax.device_get(function(np.concatenate([chunk, padding])))
        pieces.append([np.asarray(output)[: len(chunk)] for output in outputs])
    return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))


def latent_cache_path(run: RunDir, vae_step: int) -> Path:
    return run.path / LATENTS_DIR / f"vae-ep{vae_step}.npz"


def _read_cache(path: Path) -> dict[str, LatentEpisode]:
    if not path.is_file():
        return {}
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, KeyError):
        return {}  # a damaged cache is only a cache: encode again
    episodes = {}
    frame_start = step_start = 0
    for name, length in zip(arrays["files"].tolist(), arrays["lengths"].tolist(), strict=True):
        frames = slice(frame_start, frame_start + length + 1)
        steps = slice(step_start, step_start + length)
        episodes[name] = LatentEpisode(
            arrays["mean"][frames],
            arrays["log_var"][frames],
            arrays["action"][steps],
            arrays["reward"][steps],
            arrays["terminated"][steps],
        )
        frame_start, step_start = frames.stop, steps.stop
    return episodes


def _write_cache(path: Path, episodes: dict[str, LatentEpisode]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(episodes)
    with atomic_path(path) as temp:
        np.savez(
            temp,
            files=np.asarray(names),
            lengths=np.asarray([len(episodes[name].action) for name in names], np.int64),
            **{
                field: np.concatenate([getattr(episodes[name], field) for name in names])
                for field in LatentEpisode._fields
            },
        )


def encode_dataset(
    run: RunDir,
    vae_config: VAEConfig,
    vae_params: hk.Params,
    vae_step: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, LatentEpisode]:
    """Every episode of the run's dataset in latent space, by file name, in manifest order. Episodes
    already in the cache of `vae_step` are not encoded again. `on_progress(done, total)` counts the
    episodes encoded now."""
    files = [entry["file"] for entry in dataset_manifest(run)["episodes"]]
    path = latent_cache_path(run, vae_step)
    episodes = _read_cache(path)
    missing = [name for name in files if name not in episodes]
    encode = encoder_fn(vae_config)
    for start in range(0, len(missing), _EPISODES_PER_READ):
        names = missing[start : start + _EPISODES_PER_READ]
        loaded = [load_episode(run.data_dir / name) for name in names]
        frames = np.concatenate([episode["obs"] for episode in loaded])
        mean, log_var = in_fixed_batches(lambda batch: encode(vae_params, batch), frames, ENCODE_BATCH)
        offset = 0
        for name, episode in zip(names, loaded, strict=True):
            count = len(episode["obs"])
            episodes[name] = LatentEpisode(
                mean[offset : offset + count],
                log_var[offset : offset + count],
                episode["action"],
                episode["reward"],
                episode["terminated"],
            )
            offset += count
        if on_progress is not None:
            on_progress(start + len(names), len(missing))
    if missing:
        _write_cache(path, {name: episodes[name] for name in files})
    return {name: episodes[name] for name in files}


def _window(episode: LatentEpisode, start: int, length: int) -> LatentSequences:
    steps = min(length, len(episode.action) - start)
    pad = length - steps

    def take(values: np.ndarray, extra: int = 0) -> np.ndarray:
        window = values[start : start + steps + extra]
        return np.pad(window, [(0, pad)] + [(0, 0)] * (window.ndim - 1)) if pad else window

    return LatentSequences(
        mean=take(episode.mean, 1),
        log_var=take(episode.log_var, 1),
        action=take(episode.action),
        reward=take(episode.reward),
        terminated=take(episode.terminated),
        mask=np.arange(length) < steps,
    )


def _stack(windows: list[LatentSequences]) -> LatentSequences:
    return LatentSequences(*(np.stack(field) for field in zip(*windows, strict=True)))


def sample_sequences(
    episodes: list[LatentEpisode],
    batch_size: int,
    length: int,
    rng: np.random.Generator,
    from_start_fraction: float = 0.25,
) -> LatentSequences:
    """Random windows; episodes are drawn in proportion to their length so every step is about equally
    likely. A fraction of windows start at the episode's first frame: the controller and the dream
    both start the LSTM from zeros at a reset frame, so that situation must be well represented."""
    lengths = np.array([len(episode.action) for episode in episodes], np.float64)
    chosen = rng.choice(len(episodes), size=batch_size, p=lengths / lengths.sum())
    windows = []
    for index in chosen:
        episode_length = len(episodes[index].action)
        from_start = rng.random() < from_start_fraction
        start = 0 if from_start else int(rng.integers(0, episode_length))
        windows.append(_window(episodes[index], start, length))
    return _stack(windows)


def all_windows(episodes: list[LatentEpisode], length: int, limit: int) -> LatentSequences:
    """Consecutive windows from each episode's start, up to `limit` of them: a fixed validation set."""
    windows = []
    for episode in episodes:
        for start in range(0, len(episode.action), length):
            if len(windows) == limit:
                return _stack(windows)
            windows.append(_window(episode, start, length))
    return _stack(windows)
