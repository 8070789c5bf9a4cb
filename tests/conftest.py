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


@pytest.fixture(scope="session")
def small_bank():
    from rlcar_core.sim.bank import build_track_bank

    return build_track_bank([0, 1])


@pytest.fixture(scope="session")
def eval_bank():
    from rlcar_core.sim.bank import build_track_bank
    from rlcar_core.sim.track import evaluation_seeds

    return build_track_bank(evaluation_seeds(4))
