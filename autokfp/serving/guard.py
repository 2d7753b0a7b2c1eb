"""An ASGI middleware in front of KServe's REST app: a byte cap on request bodies, and an
error count that also sees what KServe rejects before the model is called.

* A ``POST`` body larger than ``max_bytes`` gets ``413`` with a JSON ``error`` naming the
  limit, whether the client sent ``Content-Length`` or streamed the body in chunks; the
  body is never handed to the app (nor buffered beyond the limit).
* Every answer of ``400`` or more on a model route (``/v1/models/…``, ``/v2/models/…``)
  that the predictor did not count itself (malformed JSON, a body KServe cannot parse, an
  unknown model, a too-large body) is counted in ``autokfp_request_errors_total`` with
  ``kind="http_<status>"``. The predictor marks the requests it counted
  (``mark_counted``), so nothing is counted twice.
"""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_BYTES_ENV = "AUTOKFP_MAX_REQUEST_BYTES"
MODEL_ROUTES = ("/v1/models/", "/v2/models/")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# one mutable holder per request: a copy of the context (threads, tasks) still shares it
_COUNTED: contextvars.ContextVar[dict[str, bool] | None] = contextvars.ContextVar(
    "autokfp_error_counted", default=None)


def mark_counted() -> None:
    """The predictor counted this request's error itself: the guard must not count it again."""
    holder = _COUNTED.get()
    if holder is not None:
        holder["counted"] = True


def max_request_bytes(value: str | int | None = None) -> int:
    """The body limit: ``value``, else ``$AUTOKFP_MAX_REQUEST_BYTES``, else 16 MiB."""
    raw = value if value is not None else os.environ.get(MAX_BYTES_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_REQUEST_BYTES
    from autokfp.errors import ConfigError

    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{MAX_BYTES_ENV}={raw!r} is not a whole number of bytes; "
                         "set it to e.g. 16777216 (16 MiB)") from None
    if limit < 1024:
        raise ConfigError(f"{MAX_BYTES_ENV}={limit} is below 1024 bytes; no request would fit")
    return limit


class RequestGuard:
    """Pure ASGI middleware (it keeps streaming and the app's own exception handlers intact)."""

    def __init__(self, app: Any, max_bytes: int, count_error: Callable[[str], None]):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.count_error = count_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(MODEL_ROUTES):
            await self.app(scope, receive, send)
            return
        holder = {"counted": False}
        token = _COUNTED.set(holder)
        status: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            if scope.get("method") == "POST":
                body = await self._read_body(scope, receive)
                if body is None:
                    await self._too_large(watch)
                else:
                    await self.app(scope, _replay(body, receive), watch)
            else:
                await self.app(scope, receive, watch)
        finally:
            _COUNTED.reset(token)
            code = status.get("code", 500)
            if code >= 400 and not holder["counted"]:
                self.count_error(f"http_{code}")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once it is known to exceed the limit."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_bytes:
                        return None
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"error": (
            f"the request body is larger than {self.max_bytes} bytes; send fewer rows per "
            f"request (the server's limit is set by {MAX_BYTES_ENV})")}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, upstream: Receive) -> Receive:
    """A ``receive`` that hands the app the already-read body, then the server's own
    messages (a real disconnect), so the app's disconnect checks keep working."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


def install(app: Any, max_bytes: int, count_error: Callable[[str], None]) -> None:
    """Put the guard in front of ``app`` (a FastAPI/Starlette app not yet started), once."""
    if getattr(app, "_autokfp_guard", False):
        return
    app.add_middleware(RequestGuard, max_bytes=max_bytes, count_error=count_error)
    app._autokfp_guard = True
