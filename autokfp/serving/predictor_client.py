"""Calls to a served model through KServe's own client, from synchronous code.

``PredictorClient`` wraps ``kserve.InferenceRESTClient`` (v1 ``:predict``, v2 model ready)
for the deploy step's verification and switch checks. The REST client is asynchronous, so
it runs on an event loop of its own in a daemon thread: callers stay synchronous, also when
they are themselves inside a running loop (a notebook), and every call reuses one
keep-alive connection pool.

Every request carries an ``x-request-id`` and a ``ce-id`` (the id KServe's payload logger
gives its events) starting ``VERIFY_REQUEST_PREFIX``, so monitoring leaves these out of
live traffic whoever logged them, and, with a token, ``Authorization: Bearer``; both are
added by an ``httpx.Auth`` flow, which also notes a 401/403 from the mesh so readiness
polling can say what to do instead of waiting out its timeout. The token is never logged.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import httpx

VERIFY_REQUEST_PREFIX = "autokfp-verify-"
T = TypeVar("T")


class _VerifyAuth(httpx.Auth):
    """Bearer token and request id on every request; remembers a refusal."""

    def __init__(self, token: str | None):
        self._token = token
        self.refused: int | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request_id = f"{VERIFY_REQUEST_PREFIX}{uuid.uuid4().hex}"
        request.headers["x-request-id"] = request_id  # what the predictor's own log keeps
        request.headers["ce-id"] = request_id  # what KServe's payload logger names the event
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code in (401, 403):
            self.refused = response.status_code


class PredictorClient:
    """KServe's ``InferenceRESTClient`` for one base URL, called synchronously.

    ``predict`` returns ``(status, body)``: 200 and the v1 answer as a dict, or the error
    status and the body's text (never raises for an HTTP status). ``model_ready`` returns
    whether ``/v2/models/<name>/ready`` answered 2xx; connection failures count as not
    ready. ``refused`` is the last 401/403 seen, if any. Use as a context manager.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0):
        from kserve import InferenceRESTClient, RESTConfig

        self.base_url = base_url.rstrip("/")
        self._auth = _VerifyAuth(token)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="autokfp-predictor-client")
        self._thread.start()
        self._v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=timeout, auth=self._auth))
        self._v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=timeout, auth=self._auth))

    @property
    def refused(self) -> int | None:
        return self._auth.refused

    def _call(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout + 5)

    def predict(self, model: str, instances: list[dict[str, Any]], timeout: float = 60.0
                ) -> tuple[int, Any]:
        async def infer() -> tuple[int, Any]:
            try:
                body = await self._v1.infer(self.base_url, {"instances": instances},
                                            model_name=model, timeout=timeout)
            except httpx.HTTPStatusError as error:
                return error.response.status_code, error.response.text
            return 200, body

        return self._call(infer(), timeout)

    def model_ready(self, model: str, timeout: float = 2.0) -> bool:
        async def ready() -> bool:
            try:
                return bool(await self._v2.is_model_ready(self.base_url, model, timeout=timeout))
            except httpx.TransportError:
                return False

        return self._call(ready(), timeout)

    def close(self) -> None:
        async def close() -> None:
            await self._v1.close()
            await self._v2.close()

        try:
            self._call(close(), 5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> PredictorClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
