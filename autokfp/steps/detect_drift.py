"""The `detect_drift` step: files in, files out, one call into the engine."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp import storage
from autokfp.config import RunConfig
from autokfp.monitoring.drift import REPORT_ROWS
from autokfp.monitoring.window import OK, normalise_kinds
from autokfp.steps.io import read_config, read_json, write_stored_json
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)

# Evidently inlines its JavaScript and every plot's data: past this the Kubeflow UI's HTML
# viewer gets slow or gives up, so the artifact becomes a light page that links the full
# report, kept in the artifact store
REPORT_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class DriftDetected(StepResult):
    """Per-feature and prediction drift, or why it could not be measured."""

    available: bool
    reason: str
    features: dict[str, Any]
    predictions: dict[str, Any] | None
    record: dict[str, Any]
    """Everything the step wrote to ``drift_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DriftDetected:
        return cls(available=bool(record.get("available")), reason=record.get("reason") or "",
                   features=record.get("features") or {}, predictions=record.get("predictions"),
                   record=record)

    @property
    def drifted_share(self) -> float:
        return float(self.features["share_of_drifted_columns"]) if self.available else 0.0

    def publication(self) -> Publication:
        if not self.available:
            return Publication(metadata={"drift": {"reason": self.reason}}, returns=(0.0,))
        metrics = {"drifted_feature_share": self.drifted_share,
                   "drifted_features": self.features["number_of_drifted_columns"],
                   "features_tested": self.features["number_of_columns"]}
        if self.predictions:
            metrics["prediction_drift"] = float(self.predictions["number_of_drifted_columns"] > 0)
        return Publication(metrics=metrics,
                           metadata={"drift": {"drifted": ",".join(self.features["drifted_columns"])}},
                           returns=(self.drifted_share,))


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px "
        "solid #ddd;text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.4g}"


def _drift_table(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c['column'])}</td><td>{c['kind']}</td><td>{c['method_name']}</td>"
        f"<td>{_score_text(c['score'])}</td><td>{c['threshold']:g}</td>"
        f"<td>{'<b>drift</b>' if c['drifted'] else 'stable'}</td></tr>"
        for c in report["columns"]
    )
    return (
        "<table><tr><th>column</th><th>kind</th><th>test</th><th>score</th><th>threshold</th>"
        f"<th>verdict</th></tr>{rows}</table>"
    )


def evidently_report(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], report_path: str,
    full_report_uri: str | None = None, max_bytes: int | None = None,
) -> str | None:
    """Evidently's DataDriftPreset as HTML (a sample of at most REPORT_ROWS rows per side).

    A report larger than ``max_bytes`` (default ``REPORT_MAX_BYTES``) is stored at
    ``full_report_uri`` and ``report_path`` gets a light page linking it.
    Returns None, or the reason the report could not be drawn.
    """
    from autokfp.monitoring.drift import CATEGORICAL, NUMERICAL

    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        columns = [c for c in kinds if c in reference.columns and c in current.columns]
        definition = DataDefinition(
            numerical_columns=[c for c in columns if kinds[c] == NUMERICAL],
            categorical_columns=[c for c in columns if kinds[c] == CATEGORICAL],
        )
        sample_ref = reference[columns].sample(n=min(len(reference), REPORT_ROWS), random_state=0)
        sample_cur = current[columns].sample(n=min(len(current), REPORT_ROWS), random_state=0)
        snapshot = Report([DataDriftPreset(columns=columns)], include_tests=True).run(
            current_data=Dataset.from_pandas(
                sample_cur.reset_index(drop=True), data_definition=definition
            ),
            reference_data=Dataset.from_pandas(
                sample_ref.reset_index(drop=True), data_definition=definition
            ),
        )
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(report_path)
        _keep_under_limit(report_path, full_report_uri, max_bytes or REPORT_MAX_BYTES)
        return None
    except Exception as exc:  # noqa: BLE001 - the verdicts stand without the picture
        log.warning("Evidently's drift report could not be drawn: %s: %s", type(exc).__name__, exc)
        return f"{type(exc).__name__}: {exc}"



def _keep_under_limit(report_path: str, full_report_uri: str | None, max_bytes: int) -> None:
    size = Path(report_path).stat().st_size
    if size <= max_bytes:
        return
    mb = size / 1e6
    if full_report_uri:
        storage.write_bytes(full_report_uri, Path(report_path).read_bytes())
        where = (f"The full report is kept at <a href='{html.escape(full_report_uri)}'>"
                 f"{html.escape(full_report_uri)}</a>.")
    else:
        where = "No artifact store was given to keep it."
    log.info("Evidently report is %.1f MB (limit %.1f MB): linked, not inlined", mb, max_bytes / 1e6)
    Path(report_path).write_text(_page(
        "Data drift", f"<p>Evidently's report is {mb:.1f} MB, too large for the Kubeflow UI "
        f"(limit {max_bytes / 1e6:.1f} MB). {where}</p>"), encoding="utf-8")


def detect_drift(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    reference_path: str,
    collection_path: str,
    drift_path: str,
    report_path: str,
) -> DriftDetected:
    """Per-feature and prediction drift of the window against the reference."""
    record = _detect_drift(
        config=config, current_path=current_path, reference_path=reference_path,
        collection_path=collection_path, drift_path=drift_path, report_path=report_path
    )
    return DriftDetected.from_record(record)


def _detect_drift(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    reference_path: str,
    collection_path: str,
    drift_path: str,
    report_path: str,
) -> dict[str, Any]:
    """Per-feature and prediction drift of the window against the reference."""
    cfg = read_config(config)
    collection = read_json(collection_path)
    summary: dict[str, Any] = {"available": False}
    if collection["status"] != OK:
        summary["reason"] = f"drift not measured: {collection['reason']}"
    elif collection["reference"]["source"] == "missing":
        summary["reason"] = (
            f"drift not measured: the reference is missing ({collection['reference']['note']})"
        )
    if not summary.get("reason"):
        summary, present = _measure_drift(cfg, collection, current_path, reference_path)
        problem = _report_on_samples(cfg, collection, present, current_path, reference_path,
                                     report_path)
        if problem:
            body = (
                f"<p>Evidently could not draw its report ({html.escape(problem)}); "
                "our verdicts:</p>" + _drift_table(summary["features"])
            )
            storage.write_text(report_path, _page("Data drift", body))
        summary["report"] = "evidently" if problem is None else "verdicts only"
    else:
        storage.write_text(
            report_path,
            _page("Data drift: not measured", f"<p>{html.escape(summary['reason'])}</p>"),
        )
    write_stored_json(drift_path, summary)
    return summary


def _measure_drift(cfg: RunConfig, collection: dict[str, Any], current_path: str,
                   reference_path: str) -> tuple[dict[str, Any], list[str]]:
    """Feature and prediction drift, streamed column by column from the Parquet files (the
    window may exceed memory); also the prediction columns both files hold."""
    from autokfp.modeling.features import category_text
    from autokfp.monitoring.drift_stream import (
        detect_drift_parquet,
        parquet_columns,
        parquet_rows,
    )

    kinds = collection["kinds"]
    prediction_kinds = collection["prediction_kinds"]
    stream: dict[str, Any] = {"category_key": category_text, "coerce_numbers": True}
    features = detect_drift_parquet(
        reference_path, current_path, columns=list(kinds), kinds=kinds,
        drift_share=cfg.monitoring.drift_share, **stream,
    )
    reference_columns = set(parquet_columns(reference_path))
    current_columns = set(parquet_columns(current_path))
    present = [c for c in prediction_kinds
               if c in reference_columns and c in current_columns]
    predictions = (
        detect_drift_parquet(reference_path, current_path, columns=present,
                             kinds=prediction_kinds, **stream)
        if present
        else None
    )
    summary = {
        "available": True,
        "features": features.to_dict(),
        "predictions": predictions.to_dict() if predictions else {},
        "prediction_note": ""
        if present
        else "the reference holds no predictions: prediction drift not measured",
        "rows": {"current": parquet_rows(current_path),
                 "reference": parquet_rows(reference_path)},
    }
    return summary, present


def _report_on_samples(cfg: RunConfig, collection: dict[str, Any], present: list[str],
                       current_path: str, reference_path: str, report_path: str) -> str | None:
    """Evidently's report on a sample of both sides (the whole report kept in the artifact
    store); what kept Evidently from drawing it, or None."""
    from autokfp.monitoring.drift_stream import sample_rows
    from autokfp.settings import Settings

    kinds = collection["kinds"]
    both = {**kinds, **collection["prediction_kinds"]}
    full_uri = storage.join(
        Settings.from_env().artifact_root, "reports", "drift", cfg.model_name,
        f"{collection.get('run_id') or 'latest'}.html",
    )
    report_kinds = {c: both[c] for c in list(kinds) + present}
    reference, current = (
        normalise_kinds(sample_rows(path, list(report_kinds), REPORT_ROWS), both)
        for path in (reference_path, current_path)
    )
    return evidently_report(
        reference, current, report_kinds, report_path,
        full_report_uri=full_uri,
    )
