"""Several processes (hosts) training as one, on JAX's own distributed runtime.

`initialize(options)` calls `jax.distributed.initialize()` once, before any computation. Where the
coordinator, the process count and this process's id come from, first found wins:

1. the options (`--coordinator-address HOST:PORT --num-processes N --process-id I`);
2. the environment: `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (setting
   `JAX_COORDINATOR_ADDRESS` alone turns distributed training on);
3. SLURM (with `--distributed` inside `srun`): JAX's own cluster detection reads `SLURM_*`.

After it, `jax.devices()` lists every process's devices and a `loop.mesh` mesh spans them all: each
process feeds its own rows of the global batch and the update is one global jitted step. On CPUs the
collectives go through gloo. A process that dies is noticed by the coordinator's heartbeats; the
others stop within `heartbeat_timeout` seconds instead of waiting forever in a collective, and
`Watchdog` turns a collective that never returns into one clear error line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from rlcar_core.errors import RlcarError

ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins the others (all None / False: train alone)."""

    distributed: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    heartbeat_timeout: int = 60  # seconds without a peer's heartbeat before everyone stops
    init_timeout: int = 300  # seconds to wait for every process to join

    def resolved(self, environ: Mapping[str, str] = os.environ) -> DistributedConfig | None:
        """The settings with the environment filled in, or None when training alone."""
        address = self.coordinator_address or environ.get(ENV_ADDRESS)
        count = self.num_processes if self.num_processes is not None else _int_env(environ, ENV_COUNT)
        process = self.process_id if self.process_id is not None else _int_env(environ, ENV_ID)
        if not (self.distributed or address or count is not None or process is not None):
            return None
        if address is None and "SLURM_JOB_ID" not in environ:
            raise RlcarError(
                f"distributed training needs a coordinator: --coordinator-address HOST:PORT or "
                f"{ENV_ADDRESS} (or run under SLURM's srun)"
            )
        if address is not None and (count is None or process is None):
            raise RlcarError(
                f"with a coordinator address, give --num-processes and --process-id too (or {ENV_COUNT} "
                f"and {ENV_ID})"
            )
        if count is not None and process is not None and not 0 <= process < count:
            raise RlcarError(f"--process-id must be in 0..{count - 1}, got {process}")
        return dataclasses.replace(
            self, distributed=True, coordinator_address=address, num_processes=count, process_id=process
        )


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise RlcarError(f"{name} must be an integer, got {text!r}") from None


def initialize(config: DistributedConfig, environ: Mapping[str, str] = os.environ) -> bool:
    """Join the other processes (see the module doc); False when training alone. Call it before JAX
    computes anything; calling it again is a no-op."""
    settings = config.resolved(environ)
    if settings is None:
        return False
    import jax
    from jax._src import distributed as jax_distributed

    if jax_distributed.global_state.client is not None:
        return True
    # CPU devices talk through gloo (the default CPU backend has no cross-process collectives).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=settings.coordinator_address,
            num_processes=settings.num_processes,
            process_id=settings.process_id,
            initialization_timeout=settings.init_timeout,
            # Twice the watchdog's limit: a peer lost during a collective is reported by `Watchdog`'s
            # one line first; the heartbeat still ends a process stuck anywhere else.
            heartbeat_timeout_seconds=2 * settings.heartbeat_timeout,
        )
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RlcarError(f"could not join the distributed run: {first}") from None
    return True


def keep_stdout_for_python() -> None:
    """Send what native libraries print to stdout (gloo's connection lines) to stderr, keeping the
    real stdout for Python's writes: a `--json` command's stdout stays one JSON document."""
    sys.stdout.flush()
    python_stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(python_stdout, "w", buffering=1)


def is_main_process() -> bool:
    """True on the process that writes the run's shared files (metrics, config.json, replay index)."""
    import jax

    return jax.process_index() == 0


class Watchdog:
    """Ends the process with one clear line when a guarded call (a collective) outlives `seconds`.

    A process whose peer died would otherwise wait in the collective until gloo's own timeout (many
    minutes). `os._exit` because the waiting thread cannot be interrupted from Python.
    """

    def __init__(self, seconds: float, what: str = "the other processes"):
        self.seconds, self.what = seconds, what

    @contextmanager
    def guard(self, where: str) -> Iterator[None]:
        done = threading.Event()

        def expire() -> None:
            if not done.wait(self.seconds):
                sys.stderr.write(
                    f"error: {self.what} stopped answering for {self.seconds:.0f} s during {where} "
                    "(a process died or hangs); rerun the same command on every process to resume "
                    "from the last checkpoint\n"
                )
                sys.stderr.flush()
                os._exit(1)

        thread = threading.Thread(target=expire, name="rlcar-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
