"""Where a DreamerV3 run keeps its checkpoints and replay, and how eval, play and dream load them.

Layout inside a run directory::

    <run>/config.json                    {"dreamer": the train-dreamer options and DreamerConfig}
    <run>/checkpoints/dreamer/<episode>/ orbax checkpoints of `TrainerState`, step = episodes finished
                                         (the newest state saved at that count: a run that stops
                                         between episode ends replaces it with its newer state)
    <run>/checkpoints/dreamer-replay.npz the replay buffer, rewritten atomically with every checkpoint

The config item saved with each checkpoint is `{"dreamer": DreamerConfig.to_dict(), "env": str,
"size": str, "training": {...}, "camera": CameraSpec.to_dict()}` ("camera": RLCar runs that recorded
one), so a checkpoint alone says which model it holds and which camera it sees through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.train_state import AgentParams, TrainingState, init_training_state
from rlcar_core.envs.tracks import run_camera
from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint import CheckpointStore, open_checkpoint
from rlcar_core.io.runs import RunDir

MODEL = "dreamer"
CONFIG_SECTION = "dreamer"
REPLAY_FILE = "dreamer-replay.npz"


class TrainerState(NamedTuple):
    """Everything a resumed run needs besides the replay: the learner state and the loop's counters.

    Random keys are not stored: every key is derived from the seed and these counters, so a resumed
    run draws fresh keys without replaying old ones.
    """

    agent: TrainingState
    env_steps: jax.Array  # int32 steps summed over all envs
    episodes: jax.Array  # int32 finished episodes (the checkpoint step)
    update_credit: jax.Array  # float32 updates owed by the train ratio but not yet run


def _fresh_trainer_state(config: DreamerConfig, key: jax.Array) -> TrainerState:
    return TrainerState(
        agent=init_training_state(config, key),
        env_steps=jnp.zeros((), jnp.int32),
        episodes=jnp.zeros((), jnp.int32),
        update_credit=jnp.zeros((), jnp.float32),
    )


# A one-off computation that XLA's optimising backend compiles slowly (every parameter initialiser
# is its own kernel): unoptimised code is plenty fast for it.
initial_trainer_state = jax.jit(
    _fresh_trainer_state, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)


def abstract_trainer_state(config: DreamerConfig) -> TrainerState:
    """Shapes and dtypes only (no compute), the target a checkpoint is restored into."""
    return jax.eval_shape(lambda key: _fresh_trainer_state(config, key), jax.random.key(0))


def checkpoint_dir(run: RunDir) -> Path:
    return run.checkpoint_dir(MODEL)


def replay_path(run: RunDir) -> Path:
    return checkpoint_dir(run).parent / REPLAY_FILE


def open_store(run: RunDir, *, read_only: bool = False) -> CheckpointStore:
    # Best is the highest evaluation progress on held-out tracks.
    return CheckpointStore(checkpoint_dir(run), best_mode="max", read_only=read_only)


def is_dreamer_run(run_dir: str | Path) -> bool:
    """True when `run_dir` was made by `rlcar train-dreamer` (it has a DreamerV3 checkpoint folder)."""
    return checkpoint_dir(RunDir(run_dir)).is_dir()


class SavedAgent(NamedTuple):
    config: DreamerConfig
    params: AgentParams
    env: str
    step: int  # the checkpoint's episode number
    action_repeat: int  # env frames each decision was held for in training (1: every frame)
    camera: Any = None  # RLCar: the CameraSpec it was trained with (today's for older runs); CarRacing: None


def load_saved_agent(run_dir: str | Path, checkpoint: str) -> SavedAgent:
    """The actor, critic and world model of checkpoint `checkpoint` (best, latest, epN or a path)."""
    run = RunDir(run_dir)
    if not run.exists():
        raise RlcarError(f"no run directory at {run_dir}")
    if not checkpoint_dir(run).is_dir():
        raise RlcarError(
            f"no DreamerV3 checkpoint in {run_dir}: run `rlcar train-dreamer --run-dir {run_dir}` first"
        )
    store, step = open_checkpoint(checkpoint, checkpoint_dir(run), best_mode="max")
    with store:
        saved: dict[str, Any] = store.restore_config(step)
        if "dreamer" not in saved:
            raise RlcarError(f"checkpoint ep{step} in {store.directory} holds no DreamerV3 model")
        config = DreamerConfig.from_dict(saved["dreamer"])
        state = store.restore(step, abstract_trainer_state(config))
    action_repeat = int(saved.get("training", {}).get("action_repeat") or 1)  # older runs: every frame
    return SavedAgent(
        config=config,
        params=state.agent.params,
        env=saved["env"],
        step=step,
        action_repeat=action_repeat,
        camera=run_camera(saved["env"], saved),
    )
