"""Haiku modules of DreamerV3 and the pure (init, apply) functions built from them.

All modules accept any number of leading batch axes (including none), so the same parameters serve
batched training, a vmapped policy and a single environment.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.distributions import (
    ActionDistribution,
    onehot_mode,
    sample_onehot_straight_through,
)
from rlcar_core.dreamer.math import symlog, unimix_logits
from rlcar_core.dreamer.upsample import Upsample2x


class LatentState(NamedTuple):
    """RSSM state: deterministic GRU state and one-hot stochastic latents (groups x classes)."""

    deter: jax.Array
    stoch: jax.Array


class ObserveStep(NamedTuple):
    posterior: LatentState
    posterior_logits: jax.Array
    prior_logits: jax.Array


class ImagineStep(NamedTuple):
    prior: LatentState
    prior_logits: jax.Array


def features(state: LatentState) -> jax.Array:
    """The vector every head reads: deterministic state next to the flattened latents."""
    stoch_flat = state.stoch.reshape(state.stoch.shape[:-2] + (-1,))
    return jnp.concatenate([state.deter, stoch_flat], axis=-1)


def latent_noise(key: jax.Array, batch_shape: tuple[int, ...], config: DreamerConfig) -> jax.Array:
    """Random bits (uint32) for sampling latents of `batch_shape` (e.g. (T, B) for a whole sequence).

    The RSSM turns them into Gumbel noise (`gumbel_from_bits`) where it samples, inside the loop body:
    fused with the generator, that float maths made XLA's CPU backend compile the rbg generator into
    one scalar loop (4-5 ms of a 30 ms tiny update, 4x the bits alone).
    """
    shape = tuple(batch_shape) + (config.stoch_size, config.stoch_classes)
    return jax.random.bits(key, shape, jnp.uint32)


def gumbel_from_bits(bits: jax.Array) -> jax.Array:
    """Exactly `jax.random.gumbel`'s values for the same random bits: jax.random.uniform's mapping of
    32 bits onto [tiny, 1) (23 mantissa bits), then -log(-log u)."""
    tiny = jnp.finfo(jnp.float32).tiny
    mantissa = jax.lax.shift_right_logical(bits, jnp.uint32(9)) | jnp.uint32(0x3F800000)
    uniform = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
    uniform = jnp.maximum(tiny, uniform * (1.0 - tiny) + tiny)
    return -jnp.log(-jnp.log(uniform))


def _layer_norm(eps: float, name: str | None = None) -> hk.LayerNorm:
    return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, eps=eps, name=name)


class NormedMLP(hk.Module):
    """Linear -> LayerNorm -> SiLU blocks; the bias is dropped because the norm's offset replaces it."""

    def __init__(self, layers: int, units: int, eps: float, name: str | None = None):
        super().__init__(name=name)
        self._layers = layers
        self._units = units
        self._eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        for index in range(self._layers):
            x = hk.Linear(self._units, with_bias=False, name=f"linear_{index}")(x)
            x = jax.nn.silu(_layer_norm(self._eps, name=f"norm_{index}")(x))
        return x


class _ConfigModule(hk.Module):
    """A module built from the whole `DreamerConfig` (it reads its sizes when called)."""

    def __init__(self, config: DreamerConfig, name: str | None = None):
        super().__init__(name=name)
        self._config = config


def _trunk(config: DreamerConfig) -> NormedMLP:
    """The MLP every head, the sensor encoder and the sensor decoder start with."""
    return NormedMLP(config.mlp_layers, config.hidden_size, config.layer_norm_eps)


def _flatten_batch(x: jax.Array, event_dims: int) -> tuple[jax.Array, tuple[int, ...]]:
    """Folds all leading axes into one so convolutions see exactly one batch axis."""
    batch_shape = x.shape[: x.ndim - event_dims]
    return x.reshape((-1,) + x.shape[x.ndim - event_dims :]), batch_shape


def _cnn_channels(config: DreamerConfig) -> list[int]:
    stages = (config.obs_shape[0] // config.cnn_min_resolution).bit_length() - 1
    return [config.cnn_depth * 2**stage for stage in range(stages)]


def preprocess_pixels(obs: jax.Array) -> jax.Array:
    """uint8 pixels to floats centred on zero; this is also the decoder's regression target."""
    return obs.astype(jnp.float32) / 255.0 - 0.5


class Encoder(_ConfigModule):
    """Observation to embedding: an MLP on symlog sensors or a strided CNN on pixels."""

    def __call__(self, obs: jax.Array) -> jax.Array:
        config = self._config
        if config.obs_kind == "sensors":
            # symlog keeps unnormalised sensor magnitudes (speeds, distances) in a trainable range.
            x = symlog(obs.astype(jnp.float32))
            return _trunk(config)(x)
        x, batch_shape = _flatten_batch(preprocess_pixels(obs), 3)
        for index, channels in enumerate(_cnn_channels(config)):
            x = hk.Conv2D(channels, 4, stride=2, with_bias=False, name=f"conv_{index}")(x)
            x = jax.nn.silu(_layer_norm(config.layer_norm_eps, name=f"norm_{index}")(x))
        return x.reshape(batch_shape + (-1,))


class Decoder(_ConfigModule):
    """Features to a reconstruction: symlog sensors, or centred pixels via transposed convolutions."""

    def __call__(self, feat: jax.Array) -> jax.Array:
        config = self._config
        if config.obs_kind == "sensors":
            x = _trunk(config)(feat)
            return hk.Linear(config.obs_shape[0], name="out")(x)
        channels = _cnn_channels(config)
        res = config.cnn_min_resolution
        x = hk.Linear(res * res * channels[-1], name="project")(feat)
        x, batch_shape = _flatten_batch(x, 1)
        x = x.reshape((-1, res, res, channels[-1]))
        # Upsample through the encoder's channel widths in reverse, ending on the image channels.
        targets = list(reversed(channels[:-1])) + [config.obs_shape[-1]]
        for index, out_channels in enumerate(targets):
            last = index == len(targets) - 1
            x = Upsample2x(out_channels, with_bias=last, name=f"deconv_{index}")(x)
            if not last:
                x = jax.nn.silu(_layer_norm(config.layer_norm_eps, name=f"norm_{index}")(x))
        return x.reshape(batch_shape + tuple(config.obs_shape))


class NormedGRU(hk.Module):
    """GRU with a LayerNorm on the gates and an update-gate bias of -1, as in DreamerV3.

    The -1 bias starts the cell close to keeping its state, which helps long-range memory early on.
    """

    def __init__(self, size: int, eps: float, name: str | None = None):
        super().__init__(name=name)
        self._size = size
        self._eps = eps

    def __call__(self, inputs: jax.Array, state: jax.Array) -> jax.Array:
        gates = hk.Linear(3 * self._size, with_bias=False, name="gates")(
            jnp.concatenate([inputs, state], axis=-1)
        )
        gates = _layer_norm(self._eps, name="norm")(gates)
        reset, candidate, update = jnp.split(gates, 3, axis=-1)
        reset = jax.nn.sigmoid(reset)
        candidate = jnp.tanh(reset * candidate)
        update = jax.nn.sigmoid(update - 1.0)
        return update * candidate + (1.0 - update) * state


class RSSM(_ConfigModule):
    """Recurrent state-space model with discrete latents.

    `img_step` predicts the next state from the previous state and action (the prior); `obs_step`
    additionally sees the current observation's embedding (the posterior).
    """

    def __init__(self, config: DreamerConfig, name: str | None = None):
        super().__init__(config, name=name)
        # Layers are built once here so that every method below shares the same parameters.
        eps = config.layer_norm_eps
        latent_logits = config.stoch_size * config.stoch_classes
        self._img_in = NormedMLP(1, config.hidden_size, eps, name="img_in")
        self._gru = NormedGRU(config.deter_size, eps, name="gru")
        self._img_hidden = NormedMLP(1, config.hidden_size, eps, name="img_hidden")
        self._img_logits = hk.Linear(latent_logits, name="img_logits")
        self._obs_hidden = NormedMLP(1, config.hidden_size, eps, name="obs_hidden")
        self._obs_logits = hk.Linear(latent_logits, name="obs_logits")

    def _img_out(self, deter: jax.Array) -> jax.Array:
        return self._img_logits(self._img_hidden(deter))

    def _obs_out(self, x: jax.Array) -> jax.Array:
        return self._obs_logits(self._obs_hidden(x))

    def _latent_logits(self, flat_logits: jax.Array) -> jax.Array:
        config = self._config
        logits = flat_logits.reshape(flat_logits.shape[:-1] + (config.stoch_size, config.stoch_classes))
        return unimix_logits(logits, config.unimix)

    def initial_state(self) -> LatentState:
        """Learned start state (no batch axes; broadcast by the caller), as DreamerV3's `initial: learned`."""
        init_deter = hk.get_parameter("initial_deter", (self._config.deter_size,), init=jnp.zeros)
        deter = jnp.tanh(init_deter)
        return LatentState(deter=deter, stoch=onehot_mode(self._latent_logits(self._img_out(deter))))

    def _deter_step(self, prev: LatentState, prev_action: jax.Array) -> jax.Array:
        stoch_flat = prev.stoch.reshape(prev.stoch.shape[:-2] + (-1,))
        x = self._img_in(jnp.concatenate([stoch_flat, prev_action], axis=-1))
        return self._gru(x, prev.deter)

    def img_step(self, prev: LatentState, prev_action: jax.Array, noise_bits: jax.Array) -> ImagineStep:
        """Prior step; `noise_bits` (`latent_noise`) has the latent shape (..., stoch_size, stoch_classes)."""
        deter = self._deter_step(prev, prev_action)
        prior_logits = self._latent_logits(self._img_out(deter))
        stoch = sample_onehot_straight_through(prior_logits, gumbel_from_bits(noise_bits))
        return ImagineStep(prior=LatentState(deter, stoch), prior_logits=prior_logits)

    def obs_step(
        self,
        prev: LatentState,
        prev_action: jax.Array,
        embed: jax.Array,
        is_first: jax.Array,
        noise_bits: jax.Array,
    ) -> ObserveStep:
        """Posterior step; `noise_bits` (`latent_noise`) has the latent shape (..., stoch_size, stoch_classes)."""
        # A new episode starts from the learned initial state with no previous action, so whatever
        # was carried over from the previous episode (or a zero carry) cannot leak into it.
        is_first = is_first.astype(bool)
        initial = self.initial_state()
        prev = LatentState(
            deter=jnp.where(is_first[..., None], initial.deter, prev.deter),
            stoch=jnp.where(is_first[..., None, None], initial.stoch, prev.stoch),
        )
        prev_action = jnp.where(is_first[..., None], 0.0, prev_action)
        deter = self._deter_step(prev, prev_action)
        # Only the prior's logits matter here (for the KL); its sample would be thrown away.
        prior_logits = self._latent_logits(self._img_out(deter))
        posterior_logits = self._latent_logits(self._obs_out(jnp.concatenate([deter, embed], axis=-1)))
        stoch = sample_onehot_straight_through(posterior_logits, gumbel_from_bits(noise_bits))
        return ObserveStep(
            posterior=LatentState(deter, stoch),
            posterior_logits=posterior_logits,
            prior_logits=prior_logits,
        )


class TwoHotHead(_ConfigModule):
    """MLP to logits over symlog bins; zero-initialised output so initial predictions are exactly 0."""

    def __call__(self, feat: jax.Array) -> jax.Array:
        config = self._config
        x = _trunk(config)(feat)
        return hk.Linear(config.num_bins, w_init=jnp.zeros, name="out")(x)


class ContinueHead(_ConfigModule):
    """MLP to the logit of "the episode continues after this state"."""

    def __call__(self, feat: jax.Array) -> jax.Array:
        config = self._config
        x = _trunk(config)(feat)
        return hk.Linear(1, name="out")(x)[..., 0]


class Actor(_ConfigModule):
    """Features to a bounded-normal action distribution (see `ActionDistribution`)."""

    def __call__(self, feat: jax.Array) -> ActionDistribution:
        config = self._config
        x = _trunk(config)(feat)
        raw_mean, raw_std = jnp.split(hk.Linear(2 * config.action_dim, name="out")(x), 2, axis=-1)
        # The +2 starts the std near its maximum, so early behaviour explores broadly.
        std_range = config.actor_max_std - config.actor_min_std
        std = std_range * jax.nn.sigmoid(raw_std + 2.0) + config.actor_min_std
        return ActionDistribution(mean=jnp.tanh(raw_mean), std=std, pre_tanh=raw_mean)


class WorldModelApply(NamedTuple):
    """Pure apply functions of the world model; each takes `params` first."""

    initial_state: Any
    encode: Any
    obs_step: Any
    img_step: Any
    decode: Any
    reward_logits: Any
    continue_logit: Any


class WorldModelNetwork(NamedTuple):
    init: Any
    apply: WorldModelApply


def world_model_network(config: DreamerConfig) -> WorldModelNetwork:
    """Pure functions of the world model.

    `init(key, obs, prev_action, is_first)` builds parameters from one example step. Sampling
    functions take random bits (`latent_noise`, latent-shaped) rather than keys; see
    `distributions.sample_onehot_straight_through` for why.
    """

    def factory():
        encoder = Encoder(config, name="encoder")
        decoder = Decoder(config, name="decoder")
        rssm = RSSM(config, name="rssm")
        reward_head = TwoHotHead(config, name="reward_head")
        continue_head = ContinueHead(config, name="continue_head")

        def init(obs, prev_action, is_first):
            embed = encoder(obs)
            initial = rssm.initial_state()
            prev = LatentState(
                deter=jnp.broadcast_to(initial.deter, embed.shape[:-1] + initial.deter.shape),
                stoch=jnp.broadcast_to(initial.stoch, embed.shape[:-1] + initial.stoch.shape),
            )
            noise = jnp.zeros(initial.stoch.shape, jnp.uint32)
            step = rssm.obs_step(prev, prev_action, embed, is_first, noise)
            imagined = rssm.img_step(step.posterior, prev_action, noise)
            feat = features(imagined.prior)
            return decoder(feat), reward_head(feat), continue_head(feat)

        def encode(obs):
            return encoder(obs)

        def decode(feat):
            return decoder(feat)

        def reward_logits(feat):
            return reward_head(feat)

        def continue_logit(feat):
            return continue_head(feat)

        return init, WorldModelApply(
            initial_state=rssm.initial_state,
            encode=encode,
            obs_step=rssm.obs_step,
            img_step=rssm.img_step,
            decode=decode,
            reward_logits=reward_logits,
            continue_logit=continue_logit,
        )

    transformed = hk.without_apply_rng(hk.multi_transform(factory))
    return WorldModelNetwork(init=transformed.init, apply=transformed.apply)


def actor_network(config: DreamerConfig) -> hk.Transformed:
    return hk.without_apply_rng(hk.transform(lambda feat: Actor(config, name="actor")(feat)))


def critic_network(config: DreamerConfig) -> hk.Transformed:
    return hk.without_apply_rng(hk.transform(lambda feat: TwoHotHead(config, name="critic")(feat)))
