"""`rlcar train-dreamer`: collect with the batched vector env and train DreamerV3 at a fixed train ratio,
built on the loop kit (`rlcar_core.loop`).

Every iteration stores one replay step per collecting car, steps each car once with the exploring
actor (with an exploration driver instead while the replay is prefilled), then runs as many learner
updates as the train ratio owes (`loop.schedule.Ratio`). The update is one jitted pure function; this
loop owns the I/O (metrics.jsonl, checkpoints, the replay file, evaluations on held-out tracks).

Checkpoints are numbered by finished episodes (`epN`: after N finished episodes): every
`checkpoint_every` episodes (or `checkpoint_every_steps` env steps), whenever the evaluation progress on held-out tracks improves (ranked
`best`), and always with the newest state at the end of the run (a budget of episodes or env steps)
and on a stop (Ctrl-C, SIGTERM, the web page's stop). Training goes on between episode ends, so a
newer state of an episode count already saved replaces that count's checkpoint (`Checkpointer.save(...,
replace=True)`): `latest` is always the newest state, and a resume never goes back in time. The
replay is rewritten atomically before each checkpoint, so rerunning the command resumes both. A
damaged newest checkpoint falls back to the previous one, a damaged replay to an empty one that
refills by collecting (both with a one-line warning). Random keys are folded from the seed and the
counters (`loop.keys`), never stored.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlcar_core.dreamer.checkpoints import (
    CONFIG_SECTION,
    TrainerState,
    abstract_trainer_state,
    checkpoint_dir,
    initial_trainer_state,
    replay_path,
)
from rlcar_core.dreamer.collector import Collector, FinishedEpisode
from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.learner import Learner
from rlcar_core.dreamer.policy import DreamerPolicy
from rlcar_core.dreamer.prior_data import add_prior_episodes, check_prior_data, load_prior_episodes
from rlcar_core.dreamer.replay import ReplayBuffer, replay_spec
from rlcar_core.dreamer.train_config import (
    TrainDreamerConfig,
    camera_of,
    from_saved_section,
    resolve,
    resume,
    saved_section,
)
from rlcar_core.dreamer.update import make_update
from rlcar_core.envs import make_env
from rlcar_core.envs.action_repeat import HeldActionPolicy
from rlcar_core.envs.drivers import BrownianPolicy, ExplorationPolicy, Memoryless, RandomAgent
from rlcar_core.envs.heldout import evaluate_policy
from rlcar_core.envs.names import EnvName
from rlcar_core.envs.tracks import recorded_camera, run_camera
from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import RunDir, write_json_atomic
from rlcar_core.loop import distributed
from rlcar_core.loop import mesh as meshes
from rlcar_core.loop.checkpointer import Checkpointer
from rlcar_core.loop.distributed import DistributedConfig
from rlcar_core.loop.keys import stream_base
from rlcar_core.loop.metrics import MetricsLogger
from rlcar_core.loop.outcomes import TrainingInterrupted, all_finite
from rlcar_core.loop.schedule import Every, Ratio
from rlcar_core.loop.session import writer_session
from rlcar_core.loop.stop import StopFlag
from rlcar_core.sim.camera_spec import CONFIG_KEY as CAMERA_KEY
from rlcar_core.sim.camera_spec import CameraSpec

ProgressCallback = Callable[[dict[str, Any]], None]
WarnCallback = Callable[[str], None]
TRAINER = "dreamer"
LOSS_NAMES = ("wm/loss", "actor/loss", "critic/loss")
MAX_EVAL_ENVS = 16
# Independent key streams derived from the seed (see rlcar_core.loop.keys); updates use
# learner.UPDATE_STREAM (1).
_COLLECT_STREAM = 0
_PROCESS_SEED = 7919  # seed offset between the processes of a distributed run
# The most updates fused into one jitted call (a collection step owes train_ratio x cars / batch steps).
MAX_UPDATES_PER_CALL = 16

__all__ = ["TrainDreamerConfig", "jitted_update", "make_learner", "settle", "train_dreamer"]


@functools.cache
def jitted_update(config: DreamerConfig) -> Callable:
    """One update per call, jitted (`make_learner` is what the loop runs: K updates per call)."""
    return jax.jit(make_update(config))


def make_learner(model: DreamerConfig, config: TrainDreamerConfig) -> Learner:
    """The loop's learner: the batch split over `config.devices` local devices of every process."""
    mesh = meshes.data_mesh(config.devices)
    meshes.split_evenly(
        local_cars(config), meshes.local_device_count(mesh), "the cars of each process (--num-envs)"
    )
    return Learner(model, config.batch_size, config.batch_length, config.seed, mesh=mesh)


def local_cars(config: TrainDreamerConfig) -> int:
    """The cars this process drives: `--num-envs` split over the processes."""
    return meshes.split_evenly(config.num_envs, jax.process_count(), "--num-envs over the processes")


def _given_options(options: TrainDreamerConfig | dict[str, Any] | None) -> dict[str, Any]:
    """The options given now (None values dropped): what a resumed run changes."""
    if options is None:
        return {}
    if isinstance(options, TrainDreamerConfig):
        options = options.to_dict()
    known = set(TrainDreamerConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise RlcarError(f"unknown train-dreamer option(s): {', '.join(unknown)}")
    given = {key: value for key, value in options.items() if value is not None}
    if "overrides" in given:
        given["overrides"] = tuple(given["overrides"])
    return given


def settle(
    run: RunDir, options: TrainDreamerConfig | dict[str, Any] | None
) -> tuple[TrainDreamerConfig, DreamerConfig]:
    """The config and model to train with: a new run's, or the run's own with the given options applied."""
    given = _given_options(options)
    section = run.read_config().get(CONFIG_SECTION) if run.has_config() else None
    if section is None:
        return resolve(TrainDreamerConfig(**given))
    try:
        saved, model = from_saved_section(section)
    except (KeyError, TypeError, ValueError, RlcarError) as error:
        raise RlcarError(
            f"{run.config_path} has an unreadable {CONFIG_SECTION!r} section ({error}); use a new --run-dir"
        ) from None
    return resume(saved, model, given, run.path)


def settle_camera(run: RunDir, config: TrainDreamerConfig) -> CameraSpec | None:
    """The camera the run's cars film with: the spec a resumed run's config.json recorded (it keeps
    it, even if its preset has changed since), else the one --camera names; None on CarRacing-v3."""
    recorded = run.read_config() if run.has_config() else {}
    if CONFIG_SECTION in recorded and CAMERA_KEY in recorded:
        return run_camera(config.env, recorded)
    return camera_of(config)


def train_dreamer(
    run_dir: str | Path,
    options: TrainDreamerConfig | dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_warning: WarnCallback | None = None,
    cluster: DistributedConfig | None = None,
) -> dict[str, Any]:
    """Train (or resume) the DreamerV3 run in `run_dir` up to `episodes` finished episodes.

    `options` are the options given now (a dict of TrainDreamerConfig fields, None = not given, or a
    whole TrainDreamerConfig); a resumed run keeps its own for the rest. Raises RlcarError for bad
    input, RunInUse when another process writes the run, TrainingDiverged on a non-finite loss (the
    last good checkpoint is kept) and TrainingInterrupted on Ctrl-C/SIGTERM after saving. Returns a
    JSON-ready summary.

    `cluster` (or the JAX_COORDINATOR_ADDRESS... environment, see `loop.distributed`) makes this one
    process of several: each drives its share of the cars and keeps its replay, the update is one
    global step, and the first process writes the shared files.
    """
    cluster = cluster or DistributedConfig()
    distributed.initialize(cluster)  # before anything asks JAX for its devices
    run = RunDir(run_dir)
    config, model = settle(run, options)
    camera = settle_camera(run, config)
    # Bad data for a new run: one line before anything is written. A resumed run's replay holds the
    # data already, so it needs the dataset no more (the loop adds it to fresh replays only).
    if config.prior_data is not None and not _has_checkpoints(run):
        check_prior_data(config.prior_data, **_prior_data_settings(config, model, camera))
    learner = make_learner(
        model, config
    )  # bad --devices / --num-envs / --batch-size: one line, nothing written
    emit = on_progress or (lambda record: None)
    warn = on_warning or (lambda message: None)
    main = jax.process_index() == 0  # in a distributed run the first process writes the shared files
    with writer_session(run, "train-dreamer", owner=main) as stop:
        if main:
            run.update_config({CONFIG_SECTION: saved_section(config, model), **recorded_camera(camera)})
        env = make_env(
            config.env,
            obs=config.obs,
            num_envs=local_cars(config),
            tracks="train",
            num_tracks=config.num_tracks,
            max_steps=config.max_steps,
            backend=config.carracing_backend,
            action_repeat=run_action_repeat(config),
            processes=cars_in_processes(config),
            camera=camera,
        )
        try:
            if tuple(env.single_observation_space.shape) != model.obs_shape:
                raise RlcarError(
                    f"{config.env} gives observations of shape {env.single_observation_space.shape}, "
                    f"but the model in {run.path} reads {model.obs_shape}; use a new --run-dir"
                )
            with (
                MetricsLogger(run, TRAINER, writes=main) as log,
                Checkpointer(checkpoint_dir(run), "DreamerV3", metrics=log, warn=warn) as checkpointer,
            ):
                loop = _TrainingLoop(run, checkpointer, log, config, model, env, emit, warn, learner, camera)
                loop.watchdog = distributed.Watchdog(cluster.heartbeat_timeout)
                return loop.run(stop)
        finally:
            env.close()


def cars_in_processes(config: TrainDreamerConfig) -> bool:
    """Whether each car steps in its own worker process (Gymnasium's AsyncVectorEnv).

    Only CarRacing-v3 on the Gymnasium backend with more than one local car: its Box2D physics and
    frame rendering are single-threaded Python, so in-process cars all share one core. RLCar's JAX
    simulator and EnvPool's C++ threads are vectorised already.
    """
    return (
        EnvName.parse(config.env) is EnvName.CARRACING
        and config.carracing_backend == "gymnasium"
        and local_cars(config) > 1
    )


def run_action_repeat(config: TrainDreamerConfig) -> int:
    """The run's action repeat (a config from before the option has None: every frame)."""
    return config.action_repeat or 1


def process_replay_path(run: RunDir) -> Path:
    """This process's replay file: the run's replay file alone, one file per process when several
    (the first process writes an index of them next to the files)."""
    path = replay_path(run)
    if jax.process_count() == 1:
        return path
    return path.with_name(f"{path.stem}.{jax.process_index()}-of-{jax.process_count()}{path.suffix}")


def _load_replay(run: RunDir, config: TrainDreamerConfig, model: DreamerConfig, warn: WarnCallback):
    empty = _empty_replay(config, model)
    path = process_replay_path(run)
    if not path.is_file():
        return empty  # the model survives without its data; it refills the replay as it drives
    try:
        replay = ReplayBuffer.load(path)
    except Exception as error:  # noqa: BLE001 - a truncated .npz raises BadZipFile, EOFError, OSError...
        warn(
            f"the replay buffer {path} is damaged ({type(error).__name__}); "
            "starting with an empty replay that refills by collecting"
        )
        return empty
    if replay.spec != replay_spec(model) or replay.num_streams != local_cars(config):
        raise RlcarError(f"the replay buffer {path} does not match the run's model or --num-envs")
    return replay


def _has_checkpoints(run: RunDir) -> bool:
    folder = checkpoint_dir(run)
    return folder.is_dir() and any(folder.iterdir())


def _prior_data_settings(config: TrainDreamerConfig, model: DreamerConfig, camera: CameraSpec | None) -> dict:
    """What --prior-data must have been collected with to be this run's data."""
    return dict(
        env_name=EnvName.parse(config.env).value,
        obs_shape=tuple(model.obs_shape),
        camera=camera,
        action_repeat=run_action_repeat(config),
    )


def _add_prior_data(
    replay: ReplayBuffer, config: TrainDreamerConfig, model: DreamerConfig, camera: CameraSpec | None
) -> int:
    """--prior-data's episodes into a fresh run's replay (a resumed run's replay holds them already)."""
    episodes = load_prior_episodes(config.prior_data, **_prior_data_settings(config, model, camera))
    return add_prior_episodes(replay, episodes)


def _empty_replay(config: TrainDreamerConfig, model: DreamerConfig) -> ReplayBuffer:
    """This process's replay: its share of the capacity, one stream per car it drives."""
    share = max(config.replay_capacity // jax.process_count(), local_cars(config))
    return ReplayBuffer(share, replay_spec(model), local_cars(config))


def _prefill_explorer(name: str, seed: int) -> ExplorationPolicy | None:
    """Batched env actions with per-car memory (`reset_where`), or None when the actor explores."""
    if name == "brownian":
        return BrownianPolicy(seed)
    if name == "random":
        return Memoryless(RandomAgent(seed, obs_kind="pixels"))
    return None


class _TrainingLoop:
    def __init__(self, run, checkpointer, log, config, model, env, emit, warn, learner: Learner, camera=None):
        self.run_dir, self.checkpointer, self.log = run, checkpointer, log
        self.config: TrainDreamerConfig = config
        self.model: DreamerConfig = model
        self.camera: CameraSpec | None = camera  # evaluations film with the camera the cars train with
        self.emit_progress, self.warn = emit, warn
        self.learner = learner
        abstract = abstract_trainer_state(model)
        if jax.process_count() > 1:  # restore straight onto every process's devices
            sharding = meshes.replicated(self.learner.mesh)
            abstract = jax.tree.map(
                lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), abstract
            )
        # The metrics are trimmed to the checkpoint once it is clear the run goes on (below).
        restored = checkpointer.resume(abstract, trim_metrics=False)
        self.prior_steps = 0  # --prior-data's steps put into this session's fresh replay
        if restored is None:
            state = initial_trainer_state(model, jax.random.key(config.seed))
            self.replay = _empty_replay(config, model)
            if config.prior_data is not None:
                self.prior_steps = _add_prior_data(self.replay, config, model, camera)
        else:
            state = restored.state
            self.replay = _load_replay(run, config, model, warn)
        # Replicated over the learner's devices (fresh and resumed runs share one compilation).
        self.agent_state = self.learner.place(state.agent)
        self.env_steps = int(state.env_steps)
        self.episodes = int(state.episodes)
        self.update_credit = float(state.update_credit)
        self.updates = int(state.agent.step)
        self.resumed_from = None if restored is None else restored.step
        if self.budget_left():
            # It trains on from the checkpoint and writes the later records again. A finished run
            # only reports, and keeps every record it has.
            checkpointer.trim_metrics()
        self.saved_env_steps = self.env_steps
        # (env steps, updates, records) of the newest checkpoint: anything newer is saved on stopping.
        self.saved_at: tuple[int, int, int] | None = (
            None if restored is None else (self.env_steps, self.updates, log.count)
        )
        self.start_env_steps, self.start_updates = self.env_steps, self.updates
        self.collector = Collector(env, model, patience=config.patience)
        self.explorer = _prefill_explorer(
            config.prefill_policy, config.seed + _PROCESS_SEED * jax.process_index()
        )
        if self.explorer is not None:
            self.explorer.reset(local_cars(config))
        self.ratio = Ratio(config.train_ratio, config.batch_size * config.batch_length)
        self.collect_key = stream_base(config.seed, _COLLECT_STREAM)
        if jax.process_count() > 1:  # each process's cars explore differently
            self.collect_key = jax.random.fold_in(self.collect_key, jax.process_index())
        self.watchdog: distributed.Watchdog | None = None
        self.peers_stopping = False
        best = checkpointer.best_metric()
        self.best_progress = -math.inf if best is None else best
        self.last_eval: dict[str, Any] | None = None
        self.evaluated_at: tuple[int, int] | None = None  # (env steps, updates) of `last_eval`
        self.eval_mark: int | None = None  # the env-step mark of the step-scheduled evaluation due
        self.recent: list[FinishedEpisode] = []
        self.metric_sums: dict[str, float] = {}
        self.metric_count = 0
        self.last_metrics: dict[str, float] = {}
        self.started = time.perf_counter()
        self.eval_seconds = 0.0
        self.window = (self.started, self.env_steps, self.updates)

    # -- the loop -----------------------------------------------------------------------------

    def budget_left(self) -> bool:
        steps_left = self.config.env_steps is None or self.env_steps < self.config.env_steps
        return self.episodes < self.config.episodes and steps_left

    def run(self, stop: StopFlag) -> dict[str, Any]:
        self.emit_progress(
            {"kind": "start", "episode": self.episodes, "env_steps": self.env_steps, "updates": self.updates,
             "episodes_total": self.config.episodes, "resumed_from_episode": self.resumed_from,
             "prior_steps": self.prior_steps}
        )  # fmt: skip
        if not self.budget_left():
            # Already trained this far: report the latest checkpoint's evaluation instead of training.
            latest = self.checkpointer.store.latest_step()
            if latest is not None:
                self.last_eval = self.checkpointer.store.metrics(latest)["metrics"].get("eval")
            return self.summary()
        try:
            self.collector.reset(
                seed=self.config.seed + self.episodes + _PROCESS_SEED * jax.process_index(),
                episode_budget=self.episode_share(),
            )
            while self.budget_left() and not self.stopping(stop):
                self.iteration(stop)
            if self.stopping(stop):
                raise self.interrupted(stop.signal_name if stop.requested else "a stop on another process")
            if self.metric_count:
                self.log_training()  # the updates since the last full log window
            # The newest state is evaluated (once) and saved, with every record up to here: a rerun
            # of the finished run keeps them all.
            if self.evaluated_at != self.position():
                self.evaluate_and_checkpoint(periodic=True)
            elif not self.newest_saved():
                self.save(best=False)
        except KeyboardInterrupt as error:
            if isinstance(error, TrainingInterrupted):
                raise
            raise self.interrupted("Ctrl-C") from None
        self.checkpointer.wait()
        return self.summary()

    def stopping(self, stop: StopFlag) -> bool:
        return stop.requested or self.peers_stopping

    def episode_share(self) -> int:
        """The episodes left that this process's cars run (all of them with one process)."""
        left, processes = self.config.episodes - self.episodes, jax.process_count()
        return left // processes + (jax.process_index() < left % processes)

    def overlapping(self) -> bool:
        """Whether this step's updates run while the cars step (`--overlap`, see `iteration`)."""
        return (
            self.config.overlap
            and jax.process_count() == 1  # several processes agree on the counts after the step
            and self.collector.overlaps
            and self.env_steps >= self.config.prefill_steps
        )

    def iteration(self, stop: StopFlag | None = None) -> None:
        """One collection step and the updates it owes.

        With `--overlap` (and past the prefill) the updates run between sending the actions to the
        worker-process cars and reading their results. They are the same updates on the same data as
        without: the actor has acted with the parameters before them either way, the replay does not
        hold the step being simulated yet either way, and the decisions it owes are known before it
        ends. Records logged during those updates carry the env steps before the step."""
        self.replay.add(self.collector.current_step, self.collector.recording)
        key = jax.random.fold_in(self.collect_key, self.env_steps)
        self.collector.begin_step(self.policy_params(), key, self.prefill_action())
        trained = False
        if self.overlapping() and self.learner.can_sample(self.replay):
            self.train_owed(self.collector.stepped)
            trained = True
        finished = self.collector.end_step()
        stepped, frames, finished_count, can_sample = self.agree(
            self.collector.stepped,
            self.collector.frames_stepped,
            len(finished),
            self.learner.can_sample(self.replay),
            stop,
        )
        # Env steps count frames (under action repeat, k per decision); the train ratio counts
        # decisions, the steps the replay holds (DreamerV3's replayed steps per policy step).
        self.env_steps += frames
        if not trained and self.env_steps >= self.config.prefill_steps and can_sample:
            self.train_owed(stepped)
        before = self.episodes
        for episode in finished:  # this process's cars' episodes, numbered as they finish
            self.episodes += 1
            self.record_episode(episode)
        self.episodes += finished_count - len(finished)  # the other processes' cars'
        self.after_step(before, self.env_steps - frames)

    def train_owed(self, stepped: int) -> None:
        """The updates that `stepped` more decisions owe at the train ratio."""
        owed, self.update_credit = self.ratio.owed(self.update_credit, stepped)
        while owed > 0:
            count = min(owed, MAX_UPDATES_PER_CALL)
            self.train_updates(count)
            owed -= count

    def agree(self, stepped: int, frames: int, finished: int, can_sample: bool, stop: StopFlag | None):
        """The run's counters summed over the processes, so that every process runs the same updates,
        saves the same checkpoints and stops together (one small all-gather per collection step)."""
        if jax.process_count() == 1:
            return stepped, frames, finished, can_sample
        from jax.experimental import multihost_utils

        mine = np.asarray([stepped, frames, finished, can_sample, bool(stop and stop.requested)], np.int32)
        with self.guard("collection"):
            table = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 5)
        self.peers_stopping = bool(table[:, 4].any())
        sums = table[:, :3].sum(axis=0)
        return int(sums[0]), int(sums[1]), int(sums[2]), bool(table[:, 3].all())

    def guard(self, where: str):
        if jax.process_count() == 1 or self.watchdog is None:
            return contextlib.nullcontext()
        return self.watchdog.guard(where)

    def prefill_action(self) -> np.ndarray | None:
        if self.explorer is None or self.env_steps >= self.config.prefill_steps:
            return None
        current = self.collector.current_step
        self.explorer.reset_where(current["is_first"])
        return self.explorer.act(current["obs"])

    def where(self) -> str:
        return f"update {self.updates} (episode {self.episodes})"

    def policy_params(self):
        """The parameters as single-device arrays for the collecting and evaluating policies."""
        return meshes.local_copy(self.agent_state.params)

    def train_updates(self, count: int) -> None:
        """Updates `self.updates` .. `+ count - 1` in one jitted call; the state is kept only when
        every loss is finite (a NaN stop keeps the last good checkpoint)."""
        # The first call compiles (minutes on a busy CPU): only later calls are watched.
        watched = self.guard("an update") if self.updates > self.start_updates else contextlib.nullcontext()
        with watched:
            agent_state, metrics_list = self.learner.train(self.agent_state, self.replay, self.updates, count)
        for index, metrics in enumerate(metrics_list):
            self.checkpointer.check_finite(
                {name: metrics[name] for name in LOSS_NAMES},
                where=f"update {self.updates + index} (episode {self.episodes})",
                step=self.env_steps,
            )
        self.agent_state = agent_state
        for metrics in metrics_list:
            self.updates += 1
            for name, value in metrics.items():
                self.metric_sums[name] = self.metric_sums.get(name, 0.0) + value
            self.metric_count += 1
            if self.updates % self.config.log_every == 0:
                self.log_training()

    def after_step(self, episodes_before: int, steps_before: int) -> None:
        """Evaluate and checkpoint when the episode (or step) count crossed a multiple of the schedules.

        A step-scheduled evaluation runs at its mark, between episode ends too: a best result there
        replaces the checkpoint of the current episode count with these newer parameters. Its record
        keeps the mark it stands for. On the run's last step both wait for the end of the run, which
        evaluates and saves the newest state once."""
        if self.config.checkpoint_every_steps is not None:
            # Episodes that --patience ends early would checkpoint (and write the replay) too often.
            checkpoint_due = Every(self.config.checkpoint_every_steps).crossed(steps_before, self.env_steps)
        else:
            checkpoint_due = Every(self.config.checkpoint_every).crossed(episodes_before, self.episodes)
        if self.config.eval_every_steps is not None:
            every = Every(self.config.eval_every_steps)
            eval_due = every.crossed(steps_before, self.env_steps)
            if eval_due:
                self.eval_mark = every.last_mark(self.env_steps)
        else:
            eval_due = Every(self.config.eval_every).crossed(episodes_before, self.episodes)
        if not self.budget_left():
            return
        if eval_due:
            self.evaluate_and_checkpoint(periodic=checkpoint_due)
        elif checkpoint_due:
            self.save(best=False)

    # -- records ------------------------------------------------------------------------------

    def position(self) -> tuple[int, int]:
        """Where training stands: the parameters change with the updates, the replay with the env steps."""
        return self.env_steps, self.updates

    def newest_saved(self) -> bool:
        """True when the newest checkpoint holds this state and every record written so far."""
        return self.saved_at == (*self.position(), self.log.count)

    def counters(self) -> dict[str, Any]:
        now = time.perf_counter()
        return {
            "episode": self.episodes,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_seconds": now - self.started,
            "train_seconds": now - self.started - self.eval_seconds,
        }

    def emit(self, kind: str, values: dict[str, Any]) -> None:
        record = self.log.log(kind, self.env_steps, {**self.counters(), **values})
        self.emit_progress({**record, "episodes_total": self.config.episodes})

    def record_episode(self, episode: FinishedEpisode) -> None:
        self.recent = (self.recent + [episode])[-10:]
        fields = {name: value for name, value in episode._asdict().items() if name != "episode_return"}
        self.emit("episode", {"return": episode.episode_return, **fields})

    def log_training(self) -> None:
        now = time.perf_counter()
        since, env_steps, updates = self.window
        seconds = max(now - since, 1e-9)
        self.window = (now, self.env_steps, self.updates)
        self.last_metrics = {name: total / self.metric_count for name, total in self.metric_sums.items()}
        self.metric_sums, self.metric_count = {}, 0
        self.emit(
            "train",
            {
                **self.last_metrics,
                "env_steps_per_second": (self.env_steps - env_steps) / seconds,
                "train_steps_per_second": (self.updates - updates) / seconds,
                "replay_steps": len(self.replay),
            },
        )

    # -- evaluation and checkpoints -----------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        started = time.perf_counter()
        policy = DreamerPolicy(
            self.model,
            self.policy_params(),
            seed=self.config.seed,
            actions=self.config.eval_actions,
            camera=self.camera,
        )
        if run_action_repeat(self.config) > 1:  # Gymnasium's env steps frames: hold each decision
            policy = HeldActionPolicy(policy, run_action_repeat(self.config))
        summary = evaluate_policy(
            self.config.env,
            policy,
            episodes=self.config.eval_episodes,
            seed=self.config.seed,
            max_steps=self.config.max_steps,
            num_envs=min(self.config.eval_episodes, MAX_EVAL_ENVS),
        )
        self.eval_seconds += time.perf_counter() - started
        summary.pop("per_episode", None)
        return summary

    def evaluate_and_checkpoint(self, periodic: bool) -> None:
        self.checkpointer.check_params(self.agent_state.params, where=self.where(), step=self.env_steps)
        summary = self.evaluate()
        progress = summary["progress_mean"]
        improved = math.isfinite(progress) and progress > self.best_progress
        if improved:
            self.best_progress = progress
        self.last_eval, self.evaluated_at = summary, self.position()
        keys = ("progress_mean", "progress_std", "return_mean", "lap_rate", "crash_rate", "lap_time_mean")
        mark, self.eval_mark = self.eval_mark, None
        self.emit("eval", {**{key: summary[key] for key in keys}, "best": improved, "eval_mark": mark})
        if improved or periodic:
            self.save(best=improved)

    def saved_config(self) -> dict[str, Any]:
        training = {k: v for k, v in self.config.to_dict().items() if k != "overrides"}
        return {
            "dreamer": self.model.to_dict(),
            "env": self.config.env,
            "size": self.config.size,
            "training": training,
            **recorded_camera(self.camera),  # a checkpoint alone says which camera its agent sees
        }

    def trainer_state(self) -> TrainerState:
        return TrainerState(
            agent=self.agent_state,
            env_steps=np.int32(self.env_steps),
            episodes=np.int32(self.episodes),
            update_credit=np.float32(self.update_credit),
        )

    def save(self, best: bool, interrupted: bool = False) -> None:
        """Save the current state as the checkpoint of the current episode count, replacing an older
        state of the same count; it carries the evaluation of this very state when there is one
        (`best`: that evaluation improved on every earlier one)."""
        self.checkpointer.check_params(self.agent_state.params, where=self.where(), step=self.env_steps)
        replacing = self.episodes in self.checkpointer.store.steps()
        # Replay first: a kill between the two leaves a replay newer than the checkpoint, which only
        # means a little more data, never a checkpoint pointing at missing data.
        self.replay.save(process_replay_path(self.run_dir))
        if jax.process_count() > 1 and jax.process_index() == 0:
            index = {"processes": jax.process_count(), "files": [
                process_replay_path(self.run_dir).name.replace("0-of", f"{i}-of") for i in range(jax.process_count())
            ]}  # fmt: skip
            write_json_atomic(replay_path(self.run_dir).with_suffix(".index.json"), index)
        # The checkpoint record goes first: the checkpoint stamps the metrics count that includes it.
        self.emit(
            "checkpoint",
            {"checkpoint": self.episodes, "best": best, "interrupted": interrupted, "replaced": replacing},
        )
        metrics = {**self.counters(), "interrupted": interrupted}
        evaluation = self.last_eval if self.evaluated_at == self.position() else None
        if evaluation is not None:
            metrics["eval"] = evaluation
        self.checkpointer.save(
            self.episodes,
            self.trainer_state(),
            self.saved_config(),
            replace=True,
            metrics=metrics,
            best_metric=evaluation["progress_mean"] if best and evaluation is not None else None,
        )
        self.saved_env_steps = self.env_steps
        self.saved_at = (*self.position(), self.log.count)
        if replacing and not best:
            # The replaced state may have been the best one: rank later evaluations against what
            # the checkpoints still hold.
            kept_best = self.checkpointer.best_metric()
            self.best_progress = -math.inf if kept_best is None else kept_best

    def interrupted(self, how: str) -> TrainingInterrupted:
        """Save what can be saved and build the message; the partial episodes restart on resume."""
        if not self.newest_saved() and all_finite(self.agent_state.params):
            self.save(best=False, interrupted=True)
        self.checkpointer.wait()
        lost = self.env_steps - self.saved_env_steps
        unsaved = (
            f"the {lost} env steps since ep{self.checkpointer.last_saved} are not saved" if lost else None
        )
        where = f"episode {self.episodes} ({self.env_steps} env steps, {how})"
        return self.checkpointer.interrupted(
            self.episodes, self.trainer_state(), self.saved_config(), where=where, unsaved=unsaved
        )

    # -- result -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        train_seconds = max(seconds - self.eval_seconds, 1e-9)
        recent = self.recent
        store = self.checkpointer.store
        return {
            "run_dir": str(self.run_dir.path),
            "env": self.config.env,
            "obs": self.config.obs,
            "size": self.config.size,
            "train_ratio": self.config.train_ratio,
            "num_envs": self.config.num_envs,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "resumed_from_episode": self.resumed_from,
            "recent_return_mean": float(np.mean([e.episode_return for e in recent])) if recent else None,
            "recent_progress_mean": float(np.mean([e.progress for e in recent])) if recent else None,
            "eval": self.last_eval,
            "best_eval_progress": self.best_progress if math.isfinite(self.best_progress) else None,
            "losses": {name: self.last_metrics.get(name) for name in LOSS_NAMES},
            "checkpoint": self.checkpointer.path(store.latest_step()),
            "best_checkpoint": self.checkpointer.path(store.best_step()),
            "replay_steps": len(self.replay),
            "prior_steps": self.prior_steps,
            "wall_seconds": seconds,
            "env_steps_per_second": (self.env_steps - self.start_env_steps) / train_seconds,
            "train_steps_per_second": (self.updates - self.start_updates) / train_seconds,
        }
