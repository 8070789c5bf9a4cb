"""The DreamerV3 agent of a run directory, for eval, play and export-video.

The policy itself lives with the algorithm (`rlcar_core.dreamer.policy`), so training evaluates it
without importing this layer; this module only loads it from a run.
"""

from __future__ import annotations

from pathlib import Path

from rlcar_core.dreamer.checkpoints import load_saved_agent
from rlcar_core.dreamer.config import DEFAULT_ACTIONS
from rlcar_core.dreamer.policy import DreamerPolicy, jitted_policy, on_default_device
from rlcar_core.envs.action_repeat import HeldActionPolicy
from rlcar_core.errors import RlcarError

DreamerAgent = DreamerPolicy

__all__ = ["DreamerAgent", "jitted_policy", "load_dreamer_agent", "on_default_device"]


def load_dreamer_agent(
    run_dir: Path, checkpoint: str, env_name: str, seed: int, actions: str = DEFAULT_ACTIONS
) -> DreamerAgent | HeldActionPolicy:
    """The actor of checkpoint `checkpoint` (best, latest, epN or a path) of `run_dir`, acting by
    `actions` (sample or mode). An agent trained with action repeat k (CarRacing-v3's default is 2)
    decides every k frames and holds its action in between, as it did in training: eval, play and
    export-video step every frame. On RLCar it carries the camera its run trained with (`camera`),
    which the envs built for it film with."""
    saved = load_saved_agent(run_dir, checkpoint)
    if saved.env != env_name:
        raise RlcarError(
            f"the DreamerV3 agent in {run_dir} was trained on {saved.env}; pass --env {saved.env}"
        )
    agent = DreamerAgent(saved.config, saved.params, seed, actions, camera=saved.camera)
    return agent if saved.action_repeat == 1 else HeldActionPolicy(agent, saved.action_repeat)
