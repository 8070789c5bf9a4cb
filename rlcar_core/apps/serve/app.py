"""The Starlette app behind ``rlcar serve``: JSON API, file downloads, the live-drive WebSocket, the page.

Why Starlette + uvicorn: one small, well-kept ASGI stack gives plain HTTP routes and WebSockets (keys in,
JPEG frames out on one connection) without a framework on top; uvicorn is its reference server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from rlcar_core.apps.serve import forms, runs_view
from rlcar_core.apps.serve.jobs import DREAM, TRAIN, VIDEO, JobConflict, JobManager, TooManyJobs
from rlcar_core.apps.serve.leaderboard import Leaderboard
from rlcar_core.apps.serve.paths import OutsideRoot, resolve_under
from rlcar_core.apps.serve.security import AccessGuard
from rlcar_core.errors import RlcarError

STATIC_DIR = Path(__file__).parent / "static"
PLAY_DIR = "play"  # human runs go to <root>/play/human/, where `play --manual` puts them by default
DEFAULT_FPS = 30
MAX_FPS = 60
MAX_LIVE_STEPS = 100_000  # a live episode's step limit (CarRacing-v3's own is 1000)


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    root: Path = Path("runs")
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required on every /api, /files and /ws request when set
    fps: int = DEFAULT_FPS  # frames per second of the live view (physics stays at the env's rate)
    stop_grace_seconds: float = 60.0  # how long Ctrl-C waits for each child trainer to save
    max_jobs: int | None = None  # child jobs at once (None: half the cores, at least 2)

    def validate(self) -> None:
        if not 1 <= self.port <= 65535:
            raise RlcarError(f"--port must be between 1 and 65535, got {self.port}")
        if not 1 <= self.fps <= MAX_FPS:
            raise RlcarError(f"--fps must be between 1 and {MAX_FPS}, got {self.fps}")
        if self.root.exists() and not self.root.is_dir():
            raise RlcarError(f"--root {self.root} is not a directory")


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Server:
    """State shared by the routes: the root, the child jobs, the leaderboard, open live sessions."""

    def __init__(self, config: ServeConfig):
        config.validate()
        self.config = config
        self.root = config.root.resolve()
        self.jobs = JobManager(self.root / ".serve", config.max_jobs)
        self.leaderboard = Leaderboard(self.root)
        self.closing = asyncio.Event()

    # --- runs and charts ----------------------------------------------------------------------------

    def runs(self, request: Request) -> JSONResponse:
        rows = runs_view.list_run_rows(self.root) if self.root.is_dir() else []
        return JSONResponse({"root": str(self.root), "runs": rows, "drivers": runs_view.drivers(rows)})

    def metrics(self, request: Request) -> Response:
        from rlcar_core.io.runs import RunDir

        name = request.query_params.get("run", "")
        since = _whole_number(request.query_params.get("since", "0"))
        if since is None:
            return error("since must be a whole number (0-9, at most 12 digits)")
        shown = name if len(name) <= 80 else name[:80] + "..."
        try:
            path = resolve_under(self.root, name)
        except OutsideRoot:
            return error(f"no run {shown!r}", 404)
        if not path.is_dir():
            return error(f"no run {shown!r}", 404)
        return JSONResponse(runs_view.metric_series(RunDir(path), since))

    def videos(self, request: Request) -> JSONResponse:
        rows = runs_view.list_run_rows(self.root) if self.root.is_dir() else []
        return JSONResponse({"videos": runs_view.videos_on_disk(self.root, [row["name"] for row in rows])})

    def leaderboard_view(self, request: Request) -> JSONResponse:
        """Every board, or with ``env`` (and ``track``, default 0) one env's track, ranked."""
        from rlcar_core.apps.serve.leaderboard import RANKED_BY
        from rlcar_core.envs.names import EnvName

        env = request.query_params.get("env")
        if env is None:
            return JSONResponse(self.leaderboard.read())
        env = EnvName.parse(env[:40])
        track = forms.track_number(dict(request.query_params))
        key, higher_first = RANKED_BY[env]
        return JSONResponse(
            {
                "env": env.value,
                "track": track,
                "ranked_by": key,
                "higher_is_better": higher_first,
                "entries": self.leaderboard.entries(env, track),
            }
        )

    def file(self, request: Request) -> Response:
        relative = request.path_params["path"]
        try:
            path = resolve_under(self.root, relative)
        except OutsideRoot:
            return error("not found", 404)
        if not path.is_file():
            return error("not found", 404)
        return FileResponse(path, filename=path.name if request.query_params.get("download") else None)

    # --- jobs ---------------------------------------------------------------------------------------

    async def form(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RlcarError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RlcarError("the request body must be a JSON object")
        return body

    async def train(self, request: Request) -> JSONResponse:
        body = await self.form(request)
        name, argv = await run_in_threadpool(forms.training_argv, self.root, body)
        self.check_writer_free(self.root / name)
        job = self.jobs.start(TRAIN, name, argv)
        return JSONResponse(job.to_dict(), status_code=202)

    @staticmethod
    def check_writer_free(path: Path) -> None:
        """Refuse at once when another process trains this run; the child's own lock still decides."""
        from rlcar_core.io.runs import RunDir

        if path.is_dir():
            with RunDir(path).writer_lock("rlcar serve (checking the run is free)"):
                pass

    async def video(self, request: Request) -> JSONResponse:
        body = await self.form(request)
        run, output, argv = await run_in_threadpool(forms.video_argv, self.root, body, _stamp())
        return JSONResponse(self.jobs.start(VIDEO, run, argv, output).to_dict(), status_code=202)

    async def dream(self, request: Request) -> JSONResponse:
        body = await self.form(request)
        run, output, argv = await run_in_threadpool(forms.dream_argv, self.root, body, _stamp())
        return JSONResponse(self.jobs.start(DREAM, run, argv, output).to_dict(), status_code=202)

    def job_list(self, request: Request) -> JSONResponse:
        return JSONResponse({"jobs": self.jobs.listing()})

    async def stop_job(self, request: Request) -> JSONResponse:
        if await request.body():  # an empty body is fine; anything else must be a JSON object
            await self.form(request)
        try:
            job = self.jobs.stop(request.path_params["job_id"])
        except KeyError:
            return error("no such job", 404)
        return JSONResponse(job.to_dict())

    # --- live driving -------------------------------------------------------------------------------

    def live_config(self, params) -> Any:
        from rlcar_core.apps.run_identity import resolve_driver
        from rlcar_core.apps.serve.live import LiveConfig
        from rlcar_core.envs.names import EnvName

        form = dict(params)
        agent = form.get("agent") or None
        env = EnvName.parse(str(form["env"])[:40]) if form.get("env") else None
        run_dir, label = None, agent or ""
        checkpoint = "best"
        if agent is not None:
            from rlcar_core.agents import AGENT_NAMES, LEARNED_AGENT_LOADERS

            if agent not in AGENT_NAMES:
                raise RlcarError(f"unknown driver {agent!r}; choose one of {', '.join(AGENT_NAMES)}")
            if agent in LEARNED_AGENT_LOADERS:
                run, run_dir = forms.existing_run(self.root, form)
                checkpoint = forms.checkpoint_name(form)
                label = f"{agent} {run}:{checkpoint}"
        # A learned agent drives the env its run was trained on; an env given that contradicts it is refused.
        env = resolve_driver(agent, env, run_dir, default_agent=None).env
        max_steps = _whole_number(form.get("max_steps", "1000"))
        if max_steps is None or not 1 <= max_steps <= MAX_LIVE_STEPS:
            raise RlcarError(f"max_steps must be a whole number from 1 to {MAX_LIVE_STEPS}")
        return LiveConfig(
            env=env,
            agent=agent,
            run_dir=run_dir,
            checkpoint=checkpoint,
            track=forms.track_number(form),
            race=form.get("race") in ("1", "true"),
            max_steps=max_steps,
            label=label,
        )

    async def drive(self, websocket: WebSocket) -> None:
        from rlcar_core.apps.serve.live import LiveDrive

        def prepare():
            config = self.live_config(websocket.query_params)
            return functools.partial(LiveDrive, config, self.root / PLAY_DIR, self.leaderboard)

        def stream(live, worker):
            fps = _int_param(websocket.query_params.get("fps"), self.config.fps, 1, MAX_FPS)
            return self.stream(websocket, live, worker, fps)

        await self.worker_socket(websocket, "rlcar-live", prepare, stream, (RlcarError, OSError, ValueError))

    async def worker_socket(self, websocket: WebSocket, name: str, prepare, stream, refused) -> None:
        """A live socket's life: accept; `prepare()` (on the event loop: checks the query) returns the
        session's maker, which runs on the socket's own worker thread, as does everything that touches
        the env and the agent afterwards; a refused session gets one message; `stream(session, worker)`
        runs until the page goes; the session is closed on its thread."""
        await websocket.accept()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        loop = asyncio.get_running_loop()
        session = None
        try:
            try:
                session = await loop.run_in_executor(worker, prepare())
            except refused as problem:
                await _refuse_socket(websocket, problem)
                return
            await stream(session, worker)
        except WebSocketDisconnect:
            pass
        finally:
            if session is not None:
                await loop.run_in_executor(worker, session.close)
            worker.shutdown(wait=False)

    async def stream(self, websocket: WebSocket, live, worker, fps: int) -> None:
        """Frames out at ``fps`` while keys come in; a key that changes the action wakes the loop."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        async def read_keys() -> None:
            while True:
                message = json.loads(await websocket.receive_text())
                if not isinstance(message, dict):
                    continue
                if message.get("type") == "key":
                    live.key(str(message.get("key", "")), bool(message.get("down")))
                elif message.get("type") in ("toggle", "reset"):
                    live.command(message["type"])
                elif message.get("type") == "blur":
                    live.release_all()
                woken.set()

        reader = asyncio.create_task(read_keys())
        period = 1.0 / fps
        try:
            next_frame = time.monotonic()
            while not self.closing.is_set() and not reader.done():
                woken.clear()  # a key that lands while this frame is drawn wakes the next one at once
                await loop.run_in_executor(worker, live.tick)
                frames, meta = await loop.run_in_executor(worker, live.render_panes)
                meta["sent"] = time.time()
                await websocket.send_text(json.dumps(meta))
                for jpeg in frames:  # meta["panes"] of them: yours, then the agent's in a CarRacing race
                    await websocket.send_bytes(jpeg)
                next_frame = max(next_frame + period, time.monotonic())
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=max(0.0, next_frame - time.monotonic()))
            if self.closing.is_set():
                await websocket.close(code=1001)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await reader

    # --- the latent space, live ------------------------------------------------------------------

    def latent_config(self, params) -> Any:
        from rlcar_core.apps.serve.latent import KINDS, LatentConfig

        form = dict(params)
        run, run_dir = forms.existing_run(self.root, form)
        kind = forms.run_kind(run_dir)
        if kind not in KINDS:
            raise RlcarError(
                f"{run} is not a World Models or DreamerV3 run: the latent view shows a model's z and h"
            )
        return LatentConfig(
            run_dir=run_dir, kind=kind, checkpoint=forms.checkpoint_name(form), track=forms.track_number(form)
        )

    async def latent(self, websocket: WebSocket) -> None:
        """A learned car: its state (frames, z, h, action) as JSON each decision; pause and z edits in."""
        from rlcar_core.apps.serve.latent import LatentView

        def prepare():
            return functools.partial(LatentView, self.latent_config(websocket.query_params))

        def stream(view, worker):
            return self.stream_latent(websocket, view, worker)

        # Any failure to build the view (a checkpoint that won't load) is a message, not a 1011.
        await self.worker_socket(websocket, "rlcar-latent", prepare, stream, Exception)

    async def stream_latent(self, websocket: WebSocket, view, worker) -> None:
        """Driving: one state per physics step. Paused: one state per batch of commands (slider moves)."""
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue = asyncio.Queue()

        async def read_commands() -> None:
            while True:
                try:
                    message = json.loads(await websocket.receive_text())
                except (json.JSONDecodeError, TypeError):
                    continue
                if isinstance(message, dict):
                    commands.put_nowait(message)

        reader = asyncio.create_task(read_commands())
        try:
            next_step = time.monotonic()
            await websocket.send_text(json.dumps(await loop.run_in_executor(worker, view.state)))
            while not self.closing.is_set() and not reader.done():
                timeout = None if view.paused else max(0.0, next_step - time.monotonic())
                batch = []
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    batch.append(await asyncio.wait_for(commands.get(), timeout=timeout))
                while not commands.empty():
                    batch.append(commands.get_nowait())
                for message in batch:
                    await loop.run_in_executor(worker, view.command, message)
                if not batch:
                    await loop.run_in_executor(worker, view.tick)
                    next_step = max(next_step + view.step_seconds, time.monotonic())
                await websocket.send_text(json.dumps(await loop.run_in_executor(worker, view.state)))
            if self.closing.is_set():
                await websocket.close(code=1001)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await reader

    # --- the page -----------------------------------------------------------------------------------

    def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-store"})

    def not_found(self, request: Request, problem: Exception) -> Response:
        return error("not found", 404)


async def _refuse_socket(websocket: WebSocket, problem: Exception) -> None:
    """One line the page shows where the frame would be, then a close (4400) it also reads."""
    message = str(problem).splitlines()[0][:300] if str(problem) else type(problem).__name__
    await websocket.send_text(json.dumps({"error": message}))
    await websocket.close(code=4400, reason=message.encode()[:120].decode(errors="ignore"))


def _whole_number(value: str | None) -> int | None:
    """``value`` as an int when it is 1-12 ASCII digits (``'²'.isdigit()`` is true, ``int('²')`` fails)."""
    if value is None or not re.fullmatch(r"[0-9]{1,12}", value):
        return None
    return int(value)


def _int_param(value: str | None, default: int, low: int, high: int) -> int:
    number = _whole_number(value)
    return default if number is None else min(max(number, low), high)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def create_app(config: ServeConfig, announce: Callable[[str], None] | None = None) -> Any:
    """The ASGI app: routes wrapped in the access guard; Ctrl-C stops child jobs cleanly.
    ``announce`` (the CLI's stderr) hears what a stop waits for, so the server is not silent then."""
    server = Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        server.closing.set()
        running = server.jobs.running_count()
        if running and announce is not None:
            announce(
                f"stopping {running} job{'s' if running > 1 else ''}: each saves first "
                f"(up to {config.stop_grace_seconds:.0f} s)"
            )
        await run_in_threadpool(server.jobs.shutdown, config.stop_grace_seconds)

    async def bad_input(request: Request, problem: RlcarError) -> Response:
        from rlcar_core.io.runs import RunInUse

        if isinstance(problem, TooManyJobs):
            return error(str(problem), 429)
        return error(str(problem), 409 if isinstance(problem, RunInUse | JobConflict) else 400)

    async def refused_by_os(request: Request, problem: OSError) -> Response:
        # The file system's own refusal (a name too long, a permission): one line, never a 500.
        return error(f"the file system refused: {problem.strerror or type(problem).__name__}", 400)

    async def outside_root(request: Request, problem: OutsideRoot) -> Response:
        return error("not found", 404)

    routes = [
        Route("/", server.index),
        Route("/api/runs", server.runs),
        Route("/api/metrics", server.metrics),
        Route("/api/leaderboard", server.leaderboard_view),
        Route("/api/videos", server.videos),
        Route("/api/jobs", server.job_list),
        Route("/api/jobs/{job_id}/stop", server.stop_job, methods=["POST"]),
        Route("/api/train", server.train, methods=["POST"]),
        Route("/api/video", server.video, methods=["POST"]),
        Route("/api/dream", server.dream, methods=["POST"]),
        Route("/files/{path:path}", server.file),
        WebSocketRoute("/ws/drive", server.drive),
        WebSocketRoute("/ws/latent", server.latent),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RlcarError: bad_input,
            OutsideRoot: outside_root,
            OSError: refused_by_os,
            404: server.not_found,
        },
    )
    app.state.server = server
    return AccessGuard(app, config.token)
