"""`make bench-worldmodels-speed`: do the World Models loaders keep up with the updates?

For the VAE (frames) and the MDN-RNN (sequences) it reports, from one small dataset:

- loader items/s alone: the batches train-vae / train-rnn draw, timed without any update. For the
  VAE, frames read from the compressed `.npz` shards and shuffled (`io.data.iterate_frames`), once
  decoding every shard each epoch (the path before) and once with the decoded cache; for the
  MDN-RNN, windows cut from the latent episodes train-rnn holds in memory (unchanged);
- update items/s alone: the jitted update on one batch already on the device;
- their ratio (loader / update; above 1 the loader can feed the update, and with the prefetch thread
  it reads while the update runs);
- the loop as `fit` runs it (loader then update, in one thread, as before; and with the prefetch
  thread placing batches on the devices while the update runs);
- the FLOPs of one update (XLA's cost analysis), achieved GFLOP/s and MFU against a float32 matmul
  timed in the same run (the helpers bench/dreamer_speed.py uses).

The dataset is collected once into --run-dir if it has none (`rlcar collect --episodes 8 --max-steps
200`). Rows are short; on a shared machine compare rows of the same run.

    python bench/worldmodels_speed.py
    python bench/worldmodels_speed.py --seconds 2 --base-channels 8   # quick
    python bench/worldmodels_speed.py --devices 2                      # batch over 2 local devices
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from speed_helpers import (  # noqa: E402 - bench/ is on the path
    announced_peak,
    compiled_flops,
    force_host_devices,
    print_rows,
    save_rows,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/rlcar-wm-speed"))
    parser.add_argument("--episodes", type=int, default=8, help="episodes collected when there is no data")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100, help="train-vae/train-rnn default")
    parser.add_argument("--sequence-length", type=int, default=100, help="train-rnn default")
    parser.add_argument("--base-channels", type=int, default=32, help="VAE widths c..8c (model default)")
    parser.add_argument("--hidden-size", type=int, default=256, help="LSTM units (model default)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    parser.add_argument("--devices", type=int, default=1, help="local devices the batch is split over")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return parser.parse_args()


def ensure_dataset(args: argparse.Namespace) -> Path:
    data = args.run_dir / "data"
    if not (data / "manifest.json").is_file():
        rlcar = str(Path(sys.executable).parent / "rlcar")
        command = [rlcar, "collect", "--run-dir", str(args.run_dir), "--episodes", str(args.episodes)]
        command += ["--max-steps", str(args.max_steps), "--no-progress", "--json"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return data


def rate(batches, items_per_batch: int, seconds: float, consume=lambda batch: batch) -> float:
    """Items/s drawing batches for about `seconds` (at least 3 batches)."""
    count, started = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        consume(next(batches))
        count += 1
    return count * items_per_batch / (time.perf_counter() - started)


def measure(name, make_batches, train_step, state, args, mesh, peak, items_per_batch) -> dict:
    """One model's row: loader alone, update alone, the loop without and with prefetching."""
    import jax

    from rlcar_core.io.data.prefetch import Prefetcher
    from rlcar_core.loop import mesh as meshes
    from rlcar_core.loop.keys import stream_base
    from rlcar_core.worldmodels.supervised import sharded_train_step

    row = {"model": name, "devices": mesh.devices.size, "items_per_batch": items_per_batch}
    for label, cached in (("loader_before", False), ("loader", True)):
        row[f"{label}_per_s"] = rate(make_batches(cached), items_per_batch, args.seconds)

    step = sharded_train_step(train_step, mesh)
    state = meshes.replicate(mesh, state)
    stream = meshes.replicate(mesh, stream_base(0, 0))
    batch = meshes.shard_batch(mesh, next(make_batches(True)))
    started = time.perf_counter()
    compiled = step.lower(state, batch, stream).compile()
    row["compile_s"] = time.perf_counter() - started
    row["gflop_per_update"] = compiled_flops(compiled) / 1e9

    def update(one_batch, placed: bool = True):
        nonlocal state
        state, metrics = compiled(state, one_batch if placed else meshes.shard_batch(mesh, one_batch), stream)
        jax.block_until_ready(metrics)

    row["update_per_s"] = rate(iter(lambda: batch, None), items_per_batch, args.seconds, update)
    row["loop_before_per_s"] = rate(
        make_batches(False), items_per_batch, args.seconds, lambda b: update(b, placed=False)
    )
    with Prefetcher(make_batches(True), transform=lambda b: meshes.shard_batch(mesh, b)) as ahead:
        row["loop_per_s"] = rate(ahead, items_per_batch, args.seconds, update)
    updates_per_s = row["update_per_s"] / items_per_batch
    row["achieved_gflops"] = row["gflop_per_update"] * updates_per_s
    row["mfu"] = row["achieved_gflops"] * 1e9 / peak
    row["ratio_before"] = row["loader_before_per_s"] / row["update_per_s"]
    row["ratio"] = row["loader_per_s"] / row["update_per_s"]
    return row


def vae_row(data: Path, args, mesh, peak) -> dict:
    import jax
    import numpy as np

    from rlcar_core.io.data import iterate_frames
    from rlcar_core.worldmodels.config import TrainVAEConfig, VAEConfig
    from rlcar_core.worldmodels.storage import VALIDATION_FRACTION
    from rlcar_core.worldmodels.train_vae import vae_train_step_fn
    from rlcar_core.worldmodels.vae import init_vae_state

    options = TrainVAEConfig(base_channels=args.base_channels).model_options()
    config = VAEConfig(**{name: value for name, value in options.items() if value is not None})

    def frames(cached: bool):
        return iterate_frames(
            data,
            args.batch_size,
            np.random.default_rng(0),
            validation_fraction=VALIDATION_FRACTION,
            epochs=None,
            **({} if cached else {"cache_bytes": 0}),
        )

    state = init_vae_state(config, jax.random.key(0))
    return measure("vae", frames, vae_train_step_fn(config), state, args, mesh, peak, args.batch_size)


def rnn_row(data: Path, args, mesh, peak) -> dict:
    import jax
    import numpy as np

    from rlcar_core.io.data import load_episode, load_manifest
    from rlcar_core.worldmodels.config import MDNRNNConfig
    from rlcar_core.worldmodels.latents import LatentEpisode, sample_sequences
    from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_state
    from rlcar_core.worldmodels.train_rnn import rnn_train_step_fn

    config = MDNRNNConfig(hidden_size=args.hidden_size)
    rng = np.random.default_rng(0)
    episodes = []  # the latent episodes train-rnn holds (the encoding's values do not change the cost)
    for entry in load_manifest(data)["episodes"]:
        episode = load_episode(data / entry["file"], keys=("action", "reward", "terminated"))
        frames = len(episode["action"]) + 1
        latent = rng.standard_normal((2, frames, config.z_dim)).astype(np.float32)
        episodes.append(LatentEpisode(latent[0], latent[1] - 3.0, **episode))

    def sequences(cached: bool):
        # train-rnn's loader, unchanged: windows of the latent episodes it holds in memory.
        draw = np.random.default_rng(1)
        while True:
            yield sample_sequences(episodes, args.batch_size, args.sequence_length, draw)

    state = init_mdnrnn_state(config, jax.random.key(0))
    items = args.batch_size * args.sequence_length
    return measure("mdnrnn", sequences, rnn_train_step_fn(config), state, args, mesh, peak, items)


def _table_line(row: dict) -> str:
    return (
        f"{row['model']:<7} {row['devices']:>3} {row['loader_per_s']:>10.0f} "
        f"{row['loader_before_per_s']:>10.0f} {row['update_per_s']:>9.0f} {row['ratio']:>6.1f}x "
        f"{row['ratio_before']:>6.1f}x {row['loop_per_s']:>8.0f} {row['loop_before_per_s']:>8.0f} "
        f"{row['gflop_per_update']:>10.2f} {row['achieved_gflops']:>8.2f} {100 * row['mfu']:>5.1f}%"
    )


def main() -> None:
    args = parse_args()
    force_host_devices(args.devices)
    import jax

    from rlcar_core.loop.mesh import data_mesh

    data = ensure_dataset(args)
    print(
        f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}, data {data}, batch {args.batch_size}, "
        f"sequence {args.sequence_length}",
        flush=True,
    )
    peak = announced_peak(args.matmul_size)
    mesh = data_mesh(args.devices)
    header = (
        f"{'model':<7} {'dev':>3} {'loader/s':>10} {'before':>10} {'update/s':>9} {'ratio':>7} "
        f"{'before':>7} {'loop/s':>8} {'before':>8} {'GFLOP/upd':>10} {'GFLOP/s':>8} {'MFU':>6}"
    )
    print("items are frames for the VAE and sequence steps for the MDN-RNN; 'before': no decoded")
    print("cache (loader) or no prefetch thread (loop); ratio = loader / update")
    save_rows(
        args.json,
        peak,
        print_rows(
            header, (make_row(data, args, mesh, peak) for make_row in (vae_row, rnn_row)), _table_line
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
