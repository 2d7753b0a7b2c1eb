"""The KServe predictor for any autokfp model (H2O, or any engine behind the interface).

``AutokfpPredictor`` is a ``kserve.Model`` that loads a packaged model folder (the MLflow
pyfunc with its feature plan) and answers:

* v1 ``POST /v1/models/<name>:predict`` with ``{"instances": [{column: value, ...}, ...]}``
  (or ``{"inputs": ...}`` / ``{"dataframe_split": ...}``) → ``{"predictions": [{...}]}``
* v2 ``POST /v2/models/<name>/infer`` (Open Inference Protocol; one input tensor per column)
* v1 ``POST /v1/models/<name>:explain`` with the same body (at most ``MAX_EXPLAIN_ROWS``
  instances) → ``{"explanations": [{"value", "base_value", "contributions": {column:
  float}, ...}]}``: Kernel SHAP contributions of each input column (see
  ``autokfp.governance.explain``) that add up, with the base value, to the explained output

Requests are validated against the model's input columns before scoring: a missing column,
a column the model never saw, or a value of the wrong type is a 400 naming the column,
never a 500. Prometheus metrics (requests, latency, errors, predicted classes, scores) are
served on ``/metrics`` next to KServe's own. Each request's rows and predictions go to the
prediction log (see ``prediction_log``) without ever blocking the answer.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from prometheus_client import Counter, Histogram

from autokfp.modeling.features import FeaturePlan
from autokfp.serving.guard import install as install_guard
from autokfp.serving.guard import mark_counted, max_request_bytes

log = logging.getLogger(__name__)

MAX_ROWS_PER_REQUEST = 10_000
MAX_EXPLAIN_ROWS = 20
EXPLAIN_NSAMPLES = 256  # Kernel SHAP coalitions per instance (a request may ask for up to 2048)

REQUESTS = Counter("autokfp_requests_total", "Prediction requests", ["model", "version", "protocol"])
ERRORS = Counter("autokfp_request_errors_total", "Rejected or failed requests", ["model", "version", "kind"])
ROWS = Counter("autokfp_predicted_rows_total", "Rows scored", ["model", "version"])
LATENCY = Histogram("autokfp_predict_seconds", "Time to validate and score one request",
                    ["model", "version"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
CLASSES = Counter("autokfp_predicted_class_total", "Predicted classes", ["model", "version", "label"])
SCORES = Histogram("autokfp_prediction_score", "Positive-class probability or regression value",
                   ["model", "version"],
                   buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0))


class RequestError(InvalidInput):
    """A request the model cannot score; the message names the problem (HTTP 400)."""


def load_package(model_dir: str | Path) -> Any:
    """Load a packaged model folder and return its ``AutokfpModel`` (no MLflow overhead)."""
    from autokfp.modeling.model_package import load_model_package  # the one loader

    pyfunc = load_model_package(str(model_dir))
    return pyfunc.unwrap_python_model()


class InputValidator:
    """Checks request frames against the columns and kinds the model was trained on."""

    def __init__(self, plan: FeaturePlan):
        self.plan = plan
        self.required = list(plan.input_columns)
        # columns that existed in training data but the model does not use (ids, PII, leaks)
        self.ignored = set(plan.dropped) | {plan.target}
        self.numeric = set(plan.numeric)
        self.datetime = set(plan.datetime)
        self.boolean = set(plan.boolean)

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            raise RequestError("the request has no rows; send at least one instance")
        if len(frame) > MAX_ROWS_PER_REQUEST:
            raise RequestError(f"the request has {len(frame)} rows; send at most {MAX_ROWS_PER_REQUEST} per request")
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise RequestError(f"missing column(s) {missing}; every instance needs {self.required}")
        unknown = [c for c in frame.columns if c not in self.required and c not in self.ignored]
        if unknown:
            raise RequestError(f"unknown column(s) {unknown}: the model was not trained with them; "
                               f"send only {self.required} (plus {sorted(self.ignored)} which are ignored)")
        for column in self.numeric:
            values = frame[column]
            if values.dtype == object:
                converted = pd.to_numeric(values, errors="coerce")
                # pandas reads True as 1 in a mixed column; the fast path rejects it too
                flags = values.map(lambda v: isinstance(v, (bool, np.bool_)))
                bad = values.notna() & (converted.isna() | flags.astype(bool))
                if bad.any():
                    example = values[bad].iloc[0]
                    raise RequestError(f"column '{column}' must be a number, got {example!r}")
                frame[column] = converted
            elif pd.api.types.is_bool_dtype(values):
                raise RequestError(f"column '{column}' must be a number, got a boolean")
        for column in self.datetime:
            values = frame[column]
            if pd.api.types.is_datetime64_any_dtype(values):
                continue
            parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
            bad = values.notna() & parsed.isna()
            if bad.any():
                raise RequestError(f"column '{column}' must be a date/time (ISO 8601), got {values[bad].iloc[0]!r}")
        return frame


    def check_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same checks as ``check``, on plain dicts (the small-request fast path)."""
        if not records:
            raise RequestError("the request has no rows; send at least one instance")
        required = self.required
        for record in records:
            missing = [c for c in required if c not in record]
            if missing:
                raise RequestError(f"missing column(s) {missing}; every instance needs {required}")
            unknown = [c for c in record if c not in self._known]
            if unknown:
                raise RequestError(f"unknown column(s) {unknown}: the model was not trained with them; "
                                   f"send only {required} (plus {sorted(self.ignored)} which are ignored)")
            for column in self.numeric:
                value = record[column]
                if value is None or isinstance(value, float):
                    continue
                if isinstance(value, (bool, np.bool_)) or not _is_number(value):
                    raise RequestError(f"column '{column}' must be a number, got {value!r}")
            for column in self.datetime:
                value = record[column]
                if value is not None and _features_timestamp(value) is None:
                    raise RequestError(f"column '{column}' must be a date/time (ISO 8601), got {value!r}")
        return records

    @property
    def _known(self) -> set[str]:
        return set(self.required) | self.ignored


def _is_number(value: Any) -> bool:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    from autokfp.modeling.features import _number

    # the frame path's rule (pandas' parser): "nan", "1_000" or "1e400" are not numbers there
    return not math.isnan(_number(value))


def _features_timestamp(value: Any) -> Any:
    from autokfp.modeling.features import _timestamp

    return _timestamp(value)


FAST_PATH_ROWS = 64


class AutokfpPredictor(Model):
    """KServe model serving one packaged autokfp model version."""

    def __init__(self, name: str, model_dir: str | Path, version: str = "1",
                 prediction_log_uri: str | None = None, log_sample_rate: float = 1.0):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.version = str(version)
        self.prediction_log_uri = prediction_log_uri
        self.log_sample_rate = log_sample_rate
        self.model: Any = None
        self.validator: InputValidator | None = None
        self.prediction_log = None
        self.ready = False

    def load(self) -> bool:
        """Load the package and score its input example once; only then mark ready."""
        self.model = load_package(self.model_dir)
        self.validator = InputValidator(self.model.plan)
        self.meta = self.model.meta
        example_path = self.model_dir / "input_example.json"
        if example_path.exists():  # a model that cannot score its own example is not ready
            example = _example_frame(json.loads(example_path.read_text()))
            self._score(example)
        if self.prediction_log_uri:
            from autokfp.serving.prediction_log import PredictionLogger

            self.prediction_log = PredictionLogger(self.prediction_log_uri, self.name, self.version,
                                                   sample_rate=self.log_sample_rate)
        self.ready = True
        log.info("model %s v%s ready (%s, %s)", self.name, self.version, self.meta["engine"], self.meta["task"])
        return self.ready

    def stop(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.close()
        super().stop()

    # -- request decoding ------------------------------------------------------------------

    def _frame_v1(self, payload: dict) -> pd.DataFrame:
        if not isinstance(payload, dict):
            raise RequestError("the body must be a JSON object with 'instances'")
        if "instances" in payload:
            rows = payload["instances"]
        elif "inputs" in payload:
            rows = payload["inputs"]
        elif "dataframe_split" in payload:
            split = payload["dataframe_split"]
            try:
                return pd.DataFrame(split["data"], columns=split["columns"])
            except (KeyError, TypeError, ValueError) as exc:
                raise RequestError(f"'dataframe_split' needs 'columns' and 'data' of equal width: {exc}") from None
        else:
            raise RequestError("the body needs 'instances': a list of objects mapping column to value")
        if isinstance(rows, dict):
            rows = [rows]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RequestError("'instances' must be a list of objects mapping column name to value")
        self._check_every_row_has_the_columns(rows)
        return pd.DataFrame.from_records(rows)

    def _check_every_row_has_the_columns(self, rows: list[dict]) -> None:
        """A column absent from some instances only: pandas would fill it with NaN, while the
        fast path (and the user's intent) says the column is missing."""
        assert self.validator is not None
        required = set(self.validator.required)
        for shape in {frozenset(row) for row in rows}:
            if required - shape:
                index = next(i for i, row in enumerate(rows) if frozenset(row) == shape)
                raise RequestError(f"instance {index} is missing column(s) "
                                   f"{sorted(required - shape)}; every instance needs "
                                   f"{self.validator.required}")

    @staticmethod
    def _frame_v2(request: InferRequest) -> pd.DataFrame:
        lengths = {i.name: len(i.data) for i in request.inputs}
        if len(set(lengths.values())) > 1:
            raise RequestError(f"every input tensor needs the same length; got {lengths}")
        try:
            return request.as_dataframe()
        except Exception as exc:  # noqa: BLE001 - a malformed tensor is the client's error
            raise RequestError(f"the inputs cannot be read as columns: {exc}") from None

    # -- scoring ---------------------------------------------------------------------------

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        assert self.validator is not None
        frame = self.validator.check(frame)
        return self.model.predict(None, frame)

    def _records_v1(self, payload: Any) -> list[dict[str, Any]] | None:
        """The instances of a small v1 request as dicts, or None to take the frame path."""
        if not isinstance(payload, dict):
            return None
        rows = payload.get("instances", payload.get("inputs"))
        if isinstance(rows, dict):
            rows = [rows]
        if (isinstance(rows, list) and 0 < len(rows) <= FAST_PATH_ROWS
                and all(isinstance(r, dict) for r in rows)):
            return rows
        return None

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        v2 = isinstance(payload, InferRequest)
        protocol = "v2" if v2 else "v1"
        labels = {"model": self.name, "version": self.version}
        REQUESTS.labels(protocol=protocol, **labels).inc()
        started = time.perf_counter()
        try:
            records = None if v2 else self._records_v1(payload)
            if records is not None:
                assert self.validator is not None
                predictions = self.model.predict_records(self.validator.check_records(records))
                frame = None
            else:
                frame = self._frame_v2(payload) if v2 else self._frame_v1(payload)
                predictions = self._score(frame)
        except InvalidInput:
            ERRORS.labels(kind="invalid_input", **labels).inc()
            mark_counted()
            raise
        except Exception:
            ERRORS.labels(kind="internal", **labels).inc()
            mark_counted()
            raise
        LATENCY.labels(**labels).observe(time.perf_counter() - started)
        self._observe(predictions, labels)
        request_id = (headers or {}).get("x-request-id") or uuid.uuid4().hex
        if v2:
            if self.prediction_log is not None:
                self.prediction_log.log(frame, predictions, request_id)
            return self._v2_response(payload, predictions)
        answer = _records(predictions)
        if self.prediction_log is not None:
            if frame is None:
                self.prediction_log.log_records(records, answer, request_id)
            else:
                self.prediction_log.log(frame, predictions, request_id)
        return {"predictions": answer, "model_version": self.version}

    async def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        """v1 ``:explain``: per-column Kernel SHAP contributions for each instance.

        The background is the sample of training rows the package carries
        (``meta['explain_background']``, written by the governance step), else the package's
        input example. ``{"parameters": {"nsamples": N}}`` trades time for precision.
        """
        from autokfp.governance.explain import kernel_shap, local_explanations

        labels = {"model": self.name, "version": self.version}
        REQUESTS.labels(protocol="v1-explain", **labels).inc()
        try:
            frame = self._frame_v1(payload)
            if len(frame) > MAX_EXPLAIN_ROWS:
                raise RequestError(f"the request has {len(frame)} rows; explain at most "
                                   f"{MAX_EXPLAIN_ROWS} per request")
            assert self.validator is not None
            frame = self.validator.check(frame)
            parameters = payload.get("parameters") or {}
            nsamples = parameters.get("nsamples", EXPLAIN_NSAMPLES)
            if not isinstance(nsamples, int) or isinstance(nsamples, bool) or not 16 <= nsamples <= 2048:
                raise RequestError(f"parameters.nsamples must be a whole number from 16 to 2048, got {nsamples!r}")
            result = kernel_shap(self.model, self.model.plan, self.meta, self._explain_background(),
                                 frame, nsamples=nsamples)
            if result["status"] != "run":
                raise RequestError(f"this model cannot be explained per column: {result['reason']}")
            predictions = self.model.predict(None, frame)
        except InvalidInput:
            ERRORS.labels(kind="invalid_input", **labels).inc()
            mark_counted()
            raise
        except Exception:
            ERRORS.labels(kind="internal", **labels).inc()
            mark_counted()
            raise
        explanations = local_explanations(result, frame, predictions)
        return {"explanations": explanations, "method": "kernel-shap", "output": result["output"],
                "background_rows": result["background_rows"], "nsamples": result["nsamples"],
                "model_version": self.version}

    def _explain_background(self) -> pd.DataFrame:
        records = self.meta.get("explain_background")
        if records:
            background = pd.DataFrame.from_records(records)
        else:
            example_path = self.model_dir / "input_example.json"
            if not example_path.exists():
                raise RequestError("the package carries no background rows to explain against; "
                                   "re-run the governance step (bias_check) on it")
            background = _example_frame(json.loads(example_path.read_text()))
        assert self.validator is not None
        return self.validator.check(background[self.validator.required].copy())

    def _observe(self, predictions: pd.DataFrame, labels: dict[str, str]) -> None:
        ROWS.labels(**labels).inc(len(predictions))
        if self.meta["task"] == "regression":
            for value in predictions["prediction"].to_numpy()[:100]:
                SCORES.labels(**labels).observe(float(value))
            return
        for label, count in predictions["prediction"].astype(str).value_counts().items():
            CLASSES.labels(label=label, **labels).inc(int(count))
        if self.meta["task"] == "binary":
            positive = f"probability_{self.meta['class_labels'][1]}"
            for value in predictions[positive].to_numpy()[:100]:
                SCORES.labels(**labels).observe(float(value))

    def _v2_response(self, request: InferRequest, predictions: pd.DataFrame) -> InferResponse:
        outputs = []
        for column in predictions.columns:
            values = predictions[column].to_numpy()
            if values.dtype.kind in "fc":
                datatype, data = "FP64", [float(v) for v in values]
            elif values.dtype.kind in "iu":
                datatype, data = "INT64", [int(v) for v in values]
            elif values.dtype.kind == "b":
                datatype, data = "BOOL", [bool(v) for v in values]
            else:
                datatype, data = "BYTES", [str(v) for v in values]
            outputs.append(InferOutput(name=column, shape=[len(values)], datatype=datatype, data=data))
        return InferResponse(response_id=request.id or uuid.uuid4().hex, model_name=self.name,
                             model_version=self.version, infer_outputs=outputs)


def _records(predictions: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for row in predictions.itertuples(index=False):
        record = {}
        for key, value in zip(predictions.columns, row):
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            record[key] = value
        records.append(record)
    return records


def _example_frame(example: dict) -> pd.DataFrame:
    if "dataframe_split" in example:
        example = example["dataframe_split"]
    if "columns" in example and "data" in example:
        return pd.DataFrame(example["data"], columns=example["columns"])
    return pd.DataFrame(example)


def _bind_host(host: str) -> None:
    """KServe's REST server always binds 0.0.0.0; bind ``host`` instead (e.g. 127.0.0.1)."""
    import uvicorn

    if getattr(uvicorn.Config, "_autokfp_host", None) == host:
        return
    base = getattr(uvicorn.Config, "_autokfp_base", uvicorn.Config)

    class HostConfig(base):  # type: ignore[misc, valid-type]
        _autokfp_host = host
        _autokfp_base = base

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = host
            super().__init__(*args, **kwargs)

    uvicorn.Config = HostConfig  # type: ignore[misc]


def serve(model_dir: str | Path, name: str, version: str = "1", port: int = 8080,
          host: str = "0.0.0.0", prediction_log_uri: str | None = None,
          max_bytes: int | None = None) -> None:
    """Load the model and serve it over HTTP until interrupted (blocks).

    A model that fails to load raises here, before the server starts: it is never
    reported ready. Request bodies above ``max_bytes`` (default ``$AUTOKFP_MAX_REQUEST_BYTES``
    or 16 MiB) get 413.
    """
    from kserve import ModelServer, model_server

    limit = max_request_bytes(max_bytes)
    predictor = AutokfpPredictor(name, model_dir, version, prediction_log_uri=prediction_log_uri)
    predictor.load()
    _bind_host(host)
    install_guard(model_server.app, limit, lambda kind: ERRORS.labels(
        model=name, version=str(version), kind=kind).inc())
    try:
        ModelServer(http_port=port, workers=1, enable_grpc=False).start([predictor])
    finally:
        predictor.stop()
