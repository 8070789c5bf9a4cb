"""Environments behind one interface: RLCar (registered as ``rlcar/RLCar-v0``) and CarRacing-v3."""

from rlcar_core.envs.factory import ENV_NAMES, make_env
from rlcar_core.envs.registration import ENV_ID, register_envs

__all__ = ["ENV_ID", "ENV_NAMES", "make_env", "register_envs"]
