"""Environments behind one interface: RLCar (registered as ``rlcar/RLCar-v0``) and CarRacing-v3.

`make_env` loads on first use (PEP 562), so ``import rlcar_core`` (which registers the env) does not
import JAX: ``rlcar --help`` and ``rlcar runs`` stay fast. `EnvName` imports nothing heavy.
"""

from rlcar_core.envs.names import ENV_NAMES, EnvName
from rlcar_core.envs.registration import ENV_ID, register_envs

__all__ = ["ENV_ID", "ENV_NAMES", "EnvName", "make_env", "register_envs"]


def __getattr__(name: str):
    if name == "make_env":
        from rlcar_core.envs.factory import make_env

        return make_env
    raise AttributeError(f"module 'rlcar_core.envs' has no attribute {name!r}")
