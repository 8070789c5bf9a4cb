"""`rlcar train-controller`: search the controller C with CMA-ES, in the dream or in the env.

In the dream, a whole population is scored by one jitted call: every candidate drives the MDN-RNN's
imagined world from the same real start frames (the reward and done heads say what the dream pays
and when it ends). In the env, every candidate drives real cars through the vector env. Either way,
the search mean is evaluated in the real env every few generations; that return ranks checkpoints.

A checkpoint is saved every generation. CMA-ES's covariance is not saved: a resumed search restarts
from the saved mean and step size, which costs a few generations of adaptation, not the progress.
`--rnn-checkpoint` moves a controller on to another MDN-RNN (the iterative procedure): its checkpoints
go aside (storage.move_on) and the search continues from their mean, with a fresh best.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from rlcar_core.envs import make_env
from rlcar_core.envs.backends import default_action_repeat
from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError
from rlcar_core.io.data import split_episodes
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.mesh import data_mesh
from rlcar_core.sim.track import EVAL_SEED_OFFSET
from rlcar_core.worldmodels.config import (
    ControllerConfig,
    MDNRNNConfig,
    TrainControllerConfig,
    VAEConfig,
    carracing_env_options,
    check_carracing_options,
)
from rlcar_core.worldmodels.controller import (
    GenerationStats,
    WorldModelParams,
    initial_controller_vector,
    jitted_policy_step,
    run_cmaes,
    spread_population,
)
from rlcar_core.worldmodels.dream import make_dream_fitness
from rlcar_core.worldmodels.imitate import TEACHER, ImitationFit, fit_controller, teacher_files, teacher_steps
from rlcar_core.worldmodels.latents import encode_dataset
from rlcar_core.worldmodels.mdnrnn import initial_rnn_state
from rlcar_core.worldmodels.storage import (
    CONTROLLER_MODEL,
    IMITATION_STEP,
    RNN_MODEL,
    VAE_MODEL,
    VALIDATION_FRACTION,
    ControllerSearchState,
    abstract_search_state,
    camera_of_run,
    dataset_manifest,
    load_rnn,
    load_vae,
    move_on,
    newest_saved_config,
    open_existing_store,
    pinned_step,
    record_model_config,
    requested_upstream,
    resume_or_warm_start,
    run_dir_of,
    saved_training_record,
    settle_config,
    training_session,
    warm_start,
)
from rlcar_core.worldmodels.supervised import StepCallback

# CarRacing-v3 cars each take a worker process (about 270 MB); 16 keep 2 cores busy while the
# main process runs V, M and C for all of them.
MAX_CARRACING_CARS = 16
# RLCar's cars work through a generation's rows as a queue: a crashed car's slot takes the next row at
# once, so a batch of 32 (wide enough for XLA's convolutions) scores a generation in about the frames
# its episodes need, where one car per row steps every car until the generation's longest episode ends.
MAX_RLCAR_CARS = 32


class RolloutScores(NamedTuple):
    episode_return: np.ndarray  # (K,) one per (controller, track) pair
    progress: np.ndarray  # (K,) lap fraction reached


class EnvRollouts:
    """`run(vectors (K, n), tracks (K,), seed)` plays one episode per row on `num_envs` cars.

    `tracks` are indices into the RLCar training-track bank, or CarRacing-v3 reset seeds (which pick
    the track). Candidates on the same track face the same start (common random numbers make
    CMA-ES's comparisons less noisy): RLCar's start jitter is seeded from `seed` and the track.

    RLCar's JAX vector env and Gymnasium's CarRacing-v3 cars (each in a worker process) work through
    the rows as a queue: a car whose episode ends takes the next row at once, so short episodes
    (crashes, early stops) free their slot for the rest instead of waiting for the slowest car of a
    wave. EnvPool's CarRacing-v3 plays waves, stepping only the cars still playing.

    `patience` (frames, training only) ends an episode after that many frames in a row without a
    reward: a car parked or lost on the grass earns only CarRacing's -0.1 a frame from there on, and
    the rest of its 1000 frames would say nothing more about the candidate. A queued car takes the
    next row at once; a wave ends once every car in it has ended. Evaluations pass 0.
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int,
        max_steps: int,
        configs: tuple[VAEConfig, MDNRNNConfig, ControllerConfig],
        num_tracks: int | None = None,
        env_options: dict[str, Any] | None = None,
    ):
        self.env_name = env_name
        self.num_envs = num_envs
        self.banked = EnvName.parse(env_name).has_track_bank
        env_options = dict(env_options or {})
        # RLCar's vector env and Gymnasium's CarRacing cars (in worker processes that spread Box2D
        # over the cores) play a queue of rows: they reset car by car (see _run_queue). EnvPool has
        # its own threads and resets a car on its own: it plays waves.
        self.queued = self.banked or env_options.get("backend", "gymnasium") == "gymnasium"
        if not self.banked:
            env_options.setdefault("action_repeat", default_action_repeat(env_name))
        if self.queued and not self.banked:
            from gymnasium.vector import AutoresetMode

            env_options.update(processes=num_envs > 1, autoreset_mode=AutoresetMode.DISABLED)
        self.frames_per_step = int(env_options.get("action_repeat", 1))
        self.env = make_env(
            env_name,
            obs="pixels",
            num_envs=num_envs,
            num_tracks=num_tracks,
            max_steps=max_steps,
            **env_options,
        )
        # CarRacing-v3: every reset seed is a new track.
        self.num_tracks = int(self.env.unwrapped.params.bank.num_tracks) if self.banked else None
        self._rnn_config = configs[1]
        self._policy_step = jitted_policy_step(*configs)
        self.frames = 0  # env frames stepped so far (a generation's frames/s is read from it)

    def run(
        self, params: WorldModelParams, vectors: np.ndarray, tracks: np.ndarray, seed: int, patience: int = 0
    ) -> RolloutScores:
        vectors = np.asarray(vectors, np.float32)
        tracks = np.asarray(tracks, np.int64)
        if self.queued:
            return self._run_queue(params, vectors, tracks, seed, patience)
        returns, progress = [], []
        for first in range(0, len(vectors), self.num_envs):
            wave_vectors = vectors[first : first + self.num_envs]
            wave_tracks = tracks[first : first + self.num_envs]
            count = len(wave_vectors)
            pad = self.num_envs - count  # the last wave is padded with copies of its last row
            wave_vectors = np.concatenate([wave_vectors, np.repeat(wave_vectors[-1:], pad, axis=0)])
            wave_tracks = np.concatenate([wave_tracks, np.repeat(wave_tracks[-1:], pad)])
            wave = self._run_wave(params, wave_vectors, wave_tracks, seed + first, patience)
            returns.append(wave.episode_return[:count])
            progress.append(wave.progress[:count])
        return RolloutScores(np.concatenate(returns), np.concatenate(progress))

    def _run_wave(
        self, params: WorldModelParams, vectors, tracks, seed: int, patience: int = 0
    ) -> RolloutScores:
        """One episode per car, all cars reset together. A car whose episode ended (or that went
        `patience` frames unrewarded) keeps its score; the wave ends when no car is left playing, so a
        wave of hopeless candidates costs `patience` frames, not a whole episode."""
        obs, _ = self.env.reset(seed=[int(track) for track in tracks])
        rnn_state = initial_rnn_state(self._rnn_config, self.num_envs)
        running = np.ones(self.num_envs, bool)
        episode_return = np.zeros(self.num_envs)
        progress = np.zeros(self.num_envs)
        unrewarded = np.zeros(self.num_envs, np.int64)  # frames since the car last earned a reward
        # EnvPool steps (and renders) only the cars still playing: a wave's cost follows its
        # episodes' lengths, not its longest episode times its cars.
        step_envs = getattr(self.env, "step_envs", None)
        while running.any():
            actions, rnn_state = self._policy_step(params, vectors, obs, rnn_state)
            if step_envs is None:
                obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
            else:
                obs, reward, terminated, truncated, info = _step_some(step_envs, obs, actions, running)
            self.frames += int(running.sum()) * self.frames_per_step
            episode_return += np.where(running, reward, 0.0)
            progress = np.where(running, info["progress"], progress)
            unrewarded = np.where(reward > 0, 0, unrewarded + self.frames_per_step)
            ended = terminated | truncated
            if patience > 0:
                ended |= unrewarded >= patience
            running &= ~ended
        return RolloutScores(episode_return, progress)

    def _reset_cars(self, tracks: np.ndarray, seed: int, mask: np.ndarray | None = None):
        """Start each car (each car where `mask` is set) on its track: a CarRacing reset seed is the
        track; an RLCar car's start jitter is seeded from `seed` and its track."""
        if self.banked:
            options: dict[str, Any] = {"track_id": tracks}
            if mask is not None:
                options["reset_mask"] = mask
            return self.env.reset(seed=[(seed + int(track)) % 2**31 for track in tracks], options=options)
        if mask is None:
            return self.env.reset(seed=[int(track) for track in tracks])
        seeds = [int(track) if go else None for track, go in zip(tracks, mask, strict=True)]
        return self.env.reset(seed=seeds, options={"reset_mask": mask})

    def _run_queue(
        self, params: WorldModelParams, vectors, tracks, seed: int, patience: int
    ) -> RolloutScores:
        rows, cars = len(vectors), self.num_envs
        returns, progress = np.zeros(rows), np.zeros(rows)
        row_of_car = np.full(cars, -1)  # -1: the car has no row left to play (it idles till the end)
        started = min(cars, rows)
        row_of_car[:started] = np.arange(started)
        next_row = started
        obs, _ = self._reset_cars(tracks[np.maximum(row_of_car, 0)], seed)
        rnn_state = initial_rnn_state(self._rnn_config, cars)
        episode_return = np.zeros(cars)
        unrewarded = np.zeros(cars, np.int64)  # frames since the car last earned a reward
        while (row_of_car >= 0).any():
            playing = row_of_car >= 0
            car_vectors = vectors[np.maximum(row_of_car, 0)]
            actions, rnn_state = self._policy_step(params, car_vectors, obs, rnn_state)
            obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
            self.frames += int(playing.sum()) * self.frames_per_step
            episode_return += reward
            unrewarded = np.where(reward > 0, 0, unrewarded + self.frames_per_step)
            ended = terminated | truncated
            if patience > 0:
                ended |= unrewarded >= patience
            ended &= playing
            if not ended.any():
                continue
            for car in np.flatnonzero(ended):
                returns[row_of_car[car]] = episode_return[car]
                progress[row_of_car[car]] = info["progress"][car]
                row_of_car[car] = next_row if next_row < rows else -1
                next_row += 1
            episode_return[ended] = 0.0
            unrewarded[ended] = 0
            restart = ended & (row_of_car >= 0)
            if restart.any():
                fresh_obs, _ = self._reset_cars(tracks[np.maximum(row_of_car, 0)], seed, restart)
                obs = np.where(restart[:, None, None, None], fresh_obs, obs)
                rnn_state = _zero_rows(rnn_state, restart)  # a new episode starts from M's zero state
        return RolloutScores(returns, progress)

    def close(self) -> None:
        self.env.close()


@functools.cache
def dream_fitness_fn(rnn_config: MDNRNNConfig, controller_config: ControllerConfig, horizon: int, mesh):
    """Jitted population fitness in the dream (see dream.make_dream_fitness), the population split over
    `mesh`'s devices; cached per shape and mesh."""
    return spread_population(make_dream_fitness(rnn_config, controller_config, horizon), mesh)


def _step_some(step_envs, obs: np.ndarray, actions, playing: np.ndarray) -> tuple:
    """`env.step` for the `playing` cars only (`step_envs`); the others keep their last frame, with
    no reward and no end, so a caller that ignores them sees no difference."""
    cars = np.flatnonzero(playing)
    sub_obs, sub_reward, sub_terminated, sub_truncated, sub_info = step_envs(np.asarray(actions)[cars], cars)
    obs = np.array(obs)
    obs[cars] = sub_obs
    reward = np.zeros(len(playing))
    reward[cars] = sub_reward
    terminated, truncated = np.zeros(len(playing), bool), np.zeros(len(playing), bool)
    terminated[cars], truncated[cars] = sub_terminated, sub_truncated
    progress = np.zeros(len(playing), np.float32)
    progress[cars] = sub_info["progress"]
    return obs, reward, terminated, truncated, {"progress": progress}


def _zero_rows(state, rows: np.ndarray):
    """`state` (a pytree of (N, ...) arrays) with the rows where `rows` is True set to zero."""
    keep = ~rows

    def zero(part):
        return np.where(keep.reshape((-1,) + (1,) * (np.ndim(part) - 1)), part, 0.0).astype(part.dtype)

    return jax.tree.map(zero, state)


def _dream_fitness(
    run, vae_config, vae_params, vae_step, rnn_config, rnn_params, controller_config, config, mesh
):
    """`fitness(candidates (P, n), generation) -> (P,)`: mean dream return from real start frames."""
    episodes = encode_dataset(run, vae_config, vae_params, vae_step)
    train_files, _ = split_episodes(list(episodes), VALIDATION_FRACTION)
    # Dreams start where real episodes start, with the LSTM at zeros, exactly as the MDN-RNN saw them.
    start_means = np.stack([episodes[name].mean[0] for name in train_files])
    start_log_vars = np.stack([episodes[name].log_var[0] for name in train_files])
    fitness = dream_fitness_fn(rnn_config, controller_config, config.dream_horizon, mesh)

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
    the same tracks and starts for every candidate; episodes end early after `config.patience`
    unrewarded frames."""
    repeats = config.rollouts_per_candidate

    def evaluate(candidates: np.ndarray, generation: int) -> np.ndarray:
        rng = np.random.default_rng([config.seed, generation])
        if rollouts.num_tracks is not None:
            tracks = rng.choice(rollouts.num_tracks, repeats, replace=repeats > rollouts.num_tracks)
        else:
            tracks = rng.integers(0, EVAL_SEED_OFFSET, repeats)  # CarRacing training seeds
        vectors = np.repeat(candidates, repeats, axis=0)
        scores = rollouts.run(
            params,
            vectors,
            np.tile(tracks, len(candidates)),
            int(rng.integers(0, 2**31)),
            patience=config.patience,
        )
        return scores.episode_return.reshape(len(candidates), repeats).mean(axis=1)

    return evaluate


class _GenerationRecorder:
    """Turns each finished CMA-ES generation into a metrics record, a checkpoint and a progress report.
    Every `eval_every` generations (and at the last) the search mean drives real episodes first; that
    return is what ranks the checkpoint as `best`."""

    def __init__(
        self, *, ckpt, log, saved_config, config, state, evaluate_policy, on_generation, frames_stepped
    ):
        self.ckpt, self.log, self.saved_config, self.config = ckpt, log, saved_config, config
        self.state: ControllerSearchState = state
        self.evaluate_policy = evaluate_policy
        self.on_generation = on_generation
        self.frames_stepped = frames_stepped  # () -> real-env frames stepped so far by this search
        self._frames = frames_stepped()
        self.last: dict[str, Any] = {}
        # The imitated C's record (generation 0), when the search started from one.
        self.start: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}
        self._clock = time.perf_counter()

    def record_start(self, fit: ImitationFit) -> None:
        """Checkpoint ep0: the imitated C, driven and saved before CMA-ES moves it, so that it can be
        ranked with the search's checkpoints and evaluated on its own (`--checkpoint ep0`)."""
        steer, gas, brake = fit.validation_r2
        self.start = {
            "kind": "imitation",
            "generation": IMITATION_STEP,
            "teacher": TEACHER,
            "train_steps": fit.train_steps,
            "validation_steps": fit.validation_steps,
            "train_error": fit.train_error,
            "validation_r2_steer": steer,
            "validation_r2_gas": gas,
            "validation_r2_brake": brake,
            **self.evaluate_policy(self.state.policy),
        }
        values = {
            f"{self.log.trainer}/imitation/{name}": value
            for name, value in self.start.items()
            if name != "kind"
        }
        self.log.log("imitation", IMITATION_STEP, values)
        self.ckpt.save(
            IMITATION_STEP,
            self.state,
            self.saved_config,
            metrics=self.start,
            best_metric=self.start["eval_return"],
        )
        self.evaluation = {k: v for k, v in self.start.items() if k.startswith("eval_")}
        self._clock, self._frames = time.perf_counter(), self.frames_stepped()
        if self.on_generation is not None:
            self.on_generation(self.start)

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
        }
        if self.config.mode == "env":
            frames = self.frames_stepped() - self._frames
            seconds = time.perf_counter() - self._clock
            record.update(env_frames=frames, frames_per_second=frames / max(seconds, 1e-9))
        best_metric = None
        if done % self.config.eval_every == 0 or done == self.config.generations:
            self.evaluation = self.evaluate_policy(state.policy)
            record.update(self.evaluation)
            best_metric = self.evaluation["eval_return"]
        record["seconds"] = time.perf_counter() - self._clock
        values = {f"{self.log.trainer}/{name}": value for name, value in record.items() if name != "kind"}
        self.log.log("generation", done, values)  # logged before the save, as the checkpointer asks
        self.ckpt.save(done, state, self.saved_config, metrics=record, best_metric=best_metric)
        self.state, self.last = state, record
        self._clock, self._frames = time.perf_counter(), self.frames_stepped()
        if self.on_generation is not None:
            self.on_generation(record)


def _fresh_search(
    config: TrainControllerConfig, controller_config: ControllerConfig, start: np.ndarray | None = None
) -> ControllerSearchState:
    """A new search from `start`, else from the all-zero linear controller, as in the paper (see
    `initial_controller_vector` for a hidden layer)."""
    if start is None:
        start = initial_controller_vector(controller_config, config.seed)
    return ControllerSearchState(
        policy=start,
        sigma=np.float32(config.start_sigma),
        best_candidate=start.copy(),
        best_fitness=np.float32(-np.inf),
        generation=np.int32(0),
    )


def _imitate_teacher(
    run: RunDir,
    world_model: tuple[VAEConfig, Any, int, MDNRNNConfig, Any],
    controller_config: ControllerConfig,
    seed: int,
) -> ImitationFit:
    """C fitted to the teacher's episodes in the run's dataset (see `imitate`)."""
    vae_config, vae_params, vae_step, rnn_config, rnn_params = world_model
    files = teacher_files(dataset_manifest(run))
    if not files:
        raise RlcarError(
            f"--imitate learns from the {TEACHER} driver's episodes, and {run.data_dir} holds none "
            f"that say so: add some with `rlcar collect --policy {TEACHER}` (RLCar only)"
        )
    latents = encode_dataset(run, vae_config, vae_params, vae_step)
    data = teacher_steps(rnn_config, rnn_params, [latents[name] for name in files])
    return fit_controller(controller_config, data, seed)


def _abstract_state_of(saved: dict[str, Any]) -> ControllerSearchState:
    return abstract_search_state(ControllerConfig.from_dict(saved["controller"]))


def _fresh_best(state: ControllerSearchState) -> ControllerSearchState:
    """The same search with its best forgotten, for when the fitness it was measured by changed."""
    return state._replace(best_candidate=state.policy, best_fitness=np.float32(-np.inf))


def train_controller(
    config: TrainControllerConfig, on_generation: StepCallback | None = None
) -> dict[str, Any]:
    """Run (or resume) the CMA-ES search; returns the final figures and checkpoint paths."""
    config.validate()
    run = RunDir(run_dir_of(config))
    env_name = dataset_manifest(run)["env_name"]
    if config.num_tracks is not None and not EnvName.parse(env_name).has_track_bank:
        raise RlcarError("--num-tracks applies to RLCar only")
    check_carracing_options(config, env_name)
    config = config.for_env(env_name)
    # Checked before the session opens the controller's checkpoint folder: a refusal leaves nothing behind.
    open_existing_store(run, RNN_MODEL).close()
    mesh = data_mesh(config.devices)  # the dream population's devices
    started = time.perf_counter()

    def move_on_to_the_requested_rnn() -> None:
        if config.rnn_checkpoint is not None:
            step = requested_upstream(
                run, RNN_MODEL, CONTROLLER_MODEL, None, "rnn_step", config.rnn_checkpoint
            )
            move_on(run, CONTROLLER_MODEL, RNN_MODEL, "rnn_step", step)

    with training_session(run, CONTROLLER_MODEL, on_generation, move_on_to_the_requested_rnn) as (
        stop,
        log,
        ckpt,
    ):
        saved = newest_saved_config(ckpt)
        warm = None
        if saved is None and config.rnn_checkpoint is not None:
            warm = warm_start(run, CONTROLLER_MODEL, _abstract_state_of)
        rnn_step = requested_upstream(
            run, RNN_MODEL, CONTROLLER_MODEL, saved, "rnn_step", config.rnn_checkpoint
        )
        rnn_config, rnn_params, _, vae_step = load_rnn(run, rnn_step)
        vae_step = pinned_step(run, VAE_MODEL, vae_step, RNN_MODEL)
        vae_config, vae_params, _ = load_vae(run, vae_step)
        model_saved = saved if saved is not None else (warm.saved_config if warm is not None else None)
        controller_config = settle_config(
            ControllerConfig,
            model_saved["controller"] if model_saved is not None else None,
            {
                "z_dim": rnn_config.z_dim,
                "hidden_size": rnn_config.hidden_size,
                "hidden_units": config.controller_hidden,
                "sees_hidden": config.sees_hidden,
            },
            ("z_dim", "hidden_size", "hidden_units", "sees_hidden"),
            "this run's controller",
        )
        restored, restored_state = resume_or_warm_start(
            ckpt, log, abstract_search_state(controller_config), warm
        )
        imitation = None
        if restored_state is None:
            if config.imitate:
                imitation = _imitate_teacher(
                    run,
                    (vae_config, vae_params, vae_step, rnn_config, rnn_params),
                    controller_config,
                    config.seed,
                )
            state = _fresh_search(config, controller_config, None if imitation is None else imitation.vector)
        else:
            state = ControllerSearchState(*jax.device_get(restored_state))
            if warm is not None:
                # A new M: a new dream to score in, so the old best means nothing; and a wider step
                # than the one the old search had shrunk to, to adapt to it.
                state = _fresh_best(state)._replace(
                    sigma=np.float32(max(float(state.sigma), config.start_sigma))
                )
            elif saved["training"].get("mode", config.mode) != config.mode:
                # Dream and env fitness are different measures: the best of one says nothing about the other.
                state = _fresh_best(state)
        first_generation = int(state.generation)

        params = WorldModelParams(vae_params, rnn_params)
        num_envs = config.num_envs
        if num_envs is None and config.mode == "env":
            num_envs = config.popsize * config.rollouts_per_candidate
            if not EnvName.parse(env_name).has_track_bank:  # one worker process per CarRacing car
                num_envs = min(num_envs, MAX_CARRACING_CARS)
            else:
                num_envs = min(num_envs, MAX_RLCAR_CARS)
        elif num_envs is None:
            num_envs = config.eval_episodes
        rollouts = EnvRollouts(
            env_name,
            num_envs,
            config.max_steps,
            (vae_config, rnn_config, controller_config),
            config.num_tracks,
            # RLCar's cars film with the camera the run's data was collected with.
            {**carracing_env_options(config, env_name), "camera": camera_of_run(run, env_name)},
        )
        try:
            if config.mode == "env":
                fitness = _env_fitness(rollouts, params, config)
            else:
                fitness = _dream_fitness(
                    run,
                    vae_config,
                    vae_params,
                    vae_step,
                    rnn_config,
                    rnn_params,
                    controller_config,
                    config,
                    mesh,
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

            training = {**saved_training_record(config), "mode": config.mode}
            saved_config = record_model_config(
                run,
                CONTROLLER_MODEL,
                controller_config,
                training,
                vae_step=vae_step,
                rnn_step=rnn_step,
                env=env_name,
            )
            recorder = _GenerationRecorder(
                ckpt=ckpt,
                log=log,
                saved_config=saved_config,
                config=config,
                state=state,
                evaluate_policy=evaluate_policy,
                on_generation=on_generation,
                frames_stepped=lambda: rollouts.frames,
            )
            if imitation is not None:
                recorder.record_start(imitation)
            remaining = config.generations - first_generation
            if remaining <= 0 and restored is not None:
                # Already searched this far: report what the last checkpoint recorded.
                recorder.last = {
                    k: v for k, v in restored.metrics.get("metrics", {}).items() if k != "metrics_records"
                }
                recorder.evaluation = {k: v for k, v in recorder.last.items() if k.startswith("eval_")}
            if remaining > 0:
                try:
                    run_cmaes(
                        fitness,
                        state.policy,
                        generations=remaining,
                        population_size=config.popsize,
                        initial_sigma=float(state.sigma),
                        seed=int(
                            np.random.SeedSequence([config.seed, first_generation]).generate_state(1)[0]
                        ),
                        on_generation=recorder,
                        first_generation=first_generation,
                        should_stop=lambda: stop.requested,
                    )
                except FloatingPointError as error:
                    done = int(recorder.state.generation)
                    raise ckpt.diverged(
                        f"fitness ({error})", math.nan, f"generation {done + 1}", done
                    ) from None
            generations_done = int(recorder.state.generation)
            if stop.requested and generations_done < config.generations:
                # Every finished generation is already saved; only the one in progress is lost.
                raise ckpt.interrupted(
                    generations_done,
                    recorder.state,
                    saved_config,
                    where=f"controller generation {generations_done}",
                )
        finally:
            rollouts.close()
        ckpt.wait()
        return {
            "stage": CONTROLLER_MODEL,
            "run_dir": str(run.path),
            "mode": config.mode,
            "env": env_name,
            "generations": generations_done,
            "total_generations": config.generations,
            "resumed_from": first_generation if first_generation > 0 else None,
            **({} if imitation is None else {"imitation": recorder.start}),
            "best_fitness": float(recorder.state.best_fitness),
            "last_generation": recorder.last,
            **recorder.evaluation,
            "vae_step": vae_step,
            "rnn_step": rnn_step,
            "checkpoint": ckpt.path(ckpt.store.latest_step()),
            "best_checkpoint": ckpt.path(ckpt.store.best_step()),
            "wall_seconds": time.perf_counter() - started,
        }
