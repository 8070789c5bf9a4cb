"""What each World Models stage checkpoints, and loading V, M and C back from a run directory.

Restores go into abstract states built with `jax.eval_shape` from the checkpoint's own saved config,
so nothing is computed to restore and a checkpoint written on a GPU restores on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.controller import num_controller_params
from rlcar_core.worldmodels.mdnrnn_update import init_mdnrnn_state
from rlcar_core.worldmodels.stages import (
    CONTROLLER_MODEL,
    RNN_MODEL,
    VAE_MODEL,
    load_checkpoint,
    pinned_step,
)
from rlcar_core.worldmodels.training_state import TrainingState
from rlcar_core.worldmodels.vae_update import init_vae_state

_KEY_SHAPE = jax.ShapeDtypeStruct((2,), jnp.uint32)


class ControllerSearchState(NamedTuple):
    """The controller stage's checkpoint: CMA-ES's search state plus the controller that drives."""

    policy: jax.Array  # (n,) the flat controller the agent uses: the search mean when it was saved
    sigma: jax.Array  # () CMA-ES step size, to continue the search from `policy`
    best_candidate: jax.Array  # (n,) the single best-scoring candidate seen
    best_fitness: jax.Array  # ()
    generation: jax.Array  # () int32, generations completed


class WorldModelParams(NamedTuple):
    vae: hk.Params
    rnn: hk.Params


class WorldModel(NamedTuple):
    """V, M and C of one controller checkpoint, with the configs that give their shapes."""

    vae_config: VAEConfig
    rnn_config: MDNRNNConfig
    controller_config: ControllerConfig
    params: WorldModelParams
    policy: np.ndarray  # (n,) flat controller vector
    env: str  # the environment the controller was trained for
    steps: dict[str, int]  # checkpoint step of each part


def abstract_vae_state(config: VAEConfig) -> TrainingState:
    return jax.eval_shape(functools.partial(init_vae_state, config), _KEY_SHAPE)


def abstract_rnn_state(config: MDNRNNConfig) -> TrainingState:
    return jax.eval_shape(functools.partial(init_mdnrnn_state, config), _KEY_SHAPE)


def abstract_search_state(config: ControllerConfig) -> ControllerSearchState:
    vector = jax.ShapeDtypeStruct((num_controller_params(config),), jnp.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    return ControllerSearchState(vector, scalar, vector, scalar, jax.ShapeDtypeStruct((), jnp.int32))


def load_vae(run: RunDir, name: str | int) -> tuple[VAEConfig, hk.Params, int]:
    loaded = load_checkpoint(
        run, VAE_MODEL, name, lambda saved: abstract_vae_state(VAEConfig.from_dict(saved["vae"]))
    )
    return VAEConfig.from_dict(loaded.saved_config["vae"]), loaded.state.params, loaded.step


def load_rnn(run: RunDir, name: str | int) -> tuple[MDNRNNConfig, hk.Params, int, int]:
    """(config, params, step, the VAE step it was trained on)."""
    loaded = load_checkpoint(
        run, RNN_MODEL, name, lambda saved: abstract_rnn_state(MDNRNNConfig.from_dict(saved["mdnrnn"]))
    )
    saved = loaded.saved_config
    return MDNRNNConfig.from_dict(saved["mdnrnn"]), loaded.state.params, loaded.step, int(saved["vae_step"])


def _controller_reference(run: RunDir, checkpoint: str | int) -> tuple[RunDir, str | int]:
    """A `--checkpoint` given as a path to a controller step folder (`<run>/checkpoints/controller/12`)
    names its own run, whose VAE and MDN-RNN belong with it; anything else is a name in `run`."""
    path = Path(str(checkpoint))
    if (
        len(path.parents) >= 3
        and path.is_dir()
        and path.parent == RunDir(path.parents[2]).checkpoint_dir(CONTROLLER_MODEL)
    ):
        return RunDir(path.parents[2]), path.name
    return run, checkpoint


def load_world_model(run: RunDir, checkpoint: str | int) -> WorldModel:
    """The controller checkpoint `checkpoint` (best, latest, epN, or a path to a controller step folder)
    with exactly the VAE and MDN-RNN it was trained on."""
    run, checkpoint = _controller_reference(run, checkpoint)
    loaded = load_checkpoint(
        run,
        CONTROLLER_MODEL,
        checkpoint,
        lambda saved: abstract_search_state(ControllerConfig.from_dict(saved["controller"])),
    )
    saved = loaded.saved_config
    vae_step = pinned_step(run, VAE_MODEL, int(saved["vae_step"]), CONTROLLER_MODEL)
    rnn_step = pinned_step(run, RNN_MODEL, int(saved["rnn_step"]), CONTROLLER_MODEL)
    vae_config, vae_params, _ = load_vae(run, vae_step)
    rnn_config, rnn_params, _, _ = load_rnn(run, rnn_step)
    controller_config = ControllerConfig.from_dict(saved["controller"])
    if (vae_config.z_dim, rnn_config.hidden_size) != (controller_config.z_dim, controller_config.hidden_size):
        raise RlcarError(f"controller ep{loaded.step} in {run.path} does not fit its VAE and MDN-RNN")
    return WorldModel(
        vae_config=vae_config,
        rnn_config=rnn_config,
        controller_config=controller_config,
        params=WorldModelParams(vae_params, rnn_params),
        policy=np.asarray(loaded.state.policy, np.float32),
        env=str(saved["env"]),
        steps={VAE_MODEL: vae_step, RNN_MODEL: rnn_step, CONTROLLER_MODEL: loaded.step},
    )


def saved_training_record(config: Any) -> dict[str, Any]:
    """A command config as JSON-ready values (paths as strings), to store next to the model."""
    return {
        name: str(value) if hasattr(value, "__fspath__") else value
        for name, value in dataclasses.asdict(config).items()
    }
