"""rlcar: world-model reinforcement learning on car racing.

Importing the package registers ``rlcar/RLCar-v0`` with Gymnasium; JAX is imported only when an
environment or model is built.
"""

from rlcar_core.envs.registration import register_envs

register_envs()

__version__ = "0.1.0"
