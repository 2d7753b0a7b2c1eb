"""The `detect_anomalies` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.monitoring.runs import record_once
from autokfp.monitoring.window import EMPTY, NO_CHAMPION
from autokfp.settings import Settings
from autokfp.steps.io import json_safe, read_config, read_json, write_stored_json
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnomaliesDetected(StepResult):
    """The anomalies of this run against the monitoring history."""

    anomalies: list[dict[str, Any]]
    record: dict[str, Any]
    """Everything the step wrote to ``anomalies_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AnomaliesDetected:
        return cls(anomalies=list(record.get("anomalies") or []), record=record)

    def publication(self) -> Publication:
        count = len(self.anomalies)
        return Publication(metadata={"anomalies": {"anomalies": count}}, returns=(count,))



@batched
def detect_anomalies(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    collection_path: str,
    drift_path: str,
    performance_path: str,
    anomalies_path: str,
    run_id: str = "",
) -> AnomaliesDetected:
    """Add this run to the monitoring history and flag its anomalies (audit events)."""
    record = _detect_anomalies(
        config=config, current_path=current_path, collection_path=collection_path,
        drift_path=drift_path, performance_path=performance_path, anomalies_path=anomalies_path,
        run_id=run_id
    )
    return AnomaliesDetected.from_record(record)


def _detect_anomalies(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    collection_path: str,
    drift_path: str,
    performance_path: str,
    anomalies_path: str,
    run_id: str = "",
) -> dict[str, Any]:
    """Add this run to the monitoring history and flag its anomalies (audit events)."""
    from autokfp.monitoring.anomaly import detect_anomalies
    from autokfp.monitoring.history import append_history, read_history

    cfg = read_config(config)
    settings = Settings.from_env()
    collection = read_json(collection_path)
    drift = read_json(drift_path)
    performance = read_json(performance_path)
    summary: dict[str, Any] = {"anomalies": [], "notes": []}
    if collection["status"] == NO_CHAMPION:
        summary["notes"].append("no champion: nothing recorded")
        write_stored_json(anomalies_path, summary)
        return summary
    history = read_history(cfg.model_name, settings)
    record = _history_record(cfg, current_path, collection, drift, performance, run_id)
    _add_predictor_counters(record, cfg.monitoring.metrics_url, collection, history, summary)
    record = json_safe(record)
    appended = append_history(cfg.model_name, record, settings)
    history = read_history(cfg.model_name, settings)
    summary["history_points"] = len(history)
    if not appended:
        summary["notes"].append(
            "this run is already in the history (a retried task): not added twice"
        )
    spec = cfg.monitoring
    anomalies = detect_anomalies(history, season=spec.season, threshold=spec.anomaly_threshold)
    for anomaly in anomalies:
        record_once(
            "monitoring.anomaly",
            {**anomaly.to_dict(), "summary": anomaly.describe()},
            cfg.model_name,
            collection["champion"]["version"],
            run_id,
            key=f"anomaly:{anomaly.metric}",
            settings=settings,
        )
    summary["anomalies"] = [{**a.to_dict(), "summary": a.describe()} for a in anomalies]
    summary["record"] = record
    write_stored_json(anomalies_path, summary)
    return summary


def _history_record(cfg: RunConfig, current_path: str, collection: dict[str, Any],
                    drift: dict[str, Any], performance: dict[str, Any],
                    run_id: str) -> dict[str, Any]:
    """This run's point of the monitoring history."""
    return {
        "timestamp": collection["window"]["end"],
        "run_id": run_id or None,
        "version": collection["champion"]["version"],
        "rows": collection["rows"],
        "labelled_rows": collection["labelled_rows"],
        "drift_share": (drift.get("features") or {}).get("share_of_drifted_columns")
        if drift["available"]
        else None,
        "prediction_mean": _prediction_mean(current_path, collection),
        "live_metric": performance.get("live"),
    }


def _add_predictor_counters(record: dict[str, Any], metrics_url: str | None,
                            collection: dict[str, Any], history: pd.DataFrame,
                            summary: dict[str, Any]) -> None:
    """The predictor's request counters and their rates since the last point, when its
    metrics page is configured and answers (else a note: two histories go without)."""
    from autokfp.monitoring.history import rates_since, scrape_counters

    if not metrics_url:
        return
    try:
        counters = scrape_counters(metrics_url, collection["champion"]["service"])
        previous = history.iloc[-1].to_dict() if not history.empty else None
        record.update({f"counter_{k}": v for k, v in counters.items()})
        record.update(rates_since(previous, counters))
    except Exception as exc:  # noqa: BLE001 - a missing metrics page costs two histories only
        summary["notes"].append(f"predictor metrics not read from {metrics_url}: {exc}")


def _prediction_mean(current_path: str, collection: dict[str, Any]) -> float | None:
    from autokfp.monitoring.window import OUTPUT_PREFIX

    if collection["status"] in (NO_CHAMPION, EMPTY):
        return None
    frame = pd.read_parquet(current_path)
    if collection["task"] == "binary":
        column = f"{OUTPUT_PREFIX}probability_{collection['class_labels'][1]}"
    elif collection["task"] == "regression":
        column = f"{OUTPUT_PREFIX}prediction"
    else:
        return None
    if column not in frame.columns:
        return None
    value = pd.to_numeric(frame[column], errors="coerce").mean()
    return None if value != value else float(value)
