"""The latent space, live: a World Models agent drives RLCar, and every frame the page sees what V, M
and C make of it.

Each physics step (10 Hz) the camera frame goes through one jitted ``observe``: V encodes it to z (the
posterior mean, as the agent drives), decodes z back to the reconstruction, C acts on [z, h], and M
advances h with (z, a). The page gets the camera frame, the reconstruction, z, a summary of h and C's
action. Paused, the page may move any z dimension: one jitted ``probe`` decodes the edited z and asks
C what it would do with it and the same h, so each latent's meaning and its pull on the action show at
once. Resuming drops the edits: the car goes on from the state it was paused in.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError, require_at_least

ENV = EnvName.RLCAR
Z_LIMIT = 4.0  # how far a slider may move a latent: the VAE's prior is N(0, 1), so ±4 covers it
H_SHOWN = 128  # at most this many of h's values go to the page (its heat strip)


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    run_dir: Path
    checkpoint: str = "best"
    track: int = 0
    seed: int = 0
    max_steps: int = 1000

    def validate(self) -> None:
        require_at_least("--track", self.track, 0)
        require_at_least("--max-steps", self.max_steps, 1)


@functools.cache
def latent_functions(vae_config, rnn_config, controller_config):
    """(observe, probe), each one jitted function, cached per model shape.

    ``observe(params, policy, frame (64, 64, 3) uint8, rnn_state)`` ->
    ``(z, reconstruction uint8, action, h, next_rnn_state)``: the agent's own step (see
    ``worldmodels.controller.make_policy_step``) with the decoded frame and the h C acted on.
    ``probe(params, policy, z, h)`` -> ``(reconstruction uint8, action)`` for an edited z.
    """
    import jax
    import jax.numpy as jnp

    from rlcar_core.worldmodels.controller import controller_action, vector_to_params
    from rlcar_core.worldmodels.mdnrnn import make_mdnrnn
    from rlcar_core.worldmodels.vae import make_vae

    vae = make_vae(vae_config)
    rnn = make_mdnrnn(rnn_config)

    def to_image(reconstruction):
        return jnp.clip(jnp.round(reconstruction * 255.0), 0, 255).astype(jnp.uint8)

    def decide(params, policy, latent, hidden):
        controller = vector_to_params(policy, controller_config)
        return to_image(vae.apply.decode(params.vae, latent)), controller_action(controller, latent, hidden)

    def observe(params, policy, frame, rnn_state):
        latent, _ = vae.apply.encode(params.vae, frame[None])
        image, action = decide(params, policy, latent, rnn_state.hidden)
        _, next_state = rnn.apply.step(params.rnn, latent, action, rnn_state)
        return latent[0], image[0], action[0], rnn_state.hidden[0], next_state

    def probe(params, policy, latent, hidden):
        image, action = decide(params, policy, latent[None], hidden[None])
        return image[0], action[0]

    return jax.jit(observe), jax.jit(probe)


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class LatentView:
    """One World Models car and what its V, M and C see; ``tick``/``command``/``state`` on one thread."""

    def __init__(self, config: LatentConfig):
        from rlcar_core.apps.drive import DrivingSession
        from rlcar_core.io.runs import RunDir
        from rlcar_core.worldmodels.mdnrnn import initial_rnn_state
        from rlcar_core.worldmodels.storage import load_world_model

        config.validate()
        self.config = config
        self.model = load_world_model(RunDir(config.run_dir), config.checkpoint)
        if self.model.env != ENV.value:
            raise RlcarError(
                f"this World Models agent drives {self.model.env}; the latent view drives {ENV.value}"
            )
        self._initial_state = lambda: initial_rnn_state(self.model.rnn_config, 1)
        self.observe, self.probe = latent_functions(
            self.model.vae_config, self.model.rnn_config, self.model.controller_config
        )
        self.policy = np.asarray(self.model.policy, np.float32)
        self.z_dim = self.model.vae_config.z_dim
        self.session = DrivingSession(
            ENV, "pixels", config.track, config.max_steps, config.seed, render=False
        )
        self.step_seconds = self.session.step_seconds
        self.paused = False
        self.episode = 0
        self.last_return: float | None = None
        self._reset()
        self._look()  # compiles both functions now, not on the first frame
        self._probe()
        self.edited: set[int] = set()

    def _reset(self) -> None:
        self.obs = self.session.reset()
        self.rnn_state = self._initial_state()
        self.edited = set()

    def _look(self) -> None:
        """V, C (and M's next h) on the current camera frame, without moving the car."""
        z, image, action, hidden, self._next_state = self.observe(
            self.model.params, self.policy, np.asarray(self.obs, np.uint8), self.rnn_state
        )
        self.camera = np.asarray(self.obs, np.uint8)
        self.z_seen = np.asarray(z, np.float32)
        self.z = self.z_seen.copy()
        self.hidden = np.asarray(hidden, np.float32)
        self.reconstruction = np.asarray(image)
        self.action = np.asarray(action, np.float32)
        self.edited = set()

    def _probe(self) -> None:
        image, action = self.probe(self.model.params, self.policy, self.z, self.hidden)
        self.reconstruction = np.asarray(image)
        self.action = np.asarray(action, np.float32)

    # --- driving ------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One physics step with C's action on what it sees now, then a look at the next frame."""
        if self.paused:
            return
        self.rnn_state = self._next_state
        self.obs, _, terminated, truncated, _ = self.session.step(self.action)
        if terminated or truncated:
            self.last_return = self.session.episode_return
            self.episode += 1
            self._reset()
        self._look()

    def command(self, message: dict[str, Any]) -> None:
        """pause / resume / toggle / reset / reset_z / set_z {index, value}; anything else is ignored."""
        kind = message.get("type")
        if kind in ("pause", "resume", "toggle"):
            pause = {"pause": True, "resume": False}.get(kind, not self.paused)
            if self.paused and not pause and self.edited:
                self.z = self.z_seen.copy()  # the car goes on with what it really saw
                self._probe()
                self.edited = set()
            self.paused = pause
        elif kind == "reset":
            self._reset()
            self._look()
        elif kind == "reset_z" and self.edited:
            self.z = self.z_seen.copy()
            self.edited = set()
            self._probe()
        elif kind == "set_z" and self.paused:
            index, value = message.get("index"), message.get("value")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.z_dim:
                return
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return
            self.z[index] = min(max(float(value), -Z_LIMIT), Z_LIMIT)
            self.edited.add(index)
            self._probe()

    # --- what the page shows ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        hidden = self.hidden
        info = self.session.info
        return {
            "step": self.session.steps,
            "episode": self.episode,
            "paused": self.paused,
            "track": self.config.track,
            "z": [round(float(v), 4) for v in self.z],
            "z_seen": [round(float(v), 4) for v in self.z_seen],
            "edited": sorted(self.edited),
            "z_limit": Z_LIMIT,
            "h": {
                "size": int(hidden.size),
                "norm": float(np.linalg.norm(hidden)),
                "mean": float(hidden.mean()),
                "std": float(hidden.std()),
                "min": float(hidden.min()),
                "max": float(hidden.max()),
                "values": [round(float(v), 3) for v in hidden[:H_SHOWN]],
            },
            "action": {
                "steer": float(self.action[0]),
                "gas": float(self.action[1]),
                "brake": float(self.action[2]),
            },
            "camera": png_data_url(self.camera),
            "reconstruction": png_data_url(self.reconstruction),
            "speed_kmh": 3.6 * float(info.get("speed", 0.0)),
            "progress": float(info.get("progress", 0.0)),
            "return": float(self.session.episode_return),
            "last_return": self.last_return,
            "model": {k: int(v) for k, v in self.model.steps.items()},
        }

    def close(self) -> None:
        self.session.close()
