"""`make bench-dreamer-speed`: how close the DreamerV3 update runs to this machine's limit.

For each size preset (tiny, small) and observation kind (sensors, pixels) it reports:

- the FLOPs of one jitted update, from XLA's cost analysis of the compiled function;
- this machine's achievable FLOP/s, from a large float32 matmul timed in the same run;
- the achieved FLOP/s (update FLOPs x updates/s) and their ratio to that peak (model FLOPs utilisation);
- replayed steps/s (batch_size x batch_length x updates/s).

Each row is timed on the learner path train-dreamer uses: windows sampled from a numpy replay with
the loop's seeds, then the jitted update, then the metrics fetched for the NaN check and the logs.
`--updates-per-call K` fuses K updates into one jitted call (`lax.scan`), as train-dreamer does for
the updates one collection step owes (with train-dreamer's CPU default of RSSM scan unrolling);
`--unfused` is the path before these changes (one call per update, rolled scans).
The machine may be shared: every row is short (a few seconds), so compare rows from the same run.

    python bench/dreamer_speed.py                       # all four rows
    python bench/dreamer_speed.py --sizes tiny --obs sensors --seconds 5
    python bench/dreamer_speed.py --devices 2           # data parallel over 2 local devices
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from speed_helpers import announced_peak, force_host_devices, print_rows, save_rows  # noqa: E402 - bench/ is on the path when run as a script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--obs", nargs="+", default=["sensors", "pixels"])
    parser.add_argument("--batch-size", type=int, default=8, help="train-dreamer's CPU default")
    parser.add_argument("--batch-length", type=int, default=16, help="train-dreamer's CPU default")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per row")
    parser.add_argument(
        "--updates-per-call", type=int, default=None, help="K fused updates (default: train-dreamer's)"
    )
    parser.add_argument(
        "--unfused", action="store_true", help="one jitted call per update (the path before fusing)"
    )
    parser.add_argument("--donate", action="store_true", help="donate the training state to the call")
    parser.add_argument("--unroll", type=int, default=None, help="DreamerConfig.scan_unroll (0: fully)")
    parser.add_argument("--devices", type=int, default=1, help="local devices the batch is sharded over")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="DreamerConfig overrides (what-if rows)"
    )
    parser.add_argument("--skip-flops", action="store_true", help="only the speed (faster to compile)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return parser.parse_args()


def random_replay(model, steps_per_stream: int, num_streams: int):
    """A replay full of random steps shaped like the real ones (the update's cost does not depend on
    the values)."""
    import numpy as np

    from rlcar_core.dreamer.replay import ReplayBuffer, replay_spec

    spec = replay_spec(model)
    replay = ReplayBuffer(steps_per_stream * num_streams, spec, num_streams)
    rng = np.random.default_rng(0)
    for stream in range(num_streams):
        episode = {}
        for name, (shape, dtype) in spec.items():
            full = (steps_per_stream,) + shape
            if dtype == np.uint8:
                episode[name] = rng.integers(0, 256, full, dtype=np.uint8)
            elif dtype == np.dtype(bool):
                episode[name] = rng.random(full) < 0.01
            else:
                episode[name] = rng.standard_normal(full).astype(dtype)
        replay.add_episode(episode, stream=stream)
    return replay


def _overrides(pairs: list[str]) -> dict:
    import json

    def value(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return {name: value(text) for name, text in (pair.split("=", 1) for pair in pairs)}


def measure_row(size: str, obs: str, args: argparse.Namespace, peak: float) -> dict:
    import jax

    from rlcar_core.dreamer.checkpoints import initial_trainer_state
    from rlcar_core.dreamer.config import DreamerConfig
    from rlcar_core.dreamer.learner import DEFAULT_UPDATES_PER_CALL, Learner
    from rlcar_core.dreamer.train_config import CPU_MODEL_DEFAULTS, observation_shape
    from rlcar_core.loop.mesh import data_mesh

    # train-dreamer's CPU default, or rolled scans for the path before the speed-ups (--unfused).
    unroll = (
        args.unroll
        if args.unroll is not None
        else 1
        if args.unfused
        else CPU_MODEL_DEFAULTS.get("scan_unroll", 1)
    )
    extra = {"scan_unroll": unroll, **_overrides(args.set)}
    model = DreamerConfig.preset(size, obs_kind=obs, obs_shape=observation_shape("rlcar", obs), **extra)
    per_call = args.updates_per_call or DEFAULT_UPDATES_PER_CALL
    mesh = data_mesh(args.devices)
    learner = Learner(
        model,
        args.batch_size,
        args.batch_length,
        seed=0,
        mesh=mesh,
        fused=False if args.unfused else None,  # None: the learner's choice for this model
        donate=args.donate,
    )
    replay = random_replay(model, 2000, 8)
    state = learner.place(initial_trainer_state(model, jax.random.key(0)).agent)

    started = time.perf_counter()
    flops_per_update = float("nan") if args.skip_flops else learner.flops_per_update(state, replay)
    state, _ = learner.train(state, replay, first_update=0, count=per_call)  # compile
    compile_seconds = time.perf_counter() - started

    updates, started = 0, time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        state, metrics = learner.train(state, replay, first_update=updates, count=per_call)
        updates += per_call
    seconds = time.perf_counter() - started
    assert all(map(float, (m["wm/loss"] for m in metrics)))  # fetched, so the work really ran
    per_second = updates / seconds
    achieved = flops_per_update * per_second
    return {
        "size": size,
        "obs": obs,
        "devices": args.devices,
        "updates_per_call": per_call if learner.fused else 1,
        "fused": learner.fused,
        "donate": args.donate,
        "scan_unroll": model.scan_unroll,
        "gflop_per_update": flops_per_update / 1e9,
        "updates_per_s": per_second,
        "replayed_steps_per_s": per_second * args.batch_size * args.batch_length,
        "achieved_gflops": achieved / 1e9,
        "peak_gflops": peak / 1e9,
        "mfu": achieved / peak,
        "compile_s": compile_seconds,
    }


def _table_line(row: dict) -> str:
    return (
        f"{row['size']:<6} {row['obs']:<8} {row['devices']:>3} {row['updates_per_call']:>3} "
        f"{row['gflop_per_update']:>10.3f} {row['updates_per_s']:>8.1f} "
        f"{row['replayed_steps_per_s']:>11.0f} {row['achieved_gflops']:>8.2f} "
        f"{100 * row['mfu']:>6.1f}% {row['compile_s']:>7.1f}s"
    )


def main() -> None:
    args = parse_args()
    force_host_devices(args.devices)
    import jax

    print(
        f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}, batch {args.batch_size} x {args.batch_length}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True,
    )
    peak = announced_peak(args.matmul_size)
    header = (
        f"{'size':<6} {'obs':<8} {'dev':>3} {'K':>3} {'GFLOP/upd':>10} {'upd/s':>8} {'replayed/s':>11} "
        f"{'GFLOP/s':>8} {'MFU':>7} {'compile':>8}"
    )
    save_rows(
        args.json,
        peak,
        print_rows(
            header,
            (measure_row(size, obs, args, peak) for size in args.sizes for obs in args.obs),
            _table_line,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
