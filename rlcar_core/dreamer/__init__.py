"""DreamerV3 (Hafner et al. 2023/2025) in JAX + Haiku: pure functions, explicit keys, no I/O.

Typical use::

    config = DreamerConfig.preset("small", obs_kind="sensors", obs_shape=(17,))
    state = init_training_state(config, jax.random.key(0))
    train = jax.jit(make_update(config))
    act = jax.jit(functools.partial(policy_step, config=config, sample=True))
    state, metrics = train(state, replay.sample(16, 64, rng), key)
    action, carry = act(state.params, carry, obs, is_first, key)
    env.step(to_env_action(np.asarray(action)))

The names below load lazily, so reading a config (e.g. the CLI building its options from
`train_config.TrainDreamerConfig`) does not import Haiku and the networks.
"""

import importlib

_EXPORTS = {
    "PRESETS": "config",
    "DreamerConfig": "config",
    "LatentState": "networks",
    "PolicyCarry": "policy",
    "from_env_action": "policy",
    "initial_carry": "policy",
    "policy_step": "policy",
    "to_env_action": "policy",
    "ReplayBuffer": "replay",
    "align_episode": "replay",
    "replay_spec": "replay",
    "AgentParams": "train_state",
    "OptStates": "train_state",
    "TrainingState": "train_state",
    "init_agent_params": "train_state",
    "init_training_state": "train_state",
    "make_update": "update",
    "update": "update",
    "decode_observation": "world_model",
    "imagine_with_actions": "world_model",
    "observe": "world_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
