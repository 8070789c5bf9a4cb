"""`rlcar train-dreamer`: collect with the batched vector env and train DreamerV3 at a fixed train ratio.

Every iteration steps each car once with the exploring actor (with an exploration driver instead
while the replay is prefilled) and stores one replay step per car, then runs as many learner updates as the train ratio owes: an update replays batch_size x
batch_length steps, so `train_ratio / (batch_size * batch_length)` updates are owed per env step.
The update is one jitted pure function; this loop owns the I/O (metrics.jsonl, checkpoints, the
replay file, evaluations on held-out tracks) and stops cleanly on a NaN loss or Ctrl-C.

Checkpoints are numbered by finished episodes: every `checkpoint_every` episodes, whenever the
evaluation progress on held-out tracks improves (ranked `best`), and at the end (`latest`). The
replay is rewritten atomically before each checkpoint, so rerunning the command resumes both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlcar_core.agents.dreamer import DreamerAgent, on_default_device
from rlcar_core.apps.evaluate import EvalConfig, evaluate
from rlcar_core.dreamer.checkpoints import (
    CONFIG_SECTION,
    TrainerState,
    abstract_trainer_state,
    initial_trainer_state,
    open_store,
    replay_path,
)
from rlcar_core.dreamer.collector import Collector, FinishedEpisode
from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.replay import ReplayBuffer, replay_spec
from rlcar_core.dreamer.run_settings import (
    RequestedSettings,
    RunSettings,
    check_prefill_policy,
    new_run_settings,
    resumed_run_settings,
)
from rlcar_core.dreamer.update import make_update
from rlcar_core.envs import make_env
from rlcar_core.errors import RlcarError, require_at_least
from rlcar_core.io.checkpoint import CheckpointStore
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted, all_finite
from rlcar_core.worldmodels.policies import ExplorationPolicy, make_exploration_policy

ProgressCallback = Callable[[dict[str, Any]], None]
LOSS_NAMES = ("wm/loss", "actor/loss", "critic/loss")
MAX_EVAL_ENVS = 16
# Independent key streams derived from the seed: one per purpose, indexed by a counter.
_COLLECT_STREAM, _UPDATE_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class TrainDreamerConfig:
    run_dir: Path
    episodes: int = 500  # total finished episodes; a resumed run continues up to this count
    env_steps: int | None = None  # optional budget of env steps (summed over cars): stop on reaching it
    # Run options; None takes the default for a new run (see run_settings) or the run's own value.
    env: str | None = None
    obs: str | None = None
    size: str | None = None
    train_ratio: float | None = None  # replayed steps per env step
    max_steps: int | None = None
    num_envs: int | None = None
    num_tracks: int | None = None  # RLCar training tracks (default: the standard 32)
    seed: int | None = None
    overrides: tuple[str, ...] = ()  # "key=value" DreamerConfig fields (--set)
    # Loop schedule.
    prefill_steps: int | None = None  # env steps collected before the first update (default 2500)
    prefill_policy: str | None = None  # who drives during prefill (see run_settings.PREFILL_POLICIES)
    checkpoint_every: int = 10  # episodes
    eval_every: int = 20  # episodes
    eval_every_steps: int | None = None  # env steps, instead of eval_every (for learning curves)
    eval_episodes: int = 10  # held-out tracks per evaluation
    log_every: int = 10  # updates per logged record of averaged losses

    def validate(self) -> None:
        at_least = {
            "--episodes": (self.episodes, 1),
            "--env-steps": (self.env_steps, 1),
            "--max-steps": (self.max_steps, 1),
            "--num-envs": (self.num_envs, 1),
            "--num-tracks": (self.num_tracks, 1),
            "--seed": (self.seed, 0),
            "--prefill-steps": (self.prefill_steps, 0),
            "--checkpoint-every": (self.checkpoint_every, 1),
            "--eval-every": (self.eval_every, 1),
            "--eval-every-steps": (self.eval_every_steps, 1),
            "--eval-episodes": (self.eval_episodes, 1),
            "--log-every": (self.log_every, 1),
        }
        for option, (value, low) in at_least.items():
            require_at_least(option, value, low)
        check_prefill_policy(self.prefill_policy)
        if self.train_ratio is not None and not (math.isfinite(self.train_ratio) and self.train_ratio > 0):
            raise RlcarError(f"--train-ratio must be a positive number, got {self.train_ratio}")

    def requested(self) -> RequestedSettings:
        return RequestedSettings(
            env=self.env,
            obs=self.obs,
            size=self.size,
            num_envs=self.num_envs,
            num_tracks=self.num_tracks,
            max_steps=self.max_steps,
            train_ratio=self.train_ratio,
            seed=self.seed,
            prefill_steps=self.prefill_steps,
            prefill_policy=self.prefill_policy,
            overrides=tuple(self.overrides),
        )


@functools.cache
def jitted_update(config: DreamerConfig) -> Callable:
    """One compilation per config for the whole process (tests and resumed runs reuse it)."""
    return jax.jit(make_update(config))


def settle_settings(run: RunDir, config: TrainDreamerConfig) -> RunSettings:
    """The settings to train with: new ones, or the run's own with the allowed changes applied."""
    saved = run.read_config().get(CONFIG_SECTION) if run.has_config() else None
    if saved is None:
        return new_run_settings(config.requested())
    try:
        settings = RunSettings.from_dict(saved["settings"])
    except (KeyError, TypeError) as error:
        raise RlcarError(f"{run.config_path} has an unreadable {CONFIG_SECTION!r} section: {error}") from None
    return resumed_run_settings(settings, config.requested(), run.path)


def train_dreamer(config: TrainDreamerConfig, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Train (or resume) the DreamerV3 run in `config.run_dir` up to `config.episodes` episodes.

    Raises RlcarError for bad input, TrainingDiverged on a non-finite loss (the last good checkpoint
    is kept) and TrainingInterrupted on Ctrl-C after saving. Returns a JSON-ready summary.
    """
    config.validate()
    run = RunDir(config.run_dir)
    settings = settle_settings(run, config)
    run.create()
    run.update_config({CONFIG_SECTION: {"settings": settings.to_dict(), "episodes": config.episodes}})
    env = make_env(
        settings.env,
        obs=settings.obs,
        num_envs=settings.num_envs,
        tracks="train",
        num_tracks=settings.num_tracks,
        max_steps=settings.max_steps,
    )
    try:
        if tuple(env.single_observation_space.shape) != settings.model.obs_shape:
            raise RlcarError(
                f"{settings.env} gives observations of shape {env.single_observation_space.shape}, "
                f"but the model in {run.path} reads {settings.model.obs_shape}; use a new --run-dir"
            )
        with open_store(run) as store:
            loop = _TrainingLoop(run, store, settings, config, env, on_progress or (lambda record: None))
            return loop.run()
    finally:
        env.close()


def _restore(run: RunDir, store: CheckpointStore, settings: RunSettings) -> tuple[TrainerState, ReplayBuffer]:
    model = settings.model
    latest = store.latest_step()
    if latest is None:
        # Committed like a restored state, so fresh and resumed runs share one compilation.
        state = on_default_device(initial_trainer_state(model, jax.random.key(settings.seed)))
        return state, ReplayBuffer(model.replay_capacity, replay_spec(model), settings.num_envs)
    state = store.restore(latest, abstract_trainer_state(model))
    path = replay_path(run)
    if not path.is_file():
        # The model survives without its data; it refills the replay as it drives.
        return state, ReplayBuffer(model.replay_capacity, replay_spec(model), settings.num_envs)
    try:
        replay = ReplayBuffer.load(path)
    except (OSError, ValueError, KeyError) as error:
        raise RlcarError(f"cannot read the replay buffer {path}: {error}") from None
    if replay.spec != replay_spec(model) or replay.num_streams != settings.num_envs:
        raise RlcarError(f"the replay buffer {path} does not match the run's model or --num-envs")
    return state, replay


def _prefill_explorer(name: str, seed: int) -> ExplorationPolicy | None:
    """Batched env actions with per-car memory (`reset_where`), or None when the actor explores."""
    if name == "actor":
        return None
    # The same exploration drivers as `rlcar collect`; neither reads a run directory or the env name.
    return make_exploration_policy(name, "rlcar", seed, Path("."))


class _TrainingLoop:
    def __init__(
        self,
        run: RunDir,
        store: CheckpointStore,
        settings: RunSettings,
        config: TrainDreamerConfig,
        env,
        emit: ProgressCallback,
    ):
        self.run_dir, self.store, self.settings, self.config = run, store, settings, config
        self.model = settings.model
        self.emit_progress = emit
        state, self.replay = _restore(run, store, settings)
        self.agent_state = state.agent
        self.env_steps = int(state.env_steps)
        self.episodes = int(state.episodes)
        self.update_credit = float(state.update_credit)
        self.updates = int(state.agent.step)
        self.resumed_from = store.latest_step()
        self.start_env_steps = self.env_steps
        self.start_updates = self.updates
        self.collector = Collector(env, self.model)
        self.explorer = _prefill_explorer(settings.prefill_policy, settings.seed)
        if self.explorer is not None:
            self.explorer.reset(settings.num_envs)
        self.update_fn = jitted_update(self.model)
        base_key = jax.random.key(settings.seed)
        self.collect_key = jax.random.fold_in(base_key, _COLLECT_STREAM)
        self.update_key = jax.random.fold_in(base_key, _UPDATE_STREAM)
        best = store.best_step()
        self.best_progress = store.metrics(best)["best_metric"] if best is not None else -math.inf
        self.last_saved = store.latest_step()
        self.last_eval: dict[str, Any] | None = None
        self.last_eval_episode: int | None = None
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

    def run(self) -> dict[str, Any]:
        if not self.budget_left():
            # Already trained this far: report the latest checkpoint's evaluation instead of training.
            if self.last_saved is not None:
                self.last_eval = self.store.metrics(self.last_saved)["metrics"].get("eval")
            return self.summary()
        try:
            self.collector.reset(seed=self.settings.seed + self.episodes)
            while self.budget_left():
                self.iteration()
            if self.metric_count:
                self.log_training()  # the updates since the last full log window
            if self.last_eval_episode != self.episodes:
                self.evaluate_and_checkpoint(periodic=True)
            elif self.last_saved != self.episodes:
                self.save(evaluation=None, best=False)
        except KeyboardInterrupt:
            self.save_after_interrupt()
        self.store.wait()
        return self.summary()

    def iteration(self) -> None:
        self.replay.add(self.collector.current_step)
        key = jax.random.fold_in(self.collect_key, self.env_steps)
        finished = self.collector.step(self.agent_state.params, key, self.prefill_action())
        self.env_steps += self.collector.num_envs
        if self.env_steps >= self.settings.prefill_steps and self.replay.can_sample(self.model.batch_length):
            self.update_credit += (
                self.collector.num_envs
                * self.model.train_ratio
                / (self.model.batch_size * self.model.batch_length)
            )
            while self.update_credit >= 1.0:
                self.train_step()
                self.update_credit -= 1.0
        before = self.episodes
        for episode in finished:
            self.episodes += 1
            self.record_episode(episode)
        self.after_step(before, self.env_steps - self.collector.num_envs)

    def prefill_action(self) -> np.ndarray | None:
        if self.explorer is None or self.env_steps >= self.settings.prefill_steps:
            return None
        current = self.collector.current_step
        self.explorer.reset_where(current["is_first"])
        return self.explorer.act(current["obs"])

    def train_step(self) -> None:
        rng = np.random.default_rng([self.settings.seed, self.updates])
        batch = self.replay.sample(self.model.batch_size, self.model.batch_length, rng)
        key = jax.random.fold_in(self.update_key, self.updates)
        agent_state, metrics = self.update_fn(self.agent_state, batch, key)
        metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
        for name in LOSS_NAMES:
            if not math.isfinite(metrics[name]):
                raise self.diverged(name, metrics[name])
        self.agent_state = agent_state
        self.updates += 1
        for name, value in metrics.items():
            self.metric_sums[name] = self.metric_sums.get(name, 0.0) + value
        self.metric_count += 1
        if self.updates % self.config.log_every == 0:
            self.log_training()

    def after_step(self, episodes_before: int, steps_before: int) -> None:
        """Evaluate and checkpoint when the episode (or step) count crossed a multiple of the schedules."""

        def crossed(every: int) -> bool:
            return self.episodes // every > episodes_before // every

        every_steps = self.config.eval_every_steps
        if every_steps is not None:
            due = self.env_steps // every_steps > steps_before // every_steps
        else:
            due = crossed(self.config.eval_every)
        if due:
            self.evaluate_and_checkpoint(periodic=crossed(self.config.checkpoint_every))
        elif crossed(self.config.checkpoint_every):
            self.save(evaluation=None, best=False)

    # -- records ------------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        now = time.perf_counter()
        return {
            "episode": self.episodes,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_seconds": now - self.started,
            "train_seconds": now - self.started - self.eval_seconds,
        }

    def emit(self, kind: str, record: dict[str, Any]) -> None:
        full = {"kind": kind, **self.counters(), **record}
        self.run_dir.append_metrics({"time": time.time(), **full})
        self.emit_progress({**full, "episodes_total": self.config.episodes})

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
        agent = DreamerAgent(self.model, self.agent_state.params, seed=self.settings.seed)
        summary = evaluate(
            EvalConfig(
                env=self.settings.env,
                agent="dreamer",
                episodes=self.config.eval_episodes,
                seed=self.settings.seed,
                max_steps=self.settings.max_steps,
                num_envs=min(self.config.eval_episodes, MAX_EVAL_ENVS),
            ),
            agent=agent,
        )
        self.eval_seconds += time.perf_counter() - started
        summary.pop("per_episode", None)
        return summary

    def evaluate_and_checkpoint(self, periodic: bool) -> None:
        if not all_finite(self.agent_state.params):
            raise self.diverged("parameters", math.nan)
        summary = self.evaluate()
        progress = summary["progress_mean"]
        improved = math.isfinite(progress) and progress > self.best_progress
        if improved:
            self.best_progress = progress
        self.last_eval, self.last_eval_episode = summary, self.episodes
        keys = ("progress_mean", "progress_std", "return_mean", "lap_rate", "crash_rate", "lap_time_mean")
        self.emit("eval", {**{key: summary[key] for key in keys}, "best": improved})
        if improved or periodic:
            self.save(evaluation=summary, best=improved)

    def saved_config(self) -> dict[str, Any]:
        training = {k: v for k, v in self.settings.to_dict().items() if k != "model"}
        return {
            "dreamer": self.model.to_dict(),
            "env": self.settings.env,
            "size": self.settings.size,
            "training": training,
        }

    def trainer_state(self) -> TrainerState:
        return TrainerState(
            agent=self.agent_state,
            env_steps=np.int32(self.env_steps),
            episodes=np.int32(self.episodes),
            update_credit=np.float32(self.update_credit),
        )

    def save(self, evaluation: dict[str, Any] | None, best: bool, interrupted: bool = False) -> None:
        if self.episodes in self.store.steps():
            return  # this episode count is already saved (a resumed run stopping where it started)
        if not all_finite(self.agent_state.params):
            raise self.diverged("parameters", math.nan)
        # Replay first: a kill between the two leaves a replay newer than the checkpoint, which only
        # means a little more data, never a checkpoint pointing at missing data.
        self.replay.save(replay_path(self.run_dir))
        metrics = {**self.counters(), "interrupted": interrupted}
        if evaluation is not None:
            metrics["eval"] = evaluation
        self.store.save(
            self.episodes,
            self.trainer_state(),
            self.saved_config(),
            metrics=metrics,
            best_metric=evaluation["progress_mean"] if best else None,
        )
        self.last_saved = self.episodes
        self.emit("checkpoint", {"step": self.episodes, "best": best, "interrupted": interrupted})

    def save_after_interrupt(self) -> None:
        if all_finite(self.agent_state.params):
            self.save(evaluation=None, best=False, interrupted=True)
        self.store.wait()
        where = self.checkpoint_path(self.last_saved)
        kept = f"the run resumes from {where}" if where else "no checkpoint was saved"
        raise TrainingInterrupted(
            f"interrupted at episode {self.episodes} ({self.env_steps} env steps); {kept}; "
            "run the same command again to resume"
        ) from None

    def diverged(self, what: str, value: float) -> TrainingDiverged:
        self.store.wait()
        kept = (
            f"kept checkpoint ep{self.last_saved}"
            if self.last_saved is not None
            else "no checkpoint was saved"
        )
        self.run_dir.append_metrics({"kind": "diverged", "what": what, **self.counters()})
        return TrainingDiverged(
            f"DreamerV3 {what} became {value} at update {self.updates} (episode {self.episodes}); "
            f"{kept} in {self.store.directory}"
        )

    def checkpoint_path(self, step: int | None) -> str | None:
        return None if step is None else str(self.store.directory / str(step))

    # -- result -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        train_seconds = max(seconds - self.eval_seconds, 1e-9)
        recent = self.recent
        best = self.store.best_step()
        return {
            "run_dir": str(self.run_dir.path),
            "env": self.settings.env,
            "obs": self.settings.obs,
            "size": self.settings.size,
            "train_ratio": self.model.train_ratio,
            "num_envs": self.settings.num_envs,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "resumed_from_episode": self.resumed_from,
            "recent_return_mean": float(np.mean([e.episode_return for e in recent])) if recent else None,
            "recent_progress_mean": float(np.mean([e.progress for e in recent])) if recent else None,
            "eval": self.last_eval,
            "best_eval_progress": self.best_progress if math.isfinite(self.best_progress) else None,
            "losses": {name: self.last_metrics.get(name) for name in LOSS_NAMES},
            "checkpoint": self.checkpoint_path(self.store.latest_step()),
            "best_checkpoint": self.checkpoint_path(best),
            "replay_steps": len(self.replay),
            "wall_seconds": seconds,
            "env_steps_per_second": (self.env_steps - self.start_env_steps) / train_seconds,
            "train_steps_per_second": (self.updates - self.start_updates) / train_seconds,
        }
