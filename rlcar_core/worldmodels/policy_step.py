"""The World Models driver as one pure, batched step: frame -> z -> action from [z, h] -> next h.

Each car may drive with its own flat controller vector, so CMA-ES candidates share one call; an agent
with a single controller passes it tiled. z is the VAE's posterior mean: the controller should react
to the road, not to encoder noise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.controller import controller_action, vector_to_params
from rlcar_core.worldmodels.mdnrnn import LSTMState, make_mdnrnn
from rlcar_core.worldmodels.saved_models import WorldModelParams
from rlcar_core.worldmodels.vae import make_vae

PolicyStep = Callable[[WorldModelParams, jax.Array, jax.Array, LSTMState], tuple[jax.Array, LSTMState]]


def make_policy_step(
    vae_config: VAEConfig, rnn_config: MDNRNNConfig, controller_config: ControllerConfig
) -> PolicyStep:
    """`step(params, controller_vectors (N, n), frames (N, 64, 64, 3) uint8, rnn_state) -> (actions (N, 3),
    rnn_state)`. The controller sees h before (z_t, a_t) is consumed, as the MDN-RNN was trained."""
    vae = make_vae(vae_config)
    rnn = make_mdnrnn(rnn_config)

    def step(params: WorldModelParams, controller_vectors, frames, rnn_state: LSTMState):
        latent, _ = vae.apply.encode(params.vae, frames)
        controllers = vector_to_params(controller_vectors, controller_config)
        actions = jax.vmap(controller_action)(controllers, latent, rnn_state.hidden)
        _, rnn_state = rnn.apply.step(params.rnn, latent, actions, rnn_state)
        return actions, rnn_state

    return step


@functools.cache
def jitted_policy_step(
    vae_config: VAEConfig, rnn_config: MDNRNNConfig, controller_config: ControllerConfig
) -> PolicyStep:
    """`make_policy_step` under jit, cached so agents and training with the same shapes share a compile."""
    return jax.jit(make_policy_step(vae_config, rnn_config, controller_config))
