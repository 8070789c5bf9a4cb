"""What every driver offers to ``eval``, ``play`` and ``export-video``: batched actions from observations.

The protocol itself lives with the env (`rlcar_core.envs.drivers`), below the algorithms that also use it.
"""

from rlcar_core.envs.drivers import Policy as Agent
from rlcar_core.envs.drivers import select_obs

__all__ = ["Agent", "select_obs"]
