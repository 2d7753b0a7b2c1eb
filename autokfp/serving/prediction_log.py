"""Prediction logging: requests and responses appended to the artifact store as Parquet.

Monitoring reads these batches. Logging must never block or fail a prediction: records go
into a bounded in-memory queue (a full queue drops the record and counts it), and a
background thread writes a Parquet file per batch to

    <artifact root>/predictions/<model>/v<version>/date=<YYYY-MM-DD>/<time>-<uuid>.parquet
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

import pandas as pd

from autokfp import storage

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25  # how often the writer thread collects queued requests


class PredictionLogger:
    """Buffers (inputs, outputs) frames and writes them in batches from a background thread."""

    def __init__(self, root_uri: str, model_name: str, model_version: str, sample_rate: float = 1.0,
                 flush_rows: int = 5000, flush_seconds: float = 10.0, max_queue: int = 10_000):
        self.base = storage.join(root_uri, "predictions", model_name, f"v{model_version}")
        self.model_name = model_name
        self.model_version = str(model_version)
        self.sample_rate = sample_rate
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.dropped = 0
        self.written_rows = 0
        self.failed_batches = 0
        self.max_queue = max_queue
        # a deque the writer polls, not a Queue: Queue.put wakes the writer thread on every
        # request, and handing it the GIL costs the request more than scoring it
        self._items: deque[pd.DataFrame | list[dict]] = deque()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._stopped = threading.Event()
        self._thread.start()

    def log(self, inputs: pd.DataFrame, outputs: pd.DataFrame, request_id: str | None = None) -> None:
        """Queue one request's rows (never raises, never blocks)."""

        def frame() -> pd.DataFrame:
            rows = inputs.reset_index(drop=True).copy()
            for column in outputs.columns:
                rows[f"output_{column}"] = outputs[column].to_numpy()
            rows["request_id"] = request_id or uuid.uuid4().hex
            rows["model_version"] = self.model_version
            rows["logged_at"] = pd.Timestamp.now(tz="UTC")
            return rows

        self._enqueue(frame, inputs)

    def log_records(self, inputs: list[dict], outputs: list[dict], request_id: str | None = None) -> None:
        """Queue one request given as row dicts (never raises, never blocks).

        The cheap path for small requests: a few dict copies here, and the frame is built once
        per batch by the writer thread (building a frame per request costs about a
        millisecond, and concatenating a thousand of them stalls the server for a tenth of a
        second).
        """

        def rows() -> list[dict]:
            if len(inputs) != len(outputs):
                raise ValueError(f"{len(inputs)} input rows but {len(outputs)} outputs")
            # logged_at as integer nanoseconds since the epoch: the writer turns the whole
            # batch's into timestamps at once (one datetime object per row cost more)
            stamp = {"request_id": request_id or uuid.uuid4().hex,
                     "model_version": self.model_version,
                     "logged_at": time.time_ns()}
            return [{**row, **{f"output_{k}": v for k, v in out.items()}, **stamp}
                    for row, out in zip(inputs, outputs)]

        self._enqueue(rows, inputs)

    def _enqueue(self, build: Callable[[], pd.DataFrame | list[dict]], inputs: object) -> None:
        """Sample, build and queue one request's item; a failure or a full queue drops its rows
        (counted in ``dropped``) and never reaches the caller."""
        try:
            if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
                return
            if len(self._items) >= self.max_queue or self._stopped.is_set():
                self.dropped += _row_count(inputs)
                return
            self._items.append(build())
        except Exception as exc:  # noqa: BLE001 - logging must never fail a prediction
            self.dropped += _row_count(inputs)
            log.warning("prediction logging skipped a request: %s", exc)

    def _run(self) -> None:
        pending: list[pd.DataFrame | list[dict]] = []
        rows = 0
        last_flush = time.monotonic()
        poll = min(POLL_SECONDS, self.flush_seconds)
        while True:
            stopping = self._stopped.wait(poll)
            while self._items:
                item = self._items.popleft()
                pending.append(item)
                rows += len(item)
            if stopping:
                self._write(pending)
                return
            if pending and (rows >= self.flush_rows or time.monotonic() - last_flush >= self.flush_seconds):
                self._write(pending)
                pending, rows, last_flush = [], 0, time.monotonic()

    def _write(self, items: list[pd.DataFrame | list[dict]]) -> None:
        if not items:
            return
        try:
            rows = [row for item in items if isinstance(item, list) for row in item]
            frames = [item for item in items if isinstance(item, pd.DataFrame)]
            if rows:
                records = pd.DataFrame.from_records(rows)
                records["logged_at"] = pd.to_datetime(records["logged_at"], unit="ns", utc=True)
                frames.insert(0, records)
            batch = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            if "logged_at" in batch.columns:
                batch["logged_at"] = pd.to_datetime(batch["logged_at"], utc=True)
            for column in batch.columns:  # mixed object columns cannot be written as Parquet
                if batch[column].dtype == object and not _text_or_none(batch[column]):
                    batch[column] = batch[column].map(lambda v: None if v is None else str(v))
            buffer = io.BytesIO()
            batch.to_parquet(buffer, index=False)
            now = datetime.now(timezone.utc)
            name = f"{now:%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
            storage.write_bytes(storage.join(self.base, f"date={now:%Y-%m-%d}", name), buffer.getvalue())
            self.written_rows += len(batch)
        except Exception as exc:  # noqa: BLE001 - never let the writer thread die
            self.failed_batches += 1
            log.warning("could not write a prediction log batch to %s: %s", self.base, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer."""
        self._stopped.set()
        self._thread.join(timeout=timeout)


def _text_or_none(values: pd.Series) -> bool:
    """Every value is a str or None, so writing each as ``str(v)`` would change nothing
    (checked in C: the per-value conversion is most of a batch's cost)."""
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return False
    missing = values.isna().to_numpy()  # None, but also NaN or pd.NA, which str() would spell
    return all(value is None for value in values.to_numpy()[missing])


def _row_count(inputs: object) -> int:
    """Rows in whatever ``log`` was given (1 when it is not even a sized object)."""
    try:
        return len(inputs)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001
        return 1


def read_prediction_log(root_uri: str, model_name: str) -> pd.DataFrame:
    """Every logged prediction of ``model_name`` (all versions), oldest first."""
    base = storage.join(root_uri, "predictions", model_name)
    frames = []
    for uri in storage.list_uris(base):
        if uri.endswith(".parquet"):
            frames.append(pd.read_parquet(io.BytesIO(storage.read_bytes(uri))))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values("logged_at", kind="stable")


def read_new_batches(root_uri: str, service: str, version: str, since: datetime,
                     read: set[str]) -> pd.DataFrame:
    """Rows that ``service`` v``version`` logged at or after ``since``, from batch files not
    in ``read`` (which is updated), without a deploy's own verification requests (ids
    starting ``autokfp-verify-``): live traffic as it arrives, for a shadow to mirror."""
    from autokfp.serving.predictor_client import VERIFY_REQUEST_PREFIX

    base = storage.join(root_uri, "predictions", service, f"v{version}")
    first_day = f"date={since:%Y-%m-%d}"
    frames = []
    for uri in storage.list_uris(base):
        day = next((part for part in uri.split("/") if part.startswith("date=")), "")
        if not uri.endswith(".parquet") or uri in read or day < first_day:
            continue
        read.add(uri)
        try:
            frames.append(pd.read_parquet(io.BytesIO(storage.read_bytes(uri))))
        except Exception as exc:  # noqa: BLE001 - one unreadable batch must not stop the rest
            log.warning("skipped unreadable prediction batch %s: %s", uri, exc)
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    if "logged_at" in rows.columns:
        rows = rows[pd.to_datetime(rows["logged_at"], utc=True) >= pd.Timestamp(since)]
    if "request_id" in rows.columns:
        rows = rows[~rows["request_id"].astype(str).str.startswith(VERIFY_REQUEST_PREFIX)]
    return rows.reset_index(drop=True)
