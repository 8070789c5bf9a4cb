"""The pure-JAX RLCar simulator (gymnax style): build a track bank once, then reset/step purely."""

from rlcar_core.sim.bank import TrackBank, build_track_bank
from rlcar_core.sim.env import OBS_KINDS, EnvState, RLCar
from rlcar_core.sim.params import CarParams, EnvParams
from rlcar_core.sim.track import TrackSpec, evaluation_seeds, generate_track, training_seeds

__all__ = [
    "OBS_KINDS",
    "CarParams",
    "EnvParams",
    "EnvState",
    "RLCar",
    "TrackBank",
    "TrackSpec",
    "build_track_bank",
    "evaluation_seeds",
    "generate_track",
    "training_seeds",
]
