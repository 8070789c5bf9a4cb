"""Where each World Models stage keeps its checkpoints, what they hold, and loading V, M and C back.

A run directory holds the stages in order: `data/` (collect) -> `checkpoints/vae` -> `checkpoints/mdnrnn`
-> `checkpoints/controller`. A later stage records the checkpoint steps of the stages it was trained
on, because a latent z only means something to the VAE that produced it, and a hidden state h only to
its MDN-RNN.

Saved configs (the `config` item of each checkpoint)::

    vae:        {"vae": VAEConfig, "training": {...}}
    mdnrnn:     {"mdnrnn": MDNRNNConfig, "vae_step": int, "training": {...}}
    controller: {"controller": ControllerConfig, "vae_step": int, "rnn_step": int, "env": str, "training": {...}}

Restores go into abstract states built with `jax.eval_shape` from the checkpoint's own saved config,
so nothing is computed to restore and a checkpoint written on a GPU restores on a CPU.

Moving on (`--vae-checkpoint` / `--rnn-checkpoint`, the iterative procedure): when M is asked to train
on another V checkpoint than its own were trained on (or C on another M), its checkpoint folder is
moved aside to `checkpoints/<model>-on-<upstream>-ep<N>` and training continues from that folder's
latest state in a fresh folder. A fresh folder because a checkpoint's ranking (M's validation loss on
V's latents, C's dream fitness) only compares within one upstream model, and because `best` must
never name a checkpoint whose V or M has since been pruned. The move is one rename inside the writer
lock, and a fresh folder warm-starts from the newest set-aside one, so a kill at any point resumes.

Pruning: each folder keeps its newest checkpoints and its best, and never prunes a step that a later
stage's checkpoints record (`downstream_pins`), so continuing `train-vae` or `train-rnn` on a finished
run leaves the MDN-RNN and the controller working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.envs.tracks import run_camera
from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint import CheckpointNotFound, CheckpointStore, parse_checkpoint_reference
from rlcar_core.io.checkpoint_files import read_step_config, step_folders
from rlcar_core.io.data import DatasetError, load_manifest
from rlcar_core.io.runs import RunDir, default_run_dir
from rlcar_core.loop.checkpointer import METRICS_RECORDS, Checkpointer
from rlcar_core.loop.metrics import MetricsLogger
from rlcar_core.loop.session import writer_session
from rlcar_core.loop.stop import StopFlag
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.controller import WorldModelParams, num_controller_params
from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_state
from rlcar_core.worldmodels.supervised import TrainState
from rlcar_core.worldmodels.vae import init_vae_state

VAE_MODEL = "vae"
RNN_MODEL = "mdnrnn"
CONTROLLER_MODEL = "controller"
# Lower validation loss is better for V and M; a higher return is better for C.
BEST_MODES = {VAE_MODEL: "min", RNN_MODEL: "min", CONTROLLER_MODEL: "max"}
TRAIN_COMMANDS = {VAE_MODEL: "train-vae", RNN_MODEL: "train-rnn", CONTROLLER_MODEL: "train-controller"}
MODEL_LABELS = {VAE_MODEL: "VAE", RNN_MODEL: "MDN-RNN", CONTROLLER_MODEL: "controller"}
# The trainer names of metrics.jsonl records, which also prefix their values (`rnn/loss`).
TRAINERS = {VAE_MODEL: "vae", RNN_MODEL: "rnn", CONTROLLER_MODEL: "controller"}
RUN_KIND = "worldmodels"
# The later stages whose checkpoints record a step of each model, and under which key.
DOWNSTREAM = {
    VAE_MODEL: ((RNN_MODEL, "vae_step"), (CONTROLLER_MODEL, "vae_step")),
    RNN_MODEL: ((CONTROLLER_MODEL, "rnn_step"),),
}


def run_dir_of(config: Any) -> Path:
    """The command's run directory: `--run-dir`, or the default World Models run."""
    return Path(config.run_dir) if config.run_dir is not None else default_run_dir(RUN_KIND)


def _step_folders(folder: Path) -> list[int]:
    return (
        sorted(int(path.name) for path in folder.iterdir() if path.name.isdigit()) if folder.is_dir() else []
    )


def describe_run(run_dir: str | Path) -> str:
    """A few words on what a run holds, read from folder names only (no checkpoint is opened): for the
    `run: runs/worldmodels (...)` line a command prints when it picked the default run."""
    run = RunDir(run_dir)
    if not run.exists():
        return "new"
    parts = []
    if (run.data_dir / "manifest.json").is_file():
        parts.append(f"{len(list(run.data_dir.glob('episode_*.npz')))} episodes")
    for model in (VAE_MODEL, RNN_MODEL, CONTROLLER_MODEL):
        steps = _step_folders(run.checkpoint_dir(model))
        if steps:
            parts.append(f"{MODEL_LABELS[model]} ep{steps[-1]}")
    return ", ".join(parts) or "new"


def newest_saved_config(ckpt: Checkpointer) -> dict[str, Any] | None:
    """The config saved with the newest checkpoint whose config still reads; None for a new model."""
    for step in reversed(ckpt.store.steps()):
        try:
            return ckpt.store.restore_config(step)
        except Exception:  # noqa: BLE001 - a damaged step; the checkpointer reports it when resuming
            continue
    return None


# C's ep0 exists only when a search started from an imitated controller (`--imitate`): the search's
# origin, kept so the fit alone can always be driven and compared with what CMA-ES made of it.
IMITATION_STEP = 0


def protected_steps(run: RunDir, model: str) -> set[int]:
    """Steps of `model` that pruning keeps: those later stages use, and C's imitated start."""
    return downstream_pins(run, model) | ({IMITATION_STEP} if model == CONTROLLER_MODEL else set())


def downstream_pins(run: RunDir, model: str) -> set[int]:
    """The steps of `model` that the checkpoints of later stages in `run` were trained on (read from
    their saved configs, without JAX): pruning must keep them, or those stages would have to start over.
    A step folder whose config does not read is damaged and pins nothing."""
    pins: set[int] = set()
    for user, key in DOWNSTREAM.get(model, ()):
        for folder in step_folders(run.checkpoint_dir(user)).values():
            value = (read_step_config(folder) or {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                pins.add(value)
    return pins


@contextlib.contextmanager
def training_session(
    run: RunDir,
    model: str,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    before_checkpoints: Callable[[], None] | None = None,
) -> Iterator[tuple[StopFlag, MetricsLogger, Checkpointer]]:
    """The run's writer lock and stop flag, the trainer's metrics logger and the model's checkpointer.
    Open it only after checking the inputs, so a refused command leaves no checkpoint folder behind.
    Warnings (a damaged checkpoint set aside) reach `on_event` as `{"kind": "warning", "message": ...}`.
    The checkpointer never prunes a step a later stage was trained on, nor C's imitated start
    (`protected_steps`).
    `before_checkpoints()` runs once the lock is held and before the checkpoint folder is opened (e.g.
    `move_on`, which may rename that folder)."""

    def warn(message: str) -> None:
        if on_event is not None:
            on_event({"kind": "warning", "message": message})

    with writer_session(run, TRAIN_COMMANDS[model]) as stop:
        if before_checkpoints is not None:
            before_checkpoints()
        with (
            MetricsLogger(run, TRAINERS[model]) as log,
            Checkpointer(
                run.checkpoint_dir(model),
                MODEL_LABELS[model],
                metrics=log,
                warn=warn,
                best_mode=BEST_MODES[model],
                protect=functools.partial(protected_steps, run, model),
            ) as ckpt,
        ):
            if on_event is not None:
                on_event({"kind": "start", "run_dir": str(run.path)})
            yield stop, log, ckpt


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


def trained_on(run: RunDir, upstream: str, user: str, saved: dict[str, Any] | None, key: str) -> int:
    """The `upstream` checkpoint step the `user` stage trains on: the one its checkpoints recorded under
    `key` when resuming (z and h only mean something to the models that made them), else the best."""
    if saved is not None:
        return pinned_step(run, upstream, int(saved[key]), user)
    return upstream_step(run, upstream)


def requested_upstream(
    run: RunDir, upstream: str, user: str, saved: dict[str, Any] | None, key: str, requested: str | None
) -> int:
    """The `upstream` step the `user` stage trains on: `requested` (best, latest, epN) when given, else
    `trained_on`'s choice."""
    if requested is None:
        return trained_on(run, upstream, user, saved, key)
    with open_existing_store(run, upstream) as store:
        return store.resolve(requested)


def _newest_config_in(folder: Path, model: str) -> dict[str, Any] | None:
    if not folder.is_dir():
        return None
    with CheckpointStore(folder, best_mode=BEST_MODES[model], read_only=True) as store:
        for step in reversed(store.steps()):
            try:
                return store.restore_config(step)
            except Exception:  # noqa: BLE001 - a damaged step; try the one before
                continue
    return None


_SET_ASIDE = re.compile(r"-on-(?P<upstream>[a-z]+)-ep(?P<step>\d+)$")


def move_on(run: RunDir, model: str, upstream: str, key: str, step: int) -> None:
    """Call with the writer lock held, before `model`'s checkpointer opens: if `model`'s checkpoints were
    trained on another `upstream` checkpoint than `step` (their config's `key`), set the folder aside
    (see the module docstring). A leftover folder of the same name, from an earlier move, is replaced."""
    folder = run.checkpoint_dir(model)
    saved = _newest_config_in(folder, model)
    if saved is None or int(saved[key]) == step:
        return
    aside = folder.with_name(f"{folder.name}-on-{upstream}-ep{int(saved[key])}")
    if aside.exists():
        shutil.rmtree(aside)
    folder.rename(aside)


def set_aside_folders(run: RunDir, model: str) -> list[Path]:
    """`model`'s folders moved aside by `move_on`, oldest upstream first."""
    parent = run.checkpoint_dir(model).parent
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        match = _SET_ASIDE.search(path.name)
        if path.is_dir() and path.name.startswith(f"{model}-on-") and match:
            found.append((int(match["step"]), path))
    return [path for _, path in sorted(found)]


class WarmStart(NamedTuple):
    saved_config: dict[str, Any]
    state: Any
    folder: Path
    metrics_records: int | None  # the trainer's metrics records when that state was saved


def warm_start(run: RunDir, model: str, abstract_state_for) -> WarmStart | None:
    """The latest state of `model`'s newest set-aside folder, the start of a model that moved on;
    `abstract_state_for(saved_config)` gives its abstract state. None when nothing was set aside."""
    for folder in reversed(set_aside_folders(run, model)):
        saved = _newest_config_in(folder, model)
        if saved is None:
            continue
        with CheckpointStore(folder, best_mode=BEST_MODES[model], read_only=True) as store:
            state = store.restore("latest", abstract_state_for(saved))
            records = store.metrics("latest").get("metrics", {}).get(METRICS_RECORDS)
        return WarmStart(saved, state, folder, records)
    return None


def resume_or_warm_start(
    ckpt: Checkpointer, log: MetricsLogger, abstract_state: Any, warm: WarmStart | None
) -> tuple[Any, Any]:
    """(checkpointer's Restored or None, state or None): the folder's own newest checkpoint, or, for a
    model that just moved on (an empty folder and a `warm` start), the set-aside state, keeping the
    metrics records it had (a plain `ckpt.resume` on an empty folder would drop them all)."""
    if warm is not None and not ckpt.store.steps():
        log.resume(warm.metrics_records)
        return None, warm.state
    restored = ckpt.resume(abstract_state)
    return restored, None if restored is None else restored.state


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


_KEY_SHAPE = jax.ShapeDtypeStruct((2,), jnp.uint32)


class ControllerSearchState(NamedTuple):
    """The controller stage's checkpoint: CMA-ES's search state plus the controller that drives."""

    policy: jax.Array  # (n,) the flat controller the agent uses: the search mean when it was saved
    sigma: jax.Array  # () CMA-ES step size, to continue the search from `policy`
    best_candidate: jax.Array  # (n,) the single best-scoring candidate seen
    best_fitness: jax.Array  # ()
    generation: jax.Array  # () int32, generations completed


class WorldModel(NamedTuple):
    """V, M and C of one controller checkpoint, with the configs that give their shapes."""

    vae_config: VAEConfig
    rnn_config: MDNRNNConfig
    controller_config: ControllerConfig
    params: WorldModelParams
    policy: np.ndarray  # (n,) flat controller vector
    env: str  # the environment the controller was trained for
    steps: dict[str, int]  # checkpoint step of each part
    camera: Any = None  # RLCar: the CameraSpec its data was collected with (`run_camera`); CarRacing: None


def abstract_vae_state(config: VAEConfig) -> TrainState:
    return jax.eval_shape(functools.partial(init_vae_state, config), _KEY_SHAPE)


def abstract_rnn_state(config: MDNRNNConfig) -> TrainState:
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


def load_world_model(run: RunDir, checkpoint: str | int) -> WorldModel:
    """The controller checkpoint `checkpoint` (best, latest, epN, or a path to a controller step folder)
    with exactly the VAE and MDN-RNN it was trained on."""
    # A path to a controller step folder (`<run>/checkpoints/controller/12`) names its own run, whose
    # VAE and MDN-RNN belong with it; anything else is a name in `run`.
    reference = parse_checkpoint_reference(checkpoint)
    if reference.model == CONTROLLER_MODEL:
        run, checkpoint = RunDir(reference.run_dir), reference.name
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
        camera=camera_of_run(run, str(saved["env"])),
    )


def camera_of_run(run: RunDir, env_name: str) -> Any:
    """The camera `run`'s data was collected with (config.json's "camera", which `collect` writes);
    today's for runs from before cameras were recorded, None on CarRacing-v3."""
    return run_camera(env_name, run.read_config() if run.has_config() else None)


def record_model_config(
    run: RunDir, model: str, model_config: Any, training: dict[str, Any], **upstream: Any
) -> dict[str, Any]:
    """What each checkpoint of `model` saves beside its state, also written into config.json under
    `model`: its model config, what it was trained on (`upstream`: VAE/MDN-RNN steps, the env) and the
    command's settings (`training`, from `saved_training_record`)."""
    saved = {model: model_config.to_dict(), **upstream, "training": training}
    run.update_config({model: saved})
    return saved


def saved_training_record(config: Any) -> dict[str, Any]:
    """A command config as JSON-ready values (paths as strings), to store next to the model."""
    return {
        name: str(value) if hasattr(value, "__fspath__") else value
        for name, value in dataclasses.asdict(config).items()
    }
