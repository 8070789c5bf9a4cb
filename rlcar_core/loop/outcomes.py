"""How a training run ends other than by finishing: shared by every training command.

Both are runtime outcomes, not bad input: the CLI maps TrainingDiverged to exit code 1 and
TrainingInterrupted to 130, after the loop has kept (or saved) a usable checkpoint.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the last good checkpoint is kept. A runtime failure, not bad input."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, raised after the current state was saved; the message says where."""


def all_finite(tree: Any) -> bool:
    return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))
