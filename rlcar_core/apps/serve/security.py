"""Who may talk to the server: an access token when it listens beyond this machine, same-origin
requests only, and JSON bodies for anything that changes state (so a plain cross-site form can't)."""

from __future__ import annotations

import hmac
import json
import secrets
from urllib.parse import parse_qs, urlsplit

TOKEN_HEADER = "x-rlcar-token"
# The page and its scripts are public (they hold no data); everything that reads or changes runs is not.
GUARDED_PREFIXES = ("/api/", "/files/", "/ws/")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def needs_token(host: str) -> bool:
    """Bound to loopback only: no token (like Jupyter's --ip=localhost default); otherwise always."""
    return host not in LOOPBACK_HOSTS


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def loopback_host(scope) -> bool:
    """The Host header names this machine (localhost, 127.0.0.1, [::1], any port), or is absent.

    Without a token the server trusts whoever reaches loopback; a page on evil.example whose name was
    re-pointed at 127.0.0.1 (DNS rebinding) reaches it too, but its requests carry ``Host:
    evil.example``. Jupyter refuses those the same way."""
    host = _header(scope, b"host")
    if host is None:
        return True  # HTTP/1.0 clients; every browser sends Host
    try:
        name = urlsplit("//" + host).hostname
    except ValueError:
        return False
    return name in LOOPBACK_HOSTS


def same_origin(scope) -> bool:
    """Browsers send Origin on cross-site requests and on every WebSocket; it must name this server."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True  # not a browser (curl, scripts): the token, when required, still applies
    return urlsplit(origin).netloc == (_header(scope, b"host") or "")


def presented_token(scope) -> str | None:
    token = _header(scope, TOKEN_HEADER.encode())
    if token:
        return token
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class AccessGuard:
    """ASGI middleware in front of the app: token, origin and body-type checks for HTTP and WebSocket."""

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        changes_state = scope["type"] == "websocket" or method not in ("GET", "HEAD", "OPTIONS")
        guarded = path.startswith(GUARDED_PREFIXES)
        if guarded and self.token is not None:
            given = presented_token(scope) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return await _refuse(scope, receive, send, 403, "missing or wrong access token")
        if self.token is None and not loopback_host(scope):
            return await _refuse(
                scope, receive, send, 403, "Host is not this machine (localhost, 127.0.0.1 or [::1])"
            )
        if changes_state and not same_origin(scope):
            return await _refuse(scope, receive, send, 403, "cross-origin request refused")
        if scope["type"] == "http" and changes_state:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip()
            if content_type != "application/json":
                return await _refuse(scope, receive, send, 415, "send a JSON body (application/json)")
        return await self.app(scope, receive, send)


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # the websocket.connect event
        await send({"type": "websocket.close", "code": 4000 + status, "reason": message})
        return
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
