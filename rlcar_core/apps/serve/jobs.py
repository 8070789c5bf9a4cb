"""Child processes the page starts: ``rlcar train-dreamer``, ``export-video`` and ``dream``.

Each job runs an ``rlcar`` subcommand (``python -m rlcar_cli.main``) whose argv is built only from
fields checked by the same code the CLI's options go through; no user string reaches a shell. A
trainer is stopped with SIGINT, exactly like Ctrl-C in a terminal: it saves, exits 130 and can be
resumed by the page or by the same shell command.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rlcar_core.errors import RlcarError

TRAIN, VIDEO, DREAM = "train", "video", "dream"
STOP_GRACE_SECONDS = 60.0  # a trainer finishing its save after SIGINT
LOG_TAIL_BYTES = 4096


class JobConflict(RlcarError):
    """The page already runs a trainer on this run."""


class TooManyJobs(RlcarError):
    """As many jobs run as the machine's cores allow: the page answers 429 until one ends."""


def default_job_limit() -> int:
    """Jobs at once: each trainer or renderer keeps about a core busy (2 on a 2-core machine)."""
    return max(2, (os.cpu_count() or 2) // 2)


@dataclasses.dataclass
class Job:
    id: str
    kind: str
    run: str  # run name below the root ("" for videos of built-in drivers)
    argv: list[str]
    process: subprocess.Popen
    log_path: Path
    output: str | None = None  # a video's path below the root
    started: float = dataclasses.field(default_factory=time.time)
    stop_requested: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def message(self, stopped: bool = False) -> str:
        """The child's own one-line error (``error: ...``) or its last line of output; for a job
        stopped on request, its last line without an ``error:`` (a stop is not a failure)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [line.strip() for line in lines if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        if stopped:
            last = (lines or [""])[-1]
            return last.removeprefix("error: ")[:300]
        return (errors or lines or [""])[-1][:300]

    def to_dict(self) -> dict[str, Any]:
        code = self.process.poll()
        if code is None:
            state = "stopping" if self.stop_requested else "running"
        elif code == 0:
            state = "finished"
        elif code == 130:
            state = "stopped"
        else:
            state = "failed"
        return {
            "id": self.id,
            "kind": self.kind,
            "run": self.run,
            "state": state,
            "exit_code": code,
            "message": self.message(stopped=state == "stopped"),
            "output": self.output,
            "started": self.started,
            "command": " ".join(["rlcar", *self.argv[3:]]),
        }


def rlcar_argv(*args: str) -> list[str]:
    """The same interpreter running the CLI module: works in a venv without the entry point on PATH."""
    return [sys.executable, "-m", "rlcar_cli.main", *args]


class JobManager:
    """Starts, lists and stops the server's child processes; ``shutdown`` stops them all cleanly."""

    def __init__(self, log_dir: Path, max_running: int | None = None):
        self.log_dir = log_dir
        self.max_running = max_running or default_job_limit()
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, kind: str, run: str, args: list[str], output: str | None = None) -> Job:
        if any(not isinstance(arg, str) for arg in args):
            raise TypeError("argv must be strings")
        with self._lock:
            if kind == TRAIN and any(
                j.kind == TRAIN and j.run == run and j.running for j in self.jobs.values()
            ):
                raise JobConflict(f"{run} is already training from this page; stop it first")
            running = sum(j.running for j in self.jobs.values())
            if running >= self.max_running:
                raise TooManyJobs(
                    f"{running} jobs already run, the most this machine takes at once "
                    f"({self.max_running}); wait for one to end or stop one"
                )
            job_id = str(next(self._ids))
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"job-{os.getpid()}-{job_id}-{kind}.log"
            argv = rlcar_argv(*args)
            with open(log_path, "wb") as log:
                # A new session: Ctrl-C in the server's terminal reaches only the server, which then
                # sends each child exactly one SIGINT (a second one would mean "stop now, don't save").
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            job = Job(job_id, kind, run, argv, process, log_path, output)
            self.jobs[job_id] = job
            return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def stop(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.running and not job.stop_requested:
            job.stop_requested = True
            job.process.send_signal(signal.SIGINT)
        return job

    def running_count(self) -> int:
        return sum(job.running for job in self.jobs.values())

    def listing(self) -> list[dict[str, Any]]:
        return [job.to_dict() for job in sorted(self.jobs.values(), key=lambda j: -j.started)]

    def shutdown(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """SIGINT every running child, wait for each to save and exit, kill what outlives the grace."""
        running = [job for job in self.jobs.values() if job.running]
        for job in running:
            if not job.stop_requested:
                job.stop_requested = True
                job.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace_seconds
        for job in running:
            try:
                job.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
