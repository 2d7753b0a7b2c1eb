"""What the drift-monitoring components call: files in, files out, one call each.

collect → (drift, performance) → anomalies → decide → [retrain: the training graph] →
record the retraining; an exit handler (``finalize_stage``) runs whatever happened.

Bad input never raises here: an empty window, rows logged by another model version, labels
that never arrived, a missing reference, no champion at all are written into the stage
outputs as plain sentences, the decision says why nothing was retrained, and nothing is
deleted. Every decision, anomaly, failed run and rollback is an audit event, recorded once
per pipeline run (a retried task does not record it twice).
"""

from __future__ import annotations

import html
import io
import json
import logging
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp import storage
from autokfp.config import RunConfig, parse_config
from autokfp.settings import Settings

log = logging.getLogger(__name__)

REPORT_ROWS = 50_000  # rows per side drawn for Evidently's HTML report (verdicts use every row)
OK, EMPTY, TOO_FEW, NO_CHAMPION = "ok", "empty", "too-few-rows", "no-champion"


def _config(config: dict[str, Any] | RunConfig) -> RunConfig:
    return (
        config if isinstance(config, RunConfig) else parse_config(config, origin="pipeline config")
    )


def json_safe(value: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python (the audit trail refuses NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value


def _write_json(path: str | Path, data: Any) -> None:
    storage.write_text(str(path), json.dumps(json_safe(data), indent=2, default=str))


def _read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    from autokfp.monitoring.window import _parquet_safe

    buffer = io.BytesIO()
    _parquet_safe(frame).to_parquet(buffer, index=False)
    storage.write_bytes(str(path), buffer.getvalue())


def category_text(value: Any) -> str | None:
    """One text form per category value: 2.0 and 2 are "2", True is "True", missing is None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        if value != value:
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _normalise(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numbers as float64 and categories as text on both sides, whatever the log stored."""
    from autokfp.monitoring.drift import NUMERICAL

    frame = frame.copy()
    for column, kind in kinds.items():
        if column not in frame.columns:
            continue
        if kind == NUMERICAL:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        else:
            frame[column] = frame[column].map(category_text).astype("object")
    return frame


# ------------------------------------------------------------------------- audit + state


def _record_once(
    kind: str,
    details: dict[str, Any],
    model: str,
    version: str | None,
    run_id: str,
    key: str,
    settings: Settings | None = None,
) -> dict[str, Any] | None:
    """Record an audit event unless this run already recorded it (same kind and key)."""
    from autokfp.governance.audit import read_events, record_event

    if run_id:
        for event in read_events(settings):
            if (
                event.get("run_id") == run_id
                and event.get("kind") == kind
                and (event.get("details") or {}).get("key") == key
            ):
                return None
    return record_event(
        kind,
        json_safe({**details, "key": key}),
        model=model,
        version=version,
        run_id=run_id or None,
        settings=settings,
    )


def _run_state_uri(settings: Settings, model: str, run_id: str) -> str:
    return storage.join(settings.artifact_root, "monitoring", model, "runs", f"{run_id}.json")


def _remember_run_start(settings: Settings, model: str, run_id: str, champion_version: str) -> None:
    """The champion when the run started: the exit handler restores it if a deploy breaks."""
    if not run_id:
        return
    uri = _run_state_uri(settings, model, run_id)
    if not storage.exists(uri):  # a retried task keeps the first answer
        storage.write_text(
            uri,
            json.dumps(
                {
                    "run_id": run_id,
                    "champion_at_start": champion_version,
                    "started": datetime.now(timezone.utc).isoformat(),
                }
            ),
        )


# ----------------------------------------------------------------------------- collect


def collect_stage(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    reference_path: str,
    collection_path: str,
    run_id: str = "",
    window_end: str = "",
) -> dict[str, Any]:
    """The champion's logged predictions for the window (with labels), its reference and
    the quality of the live inputs."""
    from autokfp.monitoring.quality import check_inputs
    from autokfp.monitoring.window import (
        LABEL_COLUMN,
        OUTPUT_PREFIX,
        join_labels,
        load_champion,
        parse_time,
        read_labels,
        read_window,
        resolve_reference,
    )

    cfg = _config(config)
    spec = cfg.monitoring
    settings = Settings.from_env()
    end = parse_time(window_end)
    start = end - timedelta(days=spec.window_days)
    collection: dict[str, Any] = {
        "model": cfg.model_name,
        "run_id": run_id,
        "notes": [],
        "window": {"start": start.isoformat(), "end": end.isoformat(), "days": spec.window_days},
    }
    champion = load_champion(cfg.model_name, settings)
    if champion is None:
        collection.update(
            status=NO_CHAMPION,
            rows=0,
            labelled_rows=0,
            reason=f"no version of '{cfg.model_name}' holds alias 'champion': there is "
            "nothing to monitor; train one first (autokfp run CONFIG)",
        )
        _write_parquet(current_path, pd.DataFrame())
        _write_parquet(reference_path, pd.DataFrame())
        _write_json(collection_path, collection)
        return collection
    _remember_run_start(settings, cfg.model_name, run_id, champion.version)
    window = read_window(settings.artifact_root, champion.service, champion.version, start, end)
    collection["notes"] += window.notes
    required = list(champion.plan.input_columns)
    for version, seen in window.other_versions.items():
        columns = [
            c
            for c in seen["columns"]
            if not c.startswith(OUTPUT_PREFIX)
            and c not in ("request_id", "model_version", "logged_at")
        ]
        extra = sorted(set(columns) - set(required) - set(champion.plan.dropped))
        lacking = sorted(set(required) - set(columns))
        differs = (
            f" and other columns (extra {extra}, lacking {lacking})" if extra or lacking else ""
        )
        collection["notes"].append(
            f"{seen['rows']} rows in the window were logged by v{version}{differs}; they are not "
            f"compared: only the champion v{champion.version}'s own predictions are"
        )
    id_column = spec.labels.id_column or cfg.training.id_column
    target = spec.labels.target or cfg.training.target
    labels = read_labels(spec.labels.path, id_column, target)
    current, label_note = join_labels(window.frame, labels, id_column, target)
    reference = resolve_reference(cfg, champion, settings)
    quality = check_inputs(
        current, required, champion.kinds, reference.frame, spec.max_bad_input_fraction
    )
    rows = len(current)
    if rows == 0:
        status, reason = (
            EMPTY,
            (
                f"no predictions of {cfg.model_name} v{champion.version} were logged "
                f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC: "
                "there is nothing to compare"
            ),
        )
    elif rows < spec.min_window_rows:
        status, reason = (
            TOO_FEW,
            (
                f"only {rows} predictions were logged in the window, fewer than "
                f"monitoring.min_window_rows ({spec.min_window_rows}): too few to judge"
            ),
        )
    else:
        status, reason = OK, f"{rows} predictions of v{champion.version} in the window"
    labelled = int(current[LABEL_COLUMN].notna().sum()) if rows else 0
    collection.update(
        status=status,
        reason=reason,
        rows=rows,
        files=window.files,
        labelled_rows=labelled,
        labels=label_note,
        other_versions=window.other_versions,
        champion={
            "version": champion.version,
            "service": champion.service,
            "registered_at": champion.registered_at.isoformat(),
            "test_metric": champion.test_metric,
            "deployment": champion.tags.get("deployment"),
        },
        task=champion.meta["task"],
        primary_metric=champion.meta["primary_metric"],
        class_labels=champion.meta.get("class_labels"),
        kinds=champion.kinds,
        prediction_kinds=champion.prediction_kinds,
        reference={
            "source": reference.source,
            "note": reference.note,
            "rows": 0 if reference.frame is None else len(reference.frame),
        },
        quality=quality.to_dict(),
    )
    _write_parquet(current_path, current)
    _write_parquet(
        reference_path, reference.frame if reference.frame is not None else pd.DataFrame()
    )
    _write_json(collection_path, collection)
    log.info(
        "monitoring %s v%s: %s; labels: %s; reference: %s",
        cfg.model_name,
        champion.version,
        reason,
        label_note,
        reference.note,
    )
    return collection


# ------------------------------------------------------------------------------- drift


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
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], report_path: str
) -> str | None:
    """Evidently's DataDriftPreset as HTML (a sample of at most REPORT_ROWS rows per side).

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
        return None
    except Exception as exc:  # noqa: BLE001 - the verdicts stand without the picture
        log.warning("Evidently's drift report could not be drawn: %s: %s", type(exc).__name__, exc)
        return f"{type(exc).__name__}: {exc}"


def drift_stage(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    reference_path: str,
    collection_path: str,
    drift_path: str,
    report_path: str,
) -> dict[str, Any]:
    """Per-feature and prediction drift of the window against the reference."""
    from autokfp.monitoring.drift import detect_drift

    cfg = _config(config)
    collection = _read_json(collection_path)
    summary: dict[str, Any] = {"available": False}
    if collection["status"] != OK:
        summary["reason"] = f"drift not measured: {collection['reason']}"
    elif collection["reference"]["source"] == "missing":
        summary["reason"] = (
            f"drift not measured: the reference is missing ({collection['reference']['note']})"
        )
    if not summary.get("reason"):
        kinds = collection["kinds"]
        prediction_kinds = collection["prediction_kinds"]
        both = {**kinds, **prediction_kinds}
        current = _normalise(pd.read_parquet(current_path), both)
        reference = _normalise(pd.read_parquet(reference_path), both)
        features = detect_drift(
            reference,
            current,
            columns=list(kinds),
            kinds=kinds,
            drift_share=cfg.monitoring.drift_share,
        )
        present = [c for c in prediction_kinds if c in reference.columns and c in current.columns]
        predictions = (
            detect_drift(reference, current, columns=present, kinds=prediction_kinds)
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
            "rows": {"current": len(current), "reference": len(reference)},
        }
        problem = evidently_report(
            reference, current, {c: both[c] for c in list(kinds) + present}, report_path
        )
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
    _write_json(drift_path, summary)
    return summary


# ------------------------------------------------------------------------- performance


def performance_stage(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    collection_path: str,
    performance_path: str,
) -> dict[str, Any]:
    """The champion's primary metric on the labelled live rows, against its test value."""
    from autokfp.monitoring.window import LABEL_COLUMN, OUTPUT_PREFIX

    cfg = _config(config)
    collection = _read_json(collection_path)
    summary: dict[str, Any] = {
        "available": False,
        "labelled_rows": int(collection.get("labelled_rows", 0)),
    }
    if collection["status"] in (NO_CHAMPION, EMPTY):
        summary["reason"] = f"performance not measured: {collection['reason']}"
        _write_json(performance_path, summary)
        return summary
    labelled_rows = summary["labelled_rows"]
    if labelled_rows < cfg.monitoring.min_labelled_rows:
        summary["reason"] = (
            f"performance not measured: {labelled_rows} labelled rows, fewer than "
            f"monitoring.min_labelled_rows ({cfg.monitoring.min_labelled_rows}); "
            f"{collection.get('labels', '')}"
        )
        _write_json(performance_path, summary)
        return summary
    from autokfp.evaluation import compute_metrics
    from autokfp.tasks import GREATER_IS_BETTER

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
    metric = collection["primary_metric"]
    try:
        metrics = compute_metrics(truth, predictions, meta)
    except Exception as exc:  # noqa: BLE001 - labels the model never saw, a missing column...
        summary["reason"] = f"performance not measured: {type(exc).__name__}: {exc}"
        _write_json(performance_path, summary)
        return summary
    live = metrics.get(metric)
    test = collection["champion"]["test_metric"]
    if live is None or live != live or test is None:
        summary.update(
            metrics=metrics,
            reason=(
                f"performance not compared: live {metric} is {live} and the champion's "
                f"test {metric} is "
                f"{test} (a single class among the labels, or no test metric in the registry)"
            ),
        )
        _write_json(performance_path, summary)
        return summary
    worse = (test - live) if GREATER_IS_BETTER.get(metric, True) else (live - test)
    summary.update(
        available=True,
        metric=metric,
        live=live,
        champion_test=test,
        drop=worse / abs(test) if test else 0.0,
        metrics=metrics,
    )
    _write_json(performance_path, summary)
    return summary


# --------------------------------------------------------------------------- anomalies


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


def anomaly_stage(
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
    from autokfp.monitoring.history import (
        append_history,
        rates_since,
        read_history,
        scrape_counters,
    )

    cfg = _config(config)
    settings = Settings.from_env()
    collection = _read_json(collection_path)
    drift = _read_json(drift_path)
    performance = _read_json(performance_path)
    summary: dict[str, Any] = {"anomalies": [], "notes": []}
    if collection["status"] == NO_CHAMPION:
        summary["notes"].append("no champion: nothing recorded")
        _write_json(anomalies_path, summary)
        return summary
    history = read_history(cfg.model_name, settings)
    record: dict[str, Any] = {
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
    spec = cfg.monitoring
    if spec.metrics_url:
        try:
            counters = scrape_counters(spec.metrics_url, collection["champion"]["service"])
            previous = history.iloc[-1].to_dict() if not history.empty else None
            record.update({f"counter_{k}": v for k, v in counters.items()})
            record.update(rates_since(previous, counters))
        except Exception as exc:  # noqa: BLE001 - a missing metrics page costs two histories only
            summary["notes"].append(f"predictor metrics not read from {spec.metrics_url}: {exc}")
    record = json_safe(record)
    appended = append_history(cfg.model_name, record, settings)
    history = read_history(cfg.model_name, settings)
    summary["history_points"] = len(history)
    if not appended:
        summary["notes"].append(
            "this run is already in the history (a retried task): not added twice"
        )
    anomalies = detect_anomalies(history, season=spec.season, threshold=spec.anomaly_threshold)
    for anomaly in anomalies:
        _record_once(
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
    _write_json(anomalies_path, summary)
    return summary


# ------------------------------------------------------------------------------ decide


def decide_stage(
    config: dict[str, Any] | RunConfig,
    collection_path: str,
    drift_path: str,
    performance_path: str,
    anomalies_path: str,
    decision_path: str,
    run_id: str = "",
) -> dict[str, Any]:
    """Apply the retraining triggers; record the decision and its reasons in the audit trail."""
    from autokfp.monitoring.triggers import decide

    cfg = _config(config)
    settings = Settings.from_env()
    collection = _read_json(collection_path)
    drift = _read_json(drift_path)
    performance = _read_json(performance_path)
    anomalies = _read_json(anomalies_path)
    has_champion = collection["status"] != NO_CHAMPION
    quality = collection.get("quality") or {}
    failed = [c["detail"] for c in quality.get("checks", []) if c["status"] == "fail"]
    age = None
    if has_champion:
        registered = datetime.fromisoformat(collection["champion"]["registered_at"])
        age = (
            datetime.fromisoformat(collection["window"]["end"]) - registered
        ).total_seconds() / 86400
    decision = decide(
        cfg.monitoring,
        has_champion=has_champion,
        window_rows=int(collection.get("rows", 0)),
        quality_usable=bool(quality.get("usable", False)),
        quality_detail="; ".join(failed),
        drift=drift,
        performance=performance,
        new_labelled_rows=int(collection.get("labelled_rows", 0)),
        champion_age_days=age,
    )
    result = decision.to_dict()
    result.update(
        model=cfg.model_name,
        champion=(collection.get("champion") or {}).get("version"),
        window=collection["window"],
        rows=collection.get("rows", 0),
        status=collection["status"],
        notes=collection.get("notes", []),
        reference=(collection.get("reference") or {}).get("source"),
        anomalies=[a["summary"] for a in anomalies.get("anomalies", [])],
    )
    kind = "retrain.triggered" if decision.retrain else "retrain.skipped"
    _record_once(
        kind,
        {
            k: result[k]
            for k in (
                "summary",
                "reasons",
                "blockers",
                "checks",
                "window",
                "rows",
                "status",
                "reference",
                "notes",
                "anomalies",
            )
        },
        cfg.model_name,
        result["champion"],
        run_id,
        key="decision",
        settings=settings,
    )
    _write_json(decision_path, result)
    log.info("%s: %s", cfg.model_name, decision.summary)
    return result


# ------------------------------------------------------------------- after retraining


def record_retraining_stage(
    config: dict[str, Any] | RunConfig, registration_path: str, outcome_path: str, run_id: str = ""
) -> dict[str, Any]:
    """After the nested training graph: what was registered and what serves now (audit event),
    and the new champion's monitoring reference while its training data is unchanged."""
    from autokfp import registry
    from autokfp.monitoring.window import load_champion, resolve_reference

    cfg = _config(config)
    settings = Settings.from_env()
    registration = _read_json(registration_path)
    client = registry.configure(settings)
    champion = registry.champion_version(client, cfg.model_name)
    outcome = {
        "registered_version": registration.get("version"),
        "promoted": registration.get("promoted"),
        "aliases": registration.get("aliases"),
        "decision": registration.get("decision"),
        "champion": None if champion is None else str(champion.version),
        "deployment": None if champion is None else champion.tags.get("deployment"),
    }
    if champion is not None and str(champion.version) == str(registration.get("version")):
        try:
            loaded = load_champion(cfg.model_name, settings)
            if loaded is not None:
                outcome["reference"] = resolve_reference(cfg, loaded, settings).note
        except Exception as exc:  # noqa: BLE001 - the next monitoring run tries again
            outcome["reference"] = f"not stored yet: {exc}"
    _record_once(
        "retrain.completed",
        outcome,
        cfg.model_name,
        outcome["champion"],
        run_id,
        key="retrain",
        settings=settings,
    )
    _write_json(outcome_path, outcome)
    return outcome


# ------------------------------------------------------------------------ exit handler


def finalize_stage(
    config: dict[str, Any] | RunConfig,
    state: str,
    run_id: str = "",
    error: str = "",
    task: str = "",
) -> dict[str, Any]:
    """The exit handler: a failed run is recorded, and a champion promoted during the run
    whose deploy did not finish is replaced by the champion the run started with."""
    from autokfp import registry
    from autokfp.serving import deployment

    cfg = _config(config)
    settings = Settings.from_env()
    result: dict[str, Any] = {"state": state, "restored": None}
    if state == "SUCCEEDED":
        return result
    _record_once(
        "monitoring.run_failed",
        {"state": state, "error": error[:2000], "task": task},
        cfg.model_name,
        None,
        run_id,
        key="run",
        settings=settings,
    )
    uri = _run_state_uri(settings, cfg.model_name, run_id) if run_id else None
    if not uri or not storage.exists(uri):
        result["note"] = "the run failed before it read the champion: nothing to restore"
        return result
    start = json.loads(storage.read_text(uri)).get("champion_at_start")
    client = registry.configure(settings)
    current = registry.champion_version(client, cfg.model_name)
    if current is None or start is None or str(current.version) == str(start):
        result["note"] = f"the champion is still v{start}: nothing to restore"
        return result
    if current.tags.get("deployment") == "serving":
        result["note"] = f"v{current.version} was deployed and verified before the failure: kept"
        return result
    failed = str(current.version)
    deployment.restore_champion(client, cfg.model_name, failed, str(start))
    traffic = ""
    if deployment.resolve_target(cfg.deploy.target) == "kubernetes":
        from autokfp.serving.inference_service import service_name

        try:  # canary 0%: every request goes back to the previous revision
            deployment.KubernetesServing(cfg.deploy.namespace).set_traffic(
                service_name(cfg.model_name), 0
            )
            traffic = "; canary traffic set to 0%"
        except Exception as exc:  # noqa: BLE001 - the registry is restored either way
            traffic = f"; canary traffic could not be reset: {exc}"
    reason = (
        f"the monitoring run failed ({state} in {task or 'a task'}: {error[:300]}) after v{failed} "
        f"became champion and before its deploy was verified: v{start} is champion again, "
        f"v{failed} is marked rejected{traffic}"
    )
    _record_once(
        "deploy.rolled_back",
        {"failed_version": failed, "restored_version": str(start), "reason": reason},
        cfg.model_name,
        str(start),
        run_id,
        key="restore",
        settings=settings,
    )
    result.update(restored=str(start), failed_version=failed, note=reason)
    log.warning(reason)
    return result
