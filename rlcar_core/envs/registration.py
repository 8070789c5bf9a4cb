"""Registers ``rlcar/RLCar-v0`` with Gymnasium (done on ``import rlcar_core``; no JAX is imported)."""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "rlcar/RLCar-v0"


def register_envs() -> None:
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="rlcar_core.envs.rlcar_gym:RLCarGymEnv",
        vector_entry_point="rlcar_core.envs.rlcar_vector:RLCarVectorEnv",
        # The simulator truncates by itself (max_steps), so no TimeLimit wrapper is added on top.
        max_episode_steps=None,
        disable_env_checker=False,
    )
