"""What the speed benchmarks share: this machine's achievable FLOP/s and a compiled function's FLOPs.

MFU (model FLOPs utilisation) = FLOPs of one update (from XLA's cost analysis of the compiled
function) x updates per second / the FLOP/s of a large float32 matmul timed in the same run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def matmul_peak(size: int, seconds: float = 1.5) -> float:
    """Achievable float32 FLOP/s: a square matmul, jitted, timed for about `seconds`."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        matmul(a, b).block_until_ready()
        calls += 1
    return 2.0 * size**3 * calls / (time.perf_counter() - started)


def compiled_flops(compiled) -> float:
    """FLOPs XLA's cost analysis counts for a compiled function (`jax.jit(f).lower(...).compile()`)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def print_rows(header: str, rows: Iterable[dict], line: Callable[[dict], str]) -> list[dict]:
    """Print a table: the header, a rule, then one `line(row)` per row as it is measured."""
    print(header)
    print("-" * len(header))
    measured = []
    for row in rows:
        measured.append(row)
        print(line(row), flush=True)
    return measured


def save_rows(path: Path | None, peak_flops: float, rows: list[dict]) -> None:
    """The rows and the matmul peak they were measured against, as JSON (nothing when `path` is None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"peak_gflops": peak_flops / 1e9, "rows": rows}, indent=2))


def announced_peak(size: int) -> float:
    """`matmul_peak(size)`, printed as the line every speed table is measured against."""
    peak = matmul_peak(size)
    print(f"float32 matmul {size}^2: {peak / 1e9:.1f} GFLOP/s (the peak below)", flush=True)
    return peak


def force_host_devices(count: int) -> None:
    """Ask XLA for `count` CPU devices; must run before JAX starts (a no-op for one, or when set)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
