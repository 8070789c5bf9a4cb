"""One source of truth per setting: each command's defaults and help live in its config dataclass, the
CLI options are derived from it, and each value is validated once, there."""

import dataclasses
import math

import pytest
import typer

from rlcar_cli.main import app
from rlcar_core.errors import RlcarError
from rlcar_core.worldmodels.config import (
    CollectConfig,
    ControllerConfig,
    DreamConfig,
    MDNRNNConfig,
    TrainControllerConfig,
    TrainRNNConfig,
    TrainVAEConfig,
    TrainWorldModelsConfig,
    VAEConfig,
    flag_of,
)

COMMANDS = {
    "collect": CollectConfig,
    "train-vae": TrainVAEConfig,
    "train-rnn": TrainRNNConfig,
    "train-controller": TrainControllerConfig,
    "train-worldmodels": TrainWorldModelsConfig,
    "dream": DreamConfig,
}


@pytest.mark.parametrize("name", COMMANDS)
def test_cli_options_are_the_config_fields(name):
    config_class = COMMANDS[name]
    command = typer.main.get_command(app).commands[name]
    options = {param.name: param for param in command.params}
    for field in dataclasses.fields(config_class):
        option = options[field.name]
        assert option.default == field.default, field.name
        assert option.help.startswith(field.metadata["help"]), field.name
        assert flag_of(config_class, field.name) in option.opts, field.name
    assert set(options) - {field.name for field in dataclasses.fields(config_class)} == {
        "json_out",
        "progress",
    }


def test_the_controller_search_defaults_are_written_once():
    # Where C is scored depends on the env (the dataset's), settled once by for_env: the real env on
    # CarRacing-v3 with early stops, as the paper trained it; the dream on RLCar.
    config = TrainControllerConfig()
    assert config.mode == "auto"
    carracing, rlcar = config.for_env("carracing"), config.for_env("rlcar")
    assert (carracing.mode, carracing.rollouts_per_candidate, carracing.patience) == ("env", 2, 100)
    assert (rlcar.mode, rlcar.rollouts_per_candidate, rlcar.patience) == ("dream", 16, 0)
    assert TrainControllerConfig(in_dream=False).rollouts_per_candidate == 2
    # What the user said wins over the env's defaults.
    assert TrainControllerConfig(in_dream=True).for_env("carracing").mode == "dream"
    assert TrainControllerConfig(in_dream=False, patience=0).for_env("carracing").patience == 0
    # The model config holds the controller's shape only; the search settings are the command's.
    assert {field.name for field in dataclasses.fields(ControllerConfig)} == {
        "z_dim",
        "hidden_size",
        "hidden_units",
        "sees_hidden",
    }


@pytest.mark.parametrize(
    "config",
    [
        TrainVAEConfig(epochs=math.inf),
        TrainVAEConfig(learning_rate=math.inf),
        TrainVAEConfig(learning_rate=math.nan),
        TrainVAEConfig(learning_rate=-1.0),
        TrainRNNConfig(learning_rate=math.inf),
        TrainControllerConfig(temperature=math.nan),
        TrainControllerConfig(popsize=1),
        CollectConfig(policy="autopilot"),
        CollectConfig(policy="checkpoint", action_noise=-0.1),
        CollectConfig(policy="brownian", action_noise=0.1),
        CollectConfig(action_repeat=2),  # RLCar: one step is one decision already
        CollectConfig(env="carracing", action_repeat=0),
        CollectConfig(env="carracing", carracing_backend="pygame"),
        TrainControllerConfig(controller_hidden=-1),
        TrainControllerConfig(controller_inputs="h"),
        TrainWorldModelsConfig(iterations=-1),
        TrainWorldModelsConfig(action_noise=math.nan),
        TrainWorldModelsConfig(action_repeat=4),
        DreamConfig(temperature=math.inf),
    ],
)
def test_bad_values_are_one_clear_error(config):
    with pytest.raises(RlcarError, match=r"^--[a-z-]+ |^unknown --"):
        config.validate()


def test_checkpoints_saved_with_loop_settings_in_the_model_config_still_load():
    # Older checkpoints kept batch sizes and CMA-ES settings in the model configs.
    assert VAEConfig.from_dict({**VAEConfig().to_dict(), "batch_size": 100}) == VAEConfig()
    old_rnn = {**MDNRNNConfig().to_dict(), "batch_size": 100, "sequence_length": 100}
    assert MDNRNNConfig.from_dict(old_rnn) == MDNRNNConfig()
    old_controller = {"z_dim": 32, "hidden_size": 256, "population_size": 64, "dream_temperature": 1.15}
    assert ControllerConfig.from_dict(old_controller) == ControllerConfig()
    # Controllers from before the hidden layer option are the linear one.
    assert ControllerConfig.from_dict({"z_dim": 32, "hidden_size": 256}).hidden_units == 0
