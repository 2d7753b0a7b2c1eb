"""The `train` step: files in, files out, one call into the engine."""

from __future__ import annotations

import contextlib
import html
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig, TrainingSettings, parse_training_settings
from autokfp.steps.io import write_text
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained(StepResult):
    """One engine's candidate: its status, leader and device, and the figures of its training."""

    engine: str
    status: str
    """``trained``, ``failed`` or ``skipped``."""
    leader: str
    device: str
    reason: str
    """Why the engine failed or was skipped ("" when it trained)."""
    figures: dict[str, float]
    """Every numeric figure of the summary (seconds, models trained, CV metrics)."""
    record: dict[str, Any]
    """The summary ``train_model`` returned."""

    @classmethod
    def from_record(cls, record: dict[str, Any], engine: str) -> Trained:
        return cls(engine=engine, status=record["status"], leader=record["leader"],
                   device=record["device"], reason=record.get("reason") or "",
                   figures={k: v for k, v in record.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)},
                   record=record)

    def publication(self) -> Publication:
        model = {"engine": self.engine, "status": self.status, "leader": self.leader,
                 "device": self.device, "framework": "mlflow-pyfunc"}
        if self.reason:
            model["reason"] = self.reason[:1000]
        return Publication(metrics=dict(self.figures), metadata={"model": model},
                           returns=(self.status,))


def train_model(config: dict[str, Any] | RunConfig | TrainingSettings, train_path: str,
                plan_path: str, model_path: str,
                leaderboard_path: str | None = None, engine: str = "h2o", isolate: bool = False,
                tolerate_failure: bool = False) -> dict[str, Any]:
    """Train with one engine and write the packaged MLflow pyfunc model folder.

    An engine that is not in ``config.engines`` writes a ``skipped`` candidate marker
    instead. With ``isolate`` the engine runs in a child process (a crash or an
    out-of-memory kill cannot take this process down); with ``tolerate_failure`` a failed
    engine writes a ``failed`` candidate marker with the reason and returns its status,
    so selection can fall back to the other engines' leaders. Pipelines use both.
    ``config`` is a run config or only the part of it training reads
    (``RunConfig.training_settings()``, what pipelines pass, so the cache key of the GPU
    task depends on nothing else).
    """
    cfg = _read_settings(config)
    if engine not in cfg.engines:
        return _skip(engine, f"'{engine}' is not in the config's engines {cfg.engine_names()}",
                     model_path, leaderboard_path)
    if not (isolate or tolerate_failure):
        return _train_model(cfg, train_path, plan_path, model_path, leaderboard_path, engine)
    started = time.monotonic()
    try:
        if isolate:
            summary = _train_isolated(cfg, train_path, plan_path, model_path, leaderboard_path,
                                      engine)
        else:
            summary = _train_model(cfg, train_path, plan_path, model_path, leaderboard_path, engine)
        return {**summary, "status": "trained"}
    except Exception as exc:  # noqa: BLE001 - one engine's failure must not end the run
        if not tolerate_failure:
            _raise_engine_failure(exc, engine)
            raise
        return _fail(engine, exc, round(time.monotonic() - started, 1), model_path,
                     leaderboard_path)


def _skip(engine: str, reason: str, model_path: str,
          leaderboard_path: str | None) -> dict[str, Any]:
    """An engine left out of the config: a ``skipped`` candidate marker and its summary."""
    from autokfp.training.isolation import SKIPPED, write_candidate_marker

    log.info("%s skipped: %s", engine, reason)
    write_candidate_marker(model_path, engine, SKIPPED, reason)
    if leaderboard_path:
        write_text(leaderboard_path, _status_html(engine, SKIPPED, reason))
    return {"engine": engine, "status": SKIPPED, "reason": reason, "leader": "", "device": ""}


def _train_isolated(cfg: TrainingSettings, train_path: str, plan_path: str, model_path: str,
                    leaderboard_path: str | None, engine: str) -> dict[str, Any]:
    """``_train_model`` in a child process (a crash or an out-of-memory kill stays there)."""
    from autokfp.training.isolation import engine_timeout, run_isolated

    return run_isolated(
        "autokfp.steps.train_model:train_model",
        {"config": cfg.to_dict(), "train_path": str(train_path), "plan_path": str(plan_path),
         "model_path": str(model_path),
         "leaderboard_path": str(leaderboard_path) if leaderboard_path else None,
         "engine": engine},
        timeout=engine_timeout(cfg.budget.max_runtime_secs))


def _raise_engine_failure(exc: Exception, engine: str) -> None:
    """A failure not tolerated that is the engine's own: raised as a ``TrainingError``."""
    from autokfp.training.isolation import EngineFailure

    if isinstance(exc, EngineFailure):
        from autokfp.errors import TrainingError

        raise TrainingError(f"{engine} training failed: {exc}") from None


def _fail(engine: str, exc: Exception, seconds: float, model_path: str,
          leaderboard_path: str | None) -> dict[str, Any]:
    """A tolerated failure: a ``failed`` candidate marker with the reason, and its summary."""
    from autokfp.training.isolation import FAILED, EngineFailure, write_candidate_marker

    reason = f"{exc}" if isinstance(exc, EngineFailure) else f"{type(exc).__name__}: {exc}"
    reason = reason[:2000]
    log.error("%s training failed; the other engines' leaders compete without it: %s",
              engine, reason)
    write_candidate_marker(model_path, engine, FAILED, reason, seconds=seconds)
    if leaderboard_path:
        write_text(leaderboard_path, _status_html(engine, FAILED, reason))
    return {"engine": engine, "status": FAILED, "reason": reason, "leader": "", "device": "",
            "train_seconds": seconds}


def _read_settings(config: Any) -> TrainingSettings:
    from autokfp.settings import require_shared_state

    require_shared_state()
    return parse_training_settings(config, origin="training settings")


def _train_model(cfg: TrainingSettings, train_path: str, plan_path: str, model_path: str,
           leaderboard_path: str | None, engine: str) -> dict[str, Any]:
    from autokfp import __version__
    from autokfp.engine_registry import engine_for_run
    from autokfp.modeling.feature_file import sampled_positions
    from autokfp.modeling.features import FeaturePlan
    from autokfp.modeling.model_package import save_model_package
    from autokfp.modeling.tasks import primary_metric

    if not Path(train_path).is_file():  # named first, as reading it whole did
        raise FileNotFoundError(f"No such training file: '{train_path}'")
    plan = FeaturePlan.from_json(Path(plan_path).read_text())
    metric = primary_metric(plan.task, cfg.primary_metric)
    trainer = engine_for_run(engine, cfg)
    labels = [str(c) for c in plan.classes] if plan.classes else None
    # an engine that can start its runtime early (H2O: its JVM, warmed) does so while the
    # training rows are prepared, so its budget starts on a running engine
    warming = getattr(trainer, "warm_start", None)
    with tempfile.TemporaryDirectory(prefix="autokfp-train-") as workdir, \
            (warming(cfg.budget) if warming is not None else contextlib.nullcontext()):
        features, target, example, total = _training_rows(trainer, train_path, plan,
                                                          Path(workdir), cfg.budget.seed)
        started = time.monotonic()
        # packaging needs mlflow (seconds to import in a fresh task process): import it while
        # the engine trains, so the wait after training is only the packaging itself
        warm = threading.Thread(target=_import_packaging, name="import-mlflow", daemon=True)
        warm.start()
        result = trainer.train(features, target, plan.task, labels, plan.categorical_features,
                               cfg.budget, metric, Path(workdir) / "engine")
        engine_seconds = time.monotonic() - started
        fitted = len(target) if result.fitted_rows is None else int(result.fitted_rows)
        meta = {
            "engine": engine, "task": plan.task, "target": plan.target,
            "classes": plan.classes, "class_labels": labels,
            "positive_class": plan.classes[-1] if plan.task == "binary" else None,
            "threshold": 0.5, "primary_metric": metric, "leader": result.leader,
            "device": result.device, "autokfp_version": __version__,
            "trained_rows": total, "fitted_rows": fitted,
            "cv_metrics": result.cv_metrics, "params": result.params,
            "train_seconds": round(engine_seconds, 2),
        }
        if len(target) < total:
            meta["sampled_rows"] = len(target)
        if plan.task != "regression":
            meta["calibration"] = _calibration(cfg, result, target, meta)
        # positions in a sample (a frame engine above FRAME_ENGINE_MAX_ROWS) -> in the file
        in_file = (sampled_positions(total, len(target), cfg.budget.seed)
                   if len(target) < total else None)
        _keep_holdout(result, target, meta, in_file)
        save_model_package(model_path, plan, result.artifact_dir, meta, example)
        if leaderboard_path:
            write_text(leaderboard_path, _leaderboard_html(result.leaderboard, engine, result.leader))
    wall = time.monotonic() - started
    return {"engine": engine, "leader": result.leader, "device": result.device,
            "models_trained": int(result.params.get("models_trained", 0)),
            "train_seconds": round(wall, 1), "engine_seconds": round(engine_seconds, 1),
            **{k: round(v, 6) for k, v in result.cv_metrics.items() if v == v}}


def _training_rows(trainer: Any, train_path: str, plan: Any, workdir: Path,
                   seed: int) -> tuple[Any, pd.Series, pd.DataFrame, int]:
    """What the engine trains on, the target of those rows, five input rows (the package's
    example) and how many rows the training file has.

    An engine that reads files (``reads_feature_files``: H2O) gets the features of every row
    as a Parquet file written batch by batch (``write_feature_file``): the training rows are
    never in pandas whole, only their target column. Any other engine (AutoKeras, plugins)
    trains on a pandas frame: every row up to ``FRAME_ENGINE_MAX_ROWS``, else that many
    drawn at random (``read_frame_sample``; the model's meta says ``sampled_rows``).
    """
    from autokfp.modeling.feature_file import (
        FRAME_ENGINE_MAX_ROWS,
        iter_frames,
        read_frame_sample,
        read_target,
        write_feature_file,
    )
    from autokfp.modeling.features import apply_features

    if getattr(trainer, "reads_feature_files", False):
        target = read_target(train_path, plan)
        # an empty file has no batch: the engine then names it (too few rows), not StopIteration
        example = next(iter_frames(train_path, plan.input_columns, batch_rows=5), None)
        if example is None:
            example = pd.read_parquet(train_path, columns=plan.input_columns)
        features = write_feature_file(train_path, plan, workdir / "features.parquet")
        return features, target, example, len(target)
    train, total = read_frame_sample(train_path, plan, seed=seed)
    if len(train) < total:
        log.warning("%s trains on a pandas frame: %d of the %d training rows, drawn at random "
                    "(at most FRAME_ENGINE_MAX_ROWS = %d)", trainer.name, len(train), total,
                    FRAME_ENGINE_MAX_ROWS)
    return (apply_features(train, plan), train[plan.target], train.head(5), total)


def train_candidate(config: dict[str, Any] | RunConfig | TrainingSettings, train_path: str,
                    plan_path: str, model_path: str, leaderboard_path: str,
                    engine: str) -> Trained:
    """The ``train_model`` component's step (one task per configured engine): ``engine``
    trained in a child process with failures tolerated (``train_model``), as a typed result
    whose publication is the model's metadata (engine, status, leader, device, reason) and
    every numeric figure of the summary as a metric; the component returns the status."""
    summary = train_model(config, train_path, plan_path, model_path, leaderboard_path,
                          engine=engine, isolate=True, tolerate_failure=True)
    return Trained.from_record(summary, engine)


def train_component(config: dict[str, Any], train: Any, plan: Any, model: Any, leaderboard: Any,
                    metrics: Any, engine: str) -> str:
    """The body of ``train_model`` components compiled before ``train_candidate``: the same
    step, published onto the task's outputs."""
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(train_candidate(config, train.path, plan.path, model.path, leaderboard.path,
                                   engine=engine), metrics=metrics, model=model)


def _import_packaging() -> None:
    try:
        import mlflow.models  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the real import after training reports it
        log.debug("early mlflow import failed: %s", exc)


def _keep_holdout(result: Any, target: pd.Series, meta: dict[str, Any],
                  in_file: Any = None) -> None:
    """Store the engine's out-of-sample predictions in its folder (``estimate.HOLDOUT_FILE``):
    selection compares candidates on them, with the test rows. ``in_file``: the file
    position of each row the engine trained on, when it trained on a sample; the positions
    stored are the file's, as every engine's are."""
    import numpy as np

    from autokfp.modeling.estimate import save_holdout
    from autokfp.modeling.evaluation import encode_labels

    if result.holdout is None:
        return
    try:
        positions, scores = result.holdout
        rows = target.iloc[np.asarray(positions, dtype=int)]
        truth = (rows.astype("float64").to_numpy() if meta["task"] == "regression"
                 else encode_labels(rows, meta))
        if in_file is not None:
            positions = np.asarray(in_file)[np.asarray(positions, dtype=int)]
        kind = str(getattr(result, "holdout_kind", "unstated"))
        save_holdout(result.artifact_dir, positions, scores, truth, kind=kind)
        meta["holdout_rows"] = int(len(positions))
        meta["holdout_kind"] = kind
    except Exception as exc:  # noqa: BLE001 - the estimate must never cost the model
        log.warning("out-of-sample predictions not kept: %s: %s", type(exc).__name__, exc)


def _calibration(cfg: TrainingSettings, result: Any, target: pd.Series,
                 meta: dict[str, Any]) -> dict[str, Any]:
    """``meta['calibration']`` of a classifier: fitted on the engine's out-of-sample rows."""
    import numpy as np

    from autokfp.modeling.calibration import fit_calibration
    from autokfp.modeling.evaluation import encode_labels

    if cfg.calibration == "none":
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
        params["out_of_sample"] if params.get("out_of_sample")
        else f"out-of-fold predictions of {params['nfolds']}-fold cross-validation"
        if params.get("nfolds")
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
