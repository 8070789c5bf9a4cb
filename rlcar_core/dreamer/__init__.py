"""DreamerV3 (Hafner et al. 2023/2025) in JAX + Haiku: pure functions, explicit keys, no I/O.

Typical use::

    config = DreamerConfig.preset("small", obs_kind="sensors", obs_shape=(17,))
    state = init_training_state(config, jax.random.key(0))
    train = jax.jit(make_update(config))
    act = jax.jit(functools.partial(policy_step, config=config, explore=True))
    state, metrics = train(state, replay.sample(16, 64, rng), key)
    action, carry = act(state.params, carry, obs, is_first, key)
    env.step(to_env_action(np.asarray(action)))
"""

from rlcar_core.dreamer.config import PRESETS, DreamerConfig
from rlcar_core.dreamer.networks import LatentState
from rlcar_core.dreamer.policy import (
    PolicyCarry,
    from_env_action,
    initial_carry,
    policy_step,
    to_env_action,
)
from rlcar_core.dreamer.replay import ReplayBuffer, align_episode, replay_spec
from rlcar_core.dreamer.train_state import (
    AgentParams,
    OptStates,
    TrainingState,
    init_agent_params,
    init_training_state,
)
from rlcar_core.dreamer.update import make_update, update
from rlcar_core.dreamer.world_model import decode_observation, imagine_with_actions, observe

__all__ = [
    "PRESETS",
    "AgentParams",
    "DreamerConfig",
    "LatentState",
    "OptStates",
    "PolicyCarry",
    "ReplayBuffer",
    "TrainingState",
    "align_episode",
    "decode_observation",
    "from_env_action",
    "imagine_with_actions",
    "init_agent_params",
    "init_training_state",
    "initial_carry",
    "make_update",
    "observe",
    "policy_step",
    "replay_spec",
    "to_env_action",
    "update",
]
