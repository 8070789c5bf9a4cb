"""Where each World Models stage keeps its checkpoints, and how a later stage loads an earlier one.

A run directory holds the stages in order: `data/` (collect) -> `checkpoints/vae` -> `checkpoints/mdnrnn`
-> `checkpoints/controller`. A later stage records the checkpoint steps of the stages it was trained
on, because a latent z only means something to the VAE that produced it, and a hidden state h only to
its MDN-RNN.

Saved configs (the `config` item of each checkpoint)::

    vae:        {"vae": VAEConfig, "training": {...}}
    mdnrnn:     {"mdnrnn": MDNRNNConfig, "vae_step": int, "training": {...}}
    controller: {"controller": ControllerConfig, "vae_step": int, "rnn_step": int, "env": str, "training": {...}}
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint import CheckpointNotFound, CheckpointStore
from rlcar_core.io.data import DatasetError, load_manifest
from rlcar_core.io.runs import RunDir

VAE_MODEL = "vae"
RNN_MODEL = "mdnrnn"
CONTROLLER_MODEL = "controller"
# Lower validation loss is better for V and M; a higher return is better for C.
BEST_MODES = {VAE_MODEL: "min", RNN_MODEL: "min", CONTROLLER_MODEL: "max"}
TRAIN_COMMANDS = {VAE_MODEL: "train-vae", RNN_MODEL: "train-rnn", CONTROLLER_MODEL: "train-controller"}
MODEL_LABELS = {VAE_MODEL: "VAE", RNN_MODEL: "MDN-RNN", CONTROLLER_MODEL: "controller"}


class LoadedModel(NamedTuple):
    saved_config: dict[str, Any]  # everything saved with the checkpoint (see the module docstring)
    state: Any  # the restored training state
    step: int


def open_store(run: RunDir, model: str, *, read_only: bool = False) -> CheckpointStore:
    return CheckpointStore(run.checkpoint_dir(model), best_mode=BEST_MODES[model], read_only=read_only)


def dataset_manifest(run: RunDir) -> dict[str, Any]:
    """The run's rollout manifest, or an error that says how to make one."""
    try:
        return load_manifest(run.data_dir)
    except DatasetError as error:
        raise DatasetError(f"{error}; run `rlcar collect --run-dir {run.path}` first") from None


def missing_model_error(run: RunDir, model: str) -> RlcarError:
    return RlcarError(
        f"no {MODEL_LABELS[model]} checkpoint in {run.path}: "
        f"run `rlcar {TRAIN_COMMANDS[model]} --run-dir {run.path}` first"
    )


def open_existing_store(run: RunDir, model: str) -> CheckpointStore:
    """A read-only store that holds at least one checkpoint, or the error naming the command to run."""
    if not run.checkpoint_dir(model).is_dir():
        raise missing_model_error(run, model)
    store = open_store(run, model, read_only=True)
    if store.latest_step() is None:
        store.close()
        raise missing_model_error(run, model)
    return store


def upstream_step(run: RunDir, model: str) -> int:
    """The checkpoint a later stage builds on: the best one, or the latest when none was ranked."""
    with open_existing_store(run, model) as store:
        best = store.best_step()
        return best if best is not None else store.resolve("latest")


def pinned_step(run: RunDir, model: str, step: int, user: str) -> int:
    """`step` of `model` if that checkpoint still exists; otherwise say that the `user` stage, which
    was trained on it, has to start over."""
    with open_existing_store(run, model) as store:
        if step not in store.steps():
            raise CheckpointNotFound(
                f"the {MODEL_LABELS[user]} was trained on {MODEL_LABELS[model]} ep{step}, which is no longer in "
                f"{store.directory}; delete {run.checkpoint_dir(user)} and run "
                f"`rlcar {TRAIN_COMMANDS[user]} --run-dir {run.path}` again"
            )
    return step


def load_checkpoint(run: RunDir, model: str, name: str | int, abstract_state_for) -> LoadedModel:
    """Restore checkpoint `name` of `model`; `abstract_state_for(saved_config)` gives the abstract
    state (e.g. from `jax.eval_shape`), so the checkpoint's own config decides the shapes."""
    with open_existing_store(run, model) as store:
        step = store.resolve(name)
        saved_config = store.restore_config(step)
        state = store.restore(step, abstract_state_for(saved_config))
    return LoadedModel(saved_config, state, step)


# Episodes whose file-name hash falls below this are held out, for V and M alike (see data.split_episodes).
VALIDATION_FRACTION = 0.1


def settle_config(
    config_class: type,
    saved: dict[str, Any] | None,
    requested: dict[str, Any],
    architecture: tuple[str, ...],
    what: str,
):
    """The model config to train with: the saved one when resuming, with `requested` (options the user
    gave; None means not given) applied. Shape-changing fields cannot change on resume."""
    requested = {name: value for name, value in requested.items() if value is not None}
    if saved is None:
        return config_class(**requested)
    current = config_class.from_dict(saved)
    for name in architecture:
        if name in requested and requested[name] != getattr(current, name):
            raise RlcarError(
                f"{what} already has {name}={getattr(current, name)} (you asked for {requested[name]}); "
                "drop the option to resume, or use a new --run-dir"
            )
    return dataclasses.replace(current, **requested)
