"""The monitoring history: one JSON line per monitoring run, per model.

``<artifact root>/monitoring/<model>/history.jsonl`` keeps, for each run: the window, rows,
drift share, prediction mean, the champion's live metric, and (when
``monitoring.metrics_url`` points at the predictor's Prometheus endpoint) the request,
error and latency counters with the error rate and mean latency since the previous run.
The anomaly detector reads it. A rerun of the same pipeline run (same run id) does not add
a second line.
"""

from __future__ import annotations

import logging
import urllib.request
from typing import Any

import pandas as pd

from autokfp import storage
from autokfp.settings import Settings

log = logging.getLogger(__name__)

REQUESTS = "autokfp_requests_total"
ERRORS = "autokfp_request_errors_total"
LATENCY = "autokfp_predict_seconds"


def history_uri(root_uri: str, model_name: str) -> str:
    return storage.join(root_uri, "monitoring", model_name, "history.jsonl")


def read_history(model_name: str, settings: Settings | None = None) -> pd.DataFrame:
    import json

    settings = settings or Settings.from_env()
    uri = history_uri(settings.artifact_root, model_name)
    if not storage.exists(uri):
        return pd.DataFrame()
    records = []
    for line in storage.read_text(uri).splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                log.warning("skipped a damaged line of %s", uri)
    return pd.DataFrame.from_records(records)


def append_history(
    model_name: str, record: dict[str, Any], settings: Settings | None = None
) -> bool:
    """Append ``record`` unless a record with the same ``run_id`` exists; True if appended."""
    settings = settings or Settings.from_env()
    uri = history_uri(settings.artifact_root, model_name)
    run_id = record.get("run_id")
    if run_id and storage.exists(uri):
        existing = read_history(model_name, settings)
        if "run_id" in existing.columns and (existing["run_id"] == run_id).any():
            return False
    storage.append_jsonl(uri, record)
    return True


def scrape_counters(url: str, service: str, timeout: float = 5.0) -> dict[str, float]:
    """Cumulative request, error and latency counters of ``service`` from a Prometheus text page.

    ``url`` is an http(s) URL of a ``/metrics`` endpoint, or a file path holding one.
    """
    from prometheus_client.parser import text_string_to_metric_families

    if url.startswith(("http://", "https://")):
        # the URL comes from the validated run config (monitoring.metrics_url)
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            text = response.read().decode("utf-8", errors="replace")
    else:
        text = storage.read_text(url)
    totals = {"requests": 0.0, "errors": 0.0, "latency_sum": 0.0, "latency_count": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != service:
                continue
            if sample.name == REQUESTS:
                totals["requests"] += sample.value
            elif sample.name == ERRORS:
                totals["errors"] += sample.value
            elif sample.name == f"{LATENCY}_sum":
                totals["latency_sum"] += sample.value
            elif sample.name == f"{LATENCY}_count":
                totals["latency_count"] += sample.value
    return totals


def rates_since(
    previous: dict[str, Any] | None, counters: dict[str, float]
) -> dict[str, float | None]:
    """Error rate and mean latency between two scrapes (a counter reset starts from zero)."""
    before = {k: float((previous or {}).get(f"counter_{k}") or 0.0) for k in counters}
    if any(counters[k] < before[k] for k in counters):  # the predictor restarted
        before = dict.fromkeys(counters, 0.0)
    requests = counters["requests"] - before["requests"]
    errors = counters["errors"] - before["errors"]
    count = counters["latency_count"] - before["latency_count"]
    latency = counters["latency_sum"] - before["latency_sum"]
    return {
        "requests": requests,
        "error_rate": errors / requests if requests > 0 else None,
        "latency_mean_ms": 1000.0 * latency / count if count > 0 else None,
    }
