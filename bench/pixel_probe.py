"""Do the pixel world models see RLCar's obstacles? Reconstructions scored on the obstacles' pixels.

The pixel agents of `make bench-dreamer` drive the road but end nearly every held-out episode on the
first obstacle, and `rlcar dream` shows why: the posterior's reconstruction of the camera holds the
road and none of the obstacles (a 2.6 m cone is about 4 x 4 of the 4,096 pixels). This script measures
that directly and cheaply, without reinforcement learning: it trains only the world model (the same
loss and optimiser as train-dreamer) of each configuration for the same number of updates on the same
heuristic-driven episodes, then filters held-out episodes through the posterior and compares the
reconstruction with the camera on all pixels and on the obstacles' pixels alone. `--dreamer RUN_DIR`
scores the world model a DreamerV3 run learned while it trained, on the same held-out laps, and
`--vae RUN_DIR` a World Models run's VAE (each frame decoded from its code's mean).

    rlcar collect --run-dir runs/probe --policy heuristic --episodes 16            # the data: 48
    rlcar collect --run-dir runs/probe --policy heuristic --episodes 32 --seed 1   # laps, 17k frames
    python bench/pixel_probe.py --data runs/probe/data --updates 3000 \\
        --variant tiny --variant tiny:cnn_depth=16 --variant tiny:deter_size=128,hidden_size=128
    python bench/pixel_probe.py --vae pretrained/worldmodel-rlcar-pixels --variant none

Obstacles of another radius (collect with bench/collect_obstacle_radius.py, then --data on that run):

    python bench/pixel_probe.py --data runs/probe-4m/data --variant tiny --out runs/bench-dreamer/probe-4m.json

Controls: error-weighted reconstruction, and the tiny preset's CNN encoder and decoder as a plain
autoencoder on frames (no RSSM, latents or KL), with pictures of held-out frames and their rebuilds:

    python bench/pixel_probe.py --variant tiny:recon_focus=1 --autoencoder 0 --autoencoder 0:recon_focus=1 \
        --pictures runs/bench-dreamer/probe-pictures

Camera sweep: each `--camera NAME[:field=value,...]` (a preset of CAMERAS, fields of
rlcar_core.sim.camera_spec.CameraSpec changed) collects its own heuristic laps in this process, on
training tracks built with that camera's world, trains the world model of each --variant on them and
scores it as above; one table row per camera, JSON under --out-dir (one file per camera, and
sweep.json with every row), each written atomically:

    nice -n 19 python bench/pixel_probe.py --camera today --camera flat --camera zoom \
        --camera big-flat --camera zoom-big --camera square --updates 2000 --out-dir runs/camera-sweep \
        --pictures runs/camera-sweep/pictures

On 2 free cores a 64-pixel camera costs about 6-7 minutes at 2,000 updates (the tiny world model's
3,000 took 8-11 minutes in docs/results.md; collecting 48 laps and scoring add about a minute), so these
six take about 40; a 96-pixel frame costs about twice as much. Each run prints its own estimate after
45 updates.

A variant is `preset[:field=value,...]` (`none`: no DreamerV3 training). Obstacle recall is the share
of obstacle pixels whose reconstruction is nearer the obstacle colour than the road's. Results go to
--out as JSON; the last 8 episodes are held out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from rlcar_core.dreamer.checkpoints import load_saved_agent  # noqa: E402
from rlcar_core.dreamer.config import DreamerConfig  # noqa: E402
from rlcar_core.dreamer.optim import world_model_optimizer  # noqa: E402
from rlcar_core.dreamer.overrides import parse_overrides  # noqa: E402
from rlcar_core.dreamer.policy import from_env_action  # noqa: E402
from rlcar_core.dreamer.prior_data import replay_steps  # noqa: E402
from rlcar_core.dreamer.replay import align_episode  # noqa: E402
from rlcar_core.dreamer.train_config import CPU_MODEL_DEFAULTS  # noqa: E402
from rlcar_core.dreamer.train_state import init_agent_params  # noqa: E402
from rlcar_core.dreamer.world_model import (  # noqa: E402
    decode_observation,
    observe,
    reconstruction_loss,
    world_model_loss,
)
from rlcar_core.errors import RlcarError  # noqa: E402
from rlcar_core.io.atomic import write_json_atomic  # noqa: E402
from rlcar_core.io.data.episodes import DatasetError, load_episode  # noqa: E402
from rlcar_core.io.runs import RunDir  # noqa: E402
from rlcar_core.sim.bank import PALETTE, unpack_colour  # noqa: E402
from rlcar_core.sim.camera_spec import CAMERA_PRESETS as CAMERAS  # noqa: E402 - the named cameras
from rlcar_core.sim.camera_spec import CameraSpec  # noqa: E402
from rlcar_core.sim.camera_spec import parse_camera as camera_of_text  # noqa: E402
from rlcar_core.worldmodels.storage import camera_of_run  # noqa: E402

OBSTACLE_RGB = np.asarray(unpack_colour(PALETTE["obstacle"]), np.float32)
ROAD_RGB = np.asarray(unpack_colour(PALETTE["road"]), np.float32)
OBSTACLE_TOLERANCE = 40.0  # RGB units (L-infinity) around the obstacle colour that count as obstacle
# --heldout-tracks: track seeds far from the training bank (0-31 by default) and from the held-out
# evaluation tracks (EVAL_SEED_OFFSET + 0..79 in the benches).
HELDOUT_TRACK_SEED = 5_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/probe/data"), help="rlcar collect's episodes")
    parser.add_argument("--variant", action="append", default=[], help="preset[:field=value,...]")
    parser.add_argument("--vae", type=Path, action="append", default=[], help="a World Models run to score")
    parser.add_argument(
        "--dreamer",
        type=Path,
        action="append",
        default=[],
        help="a DreamerV3 run to score: its latest world model's posterior reconstructions (the data must "
        "come from the run's camera)",
    )
    parser.add_argument(
        "--autoencoder",
        action="append",
        default=[],
        help="WIDTH[:field=value,...]: also train the tiny preset's CNN encoder and decoder (with those "
        "fields changed) as a plain autoencoder on frames, through a layer of WIDTH units (0: the encoder's "
        "whole output), as a control without the RSSM",
    )
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        help=f"NAME[:field=value,...]: collect heuristic laps with this camera and score each --variant on "
        f"them (names: {', '.join(CAMERAS)}; fields of CameraSpec, rgb as r/g/b)",
    )
    parser.add_argument(
        "--episodes", type=int, default=48, help="--camera: heuristic laps to collect per camera"
    )
    parser.add_argument("--num-envs", type=int, default=16, help="--camera: cars collected side by side")
    parser.add_argument("--max-steps", type=int, default=1000, help="--camera: steps per episode at most")
    parser.add_argument(
        "--num-tracks", type=int, default=None, help="--camera: training tracks to drive (default: all 32)"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("runs/camera-sweep"), help="--camera: results")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batch-length", type=int, default=16)
    parser.add_argument("--heldout-episodes", type=int, default=8, help="the last N episodes are held out")
    parser.add_argument(
        "--heldout-tracks",
        action="store_true",
        help="score on --heldout-episodes heuristic laps of tracks that no training, evaluation or --data "
        "drove (seeds from HELDOUT_TRACK_SEED), in --data's camera, instead of --data's last episodes: the "
        "heuristic drives the same line on a training track every time, so a model that trained on "
        "--data's tracks (or on laps of them in its replay) has seen those very frames",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-dreamer/pixel-probe.json"))
    parser.add_argument(
        "--pictures",
        type=Path,
        default=None,
        help="save each variant's obstacle frames, real over rebuilt, here",
    )
    args = parser.parse_args()
    args.variant = [v for v in args.variant or ["tiny"] if v != "none"]
    return args


def load_episodes(folder: Path) -> list[dict[str, np.ndarray]]:
    """rlcar collect's episodes as train-dreamer replays them: actions in actor space, and obs_t with
    the action a_{t-1} and reward r_t (`align_episode`)."""
    episodes = [replay_steps(load_episode(path)) for path in sorted(folder.glob("episode_*.npz"))]
    if not episodes:
        raise DatasetError(f"no episodes under {folder}: run rlcar collect first (see --help)")
    return episodes


def sample_batch(episodes, rng: np.random.Generator, batch_size: int, length: int) -> dict[str, np.ndarray]:
    picks = []
    for _ in range(batch_size):
        episode = episodes[rng.integers(len(episodes))]
        start = rng.integers(0, len(episode["obs"]) - length + 1)
        picks.append({key: value[start : start + length] for key, value in episode.items()})
    return {key: np.stack([pick[key] for pick in picks]) for key in picks[0]}


def variant_config(variant: str, frame_size: int = 64) -> DreamerConfig:
    preset, _, fields = variant.partition(":")
    overrides = parse_overrides([item for item in fields.split(",") if item])
    if frame_size & (frame_size - 1) and "cnn_min_resolution" not in overrides:
        # A frame that is no power of two (CarRacing's 96) ends the CNN at its 16th: 96 -> 6 x 6.
        overrides["cnn_min_resolution"] = frame_size // 16
    return DreamerConfig.preset(
        preset,
        obs_kind="pixels",
        obs_shape=(frame_size, frame_size, 3),
        action_dim=3,
        **{**CPU_MODEL_DEFAULTS, **overrides},
    )


def jitted_update(loss_fn, optimizer: optax.GradientTransformation):
    """`step(params, opt_state, *inputs) -> (params, opt_state, aux)` for `loss_fn(params, *inputs) ->
    (loss, aux)`: one optimiser step of either model the probe trains."""

    @jax.jit
    def step(params, opt_state, *inputs):
        (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *inputs)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, aux

    return step


def train_world_model(config: DreamerConfig, episodes, args: argparse.Namespace):
    optimizer = world_model_optimizer(config)
    params = init_agent_params(config, jax.random.key(args.seed)).world_model
    opt_state = optimizer.init(params)

    def loss_fn(params, batch, key):
        loss, out = world_model_loss(params, batch, key, config)
        return loss, out.metrics

    step = jitted_update(loss_fn, optimizer)

    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
    losses = []
    clock = None
    for index in range(args.updates):
        key, step_key = jax.random.split(key)
        batch = sample_batch(episodes, rng, args.batch_size, args.batch_length)
        params, opt_state, metrics = step(params, opt_state, batch, step_key)
        if index == 5:  # compiled and warm: time the next updates for an estimate of the whole
            jax.block_until_ready(params)
            clock = time.perf_counter()
        if index == 45 and clock is not None:
            jax.block_until_ready(params)
            per_update = (time.perf_counter() - clock) / 40
            print(f"  about {per_update * args.updates / 60:.1f} min for {args.updates} updates", flush=True)
        if index % 250 == 0 or index == args.updates - 1:
            losses.append({name: float(value) for name, value in metrics.items() if name.startswith("wm/")})
            print(f"  {index:>5} wm/loss {losses[-1]['wm/loss']:.2f} recon {losses[-1]['wm/recon_loss']:.2f}")
    return params, losses


def obstacle_mask(real: np.ndarray, obstacle_rgb: np.ndarray = OBSTACLE_RGB) -> np.ndarray:
    return np.max(np.abs(real.astype(np.float32) - obstacle_rgb), axis=-1) < OBSTACLE_TOLERANCE


def showcase(
    real: np.ndarray, decoded: np.ndarray, obstacle_rgb: np.ndarray = OBSTACLE_RGB
) -> tuple[np.ndarray, np.ndarray]:
    """The frame of an episode with the most obstacle pixels, and its reconstruction."""
    index = int(np.argmax(obstacle_mask(real, obstacle_rgb).sum(axis=(1, 2))))
    return real[index], decoded[index]


def train_autoencoder(spec: str, episodes, args: argparse.Namespace):
    """The world model's own CNN encoder and decoder (the tiny preset's, `spec`'s fields changed), trained
    on single frames with the world model's reconstruction loss, from the whole embedding or through a
    layer of `spec`'s width: what the convolutions can draw without the RSSM, its latents and its KL."""
    import haiku as hk

    from rlcar_core.dreamer.networks import Decoder, Encoder, NormedMLP, preprocess_pixels

    width_text, _, fields = spec.partition(":")
    width = int(width_text)
    config = variant_config(f"tiny:{fields}")

    def forward(obs):
        embed = Encoder(config, name="encoder")(obs)
        if width:
            embed = NormedMLP(1, width, config.layer_norm_eps, name="bottleneck")(embed)
        return Decoder(config, name="decoder")(embed)

    network = hk.without_apply_rng(hk.transform(forward))
    optimizer = world_model_optimizer(config)
    frames = np.concatenate([episode["obs"] for episode in episodes])
    params = network.init(jax.random.key(args.seed), frames[:1])
    opt_state = optimizer.init(params)

    def loss_fn(params, obs):
        # One-step "sequences", so the world model's reconstruction loss (and its recon_focus) applies.
        prediction = network.apply(params, obs)[:, None]
        recon = reconstruction_loss(prediction, preprocess_pixels(obs)[:, None], config)
        return jnp.mean(recon.weighted), jnp.mean(recon.plain)

    step = jitted_update(loss_fn, optimizer)

    rng = np.random.default_rng(args.seed)
    batch = args.batch_size * args.batch_length  # the frames of one world-model batch
    for index in range(args.updates):
        params, opt_state, recon = step(params, opt_state, frames[rng.integers(len(frames), size=batch)])
        if index % 250 == 0 or index == args.updates - 1:
            print(f"  {index:>5} recon {float(recon):.2f}", flush=True)
    decode = jax.jit(lambda obs: jnp.clip(jnp.round((network.apply(params, obs) + 0.5) * 255.0), 0, 255))
    return decode


def frame_sums(
    real: np.ndarray, decoded: np.ndarray, obstacle_rgb: np.ndarray = OBSTACLE_RGB
) -> dict[str, float]:
    """Sums over frames (N, H, W, 3 uint8 or float in 0-255) for `summarise`."""
    real, decoded = real.astype(np.float32), decoded.astype(np.float32)
    squared = np.square((decoded - real) / 255.0).sum(-1)
    obstacle = obstacle_mask(real, obstacle_rgb)
    nearer_obstacle = np.linalg.norm(decoded - obstacle_rgb, axis=-1) < np.linalg.norm(
        decoded - ROAD_RGB, axis=-1
    )
    return {
        "frames": len(real),
        "pixels": int(np.prod(real.shape[:3])),
        "squared": float(squared.sum()),
        "obstacle_squared": float(squared[obstacle].sum()),
        "obstacle_pixels": int(obstacle.sum()),
        "recalled": int((nearer_obstacle & obstacle).sum()),
    }


def summarise(parts: list[dict[str, float]]) -> dict[str, float]:
    total = {key: sum(part[key] for part in parts) for key in parts[0]}
    pixels = max(total["obstacle_pixels"], 1)
    return {
        "frames": total["frames"],
        "recon_mse_per_pixel": total["squared"] / total["pixels"],
        "obstacle_pixels_per_frame": total["obstacle_pixels"] / total["frames"],
        "obstacle_mse_per_pixel": total["obstacle_squared"] / pixels,
        "obstacle_recall": total["recalled"] / pixels,
    }


def dreamer_scores(
    config: DreamerConfig, params, episodes, seed: int, obstacle_rgb: np.ndarray = OBSTACLE_RGB
) -> tuple[dict[str, float], list]:
    """Posterior reconstructions of whole held-out episodes against the camera, and each episode's
    `showcase` frame."""

    @jax.jit
    def reconstruct(obs, action, is_first, key):
        observed = observe(params, obs[None], action[None], is_first[None], key, config)
        return decode_observation(params, observed.features, config)[0]

    parts, shown = [], []
    for index, episode in enumerate(episodes):
        key = jax.random.key(seed + index)
        decoded = np.asarray(reconstruct(episode["obs"], episode["action"], episode["is_first"], key))
        parts.append(frame_sums(episode["obs"], decoded, obstacle_rgb))
        shown.append(showcase(episode["obs"], decoded, obstacle_rgb))
    return summarise(parts), shown


def save_pictures(path: Path, shown: list, zoom: int = 3) -> None:
    """Held-out frames (top row) over their reconstructions, `zoom` times enlarged."""
    from rlcar_core.worldmodels.train_vae import reconstruction_grid, save_png

    real = np.stack([frame for frame, _ in shown]).repeat(zoom, axis=1).repeat(zoom, axis=2)
    decoded = np.stack([frame for _, frame in shown]).repeat(zoom, axis=1).repeat(zoom, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, reconstruction_grid(real, decoded.astype(np.float32) / 255.0))


def vae_scores(run_dir: Path, episodes) -> dict[str, float]:
    """A World Models run's VAE: each frame decoded from the mean of its code."""
    from rlcar_core.io.runs import RunDir
    from rlcar_core.worldmodels.storage import load_vae
    from rlcar_core.worldmodels.vae import make_vae

    config, params, _ = load_vae(RunDir(run_dir), "latest")
    vae = make_vae(config)
    reconstruct = jax.jit(lambda frames: vae.apply.decode(params, vae.apply.encode(params, frames)[0]))
    return summarise(
        [frame_sums(episode["obs"], np.asarray(reconstruct(episode["obs"])) * 255.0) for episode in episodes]
    )


def describe(scores: dict[str, float]) -> str:
    return (
        f"recon MSE/pixel {scores['recon_mse_per_pixel']:.5f}, "
        f"obstacle MSE/pixel {scores['obstacle_mse_per_pixel']:.4f}, "
        f"obstacle recall {100 * scores['obstacle_recall']:.1f} %"
    )


def parse_camera(text: str) -> tuple[str, CameraSpec]:
    """`NAME[:field=value,...]` as (its name, its spec)."""
    return text, camera_of_text(text)


def collect_laps(
    camera: CameraSpec,
    episodes: int,
    num_envs: int,
    max_steps: int,
    seed: int,
    num_tracks: int | None = None,
    track_seeds: list[int] | None = None,
) -> list[dict]:
    """`episodes` heuristic episodes on training tracks (or on `track_seeds`) built with `camera`, as
    `rlcar collect --policy heuristic` records them (each car's first episode of a wave), aligned as
    `load_episodes` does."""
    from rlcar_core.agents.builtin import HeuristicAgent
    from rlcar_core.envs import make_env

    num_envs = max(1, min(num_envs, episodes))
    env = make_env(
        "rlcar",
        obs="both",
        num_envs=num_envs,
        num_tracks=num_tracks,
        track_seeds=track_seeds,
        max_steps=max_steps,
        camera=camera,
    )
    agent = HeuristicAgent()
    laps: list[dict] = []
    try:
        wave = 0
        while len(laps) < episodes:
            obs, _ = env.reset(seed=seed + wave)
            frames, actions, rewards, terms, lapped = [obs["pixels"]], [], [], [], []
            running = np.ones(num_envs, bool)
            ends = np.zeros(num_envs, int)
            while running.any():
                action = agent.act(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                frames.append(obs["pixels"])
                actions.append(action)
                rewards.append(reward)
                terms.append(terminated)
                lapped.append(info["lap_complete"])
                finished = running & (terminated | truncated)
                ends[finished] = len(actions)
                running &= ~finished
            frames, actions = np.stack(frames), np.stack(actions)
            rewards, terms, lapped = np.stack(rewards), np.stack(terms), np.stack(lapped)
            for car in range(num_envs):
                if len(laps) == episodes:
                    break
                end = ends[car]
                episode = align_episode(
                    frames[: end + 1, car],
                    from_env_action(actions[:end, car]),
                    rewards[:end, car],
                    terms[:end, car],
                )
                laps.append({**episode, "lap_complete": bool(lapped[end - 1, car])})
            wave += 1
    finally:
        env.close()
    return laps


SWEEP_COLUMNS = (
    ("camera", "{}"),
    ("px/obstacle", "{:.1f}"),
    ("view m", "{:.1f}"),
    ("obstacle px/frame", "{:.1f}"),
    ("recall %", "{:.1f}"),
    ("recon MSE/px", "{:.5f}"),
    ("obstacle MSE/px", "{:.4f}"),
    ("laps %", "{:.0f}"),
    ("min", "{:.1f}"),
)


def sweep_row(name: str, variant: str, result: dict) -> list[str]:
    values = (
        f"{name} [{variant}]",
        result["camera_facts"]["obstacle_pixels_across"],
        result["camera_facts"]["field_of_view_m"],
        result["obstacle_pixels_per_frame"],
        100 * result["obstacle_recall"],
        result["recon_mse_per_pixel"],
        result["obstacle_mse_per_pixel"],
        100 * result["collect"]["lap_rate"],
        result["minutes"],
    )
    return [form.format(value) for (_, form), value in zip(SWEEP_COLUMNS, values, strict=True)]


def print_table(rows: list[list[str]]) -> None:
    header = [title for title, _ in SWEEP_COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)), flush=True)


def camera_sweep(args: argparse.Namespace, cameras: list[tuple[str, CameraSpec]]) -> None:
    """Each camera: collect its laps, train and score each --variant; a row per camera and variant."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sweep_path = args.out_dir / "sweep.json"
    sweep = json.loads(sweep_path.read_text()) if sweep_path.exists() else {}
    sweep.setdefault("rows", {})
    rows = []
    for name, camera in cameras:
        started = time.perf_counter()
        laps = collect_laps(camera, args.episodes, args.num_envs, args.max_steps, args.seed, args.num_tracks)
        collect_seconds = time.perf_counter() - started
        lap_rate = float(np.mean([episode.pop("lap_complete") for episode in laps]))
        train, heldout = laps[: -args.heldout_episodes], laps[-args.heldout_episodes :]
        facts = {
            "obstacle_pixels_across": camera.obstacle_pixels_across,
            "field_of_view_m": camera.field_of_view,
            "metres_ahead": camera.rows_ahead * camera.metres_per_pixel,
            "frame_size": camera.size,
        }
        print(
            f"{name}: {len(laps)} heuristic episodes ({sum(len(e['obs']) for e in laps)} frames) in "
            f"{collect_seconds / 60:.1f} min; obstacles {facts['obstacle_pixels_across']:.1f} px across",
            flush=True,
        )
        obstacle_rgb = np.asarray(camera.obstacle_rgb, np.float32)
        for variant in args.variant:
            config = variant_config(variant, camera.size)
            print(f"{name} [{variant}]: training the world model for {args.updates} updates", flush=True)
            trained = time.perf_counter()
            params, losses = train_world_model(config, train, args)
            train_seconds = time.perf_counter() - trained
            scores, shown = dreamer_scores(config, params, heldout, args.seed, obstacle_rgb)
            if args.pictures is not None:
                save_pictures(
                    args.pictures / f"{name.replace(':', '_')}_{variant.replace(':', '_')}.png", shown
                )
            result = {
                "camera": camera.to_dict(),
                "camera_facts": facts,
                "variant": variant,
                "updates": args.updates,
                "collect": {
                    "episodes": len(laps),
                    "train_frames": int(sum(len(e["obs"]) for e in train)),
                    "heldout_frames": int(sum(len(e["obs"]) for e in heldout)),
                    "lap_rate": lap_rate,
                    "seconds": collect_seconds,
                },
                "train_seconds": train_seconds,
                "minutes": (time.perf_counter() - started) / 60,
                "losses": losses,
                **scores,
            }
            key = f"{name} [{variant}]@{args.updates}"
            write_json_atomic(args.out_dir / f"{key.replace('/', '_').replace(' ', '_')}.json", result)
            sweep["rows"][key] = result
            write_json_atomic(sweep_path, sweep)
            rows.append(sweep_row(name, variant, result))
            print(f"{name} [{variant}]: {result['minutes']:.1f} min, {describe(scores)}", flush=True)
    print_table(rows)


def main() -> None:
    args = parse_args()
    if args.camera:
        try:
            cameras = [parse_camera(text) for text in args.camera]
        except (ValueError, RlcarError) as error:  # one line and exit code 2, as rlcar's commands answer
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        camera_sweep(args, cameras)
        return
    try:
        episodes = load_episodes(args.data)
    except DatasetError as error:  # one line and exit code 2, as rlcar's commands answer bad data
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    train, heldout = episodes[: -args.heldout_episodes], episodes[-args.heldout_episodes :]
    if args.heldout_tracks:
        camera = camera_of_run(RunDir(args.data.parent), "rlcar")
        seeds = [HELDOUT_TRACK_SEED + index for index in range(args.heldout_episodes)]
        train = episodes
        heldout = collect_laps(
            camera, args.heldout_episodes, args.heldout_episodes, 1000, args.seed, track_seeds=seeds
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("variants", {})
    results.setdefault("vae", {})
    results.update(
        data=str(args.data),
        train_frames=int(sum(len(e["obs"]) for e in train)),
        heldout_frames=int(sum(len(e["obs"]) for e in heldout)),
        heldout_tracks=args.heldout_tracks,
        batch=[args.batch_size, args.batch_length],
    )
    for run_dir in args.vae:
        scores = vae_scores(run_dir, heldout)
        results["vae"][str(run_dir)] = scores
        print(f"VAE of {run_dir}: {describe(scores)}", flush=True)
        write_json_atomic(args.out, results)
    results.setdefault("dreamer", {})
    for run_dir in args.dreamer:
        saved = load_saved_agent(run_dir, "latest")
        scores, shown = dreamer_scores(saved.config, saved.params.world_model, heldout, args.seed)
        results["dreamer"][str(run_dir)] = {"checkpoint": f"ep{saved.step}", **scores}
        if args.pictures is not None:
            save_pictures(args.pictures / f"dreamer_{run_dir.name}_ep{saved.step}.png", shown)
        print(f"DreamerV3 world model of {run_dir} (ep{saved.step}): {describe(scores)}", flush=True)
        write_json_atomic(args.out, results)
    results.setdefault("autoencoders", {})
    for spec in args.autoencoder:
        started = time.perf_counter()
        decode = train_autoencoder(spec, train, args)
        seconds = time.perf_counter() - started
        parts, shown = [], []
        for episode in heldout:
            decoded = np.asarray(decode(episode["obs"])).astype(np.uint8)
            parts.append(frame_sums(episode["obs"], decoded))
            shown.append(showcase(episode["obs"], decoded))
        name = f"autoencoder {spec}@{args.updates}"
        results["autoencoders"][name] = {
            "updates": args.updates,
            "train_seconds": seconds,
            **summarise(parts),
        }
        if args.pictures is not None:
            save_pictures(args.pictures / f"autoencoder_{spec.replace(':', '_')}@{args.updates}.png", shown)
        print(f"{name}: {seconds / 60:.1f} min, {describe(summarise(parts))}", flush=True)
        write_json_atomic(args.out, results)
    for variant in args.variant:
        config = variant_config(variant)
        print(f"{variant}: training the world model for {args.updates} updates", flush=True)
        started = time.perf_counter()
        params, losses = train_world_model(config, train, args)
        seconds = time.perf_counter() - started
        scores, shown = dreamer_scores(config, params, heldout, args.seed)
        if args.pictures is not None:
            save_pictures(args.pictures / f"{variant.replace(':', '_')}@{args.updates}.png", shown)
        results["variants"][f"{variant}@{args.updates}"] = {
            "updates": args.updates,
            "train_seconds": seconds,
            "losses": losses,
            **scores,
        }
        print(f"{variant}: {seconds / 60:.1f} min, {describe(scores)}", flush=True)
        write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
