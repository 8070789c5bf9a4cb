"""The latent space, live: a learned agent drives, and every frame the page sees what its model makes
of the camera frame: the frame's reconstruction, z, a summary of h, and the action taken on them.

One view, two kinds of model, each behind a "mind" with the same five calls (reset, look, advance,
probe, clamp):

- **World Models**: V encodes the frame to z (the posterior mean, as the agent drives) and decodes z
  back; C acts on [z, h]; M advances h with (z, a). z is 32 real numbers: bars, and one slider each.
- **DreamerV3**: the RSSM filters the frame into its state, h (deterministic) and z (``stoch_size``
  categorical variables of ``stoch_classes`` classes, sampled from the posterior as the agent does);
  the decoder reconstructs the frame from [h, z]; the actor acts on it. The page gets the posterior's
  probabilities (a heat map, one row per variable) and the class each variable took. Its slider sets
  one variable's class: the only edit that leaves z a state the model can be in (one-hot per
  variable). The action is the actor's clipped mean (where the sampling actor steers on average): it
  is deterministic, so what a slider does to the action is the latent's doing, not a new sample. An
  agent trained with action repeat k (CarRacing-v3's 2) decides every k frames, as in training.

Each decision one jitted ``look`` runs the model on the frame. Paused, the page may move any latent:
one jitted ``probe`` decodes the edited z with the same h and asks C (or the actor) what it would do,
so each latent's meaning and its pull on the action show at once. Resuming drops the edits: the car
goes on from the state it was paused in.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rlcar_core.errors import RlcarError, require_at_least

Z_LIMIT = 4.0  # how far a slider may move a World Models latent: V's prior is N(0, 1), so ±4 covers it
H_SHOWN = 128  # at most this many of h's values go to the page (its heat strip)
KINDS = ("worldmodels", "dreamer")  # run kinds (`rlcar runs`) the view can show


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    run_dir: Path
    kind: str = "worldmodels"
    checkpoint: str = "best"
    track: int = 0
    seed: int = 0
    max_steps: int = 1000

    def validate(self) -> None:
        require_at_least("--track", self.track, 0)
        require_at_least("--max-steps", self.max_steps, 1)
        if self.kind not in KINDS:
            raise RlcarError(f"the latent view shows {' or '.join(KINDS)} runs, not {self.kind}")


class Look(NamedTuple):
    """What a model makes of one frame (or of an edited z): numpy arrays for the page."""

    z: np.ndarray  # World Models: (z_dim,) floats; DreamerV3: (stoch_size,) class indices
    reconstruction: np.ndarray  # (64, 64, 3) uint8
    action: np.ndarray  # [steer, gas, brake] as the env takes it
    hidden: np.ndarray  # h
    detail: dict[str, Any]  # what else the page draws (DreamerV3: the posterior's probabilities)


def to_image(pixels):
    """A decoder's [0, 1] output as uint8 pixels (jit-able)."""
    import jax.numpy as jnp

    return jnp.clip(jnp.round(pixels * 255.0), 0, 255).astype(jnp.uint8)


# --- World Models ----------------------------------------------------------------------------------


@functools.cache
def world_models_functions(vae_config, rnn_config, controller_config):
    """(look, probe), each one jitted function, cached per model shape.

    ``look(params, policy, frame (64, 64, 3) uint8, rnn_state)`` ->
    ``(z, reconstruction uint8, action, h, next_rnn_state)``: the agent's own step (see
    ``worldmodels.controller.make_policy_step``) with the decoded frame and the h C acted on.
    ``probe(params, policy, z, h)`` -> ``(reconstruction uint8, action)`` for an edited z.
    """
    import jax

    from rlcar_core.worldmodels.controller import controller_action, vector_to_params
    from rlcar_core.worldmodels.mdnrnn import make_mdnrnn
    from rlcar_core.worldmodels.vae import make_vae

    vae = make_vae(vae_config)
    rnn = make_mdnrnn(rnn_config)

    def decide(params, policy, latent, hidden):
        controller = vector_to_params(policy, controller_config)
        return to_image(vae.apply.decode(params.vae, latent)), controller_action(controller, latent, hidden)

    def look(params, policy, frame, rnn_state):
        latent, _ = vae.apply.encode(params.vae, frame[None])
        image, action = decide(params, policy, latent, rnn_state.hidden)
        _, next_state = rnn.apply.step(params.rnn, latent, action, rnn_state)
        return latent[0], image[0], action[0], rnn_state.hidden[0], next_state

    def probe(params, policy, latent, hidden):
        image, action = decide(params, policy, latent[None], hidden[None])
        return image[0], action[0]

    return jax.jit(look), jax.jit(probe)


class WorldModelsMind:
    kind = "worldmodels"
    labels = {
        "model": "World Models",
        "actor": "C",
        "reconstruction": "V's reconstruction of z",
        "h": "h, the MDN-RNN's memory",
        "z": "z, V's latent",
        "z_hint": "(the z C acts on; yellow: moved by you, the white line is what the camera gave)",
    }
    slider = {"min": -Z_LIMIT, "max": Z_LIMIT, "step": 0.01}
    action_repeat = 1

    def __init__(self, run_dir: Path, checkpoint: str, seed: int):
        from rlcar_core.io.runs import RunDir
        from rlcar_core.worldmodels.mdnrnn import initial_rnn_state
        from rlcar_core.worldmodels.storage import load_world_model

        self.model = load_world_model(RunDir(run_dir), checkpoint)
        self.env = self.model.env
        self.camera = self.model.camera  # RLCar: the camera its data was filmed with
        self._initial_state = lambda: initial_rnn_state(self.model.rnn_config, 1)
        self._look, self._probe = world_models_functions(
            self.model.vae_config, self.model.rnn_config, self.model.controller_config
        )
        self.policy = np.asarray(self.model.policy, np.float32)
        self.steps = {k: int(v) for k, v in self.model.steps.items()}
        self.reset()

    def reset(self) -> None:
        self.rnn_state = self._initial_state()

    def look(self, frame: np.ndarray) -> Look:
        z, image, action, hidden, self._next_state = self._look(
            self.model.params, self.policy, frame, self.rnn_state
        )
        return Look(np.asarray(z, np.float32), np.asarray(image), np.asarray(action, np.float32),
                    np.asarray(hidden, np.float32), {})  # fmt: skip

    def advance(self) -> None:
        """M's step with the z and action of the last look: the car took that action."""
        self.rnn_state = self._next_state

    def probe(self, z: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image, action = self._probe(self.model.params, self.policy, z, hidden)
        return np.asarray(image), np.asarray(action, np.float32)

    def clamp(self, value: float) -> float:
        return min(max(float(value), -Z_LIMIT), Z_LIMIT)


# --- DreamerV3 -------------------------------------------------------------------------------------


@functools.cache
def dreamer_functions(config):
    """(look, probe), each one jitted function, cached per model config.

    ``look(params, carry, frame, is_first, key)`` -> ``(posterior, probabilities, reconstruction
    uint8, actor-space action)``: the policy's own filtering step (``dreamer.policy.filter_observation``,
    as ``policy_step`` takes it), with the decoded frame and the posterior's probabilities.
    ``probe(params, h, classes)`` -> ``(reconstruction uint8, actor-space action)`` for the z whose
    variable i takes class ``classes[i]``.
    """
    import jax

    from rlcar_core.dreamer.networks import LatentState, actor_network, features
    from rlcar_core.dreamer.policy import filter_observation
    from rlcar_core.dreamer.world_model import decode_observation

    actor = actor_network(config)

    def decide(params, latent):
        feat = features(latent)
        image = decode_observation(params.world_model, feat, config)
        return image, actor.apply(params.actor, feat).clipped_mean()

    def look(params, carry, frame, is_first, key):
        step, _ = filter_observation(params, carry, frame[None], is_first, key, config)
        image, action = decide(params, step.posterior)
        return step.posterior, jax.nn.softmax(step.posterior_logits[0], axis=-1), image[0], action

    def probe(params, hidden, classes):
        stoch = jax.nn.one_hot(classes, config.stoch_classes)
        image, action = decide(params, LatentState(deter=hidden[None], stoch=stoch[None]))
        return image[0], action[0]

    return jax.jit(look), jax.jit(probe)


class DreamerMind:
    kind = "dreamer"
    labels = {
        "model": "DreamerV3",
        "actor": "the actor",
        "reconstruction": "the decoder's reconstruction of [h, z]",
        "h": "h, the RSSM's deterministic state",
        "z": "z, the RSSM's categorical latent",
        "z_hint": "(a column per variable, a row per class; brightness: the posterior's probability; "
        "the ring: the class the actor acts on, yellow where you set it)",
    }
    slider = {"min": 0, "max": 1, "step": 1}  # max: the class count - 1, set per model

    def __init__(self, run_dir: Path, checkpoint: str, seed: int):
        import jax

        from rlcar_core.dreamer.checkpoints import load_saved_agent
        from rlcar_core.dreamer.policy import on_default_device

        saved = load_saved_agent(run_dir, checkpoint)
        self.config = saved.config
        if self.config.obs_kind != "pixels":
            raise RlcarError(
                f"the latent view reconstructs camera frames; this DreamerV3 agent reads {self.config.obs_kind}"
            )
        self.env = saved.env
        self.camera = saved.camera  # RLCar: the camera it was trained with
        self.action_repeat = saved.action_repeat
        self.steps = {"dreamer": int(saved.step)}
        self.slider = {**self.slider, "max": self.config.stoch_classes - 1}
        self.params = on_default_device(saved.params)
        self._look, self._probe = dreamer_functions(self.config)
        self._base_key = jax.random.key(seed)
        self.reset()

    def reset(self) -> None:
        from rlcar_core.dreamer.policy import initial_carry, on_default_device

        self.carry = on_default_device(initial_carry(1, self.config))
        self._is_first = np.ones(1, bool)
        self._looks = 0  # the noise key stream restarts with the episode, as the agent's does

    def look(self, frame: np.ndarray) -> Look:
        import jax

        from rlcar_core.dreamer.policy import to_env_action

        key = jax.random.fold_in(self._base_key, self._looks)
        self._looks += 1
        self._posterior, probabilities, image, self._actor_action = self._look(
            self.params, self.carry, frame, self._is_first, key
        )
        stoch = np.asarray(self._posterior.stoch[0])
        return Look(
            stoch.argmax(-1),
            np.asarray(image),
            to_env_action(np.asarray(self._actor_action[0], np.float32)),
            np.asarray(self._posterior.deter[0], np.float32),
            {"z_probabilities": np.round(np.asarray(probabilities, np.float64), 3).tolist()},
        )

    def advance(self) -> None:
        """The posterior and the action of the last look become the RSSM's carry: the car took it."""
        self.carry = self.carry._replace(latent=self._posterior, prev_action=self._actor_action)
        self._is_first = np.zeros(1, bool)

    def probe(self, z: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from rlcar_core.dreamer.policy import to_env_action

        image, action = self._probe(self.params, hidden, np.asarray(z, np.int32))
        return np.asarray(image), to_env_action(np.asarray(action, np.float32))

    def clamp(self, value: float) -> int:
        return min(max(round(value), 0), self.config.stoch_classes - 1)


MINDS = {"worldmodels": WorldModelsMind, "dreamer": DreamerMind}


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class LatentView:
    """One car driven by a learned agent and what its model sees; ``tick``/``command``/``state`` on
    one thread."""

    def __init__(self, config: LatentConfig):
        from rlcar_core.apps.drive import DrivingSession

        config.validate()
        self.config = config
        self.mind = MINDS[config.kind](config.run_dir, config.checkpoint, config.seed)
        self.session = DrivingSession(
            self.mind.env, "pixels", config.track, config.max_steps, config.seed, render=False,
            camera=self.mind.camera,
        )  # fmt: skip
        self.step_seconds = self.session.step_seconds * self.mind.action_repeat  # one decision
        self.paused = False
        self.episode = 0
        self.last_return: float | None = None
        self._reset()
        self._look()  # compiles both functions now, not on the first frame
        self._probe()

    @property
    def z_dim(self) -> int:
        return len(self.z_seen)

    def _reset(self) -> None:
        self.obs = self.session.reset()
        self.mind.reset()

    def _look(self) -> None:
        """The model on the current camera frame, without moving the car."""
        self.camera = np.asarray(self.obs, np.uint8)
        look = self.mind.look(self.camera)
        self.z_seen, self.z = look.z, look.z.copy()
        self.hidden, self.reconstruction, self.action = look.hidden, look.reconstruction, look.action
        self.detail = look.detail
        self.edited: set[int] = set()

    def _probe(self) -> None:
        self.reconstruction, self.action = self.mind.probe(self.z, self.hidden)

    # --- driving ------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One decision: the action taken on what the model sees now (held ``action_repeat`` frames),
        then a look at the next frame."""
        if self.paused:
            return
        self.mind.advance()
        for _ in range(self.mind.action_repeat):
            self.obs, _, terminated, truncated, _ = self.session.step(self.action)
            if terminated or truncated:
                self.last_return = self.session.episode_return
                self.episode += 1
                self._reset()
                break
        self._look()

    def command(self, message: dict[str, Any]) -> None:
        """pause / resume / toggle / reset / reset_z / set_z {index, value}; anything else is ignored.
        ``value`` is a World Models latent's value, or the class a DreamerV3 variable takes."""
        kind = message.get("type")
        if kind in ("pause", "resume", "toggle"):
            pause = {"pause": True, "resume": False}.get(kind, not self.paused)
            if self.paused and not pause and self.edited:
                self._back_to_the_seen_z()  # the car goes on with what it really saw
            self.paused = pause
        elif kind == "reset":
            self._reset()
            self._look()
        elif kind == "reset_z" and self.edited:
            self._back_to_the_seen_z()
        elif kind == "set_z" and self.paused:
            index, value = message.get("index"), message.get("value")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.z_dim:
                return
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return
            self.z[index] = self.mind.clamp(value)
            self.edited.add(index)
            self._probe()

    def _back_to_the_seen_z(self) -> None:
        self.z = self.z_seen.copy()
        self.edited = set()
        self._probe()

    # --- what the page shows ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        hidden = self.hidden
        return {
            "kind": self.mind.kind,
            "labels": self.mind.labels,
            "slider": self.mind.slider,
            "env": str(self.mind.env),
            "step": self.session.steps,
            "episode": self.episode,
            "paused": self.paused,
            "track": self.config.track,
            "z": [round(float(v), 4) for v in self.z],
            "z_seen": [round(float(v), 4) for v in self.z_seen],
            **self.detail,
            "edited": sorted(self.edited),
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
            "speed_kmh": 3.6 * float(self.session.speed or 0.0),
            "progress": float(self.session.info.get("progress", 0.0)),
            "return": float(self.session.episode_return),
            "last_return": self.last_return,
            "model": self.mind.steps,
        }

    def close(self) -> None:
        self.session.close()
