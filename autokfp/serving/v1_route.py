"""A direct route for the predictor's most frequent call: v1 ``:predict`` with a JSON body.

KServe answers ``POST /v1/models/<name>:predict`` through three generic layers: FastAPI's
(the endpoint's parameters solved and validated on every call), KServe's ``DataPlane``
(a model registry lookup, CloudEvent checks, decode, encode) and ``Model.__call__`` (the
pre- and postprocess hooks, ``inspect`` checks, and three latency histograms with their
timers), then the answer through FastAPI's deprecated ``ORJSONResponse``. A py-spy
profile under load put them at about a quarter of the server's samples; going around them
halved the CPU of a single-row request (0.40 to 0.20 ms in scripts/benchmark_serving.py;
docs/serving.md, "Speed"). An autokfp predictor serves one model whose ``predict`` does
its own checks and metrics, so for the usual request none of it is needed.

``install`` puts one Starlette route in front of KServe's routes. It matches only what
KServe would treat as a plain JSON v1 prediction for the served model: ``POST``, the
served model's own path, no ``content-type`` or ``application/json``, and no binary
CloudEvent headers (``ce-*``). It then does what KServe's path does for such a request:

* not ready (``is_ready``, the readiness probe's check) → ``ModelNotReady`` (503);
* the body parsed with orjson; not JSON → ``InvalidInput`` (400) with KServe's message;
* a structured CloudEvent body (``specversion``, ``data``, ...) → its ``data`` is the
  request, answered as plain JSON (KServe answers a CloudEvent only to CloudEvent media
  types and headers, which this route does not match);
* KServe's ``Model.validate``, then ``predict(body, headers)``, its errors raised to the
  app's exception handlers, so each error answer is the one KServe's route gives;
* the answer serialised by orjson with the options ``ORJSONResponse`` uses.

With ``AUTOKFP_AB_TARGET`` and ``AUTOKFP_AB_PERCENT`` set (a Standard-mode A/B split,
``ABSplit``), that share of these requests is answered by the other version instead, and
so is that share of v2 ``infer`` requests with a JSON body (``SplitInferRoute``, in front
of KServe's v2 route, which answers the rest as before).

Everything else (another model name, another method, CloudEvents, other media types,
v2 and ``:explain``) goes on to KServe's routes unchanged. The request guard in front
(body limit, busy shedding, error counting) sees every request either way. What the
route leaves out: KServe's ``request_{preprocess,predict,postprocess}_seconds``
histograms for these requests (``autokfp_predict_seconds`` times them; no dashboard or
rule here reads KServe's) and KServe's debug-level timing lines.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import orjson
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.utils.utils import is_structured_cloudevent
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

V1_PREDICT = "/v1/models/{model_name}:predict"
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
AB_TARGET_ENV = "AUTOKFP_AB_TARGET"  # the other arm's base URL (the candidate InferenceService)
AB_PERCENT_ENV = "AUTOKFP_AB_PERCENT"  # the share of v1 predictions it answers, 1-99
AB_TIMEOUT_SECONDS = 10.0
# after the other version could not be reached (or timed out), this version answers alone
# for this long, then one request at a time tries the other version again until one gets
# through: a hung candidate delays only the requests in flight when it hung and one probe
# per pause, not ``percent`` % of all users by up to AB_TIMEOUT_SECONDS each
AB_PAUSE_SECONDS = 5.0

FORWARDED = Counter("autokfp_ab_forwarded_total",
                    "v1 predictions of a Standard-mode A/B split sent to the other version, by "
                    "outcome (answered, or error: then this version answered)",
                    ["model", "version", "outcome"])


class ABSplit:
    """The predictor side of a Standard-mode A/B split (``deploy.strategy: ab``, see
    docs/serving.md): ``percent`` % of the v1 predictions this route takes (and of the v2
    ``infer`` requests ``SplitInferRoute`` takes), drawn at random per request, are answered
    by the other version at ``target`` (the verified candidate
    InferenceService), its answer (``model_version`` included) passed back as it came.
    The request keeps its ``x-request-id``; this predictor neither logs nor scores it, so
    each version's prediction log holds the rows that version answered (the A/B outcome
    test reads them). If the other version cannot be reached or answers 5xx, this one
    answers instead (counted as ``outcome="error"``): users never see the candidate fail;
    the deploy step checks the candidate itself all through the split. Once it could not be
    reached or timed out, none of this predictor's requests go to it for
    ``AB_PAUSE_SECONDS``, then only one at a time until one gets an answer (a 5xx answer
    does not pause the split: one request's error is not a candidate that hangs)."""

    def __init__(self, target: str, percent: float, name: str, version: str):
        self.target = target.rstrip("/")
        self.url = f"{self.target}/v1/models/{name}:predict"
        self.percent = percent
        self._answered = FORWARDED.labels(model=name, version=version, outcome="answered")
        self._errors = FORWARDED.labels(model=name, version=version, outcome="error")
        self._client: httpx.AsyncClient | None = None
        self._unreachable_at: float | None = None  # when it last could not be reached
        self._probing = False  # after that, one request at a time tries it again

    @classmethod
    def from_env(cls, name: str, version: str) -> ABSplit | None:
        target = os.environ.get(AB_TARGET_ENV, "").strip()
        if not target:
            return None
        from autokfp.errors import ConfigError

        if not target.startswith(("http://", "https://")):
            raise ConfigError(f"{AB_TARGET_ENV}={target[:100]!r} must be the other version's "
                              "base URL, e.g. http://<name>-candidate.<namespace>.svc.cluster.local")
        raw = os.environ.get(AB_PERCENT_ENV, "")
        try:
            percent = float(raw)
        except ValueError:
            raise ConfigError(f"{AB_PERCENT_ENV}={raw[:20]!r} is not a number; with "
                              f"{AB_TARGET_ENV} set it must be the share (1-99) of v1 "
                              "predictions the other version answers") from None
        if not 1 <= percent <= 99:
            raise ConfigError(f"{AB_PERCENT_ENV}={percent:g} must be from 1 to 99")
        return cls(target, percent, name, version)

    def takes(self) -> bool:
        if random.random() * 100.0 >= self.percent:
            return False
        if self._unreachable_at is None:
            return True
        if self._probing or time.monotonic() - self._unreachable_at < AB_PAUSE_SECONDS:
            return False
        self._probing = True  # this request tries the other version again, alone
        return True

    async def forward(self, body: bytes, request_id: str | None,
                      path: str | None = None) -> Response | None:
        """The other version's answer, or None when it could not give one. ``path``: the
        same route on the other version (default: v1 ``:predict``)."""
        if self._client is None:  # made in the server's event loop, on first use
            self._client = httpx.AsyncClient(timeout=AB_TIMEOUT_SECONDS)
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        url = self.url if path is None else f"{self.target}{path}"
        try:
            answer = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            self._errors.inc()
            self._unreachable_at = time.monotonic()
            return None
        finally:
            self._probing = False
        self._unreachable_at = None
        if answer.status_code >= 500:
            self._errors.inc()
            return None
        self._answered.inc()
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type", "application/json"))


class DirectPredictRoute(Route):
    """``POST /v1/models/<served name>:predict`` with a JSON body, straight to ``predict``."""

    def __init__(self, predictor: Any, split: ABSplit | None = None):
        self.predictor = predictor
        self.split = split
        self.served_path = f"/v1/models/{predictor.name}:predict"
        super().__init__(V1_PREDICT, endpoint=self.predict, methods=["POST"])

    def matches(self, scope: MutableMapping[str, Any]) -> tuple[Match, dict[str, Any]]:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path") != self.served_path or not _plain_json(scope)):
            return Match.NONE, {}
        return Match.FULL, {"endpoint": self.endpoint,
                            "path_params": {"model_name": self.predictor.name}}

    async def predict(self, request: Request) -> Response:
        predictor = self.predictor
        if not predictor.is_ready():
            raise ModelNotReady(predictor.name)
        body = await request.body()
        if self.split is not None and self.split.takes():
            forwarded = await self.split.forward(body, request.headers.get("x-request-id"))
            if forwarded is not None:
                return forwarded
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise InvalidInput(f"Unrecognized request format: {error}") from None
        if isinstance(payload, dict) and is_structured_cloudevent(payload):
            payload = payload["data"]  # as KServe's DataPlane.decode_cloudevent
        payload = predictor.validate(payload)  # KServe's own v1 check ("instances" a list)
        answer = await predictor.predict(payload, dict(request.headers.items()))
        return Response(orjson.dumps(answer, option=_ORJSON_OPTIONS),
                        media_type="application/json")


def _plain_json(scope: MutableMapping[str, Any]) -> bool:
    """No content-type or exactly application/json, and no binary CloudEvent headers."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            if value != b"application/json":
                return False
        elif name.startswith(b"ce-"):
            return False
    return True


class SplitInferRoute(Route):
    """``POST /v2/models/<served name>/infer`` with a JSON body during a Standard-mode A/B
    split: ``split.percent`` % of them go to the other version's same route, its answer
    passed back as it came; the rest, and every request the other version cannot answer,
    go on to the next route that matches (KServe's v2 route) with the body as it came."""

    def __init__(self, predictor: Any, split: ABSplit, routes: list[Any]):
        self.predictor = predictor
        self.split = split
        self.routes = routes  # the app's routes: KServe's come after this one
        self.served_path = f"/v2/models/{predictor.name}/infer"
        super().__init__(self.served_path, endpoint=self._unused, methods=["POST"])

    @staticmethod
    async def _unused(request: Request) -> Response:  # handle() answers instead
        raise NotImplementedError

    def matches(self, scope: MutableMapping[str, Any]) -> tuple[Match, dict[str, Any]]:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path") != self.served_path or not _plain_json(scope)):
            return Match.NONE, {}
        return Match.FULL, {}

    async def handle(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if self.split.takes():
            request_id = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                               if k == b"x-request-id"), None)
            forwarded = await self.split.forward(body, request_id, self.served_path)
            if forwarded is not None:
                await forwarded(scope, receive, send)
                return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        for route in self.routes[self.routes.index(self) + 1:]:
            match, child_scope = route.matches(scope)
            if match == Match.FULL:
                scope.update(child_scope)
                await route.handle(scope, replay, send)
                return
        await Response(b'{"error": "not found"}', status_code=404,
                       media_type="application/json")(scope, replay, send)


def install(app: Any, predictor: Any, split: ABSplit | None = None) -> None:
    """Put the direct route in front of the app's routes, once KServe has registered its
    own (the app builds its middleware stack on the first request, after that). A
    predictor with its own ``preprocess`` or ``postprocess`` keeps KServe's route: the
    direct one does not call them (nor can it split: an A/B split then raises)."""
    if (type(predictor).preprocess is not Model.preprocess
            or type(predictor).postprocess is not Model.postprocess):
        if split is not None:
            from autokfp.errors import ConfigError

            raise ConfigError(f"{AB_TARGET_ENV} is set, but this predictor has its own "
                              "preprocess/postprocess, so v1 predictions cannot take the route "
                              "that splits them")
        return
    build = app.build_middleware_stack

    def with_direct_route() -> Any:
        routes = app.router.routes
        if not any(isinstance(r, DirectPredictRoute) for r in routes):
            routes.insert(0, DirectPredictRoute(predictor, split))
            if split is not None:
                routes.insert(1, SplitInferRoute(predictor, split, routes))
        return build()

    app.build_middleware_stack = with_direct_route
