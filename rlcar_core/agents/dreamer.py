"""The DreamerV3 agent of a run directory, for eval, play and export-video.

The policy itself lives with the algorithm (`rlcar_core.dreamer.policy`), so training evaluates it
without importing this layer; this module only loads it from a run.
"""

from __future__ import annotations

from pathlib import Path

from rlcar_core.dreamer.checkpoints import load_saved_agent
from rlcar_core.dreamer.policy import DreamerPolicy, jitted_policy, on_default_device
from rlcar_core.errors import RlcarError

DreamerAgent = DreamerPolicy

__all__ = ["DreamerAgent", "jitted_policy", "load_dreamer_agent", "on_default_device"]


def load_dreamer_agent(run_dir: Path, checkpoint: str, env_name: str, seed: int) -> DreamerAgent:
    """The actor of checkpoint `checkpoint` (best, latest, epN or a path) of `run_dir`."""
    saved = load_saved_agent(run_dir, checkpoint)
    if saved.env != env_name:
        raise RlcarError(
            f"the DreamerV3 agent in {run_dir} was trained on {saved.env}; pass --env {saved.env}"
        )
    return DreamerAgent(saved.config, saved.params, seed)
