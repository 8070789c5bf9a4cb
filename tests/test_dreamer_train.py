"""DreamerV3 training loop in-process: settings and --set parsing, the collector's replay alignment, a
tiny training run with its checkpoints and replay, resume, interruption and divergence, the agent, and
the dream view.

Every run uses the same tiny model and two cars on two tracks, so the update, the two policy modes and
the simulator compile once per process (the jitted functions are cached per config); the 2-episode
run itself (conftest's `tiny_dreamer_run`) is trained once and shared with tests/test_cli_dreamer.py.
"""

import json
import shutil

import jax
import numpy as np
import pytest
from conftest import TINY_DREAMER_RUN, assert_names_nearest_checkpoints, fail_learner_from_update

from rlcar_core.dreamer.checkpoints import (
    abstract_trainer_state,
    is_dreamer_run,
    load_saved_agent,
    open_store,
    replay_path,
)
from rlcar_core.dreamer.collector import Collector
from rlcar_core.dreamer.overrides import parse_overrides
from rlcar_core.dreamer.replay import ReplayBuffer
from rlcar_core.dreamer.train import train_dreamer
from rlcar_core.dreamer.train_config import TrainDreamerConfig, resolve
from rlcar_core.envs import make_env
from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint import CheckpointNotFound
from rlcar_core.io.runs import RunDir
from rlcar_core.loop.outcomes import TrainingDiverged, TrainingInterrupted


def tiny_options(episodes=2, **changes):
    return {"episodes": episodes, **TINY_DREAMER_RUN, **changes}


@pytest.fixture
def trained(tiny_dreamer_run):
    """The shared tiny run (`tiny_options()`), also read by tests/test_cli_dreamer.py."""
    return tiny_dreamer_run


def copy_run(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


# -- options ------------------------------------------------------------------------------------


def test_parse_overrides_types_values():
    assert parse_overrides(["model_lr=3e-4", "horizon=8", "optimizer=laprop"]) == {
        "model_lr": 3e-4,
        "horizon": 8,
        "optimizer": "laprop",
    }


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("modle_lr=1e-3", "did you mean model_lr"),
        ("horizon=1.5", "expected an integer"),
        ("model_lr=fast", "expected a number"),
        ("model_lr=nan", "finite"),
        ("obs_kind=pixels", "chosen by --obs"),
        ("horizon", "key=value"),
    ],
)
def test_parse_overrides_rejects_bad_input(assignment, message):
    with pytest.raises(RlcarError, match=message):
        parse_overrides([assignment])


def test_resolve_fills_the_cpu_defaults_and_applies_overrides():
    config, model = resolve(TrainDreamerConfig(size="tiny", train_ratio=8.0, overrides=("horizon=7",)))
    assert model.obs_shape == (31,) and model.horizon == 7 and model.model_lr == 4e-4
    assert config.train_ratio == 8.0 and config.batch_size == 8 and config.batch_length == 16
    assert config.env == "rlcar" and config.obs == "sensors" and config.replay_capacity == 100_000
    with pytest.raises(RlcarError, match="horizon must be positive"):
        resolve(TrainDreamerConfig(size="tiny", overrides=("horizon=0",)))
    with pytest.raises(RlcarError, match="only pixel"):
        resolve(TrainDreamerConfig(env="carracing", obs="sensors"))


def test_the_mid_preset_is_the_model_the_cpu_pixel_rows_trained_with_a_cpu_replay():
    # The RLCar pixel and CarRacing-v3 rows trained tiny with these five --set fields before the
    # preset had a name; --size mid must build the same model, so their numbers describe it.
    widened = ("deter_size=256", "hidden_size=256", "mlp_layers=2", "stoch_size=16", "stoch_classes=16")
    for env in ("rlcar", "carracing"):
        _, by_overrides = resolve(TrainDreamerConfig(env=env, obs="pixels", size="tiny", overrides=widened))
        config, by_name = resolve(TrainDreamerConfig(env=env, obs="pixels", size="mid"))
        assert by_name == by_overrides
        assert config.replay_capacity == 100_000  # a CPU size: 100k frames, not a million


# -- collection ---------------------------------------------------------------------------------


def test_collector_steps_follow_the_replay_convention(trained):
    saved = load_saved_agent(trained[0], "latest")
    env = make_env("rlcar", obs="sensors", num_envs=2, num_tracks=2, max_steps=3)
    collector = Collector(env, saved.config)
    collector.reset(seed=0)
    steps, finished = [], []
    for index in range(6):
        steps.append(collector.current_step)
        finished += collector.step(saved.params, jax.random.key(index))
    env.close()
    is_first = np.stack([s["is_first"] for s in steps])
    # 3-step episodes: obs 0 starts, obs 3 ends the episode (final observation), obs 4 starts again.
    np.testing.assert_array_equal(is_first[:, 0], [True, False, False, False, True, False])
    assert not steps[3]["is_first"].any() and (steps[3]["reward"] != 0).all()
    assert np.all(steps[4]["reward"] == 0) and np.all(steps[4]["action"] == 0)
    assert len(finished) == 2 and all(episode.length == 3 for episode in finished)
    for step in steps:
        assert step["obs"].shape == (2, 31) and step["action"].shape == (2, 3)
        assert np.all(np.abs(step["action"]) <= 1.0)


class _CountingCar:
    """A stand-in car (gymnasium.Env): obs[0] counts its steps since reset, and every step pays
    `reward`; CarRacing-like truncation after `limit` steps."""

    def __new__(cls, reward: float, limit: int = 50):
        import gymnasium as gym

        class Car(gym.Env):
            observation_space = gym.spaces.Box(-1e6, 1e6, (17,), np.float32)
            action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.count = 0
                return np.zeros(17, np.float32), {"progress": 0.0}

            def step(self, action):
                self.count += 1
                obs = np.full(17, self.count, np.float32)
                return obs, reward, False, self.count >= limit, {"progress": self.count / limit}

        return Car()


@pytest.mark.parametrize("repeat", [1, 2])
def test_patience_ends_unrewarded_training_episodes_as_truncations(repeat):
    import functools

    import gymnasium as gym

    from rlcar_core.dreamer import DreamerConfig, init_training_state
    from rlcar_core.envs.action_repeat import ActionRepeat

    def car(reward):
        env = _CountingCar(reward)
        return env if repeat == 1 else ActionRepeat(env, repeat)

    config = DreamerConfig.preset("tiny", obs_shape=(17,), model_lr=1e-3)
    params = init_training_state(config, jax.random.key(0)).params
    # Car 0 earns a reward every frame, car 1 never does: patience 6 frames ends car 1's episodes.
    env = gym.vector.SyncVectorEnv([functools.partial(car, 1.0), functools.partial(car, -0.1)])
    collector = Collector(env, config, patience=6)
    collector.reset(seed=0)
    steps, finished, frames = [], [], 0
    for index in range(16):
        steps.append(collector.current_step)
        finished += collector.step(params, jax.random.key(index))
        frames += collector.frames_stepped
    steps.append(collector.current_step)
    env.close()
    # Car 1's episodes: 6 frames (6 / repeat decisions), then a reset step, and again.
    decisions = 6 // repeat
    period = decisions + 1
    first = np.stack([step["is_first"] for step in steps])
    np.testing.assert_array_equal(np.flatnonzero(first[:, 1]), np.arange(0, len(steps), period))
    assert not first[1:, 0].any()  # car 0, rewarded, drives on
    assert not any(step["is_terminal"].any() for step in steps)  # truncations, never terminal
    for end in range(decisions, len(steps), period):
        assert steps[end]["obs"][1, 0] == 6  # the final observation of each episode
    for reset_index in range(period, len(steps), period):
        # The reset step is stored like an autoreset one: the new episode's first observation (the
        # env really was reset), no action, no reward; the episode goes on from there.
        reset = steps[reset_index]
        assert reset["obs"][1, 0] == 0 and reset["reward"][1] == 0 and np.all(reset["action"][1] == 0)
        if reset_index + 1 < len(steps):
            assert steps[reset_index + 1]["obs"][1, 0] == repeat
    early = [episode for episode in finished if episode.ended_early]
    assert len(early) == len(range(decisions, len(steps), period)) >= 2
    assert all(e.length == 6 and np.isclose(e.episode_return, -0.6) for e in early)
    assert not any(episode.ended_early for episode in finished if episode not in early)
    # Frames: a reset step takes none under action repeat (and counts one step without it, as an
    # autoreset step does).
    resets = int(first[1:, 1].sum())
    assert frames == (32 if repeat == 1 else 2 * 16 + 2 * (16 - resets))


def test_patience_is_carracing_on_gymnasium_only_and_off_by_default():
    assert TrainDreamerConfig().patience == 0
    TrainDreamerConfig(env="carracing", obs="pixels", patience=100).validate()
    with pytest.raises(RlcarError, match="--patience"):
        TrainDreamerConfig(env="rlcar", patience=100).validate()
    with pytest.raises(RlcarError, match="--patience"):
        TrainDreamerConfig(
            env="carracing", obs="pixels", carracing_backend="envpool", patience=100
        ).validate()


# -- a training run ------------------------------------------------------------------------------


def test_training_run_writes_metrics_checkpoints_and_replay(trained):
    run_dir, summary, records = trained
    assert summary["episodes"] == 2 and summary["env_steps"] == 40
    assert summary["updates"] > 0 and all(np.isfinite(v) for v in summary["losses"].values())
    assert summary["eval"]["episodes"] == 2 and summary["checkpoint"].endswith("/2")
    kinds = {record["kind"] for record in records}
    assert {"episode", "train", "eval", "checkpoint"} <= kinds
    logged = RunDir(run_dir).read_metrics()
    assert [r["kind"] for r in logged if r["kind"] == "episode"] == ["episode", "episode"]
    assert all(r["trainer"] == "dreamer" and r["step"] == r["env_steps"] for r in logged)
    config = json.loads((run_dir / "config.json").read_text())["dreamer"]
    assert config["train"]["size"] == "tiny" and config["train"]["batch_size"] == 2
    assert "batch_size" not in config["model"]
    replay = ReplayBuffer.load(replay_path(RunDir(run_dir)))
    assert len(replay) == summary["replay_steps"] == 40
    assert is_dreamer_run(run_dir) and not is_dreamer_run(run_dir / "checkpoints")


def test_checkpoint_round_trip(trained, tmp_path):
    run_dir, summary, _ = trained
    run = RunDir(run_dir)
    with open_store(run, read_only=True) as store:
        config = load_saved_agent(run_dir, "latest").config
        state = store.restore("latest", abstract_trainer_state(config))
        assert int(state.env_steps) == summary["env_steps"] and int(state.episodes) == 2
        assert int(state.agent.step) == summary["updates"]
        assert store.best_step() == 2
    # Saving what was restored and restoring it again gives the same leaves.
    with open_store(RunDir(tmp_path / "again")) as store:
        store.save(7, state, {"dreamer": config.to_dict()})
    with open_store(RunDir(tmp_path / "again"), read_only=True) as store:
        again = store.restore("ep7", abstract_trainer_state(config))
    for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def test_unknown_checkpoint_lists_the_existing_ones(trained):
    with pytest.raises(CheckpointNotFound) as missing:
        load_saved_agent(trained[0], "ep99")
    assert_names_nearest_checkpoints(str(missing.value), "ep99", ["ep2"], latest="ep2")
    with pytest.raises(RlcarError, match="no DreamerV3 checkpoint"):
        load_saved_agent(trained[0].parent, "best")


def test_resume_continues_counters_and_replay(trained, tmp_path):
    run_dir, first, _ = trained
    copy = copy_run(run_dir, tmp_path)
    summary = train_dreamer(copy, {"episodes": 4})
    assert summary["resumed_from_episode"] == 2 and summary["episodes"] == 4
    assert summary["env_steps"] == 2 * first["env_steps"] and summary["updates"] > first["updates"]
    assert summary["replay_steps"] == 2 * first["replay_steps"]
    with open_store(RunDir(copy), read_only=True) as store:
        assert store.steps() == [2, 4]
    # Nothing left to do: the same command reports instead of training.
    again = train_dreamer(copy, {"episodes": 4})
    assert again["env_steps"] == summary["env_steps"] and again["eval"] is not None


def test_resume_rejects_a_different_model(trained):
    with pytest.raises(RlcarError, match="--obs sensors"):
        train_dreamer(trained[0], {"obs": "pixels"})
    with pytest.raises(RlcarError, match="deter_size"):
        train_dreamer(trained[0], {"overrides": ("deter_size=32",)})


@pytest.mark.slow
def test_interrupt_saves_and_a_rerun_resumes(tmp_path, monkeypatch, trained):
    del trained  # compiled by the shared run already

    def interrupt(out):
        raise KeyboardInterrupt

    fail_learner_from_update(monkeypatch, interrupt)
    with pytest.raises(TrainingInterrupted, match="run the same command again"):
        train_dreamer(tmp_path / "run", tiny_options())
    with open_store(RunDir(tmp_path / "run"), read_only=True) as store:
        assert store.steps() == [0]
        assert store.metrics("ep0")["metrics"]["interrupted"] is True
    saved_steps = len(ReplayBuffer.load(replay_path(RunDir(tmp_path / "run"))))
    assert saved_steps > 0
    monkeypatch.undo()
    summary = train_dreamer(tmp_path / "run")
    assert summary["resumed_from_episode"] == 0 and summary["episodes"] == 2
    assert summary["replay_steps"] == saved_steps + 40


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, trained):
    copy = copy_run(trained[0], tmp_path)

    def poison(out):
        state, metrics = out
        return state, {**metrics, "wm/loss": np.float32(np.nan)}

    fail_learner_from_update(monkeypatch, poison)
    with pytest.raises(TrainingDiverged, match="wm/loss became nan.*kept checkpoint ep2"):
        train_dreamer(copy, {"episodes": 4})
    with open_store(RunDir(copy), read_only=True) as store:
        assert store.steps() == [2]
    assert any(record["kind"] == "diverged" for record in RunDir(copy).read_metrics())


# -- the agent and the dream --------------------------------------------------------------------


def test_agent_keeps_a_carry_per_car_and_acts_deterministically(trained):
    from rlcar_core.agents import make_agent

    agent = make_agent("dreamer", "rlcar", 0, trained[0], "best")
    obs = np.random.default_rng(0).uniform(0.0, 1.0, (2, 31)).astype(np.float32)
    agent.reset(2)
    first = agent.act(obs)
    agent.act(obs)
    agent.reset(2)
    np.testing.assert_allclose(agent.act(obs), first, atol=1e-6)
    assert first.shape == (2, 3) and first.dtype == np.float32
    assert np.all(first[:, 1:] >= 0.0) and np.all(first[:, 1:] <= 1.0)
    with pytest.raises(RlcarError, match="shape"):
        agent.act(np.zeros((2, 5), np.float32))
    with pytest.raises(RlcarError, match="trained on rlcar"):
        make_agent("dreamer", "carracing", 0, trained[0], "best")


def test_an_agent_trained_with_action_repeat_decides_every_k_frames(trained, monkeypatch):
    """eval, play and export-video step every frame; a CarRacing-v3 agent (action repeat 2) must hold
    each decision for 2 frames there, as in training."""
    import rlcar_core.agents.dreamer as dreamer_agents
    from rlcar_core.agents import make_agent
    from rlcar_core.dreamer.checkpoints import load_saved_agent

    saved = load_saved_agent(trained[0], "best")
    assert saved.action_repeat == 1  # RLCar decides every step
    assert make_agent("dreamer", "rlcar", 0, trained[0], "best").name == "dreamer"
    monkeypatch.setattr(dreamer_agents, "load_saved_agent", lambda *_: saved._replace(action_repeat=2))
    agent = make_agent("dreamer", "rlcar", 0, trained[0], "best")
    assert agent.repeat == 2 and agent.name == "dreamer" and agent.obs_kind == "sensors"
    decisions = []
    inner_act = agent.policy.act
    agent.policy.act = lambda obs: decisions.append(len(decisions)) or inner_act(obs)
    obs = np.random.default_rng(0).uniform(0.0, 1.0, (2, 31)).astype(np.float32)
    agent.reset(2)
    actions = [agent.act(obs) for _ in range(5)]
    assert len(decisions) == 3  # frames 0, 2 and 4
    np.testing.assert_array_equal(actions[0], actions[1])


def test_dream_frames_show_reality_and_the_dream(trained):
    from rlcar_core.dreamer.dream_view import dream_frames

    frames, summary = dream_frames(trained[0], "latest", max_steps=12, seed=0)
    frames = list(frames)
    assert summary["context_steps"] == 5 and 5 < len(frames) <= 12
    assert summary["ended_by"] == "dream ended" or len(frames) == summary["steps"] == 12
    assert frames[0].dtype == np.uint8 and frames[0].ndim == 3 and frames[0].shape[2] == 3
    assert np.isfinite(summary["obs_mse_mean"])
    manual = [np.array([0.0, 1.0, 0.0], np.float32)] * 7
    frames, summary = dream_frames(trained[0], "ep2", max_steps=12, manual_actions=manual)
    assert len(list(frames)) == 8 and summary["ended_by"] == "manual actions ended"
    assert summary["driver"] == "manual"
    with pytest.raises(RlcarError, match="larger than"):
        dream_frames(trained[0], "latest", max_steps=3)


# -- faults and budgets -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_truncated_replay_resumes_with_an_empty_one(trained, tmp_path):
    copy = copy_run(trained[0], tmp_path)
    path = replay_path(RunDir(copy))
    path.write_bytes(path.read_bytes()[:100])
    warnings = []
    summary = train_dreamer(copy, {"episodes": 4}, on_warning=warnings.append)
    assert len(warnings) == 1 and "is damaged" in warnings[0] and "empty replay" in warnings[0]
    assert summary["episodes"] == 4 and summary["replay_steps"] == 40
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(trained, tmp_path):
    copy = copy_run(trained[0], tmp_path)
    train_dreamer(copy, {"episodes": 4})
    (copy / "checkpoints" / "dreamer" / "4" / "state" / "manifest.ocdbt").unlink()
    warnings = []
    summary = train_dreamer(copy, {"episodes": 4}, on_warning=warnings.append)
    assert warnings[0].startswith("checkpoint ep4 is damaged (") and warnings[0].endswith("resuming from ep2")
    assert summary["resumed_from_episode"] == 2 and summary["episodes"] == 4
    with open_store(RunDir(copy), read_only=True) as store:
        assert store.steps() == [2, 4]
    # Metrics past ep2 were dropped before the rerun wrote them again: no episode is logged twice.
    episodes = [r["episode"] for r in RunDir(copy).read_metrics() if r["kind"] == "episode"]
    assert episodes == sorted(set(episodes))


def test_more_cars_than_episodes_stop_at_exactly_the_budget(trained, tmp_path):
    del trained  # compiled by the shared run already
    summary = train_dreamer(tmp_path / "run", tiny_options(episodes=1))
    assert summary["episodes"] == 1 and summary["env_steps"] == 20
    with open_store(RunDir(tmp_path / "run"), read_only=True) as store:
        assert store.steps() == [1]


def test_checkpoints_every_n_env_steps_instead_of_episodes(trained, tmp_path):
    # Both cars end their 20-step episodes at 40 and 82 env steps; the mark at 50 falls between. No
    # evaluation before the end, and the episode schedule (every episode) is replaced by the steps'.
    del trained  # compiled by the shared run already
    records = []
    options = tiny_options(episodes=4, checkpoint_every=1, checkpoint_every_steps=50, eval_every=100)
    summary = train_dreamer(tmp_path / "run", options, records.append)
    saved = [(r["env_steps"], r["checkpoint"]) for r in records if r["kind"] == "checkpoint"]
    assert saved == [(50, 2), (summary["env_steps"], 4)]
    with open_store(RunDir(tmp_path / "run"), read_only=True) as store:
        assert store.steps() == [2, 4]


def test_a_step_scheduled_evaluation_runs_at_its_mark_between_episode_ends(trained, tmp_path):
    # Both cars end their 20-step episodes together (at 40, 82 and 124 env steps: the step after an
    # episode end starts the next one), so the marks at 48 and 96 env steps fall between episode ends
    # (episode counts 2 and 4, already saved). They run there; a best result replaces that count's
    # checkpoint with the newer parameters. The end of the run evaluates the newest state once more.
    del trained  # compiled by the shared run already
    records = []
    options = tiny_options(episodes=6, checkpoint_every=1, eval_every_steps=48)
    summary = train_dreamer(tmp_path / "run", options, records.append)
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["eval_mark"] for r in evals] == [48, 96, None]
    assert [(r["env_steps"], r["episode"]) for r in evals] == [(48, 2), (96, 4), (summary["env_steps"], 6)]
    assert evals[0]["best"]  # the first evaluation is always the best so far
    shown = [r for r in records if r["kind"] in ("eval", "checkpoint")]
    for record in evals:
        following = shown[shown.index(record) + 1 :]
        if record["best"]:
            # The checkpoint of the evaluation's own state follows it, marked best.
            checkpoint = following[0]
            assert checkpoint["kind"] == "checkpoint" and checkpoint["best"]
            assert (checkpoint["checkpoint"], checkpoint["env_steps"]) == (
                record["episode"],
                record["env_steps"],
            )
            assert checkpoint["replaced"] == (record["eval_mark"] is not None)
    with open_store(RunDir(tmp_path / "run"), read_only=True) as store:
        best = store.best_step()
        saved = store.metrics(best)["metrics"]
        best_eval = max((r for r in evals if r["best"]), key=lambda r: r["env_steps"])
        assert (best, saved["env_steps"]) == (best_eval["episode"], best_eval["env_steps"])
        assert saved["eval"]["progress_mean"] == best_eval["progress_mean"]


def test_overlap_trains_while_the_cars_step_and_changes_nothing_else(trained, tmp_path, monkeypatch):
    """--overlap runs a step's updates between step_async and step_wait (here a stand-in that steps at
    step_wait, as Gymnasium's AsyncVectorEnv hands back then), and ends with the very same
    parameters, counters and replay as the sequential loop (the shared tiny run)."""
    import gymnasium as gym

    import rlcar_core.dreamer.train as train_module
    from rlcar_core.dreamer.learner import Learner

    events = []

    class InBackground(gym.vector.VectorWrapper):
        def step_async(self, actions):
            events.append("send")
            self._actions = actions

        def step_wait(self):
            events.append("wait")
            return self.env.step(self._actions)

    real_make_env, real_train = train_module.make_env, Learner.train
    monkeypatch.setattr(train_module, "make_env", lambda *a, **k: InBackground(real_make_env(*a, **k)))

    def train(self, *args, **kwargs):
        events.append("train")
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(Learner, "train", train)
    run_dir = tmp_path / "overlap"
    overlapped = train_dreamer(run_dir, tiny_options(overlap=True))
    order = "".join(event[0] for event in events)  # s(end), t(rain), w(ait)
    assert "stw" in order and order.startswith("swsw")  # the prefill's steps do not train
    plain = trained[1]
    for key in ("episodes", "env_steps", "updates", "replay_steps"):
        assert overlapped[key] == plain[key], key
    assert overlapped["updates"] > 0
    params = load_saved_agent(run_dir, "latest").params
    plain_params = load_saved_agent(trained[0], "latest").params
    for left, right in zip(jax.tree.leaves(plain_params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
    replay = ReplayBuffer.load(replay_path(RunDir(run_dir)))
    plain_replay = ReplayBuffer.load(replay_path(RunDir(trained[0])))
    assert len(replay) == len(plain_replay)
    # Without --overlap the same stand-in is stepped in turn.
    events.clear()
    train_dreamer(tmp_path / "plain", tiny_options(episodes=1, eval_every=1, checkpoint_every=1))
    assert "stw" not in "".join(event[0] for event in events)


def test_carracing_cars_step_in_worker_processes_only_where_that_helps():
    from rlcar_core.dreamer.train import cars_in_processes

    assert cars_in_processes(TrainDreamerConfig(env="carracing", obs="pixels", num_envs=8))
    assert not cars_in_processes(TrainDreamerConfig(env="carracing", obs="pixels", num_envs=1))
    assert not cars_in_processes(
        TrainDreamerConfig(env="carracing", obs="pixels", num_envs=8, carracing_backend="envpool")
    )
    assert not cars_in_processes(TrainDreamerConfig(env="rlcar", num_envs=8))
