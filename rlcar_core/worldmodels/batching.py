"""Running a jitted batch function over any number of items with a single compiled shape."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np


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
