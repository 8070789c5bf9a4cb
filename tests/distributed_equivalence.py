"""Run by tests/test_distributed.py in its own process with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (XLA reads its flags once, when JAX starts).

One data-parallel step over 4 CPU devices (batch sharded over a mesh, state replicated, `jax.jit` with
shardings) against the single-device step on the same global batch, for the DreamerV3 update (one
update, and K fused ones), the World Models VAE update, and train-rnn's MDN-RNN step as `fit` runs
it (`supervised.sharded_train_step`); and the CMA-ES population's dream fitness split over the 4
devices (`controller.spread_population`, a population of 6 padded to 8) against one device. Prints
one JSON line of the largest differences; the test checks them.
"""

import json
import sys

import jax
import numpy as np


def max_difference(tree_a, tree_b) -> float:
    leaves = zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b), strict=True)
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in leaves)


def relative_loss_difference(metrics_a, metrics_b, names) -> float:
    return max(
        float(np.max(np.abs(np.asarray(metrics_a[n]) - np.asarray(metrics_b[n]))))
        / (1e-6 + float(np.max(np.abs(np.asarray(metrics_a[n])))))
        for n in names
    )


def dreamer(mesh) -> dict:
    from rlcar_core.dreamer import DreamerConfig, init_training_state, make_update
    from rlcar_core.dreamer.learner import compiled_step
    from rlcar_core.dreamer.replay import ReplayBuffer, replay_spec
    from rlcar_core.loop import mesh as meshes
    from rlcar_core.loop.keys import stream_key

    config = DreamerConfig.preset("tiny", obs_shape=(17,), model_lr=1e-3)
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(400, replay_spec(config), 4)
    for stream in range(4):
        replay.add_episode(
            {
                "obs": rng.standard_normal((100, 17)).astype(np.float32),
                "action": rng.uniform(-1, 1, (100, 3)).astype(np.float32),
                "reward": rng.standard_normal(100).astype(np.float32),
                "is_first": np.arange(100) % 33 == 0,
                "is_terminal": np.arange(100) % 33 == 32,
            },
            stream=stream,
        )
    state = init_training_state(config, jax.random.key(0))
    names = ("wm/loss", "actor/loss", "critic/loss")

    batch = replay.sample(8, 8, np.random.default_rng(1))
    single_state, single_metrics = jax.jit(make_update(config))(state, batch, stream_key(5, 1, 0))
    step = compiled_step(config, 5, mesh, fused=False, donate=False)
    parallel_state, parallel_metrics = step(
        meshes.replicate(mesh, state), meshes.shard_batch(mesh, batch), meshes.replicate(mesh, np.int32(0))
    )
    result = {
        "dreamer_param_diff": max_difference(single_state.params, meshes.fetch(parallel_state.params)),
        "dreamer_loss_rel_diff": relative_loss_difference(
            single_metrics, meshes.fetch(parallel_metrics), names
        ),
        "dreamer_param_change": max_difference(single_state.params, state.params),
        "parallel_devices": len(jax.tree.leaves(parallel_state.params)[0].sharding.device_set),
    }

    # K = 2 fused updates, sharded, against two single-device updates one after the other.
    batches = [replay.sample(8, 8, np.random.default_rng(10 + k)) for k in range(2)]
    sequential = state
    for k, one in enumerate(batches):
        sequential, last_single = jax.jit(make_update(config))(sequential, one, stream_key(5, 1, k))
    fused = compiled_step(config, 5, mesh, fused=True, donate=False)
    stacked = {name: np.stack([b[name] for b in batches]) for name in batches[0]}
    fused_state, fused_metrics = fused(
        meshes.replicate(mesh, state),
        meshes.shard_batch(mesh, stacked, axis=1),
        meshes.replicate(mesh, np.arange(2, dtype=np.int32)),
    )
    last_fused = {name: np.asarray(value)[-1] for name, value in meshes.fetch(fused_metrics).items()}
    result["fused_param_diff"] = max_difference(sequential.params, meshes.fetch(fused_state.params))
    result["fused_loss_rel_diff"] = relative_loss_difference(last_single, last_fused, names)
    return result


def vae(mesh) -> dict:
    from rlcar_core.loop import mesh as meshes
    from rlcar_core.worldmodels.config import VAEConfig
    from rlcar_core.worldmodels.vae import init_vae_state, make_vae_update

    config = VAEConfig(
        z_dim=8, encoder_channels=(8, 8, 16, 16), decoder_channels=(16, 8, 8), learning_rate=1e-3
    )
    state = init_vae_state(config, jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    update = make_vae_update(config)
    key = jax.random.key(3)
    single_state, single_metrics = jax.jit(update)(state, images, key)
    replicated = meshes.replicated(mesh)
    parallel = jax.jit(
        update,
        in_shardings=(replicated, meshes.batch_sharded(mesh), replicated),
        out_shardings=(replicated, replicated),
    )
    parallel_state, parallel_metrics = parallel(
        meshes.replicate(mesh, state), meshes.shard_batch(mesh, images), meshes.replicate(mesh, key)
    )
    names = [name for name in single_metrics if np.ndim(single_metrics[name]) == 0] if isinstance(
        single_metrics, dict) else None  # fmt: skip
    if names is None:  # a NamedTuple of losses
        single_metrics, parallel_metrics = single_metrics._asdict(), parallel_metrics._asdict()
        names = list(single_metrics)
    return {
        "vae_param_diff": max_difference(single_state, meshes.fetch(parallel_state)),
        "vae_loss_rel_diff": relative_loss_difference(single_metrics, meshes.fetch(parallel_metrics), names),
    }


def mdnrnn(mesh) -> dict:
    from rlcar_core.loop import mesh as meshes
    from rlcar_core.loop.keys import stream_base
    from rlcar_core.worldmodels.config import MDNRNNConfig
    from rlcar_core.worldmodels.latents import LatentSequences
    from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_state
    from rlcar_core.worldmodels.supervised import UPDATE_STREAM, sharded_train_step
    from rlcar_core.worldmodels.train_rnn import rnn_train_step_fn

    config = MDNRNNConfig(z_dim=4, hidden_size=16, num_mixtures=3, learning_rate=1e-2)
    rng = np.random.default_rng(0)
    batch, length = 8, 6
    sequences = LatentSequences(
        mean=rng.standard_normal((batch, length + 1, 4)).astype(np.float32),
        log_var=np.full((batch, length + 1, 4), -2.0, np.float32),
        action=rng.uniform(-1, 1, (batch, length, 3)).astype(np.float32),
        reward=rng.standard_normal((batch, length)).astype(np.float32),
        terminated=rng.random((batch, length)) < 0.1,
        mask=np.arange(length)[None] < rng.integers(2, length + 1, (batch, 1)),  # ragged ends
    )
    state = init_mdnrnn_state(config, jax.random.key(0))
    stream = stream_base(7, UPDATE_STREAM)
    train_step = rnn_train_step_fn(config)
    single_state, single_metrics = train_step(state, sequences, stream)
    parallel_state, parallel_metrics = sharded_train_step(train_step, mesh)(
        meshes.replicate(mesh, state), meshes.shard_batch(mesh, sequences), meshes.replicate(mesh, stream)
    )
    single_metrics = jax.device_get(single_metrics)
    return {
        "rnn_param_diff": max_difference(single_state.params, meshes.fetch(parallel_state.params)),
        "rnn_param_change": max_difference(single_state.params, state.params),
        "rnn_loss_rel_diff": relative_loss_difference(
            single_metrics, meshes.fetch(parallel_metrics), list(single_metrics)
        ),
        "rnn_parallel_devices": len(jax.tree.leaves(parallel_state.params)[0].sharding.device_set),
    }


def dream_population(mesh) -> dict:
    from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig
    from rlcar_core.worldmodels.controller import num_controller_params, spread_population
    from rlcar_core.worldmodels.dream import make_dream_fitness
    from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_params

    rnn_config = MDNRNNConfig(z_dim=4, hidden_size=16, num_mixtures=3)
    controller_config = ControllerConfig(z_dim=4, hidden_size=16)
    rnn_params = init_mdnrnn_params(rnn_config, jax.random.key(1))
    rng = np.random.default_rng(2)
    candidates = rng.normal(0, 0.5, (6, num_controller_params(controller_config))).astype(np.float32)
    starts = rng.standard_normal((5, 4)).astype(np.float32)
    fitness = make_dream_fitness(rnn_config, controller_config, 12)
    key = jax.random.PRNGKey(3)
    single = np.asarray(jax.jit(fitness)(rnn_params, candidates, starts, 1.15, key))
    spread = np.asarray(spread_population(fitness, mesh)(rnn_params, candidates, starts, 1.15, key))
    return {
        "population": len(spread),
        "fitness_diff": float(np.max(np.abs(single - spread))),
        "fitness_spread": float(np.ptp(single)),  # the candidates really differ
    }


def main() -> None:
    from rlcar_core.loop.mesh import data_mesh

    assert jax.device_count() == 4, jax.devices()
    mesh = data_mesh(4)
    result = {
        "devices": jax.device_count(),
        **dreamer(mesh),
        **vae(mesh),
        **mdnrnn(mesh),
        **dream_population(mesh),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
