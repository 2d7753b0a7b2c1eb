"""The KServe predictor for any autokfp model (H2O, or any engine behind the interface).

``AutokfpPredictor`` is a ``kserve.Model`` that loads a packaged model folder (the MLflow
pyfunc with its feature plan) and answers:

* v1 ``POST /v1/models/<name>:predict`` with ``{"instances": [{column: value, ...}, ...]}``
  (or ``{"inputs": ...}`` / ``{"dataframe_split": ...}``) → ``{"predictions": [{...}]}``
* v2 ``POST /v2/models/<name>/infer`` (Open Inference Protocol; one input tensor per column,
  each of shape ``[rows]`` or ``[rows, 1]``)
* v1 ``POST /v1/models/<name>:explain`` with the same body (at most ``MAX_EXPLAIN_ROWS``
  instances) → ``{"explanations": [{"value", "base_value", "contributions": {column:
  float}, ...}]}``: Kernel SHAP contributions of each input column (see
  ``autokfp.governance.explain``) that add up, with the base value, to the explained output

Requests are validated against the model's input columns before scoring: a missing column,
a column the model never saw, a value of the wrong type (a list or an object where a column
holds one value), a value longer than its column allows (``MAX_TEXT_CHARS`` for text,
``MAX_CATEGORY_CHARS`` for categories, ``MAX_SCALAR_CHARS`` for numbers, dates and
booleans) is a 400 naming the column, never a 500.

The work one request can do is bounded, so no request mix can starve the others or the
health probes: small requests (up to ``FAST_PATH_ROWS`` rows) are scored inline on a
row-wise path; bigger ones and explanations run one at a time in a worker thread, under a
time limit (``AUTOKFP_REQUEST_TIMEOUT``, 10 s; a request over it is a 422), with at most
``MAX_WAITING`` waiting (more is a 429; a body over 256 KiB already when
``MAX_WAITING_BIG_BODIES`` wait, before it is read). Kernel SHAP work is capped (rows × samples).

Prometheus metrics (requests, latency, errors, predicted classes, scores) are served on
``/metrics`` next to KServe's own. Each request's rows and predictions go to the prediction
log (see ``prediction_log``) without ever blocking the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from prometheus_client import Counter, Histogram

from autokfp.modeling.features import FeaturePlan
from autokfp.serving.guard import Served, mark_counted, max_request_bytes, shorten
from autokfp.serving.guard import install as install_guard

log = logging.getLogger(__name__)

MAX_ROWS_PER_REQUEST = 10_000
FAST_PATH_ROWS = 64
MAX_SCALAR_CHARS = 64  # a number, date or boolean written as text
MAX_CATEGORY_CHARS = 1_000
MAX_TEXT_CHARS = 10_000
MAX_EXPLAIN_ROWS = 20
EXPLAIN_NSAMPLES = 256  # Kernel SHAP coalitions per instance by default
MAX_EXPLAIN_NSAMPLES = 1024
# rows × nsamples in one request: about 1 s per row at 256 samples here (25 background rows)
MAX_EXPLAIN_WORK = 5 * EXPLAIN_NSAMPLES
DEFAULT_TIMEOUT_SECONDS = 10.0
TIMEOUT_ENV = "AUTOKFP_REQUEST_TIMEOUT"
LOG_FLUSH_ENV = "AUTOKFP_PREDICTION_LOG_FLUSH_SECONDS"  # how often logged rows are written
ACCESS_LOG_ENV = "AUTOKFP_ACCESS_LOG"  # "on": KServe's per-request access and timing lines
V1_ROUTE_ENV = "AUTOKFP_V1_ROUTE"  # "kserve": v1 :predict through KServe's route (see v1_route)
MAX_WAITING = 32  # requests queued for the worker thread; more get 429
MAX_WAITING_BIG_BODIES = 4  # with this many queued, a body over guard.BIG_BODY gets 429 unread
SELF_CHECK_SECONDS = 5.0  # how often readiness re-scores the package's own example
SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005

V2_DATATYPES = {"BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
                "UINT64", "FP16", "FP32", "FP64", "BYTES"}

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

T = TypeVar("T")


class RequestError(InvalidInput):
    """A request the model cannot score; the message names the problem (HTTP 400 unless
    ``status`` says otherwise)."""

    status = 400


class TooSlow(RequestError):
    """The request's work ran past the time limit (HTTP 422)."""

    status = 422


class Busy(RequestError):
    """Too many big requests are already waiting (HTTP 429)."""

    status = 429


def load_package(model_dir: str | Path) -> Any:
    """Load a packaged model folder and return its ``AutokfpModel`` (no MLflow overhead)."""
    from autokfp.modeling.model_package import load_model_package  # the one loader

    pyfunc = load_model_package(str(model_dir))
    return pyfunc.unwrap_python_model()


def request_timeout(value: str | float | None = None) -> float:
    """The per-request time limit: ``value``, else ``$AUTOKFP_REQUEST_TIMEOUT``, else 10 s."""
    raw = value if value is not None else os.environ.get(TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_SECONDS
    from autokfp.errors import ConfigError

    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 10") from None
    if not 0.1 <= seconds <= 3600:
        raise ConfigError(f"{TIMEOUT_ENV}={seconds:g} must be between 0.1 and 3600 seconds")
    return seconds


# ------------------------------------------------------------------------------ validation

_SCALARS = (str, int, float, bool, np.generic, date, datetime, pd.Timestamp)


def _show(value: Any) -> str:
    """A value as a message shows it: its repr, cut short (a request may carry megabytes)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple, dict)):
        kind = type(value).__name__
        return f"a {kind} of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:60]) + "..."
    return text if len(text) <= 80 else text[:80] + "..."


class InputValidator:
    """Checks request rows against the columns and kinds the model was trained on."""

    def __init__(self, plan: FeaturePlan):
        self.plan = plan
        self.required = list(plan.input_columns)
        # columns that existed in training data but the model does not use (ids, PII, leaks)
        self.ignored = set(plan.dropped) | {plan.target}
        self.numeric = set(plan.numeric)
        self.datetime = set(plan.datetime)
        self.boolean = set(plan.boolean)
        self._required_set = set(self.required)
        self._known = self._required_set | self.ignored
        self._limits = {c: MAX_TEXT_CHARS for c in self.ignored}
        self._limits.update({c: MAX_TEXT_CHARS for c in plan.text})
        self._limits.update({c: MAX_CATEGORY_CHARS for c in plan.categorical})
        self._limits.update({c: MAX_SCALAR_CHARS for c in self.numeric | self.datetime | self.boolean})
        self._numeric = list(plan.numeric)
        self._datetime = list(plan.datetime)

    # -- one value --------------------------------------------------------------------------

    def _kind(self, column: str) -> str:
        if column in self.numeric:
            return "a number"
        if column in self.datetime:
            return "a date/time (ISO 8601)"
        if column in self.boolean:
            return "a boolean"
        if column in self.plan.text:
            return "text"
        if column in self.plan.categorical:
            return "a category (text or a number)"
        return "one value"

    def value_problem(self, column: str, value: Any) -> str | None:
        """Why ``value`` cannot stand in ``column`` (type or length), or None. Cheap: it runs
        before any parsing, so a megabyte value costs no more than a short one."""
        if value is None or (isinstance(value, float) and not isinstance(value, bool)):
            return None
        if isinstance(value, str):
            limit = self._limits.get(column, MAX_TEXT_CHARS)
            if len(value) > limit:
                return (f"column '{column}' holds a value of {len(value):,} characters; at most "
                        f"{limit:,} are accepted for {self._kind(column)}")
            return None
        if isinstance(value, _SCALARS):
            return None
        return f"column '{column}' must be {self._kind(column)}, got {_show(value)}"

    def check_values(self, records: list[dict[str, Any]]) -> None:
        """Type and length of every value (before anything parses them)."""
        problem = self.value_problem
        for record in records:
            for column, value in record.items():
                if value is not None and not isinstance(value, (int, float)):
                    message = problem(column, value)
                    if message:
                        raise RequestError(message)

    # -- whole requests ---------------------------------------------------------------------

    def _check_columns(self, columns: Any) -> None:
        missing = [c for c in self.required if c not in columns]
        if missing:
            raise RequestError(f"missing column(s) {missing}; every instance needs {self.required}")
        unknown = [c for c in columns if c not in self._known]
        if unknown:
            raise RequestError(f"unknown column(s) {[shorten(str(c), 80) for c in unknown[:10]]}: "
                               f"the model was not trained with them; send only {self.required} "
                               f"(plus {sorted(self.ignored)} which are ignored)")

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            raise RequestError("the request has no rows; send at least one instance")
        if len(frame) > MAX_ROWS_PER_REQUEST:
            raise RequestError(f"the request has {len(frame)} rows; send at most {MAX_ROWS_PER_REQUEST} per request")
        self._check_columns(frame.columns)
        for column in frame.columns:
            values = frame[column]
            if values.dtype == object:
                problems = values.map(lambda v, c=column: self.value_problem(c, v))
                bad = problems.notna()
                if bad.any():
                    raise RequestError(problems[bad].iloc[0])
        for column in self.numeric:
            values = frame[column]
            if values.dtype == object:
                converted = pd.to_numeric(values, errors="coerce")
                # pandas reads True as 1 in a mixed column; the fast path rejects it too
                flags = values.map(lambda v: isinstance(v, (bool, np.bool_)))
                bad = values.notna() & (converted.isna() | flags.astype(bool))
                if bad.any():
                    example = values[bad].iloc[0]
                    raise RequestError(f"column '{column}' must be a number, got {_show(example)}")
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
                raise RequestError(f"column '{column}' must be a date/time (ISO 8601), got "
                                   f"{_show(values[bad].iloc[0])}")
        return frame

    def check_records(self, records: list[dict[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The same checks as ``check``, on plain dicts (the small-request fast path).

        Returns the records and, when the model has date/time columns, each row's parsed
        timestamps (column → ``pd.Timestamp`` or None), which ``predict_answers(...,
        stamps=...)`` uses instead of parsing the same text again."""
        if not records:
            raise RequestError("the request has no rows; send at least one instance")
        required = self._required_set
        for record in records:
            if record.keys() != required:
                self._check_columns(record)
        self.check_values(records)
        stamps: list[dict[str, Any]] | None = [] if self._datetime else None
        for record in records:
            for column in self._numeric:
                value = record[column]
                if value is None or type(value) is float or type(value) is int:
                    continue
                if isinstance(value, (bool, np.bool_)) or not _is_number(value):
                    raise RequestError(f"column '{column}' must be a number, got {_show(value)}")
            if stamps is None:
                continue
            parsed = {}
            for column in self._datetime:
                value = record[column]
                stamp = None if value is None else _features_timestamp(value)
                if value is not None and stamp is None:
                    raise RequestError(f"column '{column}' must be a date/time (ISO 8601), got "
                                       f"{_show(value)}")
                parsed[column] = stamp
            stamps.append(parsed)
        return records, stamps


def _is_number(value: Any) -> bool:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    from autokfp.modeling.features import _number

    # the frame path's rule (pandas' parser): "nan", "1_000" or "1e400" are not numbers there
    return not math.isnan(_number(value))


def _features_timestamp(value: Any) -> Any:
    from autokfp.modeling.features import _timestamp

    return _timestamp(value)


# ------------------------------------------------------------------------------ decoding


def records_v1(payload: Any) -> list[dict[str, Any]]:
    """The instances of a v1 body as row dicts, or a RequestError saying what is wrong."""
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object with 'instances'")
    if "instances" in payload:
        rows = payload["instances"]
    elif "inputs" in payload:
        rows = payload["inputs"]
    elif "dataframe_split" in payload:
        return _dataframe_split(payload["dataframe_split"])
    else:
        raise RequestError("the body needs 'instances': a list of objects mapping column to value")
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list):
        raise RequestError("'instances' must be a list of objects mapping column name to value")
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"the request has {len(rows)} rows; send at most {MAX_ROWS_PER_REQUEST} per request")
    for index, row in enumerate(rows):
        if type(row) is not dict:
            raise RequestError(f"instance {index} is {_show(row)}; each instance must be an object "
                               "mapping column name to value")
    return rows


def _dataframe_split(split: Any) -> list[dict[str, Any]]:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
            or not isinstance(split.get("data"), list):
        raise RequestError("'dataframe_split' needs 'columns' (a list of names) and 'data' "
                           "(a list of rows)")
    columns, data = split["columns"], split["data"]
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise RequestError("'dataframe_split.columns' must be distinct column names")
    if len(data) > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"the request has {len(data)} rows; send at most {MAX_ROWS_PER_REQUEST} per request")
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(f"'dataframe_split.data' row {index} must be a list of "
                               f"{len(columns)} values, one per column")
    return [dict(zip(columns, row)) for row in data]


def records_v2(request: InferRequest) -> list[dict[str, Any]]:
    """The rows of a v2 request (one tensor per column), its shapes and types checked."""
    inputs = request.inputs or []
    if not inputs:
        raise RequestError("the request has no inputs; send one tensor per column")
    names = [i.name for i in inputs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RequestError(f"input(s) {[shorten(str(n), 80) for n in duplicated]} appear more than "
                           "once; send one tensor per column")
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        columns[tensor.name] = _tensor_values(tensor)
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise RequestError(f"every input tensor needs the same length; got {lengths}")
    rows = next(iter(lengths.values()))
    if rows > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"the request has {rows} rows; send at most {MAX_ROWS_PER_REQUEST} per request")
    items = list(columns.items())
    return [{name: values[i] for name, values in items} for i in range(rows)]


def _tensor_values(tensor: Any) -> list[Any]:
    name = shorten(str(tensor.name), 80)
    datatype = str(tensor.datatype).upper()
    if datatype not in V2_DATATYPES:
        raise RequestError(f"input '{name}' has datatype {shorten(str(tensor.datatype), 20)!r}; "
                           f"use one of {sorted(V2_DATATYPES)}")
    shape = list(tensor.shape or [])
    if not (1 <= len(shape) <= 2 and all(type(d) is int and d >= 0 for d in shape)
            and (len(shape) == 1 or shape[1] == 1)):
        raise RequestError(f"input '{name}' has shape {shorten(str(shape), 60)}; a column is a "
                           "tensor of shape [rows] or [rows, 1]")
    if shape[0] > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"input '{name}' has {shape[0]} rows; send at most "
                           f"{MAX_ROWS_PER_REQUEST} per request")
    data = tensor.data
    if isinstance(data, np.ndarray):
        data = data.tolist()
    if not isinstance(data, list):
        raise RequestError(f"input '{name}' needs 'data': a list of values")
    if data and all(isinstance(v, list) and len(v) == 1 for v in data):
        data = [v[0] for v in data]  # [[v], [v], ...] for shape [rows, 1]
    if len(data) != shape[0]:
        raise RequestError(f"input '{name}' has shape {shape} but {len(data)} values; the shape "
                           "must give the number of values")
    family = "BYTES" if datatype == "BYTES" else "BOOL" if datatype == "BOOL" else "NUMBER"
    for value in data:
        if value is None:
            continue
        if family == "BYTES":
            ok = isinstance(value, (str, bytes))
        elif family == "BOOL":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise RequestError(f"input '{name}' is {datatype} but holds {_show(value)}")
    if family == "BYTES":
        data = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in data]
    return data


# ------------------------------------------------------------------------------ bounded work


class Workload:
    """One worker thread for the big requests, a queue bound, and a time limit.

    Small requests never come here. A big request waits for the thread (at most
    ``max_waiting`` may wait; the next is a ``Busy``), then runs with ``deadline()`` set;
    long loops call ``check_deadline()`` and stop with ``TooSlow``. The caller is answered
    when the time is up even if the work has not yet reached a check.
    """

    def __init__(self, timeout: float, max_waiting: int = MAX_WAITING):
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autokfp-work")
        self._local = threading.local()

    def busy(self) -> bool:
        return self.waiting >= self.max_waiting

    def busy_for_big_bodies(self) -> bool:
        return self.waiting >= min(MAX_WAITING_BIG_BODIES, self.max_waiting)

    def check_deadline(self) -> None:
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise TooSlow(self._too_slow())

    def _too_slow(self) -> str:
        return (f"the request took longer than the server's limit of {self.timeout:g} s "
                f"({TIMEOUT_ENV}); send fewer rows, or fewer explain samples")

    async def run(self, work: Callable[[], T]) -> T:
        if self.busy():
            raise Busy(f"the server is busy with {self.waiting} large requests; retry shortly, "
                       f"or send at most {FAST_PATH_ROWS} rows per request")
        self.waiting += 1
        deadline = time.monotonic() + self.timeout

        def bounded() -> T:
            if time.monotonic() > deadline:  # it waited past its limit: do not start
                raise TooSlow(self._too_slow())
            self._local.deadline = deadline
            try:
                return work()
            finally:
                self._local.deadline = None

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, bounded)
            try:
                return await asyncio.wait_for(asyncio.shield(future), self.timeout)
            except asyncio.TimeoutError:
                raise TooSlow(self._too_slow()) from None
        finally:
            self.waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Metrics:
    """The predictor's Prometheus series for one model version, looked up once (a label
    lookup costs microseconds, and a fast request does only a few things)."""

    def __init__(self, name: str, version: str, meta: dict[str, Any] | None):
        labels = {"model": name, "version": version}
        self.labels = labels
        self.requests_v1 = REQUESTS.labels(protocol="v1", **labels)
        self.requests_v2 = REQUESTS.labels(protocol="v2", **labels)
        self.invalid = ERRORS.labels(kind="invalid_input", **labels)
        self.internal = ERRORS.labels(kind="internal", **labels)
        self.latency = LATENCY.labels(**labels)
        self.rows = ROWS.labels(**labels)
        self.scores = SCORES.labels(**labels)
        self._classes: dict[str, Any] = {}
        meta = meta or {}
        self.task = meta.get("task")
        self.score_key = "prediction"
        if self.task == "binary":
            self.score_key = f"probability_{meta['class_labels'][1]}"

    def observe(self, answers: list[dict[str, Any]]) -> None:
        """Rows, predicted classes and (first 100 rows') scores of one answered request."""
        self.rows.inc(len(answers))
        if self.task != "regression":
            counts: dict[str, int] = {}
            for answer in answers:
                label = str(answer["prediction"])
                counts[label] = counts.get(label, 0) + 1
            for label, count in counts.items():
                child = self._classes.get(label)
                if child is None:
                    child = self._classes[label] = CLASSES.labels(label=label, **self.labels)
                child.inc(count)
        if self.task in ("binary", "regression"):
            key = self.score_key
            for answer in answers[:100]:
                value = answer[key]
                if value is not None:
                    self.scores.observe(value)


class _DeadlineModel:
    """The model as Kernel SHAP sees it, stopping once the request's time is up."""

    def __init__(self, model: Any, workload: Workload):
        self.model = model
        self.workload = workload

    def predict(self, context: Any, frame: pd.DataFrame) -> pd.DataFrame:
        self.workload.check_deadline()
        return self.model.predict(context, frame)


# ------------------------------------------------------------------------------ the model


class AutokfpPredictor(Model):
    """KServe model serving one packaged autokfp model version."""

    def __init__(self, name: str, model_dir: str | Path, version: str = "1",
                 prediction_log_uri: str | None = None, log_sample_rate: float = 1.0,
                 timeout: float | None = None):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.version = str(version)
        self.prediction_log_uri = prediction_log_uri
        self.log_sample_rate = log_sample_rate
        self.model: Any = None
        self.validator: InputValidator | None = None
        self.prediction_log = None
        self.workload = Workload(request_timeout(timeout))
        self._example: list[dict[str, Any]] | None = None
        self._checked_at = -math.inf
        self._healthy = False
        self._stopping = False
        self._metrics = _Metrics(self.name, self.version, None)
        # ids for requests that come without x-request-id: this process's random prefix and a
        # counter (unique across pods and restarts, and a fraction of a uuid4's cost)
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()
        self.ready = False

    def _request_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):x}"

    def load(self) -> bool:
        """Load the package and score its input example once; only then mark ready."""
        self.model = load_package(self.model_dir)
        self.validator = InputValidator(self.model.plan)
        self.meta = self.model.meta
        example_path = self.model_dir / "input_example.json"
        if example_path.exists():  # a model that cannot score its own example is not ready
            example = _example_frame(json.loads(example_path.read_text()))
            self._score(example.copy())
            self._example = [{c: _plain(v) for c, v in row.items()}
                             for row in example[self.validator.required].head(1).to_dict("records")]
        # the explainer's imports (shap, scipy, sklearn) take seconds: pay them before ready,
        # not inside the first :explain request's time limit. The lean serving image has no
        # shap: it serves predictions and answers :explain with a message saying so.
        try:
            import shap  # noqa: F401

            import autokfp.governance.explain  # noqa: F401
            self._explain_unavailable = ""
        except ImportError as exc:
            self._explain_unavailable = (
                f"explanations are not available in this server ({exc}); serve the model with "
                "the runtime image, or install shap next to autokfp")
            log.warning("%s", self._explain_unavailable)

        if self.prediction_log_uri:
            from autokfp.serving.prediction_log import PredictionLogger

            flush = float(os.environ.get(LOG_FLUSH_ENV) or 10.0)
            self.prediction_log = PredictionLogger(self.prediction_log_uri, self.name, self.version,
                                                   sample_rate=self.log_sample_rate,
                                                   flush_seconds=max(0.2, flush))
        self._metrics = _Metrics(self.name, self.version, self.meta)
        self.ready = True
        self._healthy, self._checked_at = True, time.monotonic()
        log.info("model %s v%s ready (%s, %s)", self.name, self.version, self.meta["engine"], self.meta["task"])
        return self.ready

    def is_ready(self) -> bool:
        """Loaded, not stopping, and scoring its own example (re-checked every few seconds)."""
        if not self.ready or self._stopping:
            return False
        now = time.monotonic()
        if now - self._checked_at >= SELF_CHECK_SECONDS:
            self._checked_at = now
            try:
                if self._example is not None:
                    self.model.predict_answers([dict(r) for r in self._example])
                self._healthy = True
            except Exception as error:  # noqa: BLE001 - any failure means not ready
                if self._healthy:
                    log.error("model %s v%s cannot score its own example, so it reports not "
                              "ready: %s: %s", self.name, self.version, type(error).__name__,
                              shorten(str(error)))
                self._healthy = False
        return self._healthy

    async def healthy(self) -> bool:
        return self.is_ready()

    def stop(self) -> None:
        self._stopping = True
        self.workload.close()
        if self.prediction_log is not None:
            self.prediction_log.close()
        super().stop()

    # -- scoring ---------------------------------------------------------------------------

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        assert self.validator is not None
        frame = self.validator.check(frame)
        return self.model.predict(None, frame)

    def _score_records(self, records: list[dict[str, Any]], answer: bool
                       ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]] | None]:
        """The frame path (run in the worker thread): checks, then pandas and the engine,
        and the v1 answer's rows when ``answer``."""
        assert self.validator is not None
        self.validator.check_values(records)
        self._check_every_row_has_the_columns(records)
        self.workload.check_deadline()
        frame = self.validator.check(pd.DataFrame.from_records(records))
        self.workload.check_deadline()
        predictions = self.model.predict(None, frame)
        return frame, predictions, _records(predictions) if answer else None

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

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        v2 = isinstance(payload, InferRequest)
        metrics = self._metrics
        (metrics.requests_v2 if v2 else metrics.requests_v1).inc()
        started = time.perf_counter()
        frame = None
        try:
            records = records_v2(payload) if v2 else records_v1(payload)
            if not records:
                raise RequestError("the request has no rows; send at least one instance")
            if len(records) <= FAST_PATH_ROWS:  # answered at once, without pandas
                assert self.validator is not None
                checked, stamps = self.validator.check_records(records)
                answer = self.model.predict_answers(checked, stamps=stamps)
                predictions = None
            else:  # big: in the worker thread, answer included (the event loop stays free)
                frame, predictions, answer = await self.workload.run(
                    lambda: self._score_records(records, answer=True))
        except InvalidInput:
            metrics.invalid.inc()
            mark_counted()
            raise
        except Exception:
            metrics.internal.inc()
            mark_counted()
            raise
        metrics.latency.observe(time.perf_counter() - started)
        metrics.observe(answer)
        if self.prediction_log is not None:
            request_id = (headers or {}).get("x-request-id") or self._request_id()
            if frame is None:
                self.prediction_log.log_records(records, answer, request_id)
            else:
                self.prediction_log.log(frame, predictions, request_id)
        if v2:
            return self._v2_response(payload, pd.DataFrame(answer) if predictions is None
                                     else predictions)
        return {"predictions": answer, "model_version": self.version}

    async def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        """v1 ``:explain``: per-column Kernel SHAP contributions for each instance.

        The background is the sample of training rows the package carries
        (``meta['explain_background']``, written by the governance step), else the package's
        input example. ``{"parameters": {"nsamples": N}}`` trades time for precision.
        """
        labels = {"model": self.name, "version": self.version}
        REQUESTS.labels(protocol="v1-explain", **labels).inc()
        try:
            if getattr(self, "_explain_unavailable", ""):
                raise RequestError(self._explain_unavailable)
            records = records_v1(payload)
            if not records:
                raise RequestError("the request has no rows; send at least one instance")
            if len(records) > MAX_EXPLAIN_ROWS:
                raise RequestError(f"the request has {len(records)} rows; explain at most "
                                   f"{MAX_EXPLAIN_ROWS} per request")
            nsamples = self._nsamples(payload, len(records))
            result, frame, predictions = await self.workload.run(
                lambda: self._explain(records, nsamples))
        except InvalidInput:
            ERRORS.labels(kind="invalid_input", **labels).inc()
            mark_counted()
            raise
        except Exception:
            ERRORS.labels(kind="internal", **labels).inc()
            mark_counted()
            raise
        from autokfp.governance.explain import local_explanations

        explanations = local_explanations(result, frame, predictions)
        return {"explanations": explanations, "method": "kernel-shap", "output": result["output"],
                "background_rows": result["background_rows"], "nsamples": result["nsamples"],
                "model_version": self.version}

    @staticmethod
    def _nsamples(payload: dict, rows: int) -> int:
        parameters = payload.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise RequestError(f"'parameters' must be an object such as {{\"nsamples\": "
                               f"{EXPLAIN_NSAMPLES}}}, got {_show(parameters)}")
        unknown = sorted(str(k) for k in parameters if k != "nsamples")
        if unknown:
            raise RequestError(f"unknown explain parameter(s) {[shorten(k, 40) for k in unknown[:5]]}; "
                               "the only one is 'nsamples'")
        nsamples = parameters.get("nsamples", EXPLAIN_NSAMPLES)
        if type(nsamples) is not int or not 16 <= nsamples <= MAX_EXPLAIN_NSAMPLES:
            raise RequestError(f"parameters.nsamples must be a whole number from 16 to "
                               f"{MAX_EXPLAIN_NSAMPLES}, got {_show(nsamples)}")
        if rows * nsamples > MAX_EXPLAIN_WORK:
            raise RequestError(f"{rows} rows × nsamples {nsamples} = {rows * nsamples:,} exceeds "
                               f"the server's explain budget of {MAX_EXPLAIN_WORK:,} per request; "
                               f"send fewer rows or a smaller nsamples (at most "
                               f"{max(MAX_EXPLAIN_WORK // rows, 16)} for {rows} rows)")
        return nsamples

    def _explain(self, records: list[dict[str, Any]], nsamples: int) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
        from autokfp.governance.explain import kernel_shap

        assert self.validator is not None
        self.validator.check_values(records)
        self._check_every_row_has_the_columns(records)
        frame = self.validator.check(pd.DataFrame.from_records(records))
        result = kernel_shap(_DeadlineModel(self.model, self.workload), self.model.plan, self.meta,
                             self._explain_background(), frame, nsamples=nsamples)
        if result["status"] != "run":
            raise RequestError(f"this model cannot be explained per column: {result['reason']}")
        return result, frame, self.model.predict(None, frame)

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


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


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


def _quiet_per_request_logging(app: Any) -> None:
    """Turn off KServe's per-request log lines: uvicorn's access line, and the timing lines
    of KServe's ``TimingMiddleware``, which also calls ``getrusage`` twice per request (a
    cost that grows with the JVM's threads). The Prometheus metrics count and time every
    request, and the guard logs each rejection; ``AUTOKFP_ACCESS_LOG=on`` restores them."""
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    build = app.build_middleware_stack

    def without_timing() -> Any:  # KServe adds its middleware when the server starts
        app.user_middleware = [m for m in app.user_middleware
                               if getattr(m.cls, "__name__", "") != "TimingMiddleware"]
        return build()

    app.build_middleware_stack = without_timing


async def _rejected(_: Any, error: RequestError) -> Any:
    """Our own rejections: their status and message, no traceback (the guard logs a line)."""
    from fastapi.responses import JSONResponse

    headers = {"retry-after": "1"} if isinstance(error, Busy) else None
    return JSONResponse(status_code=error.status, content={"error": str(error)}, headers=headers)


def serve(model_dir: str | Path, name: str, version: str = "1", port: int = 8080,
          host: str = "127.0.0.1", prediction_log_uri: str | None = None,
          max_bytes: int | None = None, timeout: float | None = None) -> None:
    """Load the model and serve it over HTTP until interrupted (blocks).

    ``host`` is 127.0.0.1 unless the caller says otherwise: the serving image passes
    0.0.0.0 (in a pod, the kubelet's probes and the Service reach the container on the pod's
    address). A model that fails to load raises here, before the server starts: it is never
    reported ready. Request bodies above ``max_bytes`` (default
    ``$AUTOKFP_MAX_REQUEST_BYTES`` or 16 MiB) get 413; work beyond ``timeout`` seconds
    (default ``$AUTOKFP_REQUEST_TIMEOUT`` or 10) a 422.
    """
    from kserve import ModelServer, model_server

    from autokfp.serving import v1_route

    limit = max_request_bytes(max_bytes)
    split = v1_route.ABSplit.from_env(name, str(version))  # Standard-mode A/B: the other arm
    # the worker thread scores big requests while the event loop answers the rest: a short
    # GIL switch interval keeps the loop (and the health probes) from waiting 5 ms for the
    # GIL after every socket call (the convoy effect)
    sys.setswitchinterval(SWITCH_INTERVAL)
    predictor = AutokfpPredictor(name, model_dir, version, prediction_log_uri=prediction_log_uri,
                                 timeout=timeout)
    predictor.load()
    _bind_host(host)
    served = Served(name=name, version=str(version), is_ready=predictor.is_ready,
                    count_error=lambda kind: ERRORS.labels(model=name, version=str(version),
                                                           kind=kind).inc(),
                    is_busy=predictor.workload.busy_for_big_bodies)
    install_guard(model_server.app, limit, served)
    model_server.app.add_exception_handler(RequestError, _rejected)
    access_log = os.environ.get(ACCESS_LOG_ENV, "off").lower() in ("on", "true", "1")
    if not access_log:
        _quiet_per_request_logging(model_server.app)
    if os.environ.get(V1_ROUTE_ENV, "direct").lower() != "kserve":
        v1_route.install(model_server.app, predictor, split)
    elif split is not None:
        from autokfp.errors import ConfigError

        raise ConfigError(f"{v1_route.AB_TARGET_ENV} splits v1 predictions on the direct "
                          f"route, which {V1_ROUTE_ENV}=kserve turns off; unset one of them")
    try:
        ModelServer(http_port=port, workers=1, enable_grpc=False,
                    enable_latency_logging=access_log).start([predictor])
    finally:
        predictor.stop()
