"""The receiver of KServe's payload logger: CloudEvents in, the prediction log out.

In a cluster, requests are captured by KServe itself: with ``spec.predictor.logger``
(``mode: all``, ``url``: this receiver) KServe's agent posts every request and every
response of the predictor to ``url`` as a CloudEvent in binary mode: ``ce-id`` (the
request's id, shared by the request and its response), ``ce-type``
(``org.kubeflow.serving.inference.request`` or ``...response``),
``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint``, and the
payload as sent for the body. Serving pods then need no write access to the bucket.

``PayloadLogReceiver`` is a ``kserve.Model``: KServe's own model server parses the
CloudEvents and hands the payload and headers to it. It pairs each request with its
response by id (they arrive separately and in any order; an unpaired half is kept for
``PENDING_SECONDS`` and at most ``MAX_PENDING`` of them), reads the rows (v1 instances,
``dataframe_split`` or v2 tensors) and the answers, and queues them into
``PredictionLogger``: the same Parquet files the predictor writes in local mode,
``<artifact root>/predictions/<service>/v<version>/date=.../``, which monitoring reads.
The version comes from the response's ``model_version``. A deploy's own checks carry ids
starting ``autokfp-verify-`` and are left out of monitoring's windows, as locally.

Run it with ``python -m autokfp.serving.payload_log`` (``AUTOKFP_ARTIFACT_ROOT`` names the
store; ``PORT``, 8080; ``HOST``, 0.0.0.0 in a pod), as ``manifests/serving/payload-log.yaml``
does. Its route is ``/v1/models/payload-log:predict``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from typing import Any

from kserve import Model
from kserve.errors import InvalidInput

from autokfp.serving.prediction_log import PredictionLogger

log = logging.getLogger("autokfp.serving.payload_log")  # also when run with -m

RECEIVER_NAME = "payload-log"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
PENDING_SECONDS = 120.0
MAX_PENDING = 10_000
FLUSH_ENV = "AUTOKFP_PAYLOAD_LOG_FLUSH_SECONDS"


class PayloadLogReceiver(Model):
    """Turns KServe payload-logger CloudEvents into prediction-log rows."""

    def __init__(self, root_uri: str, name: str = RECEIVER_NAME, flush_seconds: float = 10.0,
                 pending_seconds: float = PENDING_SECONDS, max_pending: int = MAX_PENDING):
        super().__init__(name)
        self.root_uri = root_uri
        self.flush_seconds = flush_seconds
        self.pending_seconds = pending_seconds
        self.max_pending = max_pending
        # (service, id) -> (arrived, ce-type, payload)
        self._pending: OrderedDict[tuple[str, str], tuple[float, str, dict]] = OrderedDict()
        self._loggers: dict[tuple[str, str], PredictionLogger] = {}
        self.logged_rows = 0
        self.unpaired = 0
        self.ready = True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        try:
            return self._receive(payload, headers)
        except InvalidInput as error:  # one line, no traceback (KServe's is filtered)
            log.warning("rejected event %s: %s", str(headers.get("ce-id"))[:80], str(error)[:300])
            raise

    def _receive(self, payload: Any, headers: dict[str, str]) -> dict[str, Any]:
        kind, event_id = headers.get("ce-type"), headers.get("ce-id")
        service = headers.get("ce-inferenceservicename")
        if kind not in (REQUEST_TYPE, RESPONSE_TYPE) or not event_id or not service:
            raise InvalidInput(
                "not a KServe payload-logger event: it needs the CloudEvent headers ce-id, "
                f"ce-inferenceservicename and ce-type ({REQUEST_TYPE} or {RESPONSE_TYPE})")
        if not isinstance(payload, dict):
            raise InvalidInput(f"the {kind.rsplit('.', 1)[-1]} of {event_id[:80]} is not a JSON "
                               "object")
        self._expire(time.monotonic())
        other = self._pending.pop((service, event_id), None)
        if other is None or other[1] == kind:
            self._pending[(service, event_id)] = (time.monotonic(), kind, payload)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self.unpaired += 1
            return {"status": "pending"}
        request, response = (other[2], payload) if kind == RESPONSE_TYPE else (payload, other[2])
        rows = self._log(service, event_id, request, response)
        return {"status": "logged", "rows": rows}

    def _expire(self, now: float) -> None:
        while self._pending:
            (key, (arrived, _, _)) = next(iter(self._pending.items()))
            if now - arrived < self.pending_seconds:
                return
            del self._pending[key]
            self.unpaired += 1

    def _log(self, service: str, event_id: str, request: dict, response: dict) -> int:
        inputs = request_rows(request)
        outputs = response_rows(response)
        if len(inputs) != len(outputs):
            raise InvalidInput(f"request {event_id[:80]} has {len(inputs)} rows but its "
                               f"response {len(outputs)} predictions")
        version = str(response.get("model_version") or "unknown")
        logger = self._loggers.get((service, version))
        if logger is None:
            logger = self._loggers[(service, version)] = PredictionLogger(
                self.root_uri, service, version, flush_seconds=self.flush_seconds)
        logger.log_records(inputs, outputs, event_id)
        self.logged_rows += len(inputs)
        return len(inputs)

    def stop(self) -> None:
        for logger in self._loggers.values():
            logger.close()
        super().stop()


def request_rows(request: dict) -> list[dict[str, Any]]:
    """The rows of a logged request: v1 (``instances``, ``inputs`` as rows,
    ``dataframe_split``) or v2 (``inputs`` as named tensors)."""
    from autokfp.serving.predictor import RequestError, records_v1

    inputs = request.get("inputs")
    try:
        if isinstance(inputs, list) and inputs and all(
                isinstance(t, dict) and "name" in t and "data" in t for t in inputs):
            return _tensor_rows(inputs)
        return records_v1(request)
    except RequestError as error:
        raise InvalidInput(f"the logged request cannot be read: {error}") from None


def response_rows(response: dict) -> list[dict[str, Any]]:
    """The answers of a logged response: v1 ``predictions`` (objects, or plain values as
    ``prediction``) or v2 ``outputs`` tensors."""
    predictions = response.get("predictions")
    if isinstance(predictions, list):
        return [p if isinstance(p, dict) else {"prediction": p} for p in predictions]
    outputs = response.get("outputs")
    if isinstance(outputs, list) and all(isinstance(t, dict) and "name" in t for t in outputs):
        return _tensor_rows(outputs)
    raise InvalidInput("the logged response has neither 'predictions' (v1) nor 'outputs' (v2)")


def _tensor_rows(tensors: list[dict]) -> list[dict[str, Any]]:
    columns = {}
    for tensor in tensors:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise InvalidInput(f"tensor {str(tensor.get('name'))[:80]!r} has no 'data' list")
        columns[str(tensor["name"])] = [v[0] if isinstance(v, list) and len(v) == 1 else v
                                        for v in data]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InvalidInput(f"the tensors have different lengths: {sorted(lengths)}")
    count = lengths.pop() if lengths else 0
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def main() -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kserve import ModelServer, model_server

    from autokfp.serving.__main__ import DEFAULT_HOST
    from autokfp.serving.guard import ClientErrorTracebacks
    from autokfp.serving.predictor import _bind_host, _quiet_per_request_logging

    root = os.environ.get("AUTOKFP_ARTIFACT_ROOT")
    if not root:
        log.error("AUTOKFP_ARTIFACT_ROOT is not set: the receiver needs the artifact store "
                  "(gs://, s3:// or a folder) that monitoring reads; set it from the "
                  "autokfp-config ConfigMap")
        return 2
    receiver = PayloadLogReceiver(root, flush_seconds=float(os.environ.get(FLUSH_ENV, "10")))
    _bind_host(os.environ.get("HOST", DEFAULT_HOST))
    logging.getLogger("kserve").addFilter(ClientErrorTracebacks())
    _quiet_per_request_logging(model_server.app)
    try:
        ModelServer(http_port=int(os.environ.get("PORT", "8080")), workers=1,
                    enable_grpc=False, enable_latency_logging=False).start([receiver])
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
