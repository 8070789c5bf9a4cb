"""DreamerV3 never loses what it trained: a run that ends or stops between two episode ends saves its
newest state under the current episode count (replacing the older state of that count), `latest` is
that state, a rerun resumes at its exact env step and update count, and rerunning a finished run keeps
its final records.

The runs use the tiny model of tests/test_dreamer_train.py: two cars whose 20-step episodes end
together every 40 env steps (2 env steps per collection step), so 50 env steps is between episode
counts 2 and 4.
"""

import shutil

import pytest
from conftest import TINY_DREAMER_RUN, fail_learner_from_update

from rlcar_core.dreamer.checkpoints import abstract_trainer_state, load_saved_agent, open_store, replay_path
from rlcar_core.dreamer.replay import ReplayBuffer
from rlcar_core.dreamer.train import train_dreamer
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.checkpointer import REPLACED_SUFFIX, _finish_replacements
from rlcar_core.loop.outcomes import TrainingInterrupted


@pytest.fixture
def trained(tiny_dreamer_run):
    """conftest's shared tiny run, `(run_dir, summary, records)`: read it only, copy it to change it."""
    return tiny_dreamer_run


def tiny_options(episodes=2, **changes):
    return {"episodes": episodes, **TINY_DREAMER_RUN, **changes}


def copy_run(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def latest_counters(run_dir) -> tuple[int, int, int]:
    """(episodes, env steps, updates) of the state `latest` holds."""
    config = load_saved_agent(run_dir, "latest").config
    with open_store(RunDir(run_dir), read_only=True) as store:
        state = store.restore("latest", abstract_trainer_state(config))
    return int(state.episodes), int(state.env_steps), int(state.agent.step)


def start_record(records):
    return next(record for record in records if record["kind"] == "start")


def dreamer_records(run_dir):
    return [record for record in RunDir(run_dir).read_metrics() if record.get("trainer") == "dreamer"]


def test_a_budget_between_episode_ends_saves_the_newest_state_and_resumes_there(tmp_path, trained):
    del trained  # compiled by the shared run already
    run_dir = tmp_path / "run"
    first = train_dreamer(run_dir, tiny_options(episodes=4, env_steps=50))
    assert (first["episodes"], first["env_steps"]) == (2, 50)
    # ep2 (saved at the episode end, 40 env steps) was replaced by the newest state of 2 episodes.
    assert latest_counters(run_dir) == (2, 50, first["updates"])
    assert first["checkpoint"].endswith("/2")
    with open_store(RunDir(run_dir), read_only=True) as store:
        assert store.steps() == [2]
        saved = store.metrics("latest")["metrics"]
        assert (saved["env_steps"], saved["updates"]) == (50, first["updates"])
        assert saved["eval"]["episodes"] == 2  # the final evaluation is of this very state
    assert len(ReplayBuffer.load(replay_path(RunDir(run_dir)))) == 50
    kept = dreamer_records(run_dir)
    assert kept[-1]["kind"] == "checkpoint" and kept[-1]["replaced"] and kept[-1]["env_steps"] == 50

    records = []
    resumed = train_dreamer(run_dir, {"env_steps": 70}, records.append)
    start = start_record(records)
    assert (start["episode"], start["env_steps"], start["updates"]) == (2, 50, first["updates"])
    assert resumed["resumed_from_episode"] == 2 and resumed["env_steps"] == 70
    assert resumed["updates"] > first["updates"]
    assert latest_counters(run_dir) == (resumed["episodes"], 70, resumed["updates"])
    # Nothing before the resume point was dropped or written twice.
    after = dreamer_records(run_dir)
    assert after[: len(kept)] == kept
    assert all(record["env_steps"] > 50 for record in after[len(kept) :])


@pytest.mark.slow
def test_a_stop_between_episode_ends_saves_the_newest_state_and_resumes_there(tmp_path, monkeypatch, trained):
    copy = copy_run(trained[0], tmp_path)

    def interrupt(out):
        raise KeyboardInterrupt

    fail_learner_from_update(monkeypatch, interrupt)
    with pytest.raises(TrainingInterrupted, match="resumes from ep2"):
        train_dreamer(copy, {"episodes": 4})
    monkeypatch.undo()
    episodes, env_steps, updates = latest_counters(copy)
    assert episodes == 2 and 40 < env_steps < 80 and updates > trained[1]["updates"]
    with open_store(RunDir(copy), read_only=True) as store:
        assert store.steps() == [2] and store.metrics("latest")["metrics"]["interrupted"] is True

    records = []
    summary = train_dreamer(copy, {"episodes": 4}, records.append)
    start = start_record(records)
    assert (start["episode"], start["env_steps"], start["updates"]) == (2, env_steps, updates)
    assert summary["episodes"] == 4 and summary["updates"] > updates


def test_rerunning_a_finished_run_keeps_its_final_train_and_eval_records(tmp_path, trained):
    copy = copy_run(trained[0], tmp_path)
    before = dreamer_records(copy)
    last_episode = max(index for index, record in enumerate(before) if record["kind"] == "episode")
    final_kinds = {record["kind"] for record in before[last_episode:]}
    assert {"train", "eval", "checkpoint"} <= final_kinds
    summary = train_dreamer(copy, tiny_options())
    assert summary["eval"] is not None and summary["episodes"] == 2
    assert dreamer_records(copy) == before


def test_an_interrupted_replacement_keeps_one_state_of_the_step(tmp_path):
    """A kill while a step is being replaced leaves the old folder aside; the next open puts it back
    when the new one was not committed, and deletes it when it was."""
    undone = tmp_path / "undone"
    (undone / f"ep2{REPLACED_SUFFIX}").mkdir(parents=True)
    (undone / "2.orbax-checkpoint-tmp-1").mkdir()  # the new state, never committed
    _finish_replacements(undone)
    assert (undone / "2").is_dir() and not (undone / f"ep2{REPLACED_SUFFIX}").exists()

    finished = tmp_path / "finished"
    (finished / f"ep2{REPLACED_SUFFIX}").mkdir(parents=True)
    (finished / "2").mkdir()
    (finished / "2" / "new").touch()
    _finish_replacements(finished)
    assert (finished / "2" / "new").exists() and not (finished / f"ep2{REPLACED_SUFFIX}").exists()
