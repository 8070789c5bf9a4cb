"""What the speed benchmarks share: this machine's achievable FLOP/s and a compiled function's FLOPs.

MFU (model FLOPs utilisation) = FLOPs of one update (from XLA's cost analysis of the compiled
function) x updates per second / the FLOP/s of a large float32 matmul timed in the same run.
"""

from __future__ import annotations

import time


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
