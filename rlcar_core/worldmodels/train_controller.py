"""`rlcar train-controller`: search the linear controller C with CMA-ES, in the dream or in the env.

In the dream, a whole population is scored by one jitted call: every candidate drives the MDN-RNN's
imagined world from the same real start frames (the reward and done heads say what the dream pays
and when it ends). In the env, every candidate drives real cars through the vector env. Either way,
the search mean is evaluated in the real env every few generations; that return ranks checkpoints.

A checkpoint is saved every generation. CMA-ES's covariance is not saved: a resumed search restarts
from the saved mean and step size, which costs a few generations of adaptation, not the progress.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlcar_core.errors import RlcarError, require_at_least
from rlcar_core.io.data import split_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted
from rlcar_core.sim.track import EVAL_SEED_OFFSET
from rlcar_core.worldmodels.cmaes import GenerationStats, run_cmaes
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig
from rlcar_core.worldmodels.controller import num_controller_params
from rlcar_core.worldmodels.dream import make_dream_fitness
from rlcar_core.worldmodels.env_rollouts import EnvRollouts
from rlcar_core.worldmodels.latents import encode_dataset
from rlcar_core.worldmodels.saved_models import (
    ControllerSearchState,
    WorldModelParams,
    abstract_search_state,
    load_rnn,
    load_vae,
    saved_training_record,
)
from rlcar_core.worldmodels.stages import (
    CONTROLLER_MODEL,
    RNN_MODEL,
    VAE_MODEL,
    VALIDATION_FRACTION,
    dataset_manifest,
    open_store,
    pinned_step,
    upstream_step,
)
from rlcar_core.worldmodels.training_loop import StepCallback, checkpoint_path

MODES = ("dream", "env")
DEFAULT_ROLLOUTS = {"dream": 16, "env": 2}


@dataclasses.dataclass(frozen=True)
class TrainControllerConfig:
    run_dir: Path
    mode: str = "env"  # or "dream"
    generations: int = 50  # total; a resumed search continues up to this count
    popsize: int = 32
    rollouts: int | None = None  # per candidate: dream start frames, or env episodes (see DEFAULT_ROLLOUTS)
    temperature: float = 1.15  # dream only: > 1 makes the dream harder than reality
    dream_horizon: int = 300  # dream steps per rollout
    max_steps: int = 1000  # real-env steps per episode, for --in-env and for evaluation
    initial_sigma: float = 0.1
    eval_every: int = 5  # generations between real-env evaluations of the search mean
    eval_episodes: int = 8
    num_tracks: int | None = None  # RLCar training tracks to drive on (default: all)
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in MODES:
            raise RlcarError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        limits = {
            "--generations": (self.generations, 1),
            "--popsize": (self.popsize, 2),
            "--rollouts": (self.rollouts, 1),
            "--dream-horizon": (self.dream_horizon, 1),
            "--max-steps": (self.max_steps, 1),
            "--eval-every": (self.eval_every, 1),
            "--eval-episodes": (self.eval_episodes, 1),
            "--num-tracks": (self.num_tracks, 1),
        }
        for option, (value, low) in limits.items():
            require_at_least(option, value, low)
        if not self.temperature > 0:
            raise RlcarError(f"--temperature must be positive, got {self.temperature}")
        if not self.initial_sigma > 0:
            raise RlcarError(f"--initial-sigma must be positive, got {self.initial_sigma}")

    @property
    def rollouts_per_candidate(self) -> int:
        return self.rollouts if self.rollouts is not None else DEFAULT_ROLLOUTS[self.mode]


@functools.cache
def dream_fitness_fn(rnn_config: MDNRNNConfig, controller_config: ControllerConfig, horizon: int):
    """Jitted population fitness in the dream (see dream.make_dream_fitness); cached per shape."""
    return jax.jit(make_dream_fitness(rnn_config, controller_config, horizon))


def _dream_fitness(run, vae_config, vae_params, vae_step, rnn_config, rnn_params, controller_config, config):
    """`fitness(candidates (P, n), generation) -> (P,)`: mean dream return from real start frames."""
    episodes = encode_dataset(run, vae_config, vae_params, vae_step)
    train_files, _ = split_episodes(list(episodes), VALIDATION_FRACTION)
    # Dreams start where real episodes start, with the LSTM at zeros, exactly as the MDN-RNN saw them.
    start_means = np.stack([episodes[name].mean[0] for name in train_files])
    start_log_vars = np.stack([episodes[name].log_var[0] for name in train_files])
    fitness = dream_fitness_fn(rnn_config, controller_config, config.dream_horizon)

    def evaluate(candidates: np.ndarray, generation: int) -> np.ndarray:
        rng = np.random.default_rng([config.seed, generation])
        chosen = rng.integers(0, len(start_means), config.rollouts_per_candidate)
        noise = rng.standard_normal((len(chosen), start_means.shape[1]))
        starts = start_means[chosen] + np.exp(0.5 * start_log_vars[chosen]) * noise
        key = jax.random.PRNGKey(rng.integers(0, 2**31))
        scores = fitness(
            rnn_params, candidates.astype(np.float32), starts.astype(np.float32), config.temperature, key
        )
        return np.asarray(scores, np.float64)

    return evaluate


def _env_fitness(rollouts: EnvRollouts, params: WorldModelParams, config: TrainControllerConfig):
    """`fitness(candidates (P, n), generation) -> (P,)`: mean real return over the generation's tracks,
    the same tracks and starts for every candidate."""
    repeats = config.rollouts_per_candidate

    def evaluate(candidates: np.ndarray, generation: int) -> np.ndarray:
        rng = np.random.default_rng([config.seed, generation])
        if rollouts.num_tracks is not None:
            tracks = rng.choice(rollouts.num_tracks, repeats, replace=repeats > rollouts.num_tracks)
        else:
            tracks = rng.integers(0, EVAL_SEED_OFFSET, repeats)  # CarRacing training seeds
        vectors = np.repeat(candidates, repeats, axis=0)
        scores = rollouts.run(params, vectors, np.tile(tracks, len(candidates)), int(rng.integers(0, 2**31)))
        return scores.episode_return.reshape(len(candidates), repeats).mean(axis=1)

    return evaluate


class _GenerationRecorder:
    """Turns each finished CMA-ES generation into a checkpoint, a metrics line and a progress report.
    Every `eval_every` generations (and at the last) the search mean drives real episodes first; that
    return is what ranks the checkpoint as `best`."""

    def __init__(self, *, run, store, saved_config, config, state, evaluate_policy, on_generation):
        self.run, self.store, self.saved_config, self.config = run, store, saved_config, config
        self.state: ControllerSearchState = state
        self.evaluate_policy = evaluate_policy
        self.on_generation = on_generation
        self.last: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}
        self._clock = time.perf_counter()

    def __call__(self, stats: GenerationStats) -> None:
        done = stats.generation + 1
        improved = stats.best_fitness > float(self.state.best_fitness)
        state = ControllerSearchState(
            policy=np.asarray(stats.mean, np.float32),
            sigma=np.float32(stats.sigma),
            best_candidate=np.asarray(
                stats.best_params if improved else self.state.best_candidate, np.float32
            ),
            best_fitness=np.float32(max(stats.best_fitness, float(self.state.best_fitness))),
            generation=np.int32(done),
        )
        record = {
            "kind": "generation",
            "generation": done,
            "total_generations": self.config.generations,
            "mean_fitness": stats.mean_fitness,
            "max_fitness": stats.max_fitness,
            "min_fitness": stats.min_fitness,
            "best_fitness": float(state.best_fitness),
            "sigma": stats.sigma,
            "seconds": time.perf_counter() - self._clock,
        }
        best_metric = None
        if done % self.config.eval_every == 0 or done == self.config.generations:
            self.evaluation = self.evaluate_policy(state.policy)
            record.update(self.evaluation)
            best_metric = self.evaluation["eval_return"]
        self.store.save(done, state, self.saved_config, metrics=record, best_metric=best_metric)
        self.run.append_metrics({"stage": CONTROLLER_MODEL, "step": done, "time": time.time(), **record})
        self.state, self.last = state, record
        self._clock = time.perf_counter()
        if self.on_generation is not None:
            self.on_generation(record)


def _initial_state(store, latest: int | None, saved, config: TrainControllerConfig, controller_config):
    """The checkpointed search to continue, or a new one from the all-zero controller (as in the paper)."""
    if latest is None:
        size = num_controller_params(controller_config)
        return ControllerSearchState(
            policy=np.zeros(size, np.float32),
            sigma=np.float32(config.initial_sigma),
            best_candidate=np.zeros(size, np.float32),
            best_fitness=np.float32(-np.inf),
            generation=np.int32(0),
        )
    state = ControllerSearchState(
        *jax.device_get(store.restore(latest, abstract_search_state(controller_config)))
    )
    if saved["training"]["mode"] != config.mode:
        # Dream and env fitness are different measures: the best of one says nothing about the other.
        state = state._replace(best_candidate=state.policy, best_fitness=np.float32(-np.inf))
    return state


def train_controller(
    config: TrainControllerConfig, on_generation: StepCallback | None = None
) -> dict[str, Any]:
    """Run (or resume) the CMA-ES search; returns the final figures and checkpoint paths."""
    config.validate()
    run = RunDir(config.run_dir)
    env_name = dataset_manifest(run)["env_name"]
    if config.num_tracks is not None and env_name != "rlcar":
        raise RlcarError("--num-tracks applies to RLCar only")
    started = time.perf_counter()
    with open_store(run, CONTROLLER_MODEL) as store:
        latest = store.latest_step()
        saved = store.restore_config(latest) if latest is not None else None
        # A resumed search keeps the V and M it started with: its controller reads their z and h.
        if saved is not None:
            rnn_step = pinned_step(run, RNN_MODEL, int(saved["rnn_step"]), CONTROLLER_MODEL)
        else:
            rnn_step = upstream_step(run, RNN_MODEL)
        rnn_config, rnn_params, _, vae_step = load_rnn(run, rnn_step)
        vae_step = pinned_step(run, VAE_MODEL, vae_step, RNN_MODEL)
        vae_config, vae_params, _ = load_vae(run, vae_step)
        controller_config = ControllerConfig(
            z_dim=rnn_config.z_dim,
            hidden_size=rnn_config.hidden_size,
            population_size=config.popsize,
            initial_sigma=config.initial_sigma,
            generations=config.generations,
            rollouts_per_candidate=config.rollouts_per_candidate,
            dream_horizon=config.dream_horizon,
            dream_temperature=config.temperature,
        )
        state = _initial_state(store, latest, saved, config, controller_config)
        first_generation = int(state.generation)

        params = WorldModelParams(vae_params, rnn_params)
        num_envs = (
            config.popsize * config.rollouts_per_candidate if config.mode == "env" else config.eval_episodes
        )
        rollouts = EnvRollouts(
            env_name,
            num_envs,
            config.max_steps,
            (vae_config, rnn_config, controller_config),
            config.num_tracks,
        )
        if config.mode == "env":
            fitness = _env_fitness(rollouts, params, config)
        else:
            fitness = _dream_fitness(
                run, vae_config, vae_params, vae_step, rnn_config, rnn_params, controller_config, config
            )
        eval_tracks = np.arange(config.eval_episodes)
        if rollouts.num_tracks is not None:
            eval_tracks = eval_tracks % rollouts.num_tracks

        def evaluate_policy(policy: np.ndarray) -> dict[str, Any]:
            vectors = np.repeat(policy[None], len(eval_tracks), axis=0)
            scores = rollouts.run(params, vectors, eval_tracks, config.seed)
            return {
                "eval_return": float(scores.episode_return.mean()),
                "eval_progress": float(scores.progress.mean()),
                "eval_episodes": len(eval_tracks),
            }

        saved_config = {
            "controller": controller_config.to_dict(),
            "vae_step": vae_step,
            "rnn_step": rnn_step,
            "env": env_name,
            "training": saved_training_record(config),
        }
        run.update_config({"controller": saved_config})
        recorder = _GenerationRecorder(
            run=run,
            store=store,
            saved_config=saved_config,
            config=config,
            state=state,
            evaluate_policy=evaluate_policy,
            on_generation=on_generation,
        )
        remaining = config.generations - first_generation
        if remaining <= 0 and latest is not None:
            # Already searched this far: report what the last checkpoint recorded.
            recorder.last = store.metrics(latest)["metrics"]
            recorder.evaluation = {k: v for k, v in recorder.last.items() if k.startswith("eval_")}
        try:
            if remaining > 0:
                run_cmaes(
                    fitness,
                    state.policy,
                    generations=remaining,
                    population_size=config.popsize,
                    initial_sigma=float(state.sigma),
                    seed=int(np.random.SeedSequence([config.seed, first_generation]).generate_state(1)[0]),
                    on_generation=recorder,
                    first_generation=first_generation,
                )
        except FloatingPointError as error:
            raise TrainingDiverged(
                f"controller search diverged ({error}); kept {checkpoint_path(store, store.latest_step())}"
            ) from None
        except KeyboardInterrupt:
            # Every finished generation is already saved; only the one in progress is lost.
            store.wait()
            raise TrainingInterrupted(
                f"interrupted during controller generation {int(recorder.state.generation) + 1}; "
                f"saved {checkpoint_path(store, store.latest_step())}; run the same command again to resume"
            ) from None
        finally:
            rollouts.close()
        store.wait()
        return {
            "stage": CONTROLLER_MODEL,
            "mode": config.mode,
            "env": env_name,
            "generations": int(recorder.state.generation),
            "total_generations": config.generations,
            "resumed_from": first_generation if first_generation > 0 else None,
            "best_fitness": float(recorder.state.best_fitness),
            "last_generation": recorder.last,
            **recorder.evaluation,
            "vae_step": vae_step,
            "rnn_step": rnn_step,
            "checkpoint": checkpoint_path(store, store.latest_step()),
            "best_checkpoint": checkpoint_path(store, store.best_step()),
            "wall_seconds": time.perf_counter() - started,
        }
