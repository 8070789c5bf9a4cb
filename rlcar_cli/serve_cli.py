"""``rlcar serve``: the web app over the same core as the CLI (runs, charts, drive, race, dream, train)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlcar_cli.output import stderr_console, user_errors


def serve_command(
    root: Annotated[
        Path, typer.Option("--root", help="Folder of runs to show and serve (nothing outside).")
    ] = Path("runs"),
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; anything but loopback requires an access token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    fps: Annotated[
        int,
        typer.Option(
            "--fps",
            help="Frames per second of the live view (physics keeps the env's rate: 10 Hz, CarRacing 50 Hz).",
        ),
    ] = 30,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="Access token to require (default: a new one when --host is not loopback)."
        ),
    ] = None,
) -> None:
    """Serve the web app: run charts, live driving, races against the AI, dreams, training and videos."""
    with user_errors():
        import os

        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames are drawn off-screen
        from rlcar_core.apps.serve.app import ServeConfig, create_app
        from rlcar_core.apps.serve.security import needs_token, new_token

        if token is None and needs_token(host):
            token = new_token()
        config = ServeConfig(root=root, host=host, port=port, token=token, fps=fps)
        app = create_app(config, announce=lambda message: stderr_console().print(f"rlcar serve: {message}"))
        import uvicorn

        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
        stderr_console().print(f"rlcar serve: {root.resolve()} at [bold]{url}[/] (Ctrl-C stops)")
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=3,
            ws_max_size=1 << 16,
        )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``rlcar`` app."""
    app.command("serve")(serve_command)
