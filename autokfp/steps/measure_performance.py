"""The `measure_performance` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.monitoring.window import EMPTY, NO_CHAMPION, category_text
from autokfp.steps.io import read_config, read_json, write_stored_json
from autokfp.steps.results import Publication, StepResult, finite_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerformanceMeasured(StepResult):
    """The live metrics on labelled rows and the primary metric's drop, or why not."""

    available: bool
    reason: str
    metrics: dict[str, float]
    drop: float
    record: dict[str, Any]
    """Everything the step wrote to ``performance_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PerformanceMeasured:
        return cls(available=bool(record.get("available")), reason=record.get("reason") or "",
                   metrics=dict(record.get("metrics") or {}),
                   drop=float(record.get("drop") or 0.0), record=record)

    def publication(self) -> Publication:
        metrics = finite_metrics(self.metrics, prefix="live_")
        if not self.available:
            return Publication(metrics=metrics,
                               metadata={"performance": {"reason": self.reason}}, returns=(0.0,))
        return Publication(metrics={**metrics, "primary_metric_drop": self.drop},
                           returns=(self.drop,))



def measure_performance(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    collection_path: str,
    performance_path: str,
) -> PerformanceMeasured:
    """The champion's primary metric on the labelled live rows, against its test value."""
    record = _measure_performance(
        config=config, current_path=current_path, collection_path=collection_path,
        performance_path=performance_path
    )
    return PerformanceMeasured.from_record(record)


def _measure_performance(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    collection_path: str,
    performance_path: str,
) -> dict[str, Any]:
    """The champion's primary metric on the labelled live rows, against its test value."""
    cfg = read_config(config)
    collection = read_json(collection_path)
    summary: dict[str, Any] = {
        "available": False,
        "labelled_rows": int(collection.get("labelled_rows", 0)),
    }
    reason = _unmeasurable(cfg, collection, summary["labelled_rows"])
    if reason is None:
        from autokfp.modeling.evaluation import compute_metrics

        truth, predictions, meta = _labelled_rows(current_path, collection)
        metric = collection["primary_metric"]
        try:
            metrics = compute_metrics(truth, predictions, meta)
        except Exception as exc:  # noqa: BLE001 - labels the model never saw, a missing column...
            reason = f"performance not measured: {type(exc).__name__}: {exc}"
        else:
            _compare(summary, metrics, metric, collection["champion"]["test_metric"])
    if reason is not None:
        summary["reason"] = reason
    write_stored_json(performance_path, summary)
    return summary


def _unmeasurable(cfg: RunConfig, collection: dict[str, Any], labelled_rows: int) -> str | None:
    """Why the window cannot be measured (no champion, no rows, too few labels), or None."""
    if collection["status"] in (NO_CHAMPION, EMPTY):
        return f"performance not measured: {collection['reason']}"
    if labelled_rows < cfg.monitoring.min_labelled_rows:
        return (
            f"performance not measured: {labelled_rows} labelled rows, fewer than "
            f"monitoring.min_labelled_rows ({cfg.monitoring.min_labelled_rows}); "
            f"{collection.get('labels', '')}"
        )
    return None


def _labelled_rows(current_path: str,
                   collection: dict[str, Any]) -> tuple[pd.Series, pd.DataFrame, dict[str, Any]]:
    """The window's labelled rows: their labels, the model's outputs and the task."""
    from autokfp.monitoring.window import LABEL_COLUMN, OUTPUT_PREFIX

    frame = pd.read_parquet(current_path)
    frame = frame[frame[LABEL_COLUMN].notna()]
    outputs = [c for c in frame.columns if c.startswith(OUTPUT_PREFIX)]
    predictions = (
        frame[outputs].rename(columns=lambda c: c[len(OUTPUT_PREFIX) :]).reset_index(drop=True)
    )
    meta = {"task": collection["task"], "class_labels": collection.get("class_labels")}
    if meta["task"] == "regression":
        truth = pd.to_numeric(frame[LABEL_COLUMN], errors="coerce").reset_index(drop=True)
    else:
        truth = frame[LABEL_COLUMN].map(category_text).reset_index(drop=True)
    return truth, predictions, meta


def _compare(summary: dict[str, Any], metrics: dict[str, Any], metric: str,
             test: float | None) -> None:
    """The live metric against the champion's test value, into ``summary``."""
    from autokfp.modeling.tasks import GREATER_IS_BETTER

    live = metrics.get(metric)
    if live is None or live != live or test is None:
        summary.update(
            metrics=metrics,
            reason=(
                f"performance not compared: live {metric} is {live} and the champion's "
                f"test {metric} is "
                f"{test} (a single class among the labels, or no test metric in the registry)"
            ),
        )
        return
    worse = (test - live) if GREATER_IS_BETTER.get(metric, True) else (live - test)
    summary.update(
        available=True,
        metric=metric,
        live=live,
        champion_test=test,
        drop=worse / abs(test) if test else 0.0,
        metrics=metrics,
    )
