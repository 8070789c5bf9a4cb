"""`--run-dir` alone picks the agent, env and observation kind (rlcar_core.apps.run_identity), for eval,
play, export-video and dream; options that contradict the run, and folders that are no run, are one-line
errors."""

import json

import pytest
from conftest import single_error_line
from typer.testing import CliRunner

from rlcar_cli.main import app
from rlcar_core.apps.evaluate import EvalConfig, resolve_agents
from rlcar_core.apps.export import ExportConfig, resolve_export
from rlcar_core.apps.play import PlayConfig, resolve_play
from rlcar_core.apps.run_identity import identify_run, resolve_driver
from rlcar_core.errors import RlcarError

runner = CliRunner()


def fake_run(path, config, models=("dreamer",), card=None):
    """A run's files as the commands read them to identify it: config.json, a step folder per model
    (empty: nothing here restores a checkpoint) and a shipped agent's card."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    for model in models:
        (path / "checkpoints" / model / "4").mkdir(parents=True)
    if card is not None:
        (path / "agent.json").write_text(json.dumps(card))
    return path


CARRACING_DREAMER = {
    "dreamer": {"train": {"env": "carracing", "obs": "pixels"}, "model": {"obs_kind": "pixels"}}
}


def test_a_dreamer_run_names_its_agent_env_and_observations(tiny_dreamer_run):
    run_dir = tiny_dreamer_run[0]
    identity = identify_run(run_dir)
    assert (identity.kind, identity.agent, identity.env, identity.obs) == (
        "dreamer",
        "dreamer",
        "rlcar",
        "sensors",
    )
    driver = resolve_driver(None, None, run_dir)
    assert (driver.agent, driver.env, driver.obs) == ("dreamer", "rlcar", "sensors")
    # The options that agree with the run are accepted as they are.
    assert resolve_driver("dreamer", "rlcar", run_dir, obs="sensors").agent == "dreamer"


def test_each_command_takes_agent_and_env_from_the_run(tmp_path):
    run_dir = fake_run(tmp_path / "cr", CARRACING_DREAMER)
    config, names = resolve_agents(EvalConfig(run_dir=run_dir))
    assert names == ["dreamer"] and (config.agent, config.env) == ("dreamer", "carracing")
    exported = resolve_export(ExportConfig(output=tmp_path / "v.gif", run_dir=run_dir))
    assert (exported.agent, exported.env) == ("dreamer", "carracing")
    played = resolve_play(PlayConfig(headless=True, run_dir=run_dir))
    assert (played.agent, played.env) == ("dreamer", "carracing")
    # An explicit learned agent takes the run's env too; several agents keep their order.
    config, names = resolve_agents(EvalConfig(run_dir=run_dir), ["random", "dreamer"])
    assert names == ["random", "dreamer"] and config.env == "carracing"


def test_without_a_run_dir_nothing_changes(tmp_path):
    config, names = resolve_agents(EvalConfig())
    assert names == ["heuristic"] and config.env == "rlcar"
    assert resolve_export(ExportConfig(output=tmp_path / "v.gif")).agent == "heuristic"
    played = resolve_play(PlayConfig(manual=True))
    assert (played.agent, played.env) == (None, "rlcar")
    # A folder of human runs (or a new one) is where play saves them: no agent is read from it.
    played = resolve_play(PlayConfig(manual=True, run_dir=tmp_path / "mine"))
    assert (played.agent, played.env) == (None, "rlcar")
    # Built-in drivers read no run.
    assert resolve_driver("random", "carracing", tmp_path / "nothing").env == "carracing"


def test_a_shipped_card_states_env_and_obs(tmp_path):
    run_dir = fake_run(
        tmp_path / "shipped",
        {"collect": {"env": "rlcar"}, "controller": {"env": "rlcar"}},
        models=("vae", "mdnrnn", "controller"),
        card={"agent": "worldmodel", "env": "carracing", "obs": "pixels"},
    )
    identity = identify_run(run_dir)
    assert (identity.kind, identity.agent, identity.env, identity.obs) == (
        "worldmodels",
        "worldmodel",
        "carracing",
        "pixels",
    )


@pytest.mark.parametrize(
    ("agent", "env", "obs", "message"),
    [
        (None, "rlcar", None, "was trained on carracing pixels; drop --env rlcar"),
        (
            "worldmodel",
            None,
            None,
            "holds a dreamer agent (carracing pixels), not worldmodel; drop --agent worldmodel",
        ),
        (None, None, "sensors", "was trained on carracing pixels; drop --obs sensors"),
    ],
)
def test_an_option_that_contradicts_the_run_is_one_line_naming_both(tmp_path, agent, env, obs, message):
    run_dir = fake_run(tmp_path / "cr", CARRACING_DREAMER)
    with pytest.raises(RlcarError) as error:
        resolve_driver(agent, env, run_dir, obs=obs)
    assert str(error.value) == f"{run_dir} {message}"


def test_a_folder_that_is_no_run_says_what_a_run_holds(tmp_path):
    expected = "config.json and checkpoints/dreamer/<step>"
    cases = {
        tmp_path / "missing": "no run directory at",
        (tmp_path / "empty"): "has no config.json",
        fake_run(tmp_path / "config-only", {"dreamer": {}}, models=()): "has no checkpoints",
        fake_run(tmp_path / "no-config", {}, models=("dreamer",)): "has no config.json",
    }
    (tmp_path / "empty").mkdir()
    (tmp_path / "no-config" / "config.json").unlink()
    for run_dir, reason in cases.items():
        with pytest.raises(RlcarError) as error:
            resolve_driver(None, None, run_dir)
        assert reason in str(error.value) and expected in str(error.value) and "\n" not in str(error.value)
    # A World Models run that has not reached its controller says which stage to run next (the
    # MDN-RNN, with only a VAE trained).
    partial = fake_run(tmp_path / "wm", {"collect": {"env": "rlcar"}}, models=("vae",))
    with pytest.raises(RlcarError, match="train-rnn"):
        identify_run(partial)
    # ... but it dreams (by keyboard), so dream takes it as a World Models run.
    assert identify_run(partial, for_dream=True).kind == "worldmodels"
    with pytest.raises(RlcarError, match="has no config.json"):
        identify_run(tmp_path / "empty", for_dream=True)


def test_eval_play_and_export_video_with_only_run_dir_drive_the_runs_agent(
    tiny_dreamer_run, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run_dir = str(tiny_dreamer_run[0])

    def invoke(*args):
        result = runner.invoke(app, [*args, "--run-dir", run_dir, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    evaluation = invoke("eval", "--episodes", "1", "--max-steps", "20")
    assert (evaluation["agent"], evaluation["env"], evaluation["run_dir"]) == ("dreamer", "rlcar", run_dir)
    assert evaluation["episodes"] == 1
    played = invoke("play", "--headless", "--max-steps", "3")
    assert (played["agent"], played["env"], played["episodes"][0]["steps"]) == ("dreamer", "rlcar", 3)
    video = invoke("export-video", "--max-steps", "3", "-o", "agent.gif")
    assert (video["agent"], video["env"]) == ("dreamer", "rlcar") and (
        tmp_path / "agent.gif"
    ).stat().st_size > 0


def test_the_cli_refuses_contradictions_and_non_runs_in_one_line(tiny_dreamer_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = str(tiny_dreamer_run[0])
    (tmp_path / "empty").mkdir()
    for args, message in [
        (
            ["eval", "--run-dir", run_dir, "--env", "carracing"],
            "was trained on rlcar sensors; drop --env carracing",
        ),
        (
            ["export-video", "--run-dir", run_dir, "--agent", "worldmodel", "-o", "v.gif"],
            "drop --agent worldmodel",
        ),
        (["play", "--headless", "--run-dir", run_dir, "--env", "carracing"], "drop --env carracing"),
        (["eval", "--run-dir", "empty"], "empty is not a trained run"),
        (["export-video", "--run-dir", "empty", "-o", "v.gif"], "empty is not a trained run"),
        (["dream", "--run-dir", "empty", "--headless"], "empty is not a trained run"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in single_error_line(result.stderr), args


def test_a_world_models_run_names_its_earliest_missing_stage(tmp_path):
    # Issue 26: `dream` and `eval` on a run with only a VAE said "run train-controller first"; the
    # controller needs the MDN-RNN, so the next step is train-rnn.
    run = fake_run(tmp_path / "wm", {"vae": {"z_dim": 4}}, models=("vae",))
    with pytest.raises(RlcarError, match="train-rnn --run-dir"):
        identify_run(run)
    result = runner.invoke(app, ["dream", "--run-dir", str(run), "--headless", "--max-steps", "2"])
    assert result.exit_code == 2, result.output
    assert "train-rnn --run-dir" in single_error_line(result.stderr)
    (run / "checkpoints" / "mdnrnn" / "4").mkdir(parents=True)
    with pytest.raises(RlcarError, match="train-controller --run-dir"):
        identify_run(run)
