"""The whole World Models pipeline, and Ha & Schmidhuber's iterative procedure on top of it.

Round 0 is the paper's CarRacing recipe: collect with an exploration policy -> fit V -> fit M -> search
C. On RLCar, round 0 may first collect laps of the built-in heuristic (`heuristic_laps`): explorers
never get as far as the obstacles, and the laps are what `--imitate` starts C from. Each later round
(an iteration) collects new episodes with the current V+M+C (plus exploration
noise), refits V and M on all the data so far, continuing from their checkpoints, and searches C
again from its current mean, in the dream of the refitted M. M and C move on to the new V and M
(`--vae-checkpoint latest`, `--rnn-checkpoint latest`; see storage.move_on), so `best` always names
a controller whose V and M exist.

Every stage is the existing stage function (collect, train_vae, train_rnn, train_controller), called
with cumulative budgets: round r trains V and M up to (r + 1) x their per-round updates and C up to
(r + 1) x its generations, so a stage that is rerun resumes where it stopped. What is done is recorded
in `<run>/pipeline.json` (atomically, under the run's writer lock), so rerunning `run_iterations`
skips finished stages; a collect records its target dataset size before it starts, so a killed
collect is topped up rather than repeated.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from rlcar_core.errors import RlcarError
from rlcar_core.io.atomic import write_json_atomic
from rlcar_core.io.data import MANIFEST_FILE, load_manifest
from rlcar_core.io.runs import RunDir
from rlcar_core.worldmodels.collect import PolicySource, collect, settle_camera, top_up_heuristic_laps
from rlcar_core.worldmodels.config import (
    HEURISTIC,
    CollectConfig,
    TrainControllerConfig,
    TrainRNNConfig,
    TrainVAEConfig,
    TrainWorldModelsConfig,
)
from rlcar_core.worldmodels.storage import run_dir_of
from rlcar_core.worldmodels.train_controller import train_controller
from rlcar_core.worldmodels.train_rnn import train_rnn
from rlcar_core.worldmodels.train_vae import train_vae

PIPELINE_FILE = "pipeline.json"
STAGES = ("collect", "vae", "rnn", "controller")
# What each stage's record keeps of its result (the rest is in metrics.jsonl and the checkpoints).
_KEPT = {
    "collect": ("episodes", "dataset_episodes", "steps", "return_mean", "progress_mean", "wall_seconds"),
    "vae": ("step", "validation", "wall_seconds"),
    "rnn": ("step", "vae_step", "validation", "wall_seconds"),
    "controller": (
        "generations",
        "best_fitness",
        "eval_return",
        "eval_progress",
        "vae_step",
        "rnn_step",
        "wall_seconds",
    ),
}

Event = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The pipeline's settings: one config per stage (their budgets are per round) plus the iterations.

    `collect` is round 0's collection (its policy explores), after `heuristic_laps` episodes of the
    heuristic of at most `heuristic_max_steps` steps each (default: the collect's); an iteration
    collects `iteration_episodes` with the run's `collect_checkpoint` controller and `action_noise`.
    `vae.steps`, `rnn.steps` and `controller.generations` are what each round adds."""

    collect: CollectConfig
    vae: TrainVAEConfig
    rnn: TrainRNNConfig
    controller: TrainControllerConfig
    iterations: int = 0
    iteration_episodes: int = 100
    action_noise: float = 0.1
    collect_checkpoint: str = "best"
    heuristic_laps: int = 0
    heuristic_max_steps: int | None = None

    def validate(self) -> None:
        paths = {str(run_dir_of(config)) for config in (self.collect, self.vae, self.rnn, self.controller)}
        if len(paths) != 1:
            raise RlcarError(f"every stage must use the same run directory, got {', '.join(sorted(paths))}")
        if self.vae.epochs is not None:
            raise RlcarError("the pipeline budgets V in updates per round: give --vae-steps, not epochs")
        if self.iterations < 0:
            raise RlcarError(f"--iterations must be at least 0, got {self.iterations}")
        if self.iteration_episodes < 1:
            raise RlcarError(f"--iteration-episodes must be at least 1, got {self.iteration_episodes}")
        if self.heuristic_laps < 0:
            raise RlcarError(f"--heuristic-laps must be at least 0, got {self.heuristic_laps}")
        stages = [self.collect, self.vae, self.rnn, self.controller, self.round_collect(1)]
        if self.heuristic_laps:
            stages.append(self.heuristic_collect())
        for config in stages:
            config.validate()

    @property
    def run_dir(self):
        return run_dir_of(self.collect)

    def round_collect(self, round_index: int) -> CollectConfig:
        if round_index == 0:
            return self.collect
        return dataclasses.replace(
            self.collect,
            episodes=self.iteration_episodes,
            policy="checkpoint",
            checkpoint=self.collect_checkpoint,
            action_noise=self.action_noise,
        )

    def heuristic_collect(self) -> CollectConfig:
        """Round 0's heuristic laps: the explorers' settings, driven by the heuristic."""
        max_steps = self.heuristic_max_steps or self.collect.max_steps
        return dataclasses.replace(self.collect, policy=HEURISTIC, max_steps=max_steps)

    def round_vae(self, round_index: int) -> TrainVAEConfig:
        steps = self.vae.steps if self.vae.steps is not None else TrainVAEConfig.DEFAULT_STEPS
        return dataclasses.replace(self.vae, steps=steps * (round_index + 1))

    def round_rnn(self, round_index: int) -> TrainRNNConfig:
        steps = self.rnn.steps if self.rnn.steps is not None else TrainRNNConfig.DEFAULT_STEPS
        # Always on V's newest checkpoint: in round 0 the one just fitted, later the refitted one.
        return dataclasses.replace(self.rnn, steps=steps * (round_index + 1), vae_checkpoint="latest")

    def round_controller(self, round_index: int) -> TrainControllerConfig:
        return dataclasses.replace(
            self.controller,
            generations=self.controller.generations * (round_index + 1),
            rnn_checkpoint="latest",
        )


def pipeline_path(run_dir) -> Any:
    return RunDir(run_dir).path / PIPELINE_FILE


def read_progress(run_dir) -> dict[str, Any]:
    """`pipeline.json`: {"rounds": [{"round": r, "stages": {stage: record}, "collect_target": n}]}; empty
    for a run the pipeline has not touched."""
    path = pipeline_path(run_dir)
    if not path.is_file():
        return {"rounds": []}
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RlcarError(f"{path} is damaged; delete it to redo the pipeline's stages") from None
    if not isinstance(progress, dict) or not isinstance(progress.get("rounds"), list):
        raise RlcarError(f"{path} is not a pipeline record; delete it to redo the pipeline's stages")
    return progress


def _write_progress(run: RunDir, progress: dict[str, Any]) -> None:
    # Under the run's writer lock like every other write to the run; the stages take it themselves.
    with run.writer_lock("train-worldmodels"):
        write_json_atomic(run.path / PIPELINE_FILE, progress)


def _round_record(progress: dict[str, Any], round_index: int) -> dict[str, Any]:
    rounds = progress["rounds"]
    while len(rounds) <= round_index:
        rounds.append({"round": len(rounds), "stages": {}})
    return rounds[round_index]


def dataset_episodes(run: RunDir) -> int:
    """Episodes in the run's dataset (0 before its first collect)."""
    if not (run.data_dir / MANIFEST_FILE).is_file():
        return 0
    return len(load_manifest(run.data_dir)["episodes"])


def _summary(stage: str, result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in _KEPT[stage] if key in result}


def run_iterations(
    config: PipelineConfig,
    policies: PolicySource,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) round 0 and `config.iterations` iterations; returns the pipeline record.

    `on_event` receives `{"kind": "stage", "round", "stage", "status": "start" | "done" | "skipped"}`
    around each stage and, in between, that stage's own progress records with `round` and `stage`
    added. Interruptions and divergence propagate from the stage that met them (its checkpoints kept)."""
    config.validate()
    run = RunDir(config.run_dir)
    # Up front: a rerun may skip every collect, and the dataset is one camera's (see `settle_camera`).
    settle_camera(run, config.collect, dataset_episodes(run))
    progress = read_progress(run.path)
    started = time.perf_counter()

    def emit(event: Event) -> None:
        if on_event is not None:
            on_event(event)

    for round_index in range(config.iterations + 1):
        record = _round_record(progress, round_index)
        for stage in STAGES:
            where = {"round": round_index, "stage": stage}
            if stage in record["stages"]:
                emit({"kind": "stage", **where, "status": "skipped"})
                continue
            emit({"kind": "stage", **where, "status": "start"})

            def forward(event: Event, where: dict[str, Any] = where) -> None:
                emit({**event, **where})

            result = _run_stage(run, config, round_index, stage, record, progress, policies, forward)
            record["stages"][stage] = _summary(stage, result)
            _write_progress(run, progress)
            emit({"kind": "stage", **where, "status": "done", "result": record["stages"][stage]})
    return {
        "run_dir": str(run.path),
        "rounds": progress["rounds"][: config.iterations + 1],
        "wall_seconds": time.perf_counter() - started,
    }


def _run_stage(run, config, round_index, stage, record, progress, policies, forward) -> dict[str, Any]:
    if stage == "collect":
        collect_config = config.round_collect(round_index)
        if round_index == 0 and config.heuristic_laps:
            # Before the explorers, and before their target is set, so that it counts on top.
            top_up_heuristic_laps(config.heuristic_collect(), config.heuristic_laps, policies, forward)
        if "collect_target" not in record:
            record["collect_target"] = dataset_episodes(run) + collect_config.episodes
            _write_progress(run, progress)
        missing = record["collect_target"] - dataset_episodes(run)
        if missing <= 0:  # killed after its last episode was written but before it was recorded
            return {"episodes": 0, "dataset_episodes": dataset_episodes(run)}
        collect_config = dataclasses.replace(collect_config, episodes=missing)
        return collect(collect_config, policies(collect_config), forward)
    if stage == "vae":
        return train_vae(config.round_vae(round_index), forward)
    if stage == "rnn":
        return train_rnn(config.round_rnn(round_index), forward)
    return train_controller(config.round_controller(round_index), forward)


def pipeline_from_options(options: TrainWorldModelsConfig) -> PipelineConfig:
    """`rlcar train-worldmodels`'s options as the four stage configs; the rest keep their defaults."""
    options.validate()
    shared = {"run_dir": options.run_dir, "seed": options.seed}
    carracing = {"carracing_backend": options.carracing_backend, "action_repeat": options.action_repeat}
    return PipelineConfig(
        collect=CollectConfig(
            env=options.env,
            episodes=options.episodes,
            max_steps=options.max_steps,
            num_envs=options.num_envs,
            num_tracks=options.num_tracks,
            camera=options.camera,
            **carracing,
            **shared,
        ),
        vae=TrainVAEConfig(steps=options.vae_steps, z_dim=options.z_dim, **shared),
        rnn=TrainRNNConfig(steps=options.rnn_steps, hidden_size=options.hidden_size, **shared),
        controller=TrainControllerConfig(
            in_dream=options.in_dream,
            generations=options.generations,
            popsize=options.popsize,
            temperature=options.temperature,
            max_steps=options.max_steps,
            num_tracks=options.num_tracks,
            controller_hidden=options.controller_hidden,
            imitate=options.imitate,
            **carracing,
            **shared,
        ),
        iterations=options.iterations,
        heuristic_laps=options.heuristic_laps,
        iteration_episodes=options.iteration_episodes,
        action_noise=options.action_noise,
    )
