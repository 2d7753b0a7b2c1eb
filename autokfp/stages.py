"""One function per pipeline stage: files in, files out, one call each.

These are what the KFP components call (and what a notebook can call directly): each takes
the run config as a dict plus artifact paths, does its work through the engine modules,
writes its outputs, and returns a small JSON-safe summary. Nothing here imports kfp.
Outputs are written completely or not at all (temp file + rename), so a failed step leaves
no half-written artifact behind.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig, parse_config

log = logging.getLogger(__name__)


def _config(config: dict[str, Any] | RunConfig) -> RunConfig:
    return config if isinstance(config, RunConfig) else parse_config(config, origin="pipeline config")


def _write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8",
                                     prefix=f".{path.name}.", suffix=".tmp") as handle:
        handle.write(text)
        temp = handle.name
    os.replace(temp, path)


def _write_json(path: str | os.PathLike, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2, default=str))


def _write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(temp, index=False)
    os.replace(temp, path)


def _read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- discover


def discover_stage(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
                   catalog_path: str) -> dict[str, Any]:
    """Crawl every configured source into the catalog, then load the training dataset.

    The crawl records schema versions in the catalog (artifact store, DataHub Lite, and a
    DataHub GMS when ``DATAHUB_GMS_URL`` is set). If the training dataset's schema broke
    the accepted version, training stops here with a SchemaError naming the columns.

    Writes the training data as Parquet (``dataset_path``), its schema with semantic types
    and catalog facts (schema version, previous row count) as JSON (``schema_path``) and
    the metadata-change proposals for every discovered dataset (``catalog_path``, a file
    ``datahub check metadata-file`` accepts).
    """
    from autokfp.catalog.crawl import catalog_proposals, check_training_schema, crawl_sources
    from autokfp.catalog.datahub import dataset_urn, write_metadata
    from autokfp.catalog.discovery import load_dataset

    cfg = _config(config)
    report = crawl_sources(cfg, training=cfg.training)
    failures = {d.dataset_id: d.error for d in report.datasets if d.status == "failed"}
    failures.update(report.source_errors)
    for dataset_id, error in failures.items():
        log.warning("discovery could not read %s: %s", dataset_id, error)
    check_training_schema(report, cfg.training.dataset)
    frame, schema = load_dataset(cfg, cfg.training.dataset)
    crawled = next((d for d in report.found if d.ok and d.dataset_id == schema.dataset_id), None)
    if crawled is not None:
        schema.catalog = dict(crawled.schema.catalog)
        schema.modified_at = crawled.schema.modified_at
    write_metadata(catalog_path, catalog_proposals(report, replace={schema.dataset_id: schema}))
    _write_parquet(dataset_path, frame)
    _write_text(schema_path, schema.to_json())
    return {
        "datasets_found": sum(1 for d in report.found if d.ok),
        "datasets_failed": len(failures),
        "training_dataset": schema.dataset_id,
        "training_urn": dataset_urn(schema),
        "rows": len(frame),
        "columns": len(frame.columns),
        "fingerprint": schema.fingerprint,
        "schema_version": schema.catalog.get("schema_version"),
        "accepted_schema_version": schema.catalog.get("accepted_version"),
    }


# ----------------------------------------------------------------------------- profile


def profile_stage(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
                  report_path: str, summary_path: str | None = None) -> dict[str, Any]:
    """Run the data-quality gate; write the HTML report, then fail if any check failed."""
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.quality import raise_for_failures, run_quality_gate

    cfg = _config(config)
    frame = pd.read_parquet(dataset_path)
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    report = run_quality_gate(frame, schema, cfg)
    _write_text(report_path, report.to_html())
    if summary_path:
        _write_json(summary_path, report.to_dict())
    raise_for_failures(report)
    counts = {"pass": 0, "warn": 0, "fail": 0}
    for check in report.checks:
        counts[check.status] = counts.get(check.status, 0) + 1
    return {"rows": len(frame), "columns": len(frame.columns), "checks_passed": counts["pass"],
            "checks_warned": counts["warn"], "checks_failed": counts["fail"]}


# ---------------------------------------------------------------------------- features


def engineer_stage(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
                   train_path: str, test_path: str, plan_path: str,
                   report_path: str | None = None) -> dict[str, Any]:
    """Fix the held-out split, infer the task and learn the feature plan from training rows."""
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.errors import DataError, SchemaError
    from autokfp.features import plan_features
    from autokfp.partition import split_holdout
    from autokfp.tasks import infer_task

    cfg = _config(config)
    frame = pd.read_parquet(dataset_path)
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    target = cfg.training.target
    if target not in frame.columns:
        raise SchemaError(
            f"target column '{target}' is not in dataset '{schema.dataset_id}'; its columns are "
            f"{sorted(frame.columns)}; set training.target to one of them"
        )
    id_column = cfg.training.id_column or next(
        (c.name for c in schema.columns if c.semantic_type == "id"), None)
    task = infer_task(frame[target], cfg.training.task)
    train, test = split_holdout(frame, cfg.split.test_fraction, cfg.split.seed, id_column, target)
    classes = None
    if task != "regression":
        classes = sorted(train[target].dropna().unique().tolist(), key=lambda v: str(v))
        if cfg.training.positive_class is not None and task == "binary":
            positive = [c for c in classes if str(c) == cfg.training.positive_class]
            if not positive:
                raise DataError(f"training.positive_class '{cfg.training.positive_class}' is not a value "
                                f"of '{target}' (values: {classes})")
            classes = [c for c in classes if c is not positive[0]] + positive
        if len(classes) < 2:
            raise DataError(f"target '{target}' has a single class {classes} in the training rows; "
                            "a classifier needs at least two")
    if len(train) < 2 * cfg.budget.nfolds:
        raise DataError(
            f"only {len(train)} labelled training rows for budget.nfolds={cfg.budget.nfolds} "
            "cross-validation folds; add rows or lower budget.nfolds (at least 2 rows per fold)")
    plan = plan_features(train, schema, target, task, cfg.features, id_column=id_column, classes=classes)
    if cfg.selection.feature_selection != "off" or cfg.budget.max_features:
        from autokfp.features import select_features

        select_features(plan, train, max_features=cfg.budget.max_features,
                        drop_useless=cfg.selection.feature_selection == "importance",
                        seed=cfg.split.seed)
    _write_parquet(train_path, train)
    _write_parquet(test_path, test)
    _write_text(plan_path, plan.to_json())
    if report_path:
        _write_text(report_path, _feature_report(plan, schema.dataset_id, len(train), len(test)))
    return {"task": task, "train_rows": len(train), "test_rows": len(test),
            "features": len(plan.feature_columns), "dropped": len(plan.dropped),
            "id_column": id_column or ""}


def _feature_report(plan: Any, dataset_id: str, train_rows: int, test_rows: int) -> str:
    lines = [f"# Features for `{dataset_id}`", "",
             f"Task **{plan.task}**, target `{plan.target}`; {train_rows} training rows, "
             f"{test_rows} held-out test rows.", "",
             "| group | columns |", "| --- | --- |"]
    for group in ("numeric", "categorical", "boolean", "datetime", "text"):
        columns = getattr(plan, group)
        lines.append(f"| {group} | {', '.join(f'`{c}`' for c in columns) or '-'} |")
    lines += ["", "## Dropped columns", "", "| column | reason |", "| --- | --- |"]
    lines += [f"| `{c}` | {r} |" for c, r in plan.dropped.items()] or ["| - | - |"]
    lines += ["", "## Single-column predictive power (leakage screen)", "", "| column | score |",
              "| --- | --- |"]
    ranked = sorted(plan.leakage_scores.items(), key=lambda item: -item[1])
    lines += [f"| `{c}` | {s:.3f} |" for c, s in ranked]
    selection = getattr(plan, "selection", None) or {}
    if selection:
        lines += ["", "## Feature selection by importance", ""]
        if selection.get("status") == "done":
            lines.append(
                f"{selection['method']}: {selection.get('rows')} rows, quick model "
                f"{selection.get('quick_model_metric')} {selection.get('quick_model_score')}; "
                f"{selection.get('features_before')} features before, "
                f"{selection.get('features_after')} kept"
                + (f" (budget.max_features {selection['max_features']})"
                   if selection.get("max_features") else "") + ".")
            if selection.get("reason"):
                lines += ["", selection["reason"]]
            excluded = selection.get("excluded") or {}
            lines += ["", "| feature | importance | kept |", "| --- | --- | --- |"]
            for name, value in sorted(plan.feature_importance.items(), key=lambda kv: -kv[1]):
                kept = "no: " + excluded[name] if name in excluded else "yes"
                lines.append(f"| `{name}` | {value:+.5f} | {kept} |")
        else:
            lines.append(f"Skipped: {selection.get('reason', 'not needed')}.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- train


def train_stage(config: dict[str, Any] | RunConfig, train_path: str, plan_path: str, model_path: str,
                leaderboard_path: str | None = None, engine: str = "h2o", isolate: bool = False,
                tolerate_failure: bool = False) -> dict[str, Any]:
    """Train with one engine and write the packaged MLflow pyfunc model folder.

    An engine that is not in ``config.engines`` writes a ``skipped`` candidate marker
    instead. With ``isolate`` the engine runs in a child process (a crash or an
    out-of-memory kill cannot take this process down); with ``tolerate_failure`` a failed
    engine writes a ``failed`` candidate marker with the reason and returns its status,
    so selection can fall back to the other engines' leaders. Pipelines use both.
    """
    from autokfp.training.isolation import (
        FAILED,
        SKIPPED,
        EngineFailure,
        run_isolated,
        write_candidate_marker,
    )

    cfg = _config(config)
    if engine not in cfg.engines:
        reason = f"'{engine}' is not in the config's engines {cfg.engines}"
        log.info("%s skipped: %s", engine, reason)
        write_candidate_marker(model_path, engine, SKIPPED, reason)
        if leaderboard_path:
            _write_text(leaderboard_path, _status_html(engine, SKIPPED, reason))
        return {"engine": engine, "status": SKIPPED, "reason": reason, "leader": "", "device": ""}
    if not (isolate or tolerate_failure):
        return _train(cfg, train_path, plan_path, model_path, leaderboard_path, engine)
    started = time.monotonic()
    try:
        if isolate:
            summary = run_isolated(
                "autokfp.stages:train_stage",
                {"config": cfg.to_dict(), "train_path": str(train_path), "plan_path": str(plan_path),
                 "model_path": str(model_path),
                 "leaderboard_path": str(leaderboard_path) if leaderboard_path else None,
                 "engine": engine},
                timeout=3 * cfg.budget.max_runtime_secs + 600)
        else:
            summary = _train(cfg, train_path, plan_path, model_path, leaderboard_path, engine)
        return {**summary, "status": "trained"}
    except Exception as exc:  # noqa: BLE001 - one engine's failure must not end the run
        if not tolerate_failure:
            if isinstance(exc, EngineFailure):
                from autokfp.errors import TrainingError

                raise TrainingError(f"{engine} training failed: {exc}") from None
            raise
        reason = f"{exc}" if isinstance(exc, EngineFailure) else f"{type(exc).__name__}: {exc}"
        reason = reason[:2000]
        log.error("%s training failed; the other engines' leaders compete without it: %s",
                  engine, reason)
        seconds = round(time.monotonic() - started, 1)
        write_candidate_marker(model_path, engine, FAILED, reason, seconds=seconds)
        if leaderboard_path:
            _write_text(leaderboard_path, _status_html(engine, FAILED, reason))
        return {"engine": engine, "status": FAILED, "reason": reason, "leader": "", "device": "",
                "train_seconds": seconds}


def _train(cfg: RunConfig, train_path: str, plan_path: str, model_path: str,
           leaderboard_path: str | None, engine: str) -> dict[str, Any]:
    from autokfp import __version__
    from autokfp.features import FeaturePlan, apply_features
    from autokfp.model_package import save_model_package
    from autokfp.tasks import primary_metric
    from autokfp.training import get_engine

    train = pd.read_parquet(train_path)
    plan = FeaturePlan.from_json(Path(plan_path).read_text())
    features = apply_features(train, plan)
    metric = primary_metric(plan.task, cfg.selection.primary_metric)
    trainer = get_engine(engine)
    labels = [str(c) for c in plan.classes] if plan.classes else None
    started = time.monotonic()
    # packaging needs mlflow (seconds to import in a fresh task process): import it while
    # the engine trains, so the wait after training is only the packaging itself
    warm = threading.Thread(target=_import_packaging, name="import-mlflow", daemon=True)
    warm.start()
    with tempfile.TemporaryDirectory(prefix="autokfp-train-") as workdir:
        result = trainer.train(features, train[plan.target], plan.task, labels, plan.categorical_features,
                               cfg.budget, metric, Path(workdir) / "engine")
        engine_seconds = time.monotonic() - started
        meta = {
            "engine": engine, "task": plan.task, "target": plan.target,
            "classes": plan.classes, "class_labels": labels,
            "positive_class": plan.classes[-1] if plan.task == "binary" else None,
            "threshold": 0.5, "primary_metric": metric, "leader": result.leader,
            "device": result.device, "autokfp_version": __version__,
            "trained_rows": len(train), "cv_metrics": result.cv_metrics, "params": result.params,
            "train_seconds": round(engine_seconds, 2),
        }
        if plan.task != "regression":
            meta["calibration"] = _calibration(cfg, result, train[plan.target], meta)
        save_model_package(model_path, plan, result.artifact_dir, meta, train.drop(columns=[plan.target]))
        if leaderboard_path:
            _write_text(leaderboard_path, _leaderboard_html(result.leaderboard, engine, result.leader))
    wall = time.monotonic() - started
    return {"engine": engine, "leader": result.leader, "device": result.device,
            "models_trained": int(result.params.get("models_trained", 0)),
            "train_seconds": round(wall, 1), "engine_seconds": round(engine_seconds, 1),
            **{k: round(v, 6) for k, v in result.cv_metrics.items() if v == v}}


def train_component(config: dict[str, Any], train: Any, plan: Any, model: Any, leaderboard: Any,
                    metrics: Any, engine: str) -> str:
    """The body of every training component (``train_h2o_automl``, ``train_autokeras``, …).

    Trains ``engine`` in a child process with failures tolerated (``train_stage``), then fills
    the KFP outputs: ``model.metadata`` (engine, status, leader, device, reason) and every
    numeric figure of the summary as a metric. Returns the candidate's status.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = train_stage(config, train.path, plan.path, model.path, leaderboard.path,
                          engine=engine, isolate=True, tolerate_failure=True)
    model.metadata.update({"engine": engine, "status": summary["status"],
                           "leader": summary["leader"], "device": summary["device"],
                           "framework": "mlflow-pyfunc"})
    if summary.get("reason"):
        model.metadata["reason"] = summary["reason"][:1000]
    for key, value in summary.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)
    return summary["status"]


def _import_packaging() -> None:
    try:
        import mlflow.models  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the real import after training reports it
        log.debug("early mlflow import failed: %s", exc)


def _calibration(cfg: RunConfig, result: Any, target: pd.Series,
                 meta: dict[str, Any]) -> dict[str, Any]:
    """``meta['calibration']`` of a classifier: fitted on the engine's out-of-sample rows."""
    import numpy as np

    from autokfp.calibration import fit_calibration
    from autokfp.evaluation import encode_labels

    if cfg.training.calibration == "none":
        return {"method": None, "applied": False, "reason": "turned off (training.calibration: none)"}
    if result.holdout is None:
        return {"method": None, "applied": False,
                "reason": f"the {result.engine} engine returned no out-of-sample predictions"}
    try:
        positions, scores = result.holdout
        codes = encode_labels(target.iloc[np.asarray(positions, dtype=int)], meta)
        known = codes >= 0
        calibration = fit_calibration(codes[known], np.asarray(scores)[known], meta["task"],
                                      seed=cfg.budget.seed)
    except Exception as exc:  # noqa: BLE001 - calibration must never cost the model
        log.warning("probability calibration failed; the engine's probabilities are kept: %s: %s",
                    type(exc).__name__, exc)
        return {"method": None, "applied": False,
                "reason": f"fitting failed ({type(exc).__name__}: {exc})"[:500]}
    params = result.params
    calibration["source"] = (
        f"out-of-fold predictions of {params['nfolds']}-fold cross-validation" if "nfolds" in params
        else f"the {params['validation_fraction']:.0%} validation rows"
        if "validation_fraction" in params else "out-of-sample training rows")
    log.info("probability calibration (%s) %s: %s", calibration["method"],
             "applied" if calibration["applied"] else "not applied", calibration["reason"])
    return calibration


def _status_html(engine: str, status: str, reason: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{engine} {status}</title>"
            "</head><body style='font-family:sans-serif;margin:2em'>"
            f"<h1>{html.escape(engine)}: {html.escape(status)}</h1><p>{html.escape(reason)}</p>"
            "<p>Selection ranks the other engines' leaders without this one.</p></body></html>")


def _leaderboard_html(board: pd.DataFrame, engine: str, leader: str) -> str:
    table = board.head(50).to_html(index=False, float_format=lambda v: f"{v:.5f}", border=0)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{engine} leaderboard</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
            f"<h1>{html.escape(engine)} leaderboard</h1><p>Exported leader: <b>{html.escape(leader)}</b> "
            f"({len(board)} models)</p>{table}</body></html>")


# ---------------------------------------------------------------------------- evaluate


def evaluate_stage(config: dict[str, Any] | RunConfig, model_path: str, test_path: str,
                   evaluation_path: str) -> dict[str, Any]:
    """Score the candidate and the current champion on the same test rows and decide.

    The single-candidate case of ``select_stage``: the same metrics, validation reports
    (calibration, robustness, CV spread), MLflow evaluation run and champion comparison.
    """
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    return _evaluate(config, {meta["engine"]: model_path}, test_path, evaluation_path)


def select_stage(config: dict[str, Any] | RunConfig, candidate_paths: dict[str, str],
                 test_path: str, evaluation_path: str, model_path: str,
                 report_path: str | None = None) -> dict[str, Any]:
    """Score every engine's leader and the champion on the same test rows; keep the best.

    ``candidate_paths`` maps each engine to its training output: a model folder, or a
    ``candidate.json`` marker of an engine that failed or was skipped (the fallback: the
    remaining leaders compete without it). The best candidate by the primary metric is
    copied to ``model_path``; the paired bootstrap against the champion decides whether
    it is promoted. Writes the evaluation JSON and, with ``report_path``, an HTML report
    with the leaderboard, robustness checks and plots. Raises TrainingError when no
    candidate is usable.
    """
    return _evaluate(config, candidate_paths, test_path, evaluation_path, model_path, report_path)


def _evaluate(config: dict[str, Any] | RunConfig, candidate_paths: dict[str, str], test_path: str,
              evaluation_path: str, model_path: str | None = None,
              report_path: str | None = None) -> dict[str, Any]:
    from autokfp import registry
    from autokfp.evaluation import write_plots
    from autokfp.model_package import load_model_package
    from autokfp.selection import (
        copy_selected,
        evaluation_document,
        load_candidates,
        log_evaluation_run,
        report_html,
        select_model,
    )

    cfg = _config(config)
    test = pd.read_parquet(test_path)
    candidates = load_candidates(candidate_paths)
    client = registry.configure()
    current = registry.champion_version(client, cfg.model_name)
    champion = None
    champion_error = None
    if current is not None:
        try:
            champion = load_model_package(registry.model_uri(cfg.model_name))
        except Exception as exc:  # noqa: BLE001 - an unusable champion must not block a new model
            champion_error = (f"champion v{current.version} cannot be loaded ({exc}); it is "
                              "replaced by a model that can")
            log.warning(champion_error)
    selection = select_model(candidates, test, cfg.selection, cfg.split.seed, champion=champion,
                             champion_version=None if current is None else str(current.version))
    if champion_error:
        selection.comparison["reason"] = champion_error
    document = evaluation_document(selection, len(test))
    target = selection.selected.meta["target"]
    with tempfile.TemporaryDirectory(prefix="autokfp-plots-") as scratch:
        curves = {c.engine: c.predictions for c in selection.candidates if c.predictions is not None}
        if selection.champion_predictions is not None:
            curves[f"champion v{current.version}"] = selection.champion_predictions
        try:
            plots = write_plots(test[target], curves, selection.selected.meta, scratch,
                                selected=selection.selected.engine)
        except Exception as exc:  # noqa: BLE001 - a plot must never cost the evaluation
            log.warning("evaluation plots failed: %s: %s", type(exc).__name__, exc)
            plots = {}
        page = report_html(document, plots)
        document["mlflow_run_id"] = log_evaluation_run(cfg.model_name, selection, document, plots,
                                                       page)
        if report_path:
            _write_text(report_path, page)
    if model_path:
        copy_selected(selection, model_path)
    _write_json(evaluation_path, document)
    log.info("selected %s: %s; %s", selection.selected.engine, selection.reason,
             selection.comparison.get("reason"))
    return document


# ---------------------------------------------------------------------------- register


def register_stage(config: dict[str, Any] | RunConfig, model_path: str, evaluation_path: str,
                   schema_path: str, registration_path: str,
                   extra_artifacts: dict[str, str] | None = None) -> dict[str, Any]:
    """Register the candidate in MLflow; alias ``champion`` only if it won the comparison."""
    from autokfp import registry
    from autokfp.catalog.datahub import dataset_urn
    from autokfp.catalog.schema import DatasetSchema

    cfg = _config(config)
    evaluation = _read_json(evaluation_path)
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    comparison = evaluation["comparison"]
    metrics = {f"test_{k}": v for k, v in evaluation["metrics"].items()}
    metrics.update({k: v for k, v in meta.get("cv_metrics", {}).items()})
    if comparison.get("champion") is not None:
        metrics["champion_test_" + comparison["metric"]] = comparison["champion"]
    params = {"engine": meta["engine"], "task": meta["task"], "target": meta["target"],
              "dataset": schema.dataset_id, **{f"budget.{k}": v for k, v in cfg.budget.model_dump().items()},
              **{f"engine.{k}": v for k, v in meta.get("params", {}).items()}}
    tags = {"engine": meta["engine"], "task": meta["task"], "dataset": schema.dataset_id,
            "dataset_urn": dataset_urn(schema), "dataset_fingerprint": schema.fingerprint,
            "primary_metric": meta["primary_metric"], "leader": meta.get("leader", "")}
    if schema.catalog.get("schema_version"):
        tags["dataset_schema_version"] = str(schema.catalog["schema_version"])
    with tempfile.TemporaryDirectory(prefix="autokfp-register-") as scratch:
        evidence = Path(scratch, "evaluation.json")
        shutil.copyfile(evaluation_path, evidence)
        artifacts = {"evaluation": str(evidence), **(extra_artifacts or {})}
        registered = registry.register_model(
            model_path, cfg.model_name, metrics, params, tags, promote=bool(comparison["promote"]),
            decision=comparison["reason"], compared_champion=comparison.get("champion_version"),
            artifacts=artifacts,
        )
    result = registered.to_dict()
    _write_json(registration_path, result)
    _record_model_lineage(cfg, registered, schema, model_path, meta, evaluation)
    return result


def _record_model_lineage(cfg: RunConfig, registered: Any, schema: Any, model_path: str,
                          meta: dict[str, Any], evaluation: dict[str, Any]) -> None:
    """Dataset -> feature set -> model version (-> deployment) in the catalog.

    The model is registered by then: a catalog that cannot be written costs a warning,
    never the registration.
    """
    try:
        from autokfp.catalog.lineage import record_model_lineage
        from autokfp.serving.inference_service import service_name

        metrics = {}
        for key, value in evaluation.get("metrics", {}).items():
            try:
                metrics[f"test_{key}"] = float(value)
            except (TypeError, ValueError):
                continue
        deployment = ((cfg.deploy.namespace, service_name(cfg.model_name))
                      if registered.promoted else None)
        record_model_lineage(
            cfg.model_name, registered.version, schema,
            Path(model_path, "artifacts", "plan.json"), aliases=list(registered.aliases),
            metrics={k: v for k, v in metrics.items() if v == v},
            properties={"engine": meta.get("engine", ""), "task": meta.get("task", ""),
                        "run_id": registered.run_id, "decision": registered.decision,
                        "storage_uri": registered.source},
            deployment=deployment, replaced_version=registered.replaced_version)
    except Exception as exc:  # noqa: BLE001 - lineage must never undo a registration
        log.warning("registered %s v%s, but its lineage could not be recorded in the catalog: "
                    "%s: %s", cfg.model_name, registered.version, type(exc).__name__, exc)


# ------------------------------------------------------------------------------ deploy


def deploy_stage(config: dict[str, Any] | RunConfig, registration_path: str, test_path: str,
                 manifest_path: str, decision_path: str) -> dict[str, Any]:
    """Deploy the champion, verify it, and promote it or roll back (see serving.deployment).

    Always writes the InferenceService YAML (``manifest_path``) and the decision with every
    verification check (``decision_path``). A rolled-back canary is a recorded outcome, not
    a failure: the previous version keeps serving. A first version that fails verification
    raises DeploymentError (nothing would be serving).
    """
    import mlflow.artifacts
    import yaml

    from autokfp import registry
    from autokfp.errors import DeploymentError
    from autokfp.model_package import load_model_package
    from autokfp.serving import deployment
    from autokfp.serving.inference_service import build_inference_service, service_name
    from autokfp.settings import Settings

    cfg = _config(config)
    settings = Settings.from_env()
    registration = _read_json(registration_path)
    client = registry.configure(settings)
    champion = registry.champion_version(client, cfg.model_name)
    if champion is None:
        raise DeploymentError(f"{cfg.model_name}: no champion is registered, so there is nothing to "
                              "deploy; check the register step's decision")
    version = str(champion.version)
    from autokfp.governance.approval import is_approved

    awaiting_approval = cfg.governance.require_approval and not is_approved(cfg.model_name, version,
                                                                             settings)
    new_version = bool(registration["promoted"]) and not registration.get("reused")
    previous = registration.get("replaced_version") if new_version else None
    storage_uri = client.get_model_version_download_uri(cfg.model_name, version)
    canary = bool(new_version and previous)
    manifest = build_inference_service(cfg.model_name, version, storage_uri, cfg.deploy, canary=canary)
    _write_text(manifest_path, yaml.safe_dump(manifest, sort_keys=False))
    service = service_name(cfg.model_name)
    target = deployment.resolve_target(cfg.deploy.target)
    action = "canary" if canary else ("initial" if new_version else "unchanged")
    decision = deployment.DeploymentDecision(target=target, model=cfg.model_name, version=version,
                                             previous_version=previous, action=action,
                                             outcome="skipped", verification=[])

    local_dir = None
    if awaiting_approval:
        decision.outcome = "awaiting-approval"
        decision.reason = (f"governance.require_approval is true and v{version} has no approval yet: "
                           f"review its model card, then run 'autokfp approve {cfg.model_name} "
                           f"{version}' and rerun the pipeline")
    elif target == "manifest" or not cfg.deploy.verify:
        decision.reason = "manifest only: deploy.target is 'manifest' or deploy.verify is false"
    elif not new_version:
        decision.reason = f"the champion (v{version}) did not change; nothing to roll out"
    else:
        test = pd.read_parquet(test_path)
        meta_target = registration.get("target")
        rows = test.drop(columns=[c for c in (meta_target, cfg.training.target) if c and c in test.columns])
        rows = rows.head(cfg.deploy.smoke_rows).reset_index(drop=True)
        local_dir = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{cfg.model_name}/{version}")
        try:
            expected = load_model_package(local_dir).predict(rows)
        except Exception as exc:  # noqa: BLE001 - a model that cannot score offline is broken
            expected = None
            decision.verification.append({"check": "offline_scoring", "passed": False,
                                          "detail": f"the model cannot score held-out rows: {exc}"})
        if target == "local":
            verification = _deploy_local(cfg, settings, service, version, local_dir, rows, expected)
            decision.endpoint = verification.pop("endpoint", None)
        elif target == "kubernetes":
            verification = _deploy_kubernetes(cfg, manifest, service, canary, rows, expected)
            decision.endpoint = verification.pop("endpoint", None)
        else:
            raise DeploymentError(f"unknown deploy target '{target}'; use kubernetes, local or manifest")
        decision.verification += verification["checks"]
        passed = expected is not None and verification["passed"]
        if passed:
            decision.outcome = "promoted"
            decision.reason = f"v{version} passed every check and serves 100% of traffic"
            client.set_model_version_tag(cfg.model_name, version, "deployment", "serving")
        else:
            decision.outcome = "rolled-back"
            deployment.restore_champion(client, cfg.model_name, version, previous)
            failed = [c["check"] for c in decision.verification if not c["passed"]]
            decision.reason = (f"v{version} failed {', '.join(failed)}; "
                               + (f"rolled back: v{previous} keeps serving and is champion again"
                                  if previous else "no previous version to fall back to"))
    _write_json(decision_path, decision.to_dict())
    log.info("deploy %s v%s: %s (%s)", cfg.model_name, version, decision.outcome, decision.reason)
    _record_deployment(cfg, settings, decision, service)
    if decision.outcome == "rolled-back" and not previous:
        raise DeploymentError(f"{cfg.model_name} v{version} failed verification and there is no previous "
                              f"version to serve: {decision.reason}")
    return {"action": action, "outcome": decision.outcome, "version": version, "target": target,
            "storage_uri": storage_uri, "service": manifest["metadata"]["name"],
            "namespace": cfg.deploy.namespace, "reason": decision.reason}


def _record_deployment(cfg: RunConfig, settings: Any, decision: Any, service: str) -> None:
    """Audit trail and lineage for a rollout; neither may fail the deploy step."""
    if decision.outcome not in ("promoted", "rolled-back"):
        return
    kind = "deploy.promoted" if decision.outcome == "promoted" else "deploy.rolled_back"
    try:
        from autokfp.governance.audit import record_event

        record_event(kind, {"target": decision.target, "action": decision.action,
                            "previous_version": decision.previous_version, "reason": decision.reason,
                            "checks": decision.verification},
                     model=cfg.model_name, version=decision.version, settings=settings)
    except Exception as exc:  # noqa: BLE001
        log.warning("deployment not recorded in the audit trail: %s", exc)
    if decision.outcome == "promoted":
        try:
            from autokfp.catalog.lineage import record_deployment

            record_deployment(cfg.model_name, decision.version, cfg.deploy.namespace, service, settings)
        except Exception as exc:  # noqa: BLE001
            log.warning("deployment lineage not recorded: %s", exc)


def _deploy_local(cfg: RunConfig, settings: Any, service: str, version: str, model_dir: str,
                  rows: pd.DataFrame, expected: pd.DataFrame | None) -> dict[str, Any]:
    from autokfp.serving import deployment

    serving = deployment.LocalServing(settings.home / "serving", settings.artifact_root)
    old = serving.current(service)
    port = None
    if cfg.deploy.keep_local_server and old is None:
        port = cfg.deploy.local_port if _port_free(cfg.deploy.local_port) else None
    log_file = settings.home / "logs" / f"serve-{service}-v{version}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    server, process = serving.start(service, version, model_dir, port=port, log_file=log_file)
    try:
        if expected is None:
            result = deployment.Verification(passed=False)
        else:
            result = deployment.verify_endpoint(server.url, service, rows, expected,
                                                cfg.deploy.latency_budget_ms,
                                                cfg.deploy.ready_timeout_secs, process)
    except Exception:
        serving.stop(server)
        raise
    if result.passed and cfg.deploy.keep_local_server:
        if old is not None:
            serving.stop(old)
        serving.record(server, service)
    else:  # a verification-only server, or a failed one: the old server (if any) keeps serving
        serving.stop(server)
    return {"passed": result.passed, "checks": result.checks, "endpoint": server.url}


def _deploy_kubernetes(cfg: RunConfig, manifest: dict[str, Any], service: str, canary: bool,
                       rows: pd.DataFrame, expected: pd.DataFrame | None) -> dict[str, Any]:
    from autokfp.serving import deployment

    cluster = deployment.KubernetesServing(cfg.deploy.namespace)
    applied = cluster.apply(manifest)
    result = deployment.Verification(passed=True)
    result.add("apply", True, f"InferenceService {cfg.deploy.namespace}/{service} {applied}")
    url = cluster.wait_ready(service, cfg.deploy.ready_timeout_secs)
    if url is None:
        result.add("ready", False, f"not Ready within {cfg.deploy.ready_timeout_secs}s")
    elif expected is not None:
        checked = deployment.verify_endpoint(url.rstrip("/"), service, rows, expected,
                                             cfg.deploy.latency_budget_ms, cfg.deploy.ready_timeout_secs)
        for check in checked.checks:
            result.add(check["check"], check["passed"], check["detail"])
    if canary:
        cluster.set_traffic(service, 100 if (result.passed and expected is not None) else 0)
    return {"passed": result.passed, "checks": result.checks, "endpoint": url}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
