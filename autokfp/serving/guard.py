"""The predictor's front door: an ASGI middleware in front of KServe's REST app.

KServe's app serves many models and lets clients manage them; an autokfp predictor serves
one model version, loaded at start, to clients it does not authenticate. So the guard:

* **refuses the model repository routes** (``/v2/repository/...``: load and unload): 404
  naming why. Nothing a client sends changes what the server serves.
* **answers the readiness probe itself** (``GET /v2/health/ready``): 200 only while the
  model is ready (``is_ready``, which scores the package's own example now and then),
  else 503. KServe's own probe says ready even when no model is loaded.
* **maps versioned routes** (``/v2/models/<name>/versions/<v>/...``): the served version is
  the unversioned route; any other version is a 404 naming the one served (KServe answers
  501 to every versioned call).
* **sheds big requests while busy**: a body over ``BIG_BODY`` on a model route while the
  worker for big requests has no room (``is_busy``) gets 429 before it is read.
* **caps request bodies on every route**: a body over ``max_bytes`` gets 413 naming the
  limit, whether the client sent ``Content-Length`` or streamed it in chunks; it is never
  buffered beyond the limit nor handed to the app.
* **logs one line per rejected request** (status, method, path and the error, cut to
  ``LOGGED_CHARS``), and cuts an error body longer than ``MAX_ERROR_BODY`` so a huge input
  value is never echoed back. Tracebacks of client errors are dropped from KServe's log
  (``ClientErrorTracebacks``); server errors keep theirs.
* **counts errors**: every answer of 400 or more on a model route that the predictor did
  not count itself (malformed JSON, an unknown model, a too-large body) is counted in
  ``autokfp_request_errors_total`` with ``kind="http_<status>"``. The predictor marks the
  requests it counted (``mark_counted``), so nothing is counted twice.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_BYTES_ENV = "AUTOKFP_MAX_REQUEST_BYTES"
MODEL_ROUTES = ("/v1/models/", "/v2/models/")
REPOSITORY_ROUTES = ("/v2/repository", "/v1/repository")
READY_ROUTE = "/v2/health/ready"
MAX_ERROR_BODY = 2048  # bytes of an error answer; longer ones are cut (they echo input)
BIG_BODY = 256 * 1024  # bytes: a body this large is a big request (refused while busy)
LOGGED_CHARS = 300  # characters of a path or an error message in the one log line
_VERSIONED = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/.*)?$")

log = logging.getLogger("autokfp.serving.requests")

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


def shorten(text: str, limit: int = LOGGED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass
class Served:
    """What the guard needs to know about the one model the server serves."""

    name: str
    version: str
    is_ready: Callable[[], bool]
    count_error: Callable[[str], None]
    # True while the worker for big requests has no room: a big body is then refused (429)
    # before it is read or parsed, so a flood of them costs the event loop almost nothing
    is_busy: Callable[[], bool] = lambda: False


class RequestGuard:
    """Pure ASGI middleware (it keeps streaming and the app's own exception handlers intact)."""

    def __init__(self, app: Any, max_bytes: int, served: Served):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        holder = {"counted": False}
        token = _COUNTED.set(holder)
        answer: dict[str, Any] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = int(message["status"])
                if answer["status"] >= 400:  # hold it: the body may need cutting
                    answer["start"], answer["body"] = message, b""
                    return
            elif message["type"] == "http.response.body":
                if answer.get("sent"):  # the rest of an error body that was cut
                    return
                if "start" in answer:
                    answer["body"] += message.get("body", b"")
                    if message.get("more_body", False) and len(answer["body"]) <= MAX_ERROR_BODY:
                        return
                    await self._send_error(send, answer)
                    answer["sent"] = True
                    return
            await send(message)

        try:
            if path.startswith(REPOSITORY_ROUTES):
                await _json(watch, 404, {"error": (
                    "the model repository routes (load, unload) are disabled: this server "
                    f"serves {self.served.name} v{self.served.version}, loaded at start; "
                    "deploy another version to change it")})
                return
            if path == READY_ROUTE and method in ("GET", "HEAD"):
                await self._ready(watch)
                return
            versioned = _VERSIONED.match(path)
            if versioned:
                rewritten = await self._unversioned(scope, versioned, watch)
                if rewritten is None:
                    return
                scope = rewritten
            if self._big(scope) and path.startswith(MODEL_ROUTES) and self.served.is_busy():
                await _json(watch, 429, {"error": (
                    "the server is busy with large requests; retry shortly, or send smaller "
                    "requests (they are answered at once)")}, close=True, retry=True)
                return
            body = await self._read_body(scope, receive)
            if body is None:
                await self._too_large(watch)
            else:
                await self.app(scope, _replay(body, receive), watch)
        finally:
            _COUNTED.reset(token)
            status = answer.get("status", 500)
            if status >= 400:
                self._log_rejection(method, path, status, answer.get("error", ""))
                if path.startswith(MODEL_ROUTES) and not holder["counted"]:
                    self.served.count_error(f"http_{status}")

    async def _ready(self, send: Send) -> None:
        try:
            ready = bool(self.served.is_ready())
        except Exception:  # noqa: BLE001 - a failing check means not ready, never a 500
            log.exception("the readiness check failed")
            ready = False
        if ready:
            await _json(send, 200, {"ready": True})
        else:
            await _json(send, 503, {"ready": False, "error": (
                f"model {self.served.name} v{self.served.version} is not ready (loading, "
                "stopping, or failing to score its own input example; see the server log)")})

    async def _unversioned(self, scope: Scope, match: re.Match[str], send: Send) -> Scope | None:
        name, version, rest = match["name"], match["version"], match["rest"] or ""
        if name == self.served.name and version == self.served.version:
            path = f"/v2/models/{name}{rest}"
            return {**scope, "path": path, "raw_path": path.encode()}
        if name == self.served.name:
            error = (f"model {name} has no version {shorten(version, 40)} on this server; it "
                     f"serves version {self.served.version} (or omit /versions/...)")
        else:
            error = f"model {shorten(name, 80)} is not served here; this server serves {self.served.name}"
        await _json(send, 404, {"error": error})
        return None

    @staticmethod
    def _big(scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                return value.isdigit() and int(value) > BIG_BODY
        return scope.get("method") == "POST"  # chunked: the size is unknown, assume big

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
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _json(send, 413, {"error": (
            f"the request body is larger than {self.max_bytes} bytes; send fewer rows per "
            f"request (the server's limit is set by {MAX_BYTES_ENV})")}, close=True)

    async def _send_error(self, send: Send, answer: dict[str, Any]) -> None:
        """Send a held error answer, its body cut to ``MAX_ERROR_BODY`` (as valid JSON)."""
        start, body = answer.pop("start"), answer.pop("body")
        error = _error_text(body)
        answer["error"] = error
        if len(body) > MAX_ERROR_BODY:
            body = json.dumps({"error": shorten(error, MAX_ERROR_BODY // 2)}).encode()
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"content-type")]
            headers += [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]
            start = {**start, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    def _log_rejection(method: str, path: str, status: int, error: str) -> None:
        log.warning("rejected %s %s: %d %s", method, shorten(path, 120), status,
                    shorten(" ".join(error.split())))


def _error_text(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[: 4 * LOGGED_CHARS].decode("utf-8", errors="replace")
    if isinstance(decoded, dict):
        for key in ("error", "detail", "message"):
            if key in decoded:
                value = decoded[key]
                return value if isinstance(value, str) else json.dumps(value)[: 4 * LOGGED_CHARS]
    return json.dumps(decoded)[: 4 * LOGGED_CHARS]


async def _json(send: Send, status: int, content: dict[str, Any], close: bool = False,
                retry: bool = False) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
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


class ClientErrorTracebacks(logging.Filter):
    """Drops KServe's ``Exception:`` traceback records for errors a client caused (bad
    input, an unknown or unready model): the guard logs one line for each of those."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

        return not isinstance(record.exc_info[1], (InvalidInput, ModelNotFound, ModelNotReady))


def install(app: Any, max_bytes: int, served: Served) -> None:
    """Put the guard in front of ``app`` (a FastAPI/Starlette app not yet started), once."""
    if getattr(app, "_autokfp_guard", False):
        return
    app.add_middleware(RequestGuard, max_bytes=max_bytes, served=served)
    app._autokfp_guard = True
    kserve_log = logging.getLogger("kserve")
    if not any(isinstance(f, ClientErrorTracebacks) for f in kserve_log.filters):
        kserve_log.addFilter(ClientErrorTracebacks())
