"""Who simulates CarRacing-v3 for training, and how many frames each decision lasts: the choices
commands offer, importable without Gymnasium or JAX (the CLI builds its options from them).

Default action repeat per env (`default_action_repeat`):
- CarRacing-v3: 2. The Dreamer family learns continuous control from pixels with an action repeat of
  2 (Dreamer, Hafner et al. 2020: "action repeat R = 2 for all tasks" of the DeepMind Control Suite,
  kept by DreamerV2/V3 for DMC); CarRacing-v3 runs at 50 frames/s, so k = 2 still decides every
  0.04 s. The World Models paper (Ha & Schmidhuber 2018) steps every frame: action repeat 1.
- RLCar: 1. Its step is already 0.1 s (five CarRacing frames), chosen for decisions, not physics.
"""

from __future__ import annotations

from rlcar_core.envs.names import EnvName

CARRACING_BACKENDS = ("gymnasium", "envpool")
_DEFAULT_ACTION_REPEAT = {EnvName.RLCAR: 1, EnvName.CARRACING: 2}


def default_action_repeat(env: str) -> int:
    """The action repeat `env` trains with unless told otherwise (see the module docstring)."""
    return _DEFAULT_ACTION_REPEAT[EnvName.parse(env)]
