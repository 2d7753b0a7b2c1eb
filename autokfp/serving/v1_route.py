"""A direct route for the predictor's most frequent call: v1 ``:predict`` with a JSON body.

KServe answers ``POST /v1/models/<name>:predict`` through three generic layers: FastAPI's
(the endpoint's parameters solved and validated on every call), KServe's ``DataPlane``
(a model registry lookup, CloudEvent checks, decode, encode) and ``Model.__call__`` (the
pre- and postprocess hooks, ``inspect`` checks, and three latency histograms with their
timers), then the answer through FastAPI's deprecated ``ORJSONResponse``. Together they
cost about a quarter of the CPU of a single-row request (profiled with py-spy under load:
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
* KServe's ``Model.validate``, then ``predict(body, headers)``, its errors raised to the app's exception handlers, so each
  error answer is the one KServe's route gives;
* the answer serialised by orjson with the options ``ORJSONResponse`` uses.

Everything else (another model name, another method, CloudEvents, other media types,
v2 and ``:explain``) goes on to KServe's routes unchanged. The request guard in front
(body limit, busy shedding, error counting) sees every request either way. What the
route leaves out: KServe's ``request_{preprocess,predict,postprocess}_seconds``
histograms for these requests (``autokfp_predict_seconds`` times them; no dashboard or
rule here reads KServe's) and KServe's debug-level timing lines.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.utils.utils import is_structured_cloudevent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

V1_PREDICT = "/v1/models/{model_name}:predict"
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class DirectPredictRoute(Route):
    """``POST /v1/models/<served name>:predict`` with a JSON body, straight to ``predict``."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.served_path = f"/v1/models/{predictor.name}:predict"
        super().__init__(V1_PREDICT, endpoint=self.predict, methods=["POST"])

    def matches(self, scope: MutableMapping[str, Any]) -> tuple[Match, dict[str, Any]]:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path") != self.served_path):
            return Match.NONE, {}
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                if value != b"application/json":
                    return Match.NONE, {}
            elif name.startswith(b"ce-"):
                return Match.NONE, {}
        return Match.FULL, {"endpoint": self.endpoint,
                            "path_params": {"model_name": self.predictor.name}}

    async def predict(self, request: Request) -> Response:
        predictor = self.predictor
        if not predictor.is_ready():
            raise ModelNotReady(predictor.name)
        body = await request.body()
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


def install(app: Any, predictor: Any) -> None:
    """Put the direct route in front of the app's routes, once KServe has registered its
    own (the app builds its middleware stack on the first request, after that). A
    predictor with its own ``preprocess`` or ``postprocess`` keeps KServe's route: the
    direct one does not call them."""
    if (type(predictor).preprocess is not Model.preprocess
            or type(predictor).postprocess is not Model.postprocess):
        return
    build = app.build_middleware_stack

    def with_direct_route() -> Any:
        routes = app.router.routes
        if not any(isinstance(r, DirectPredictRoute) for r in routes):
            routes.insert(0, DirectPredictRoute(predictor))
        return build()

    app.build_middleware_stack = with_direct_route
