"""Test-wide settings: headless, CPU, and one JAX compilation cache shared with CLI subprocesses."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Subprocess tests run the CLI, which compiles the same simulator functions as in-process tests; a
# shared on-disk cache lets them reuse those compilations instead of paying for them twice.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "rlcar-test-jax-cache")
)

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI draws the same examples on every run, so a red build means the change broke something rather
# than that the search was unlucky; local runs keep searching afresh (HYPOTHESIS_PROFILE unset).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def small_bank():
    from rlcar_core.sim.bank import build_track_bank

    return build_track_bank([0, 1])


@pytest.fixture(scope="session")
def eval_bank():
    from rlcar_core.sim.bank import build_track_bank
    from rlcar_core.sim.track import evaluation_seeds

    return build_track_bank(evaluation_seeds(4))


# One tiny DreamerV3 run: two cars, 20-step episodes, 2 x 8 batches at ratio 8 (one update per env
# step of both cars), a checkpoint and a held-out evaluation every 2 episodes.
TINY_DREAMER_RUN = dict(
    size="tiny",
    obs="sensors",
    max_steps=20,
    num_envs=2,
    num_tracks=2,
    train_ratio=8.0,
    batch_size=2,
    batch_length=8,
    prefill_steps=8,
    checkpoint_every=2,
    eval_every=2,
    eval_episodes=2,
)


@pytest.fixture(scope="session")
def tiny_dreamer_run(tmp_path_factory):
    """`(run_dir, summary, records)` of a 2-episode `TINY_DREAMER_RUN` (checkpoint ep2), trained once
    for the DreamerV3 core and CLI tests. Read it only; copy it to change it."""
    from rlcar_core.dreamer.train import train_dreamer

    run_dir = tmp_path_factory.mktemp("dreamer") / "run"
    records = []
    summary = train_dreamer(run_dir, {"episodes": 2, **TINY_DREAMER_RUN}, records.append)
    return run_dir, summary, records


# -- shared helpers (import them: `from conftest import ...`, or use the fixtures) ------------------


def fail_from_call(monkeypatch, module, factory_name: str, fail, from_call: int = 3) -> dict:
    """Patch `module.<factory_name>` (a function that builds an update function, such as
    `rlcar_core.dreamer.train.jitted_update`) so that, from the `from_call`-th update of the next run on,
    the update's output goes through `fail(output)` (raise to interrupt, or return a poisoned output).
    Returns the call counter, {"count": n}."""
    real = getattr(module, factory_name)
    calls = {"count": 0}

    def patched(*args, **kwargs):
        update = real(*args, **kwargs)

        def wrapped(*update_args, **update_kwargs):
            calls["count"] += 1
            out = update(*update_args, **update_kwargs)
            return fail(out) if calls["count"] >= from_call else out

        return wrapped

    monkeypatch.setattr(module, factory_name, patched)
    return calls


@pytest.fixture
def failing_update(monkeypatch):
    """`failing_update(module, "jitted_update", fail, from_call=3)`: see `fail_from_call`."""

    def install(module, factory_name, fail, from_call=3):
        return fail_from_call(monkeypatch, module, factory_name, fail, from_call)

    return install


def fail_learner_from_update(monkeypatch, fail, from_update: int = 3) -> dict:
    """Patch DreamerV3's `train.make_learner` so that once `from_update` updates of the next run have
    run, the last update of each learner call goes through `fail((state, metrics))` (raise to
    interrupt, or return poisoned metrics). The learner runs K updates per call, so this counts
    updates, not calls. Returns the update counter, {"count": n}."""
    from rlcar_core.dreamer import train

    real = train.make_learner
    calls = {"count": 0}

    def patched(*args, **kwargs):
        learner = real(*args, **kwargs)
        real_train = learner.train

        def wrapped(state, replay, first_update, count):
            calls["count"] += count
            state, metrics = real_train(state, replay, first_update, count)
            if calls["count"] < from_update:
                return state, metrics
            state, last = fail((state, metrics[-1]))
            return state, metrics[:-1] + [{name: float(value) for name, value in last.items()}]

        learner.train = wrapped
        return learner

    monkeypatch.setattr(train, "make_learner", patched)
    return calls


def single_error_line(stderr: str) -> str:
    """The one `error: ...` line a failing command prints; fails the test on a traceback or any other
    extra line (Rich progress lines and `run: ...` notes excepted)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_names_nearest_checkpoints(
    message: str, missing: str, nearest: list[str], latest: str | None = None
):
    """The one-line answer for a checkpoint name that does not exist, e.g.
    `no ep81 in runs/x/checkpoints/dreamer; nearest: ep80, ep88; also best (ep120), latest (ep136)`."""
    assert "\n" not in message
    assert f"no {missing} in " in message, message
    assert f"nearest: {', '.join(nearest)}" in message, message
    if latest is not None:
        assert f"latest ({latest})" in message, message


@pytest.fixture
def unknown_checkpoint_is_named():
    """The shared check behind each `test_unknown_checkpoint_lists_the_existing_ones`."""
    return assert_names_nearest_checkpoints
