"""The `bias_check` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.governance import PolicyError
from autokfp.governance.audit import batched
from autokfp.modeling.feature_file import parquet_columns, predict_file
from autokfp.steps.io import (
    read_config,
    read_package,
    read_parquet_sample,
    read_schema,
    record_event,
    write_json,
    write_text,
)
from autokfp.steps.results import Publication, StepResult, finite_metrics

log = logging.getLogger(__name__)

# training rows the bias mitigation (group thresholds, score repair) is fitted on: a uniform
# sample above this, so the step's memory does not grow with the training table
MITIGATION_FIT_ROWS = 200_000
# folds of the mitigation's cross-fitting when fairness is measured on out-of-fold rows
CROSS_FIT_FOLDS = 5


@dataclass(frozen=True)
class BiasChecked(StepResult):
    """The model's fairness verdict, whether it was mitigated, and the figures behind it."""

    verdict: str
    reason: str
    mitigated: bool
    accuracy_cost: float
    auc_cost: float
    disparities: dict[str, float]
    """``<before|after>_<column>_<disparity>`` -> value."""

    def publication(self) -> Publication:
        figures = {"accuracy_cost": self.accuracy_cost, "auc_cost": self.auc_cost,
                   **self.disparities}
        return Publication(metrics={k: float(v) for k, v in finite_metrics(figures).items()},
                           metadata={"summary": {"verdict": self.verdict, "reason": self.reason},
                                     "checked_model": {"fairness": self.verdict}},
                           returns=(self.verdict, self.mitigated))


@batched
def bias_check(config: dict[str, Any] | RunConfig, model_path: str, train_path: str,
                     test_path: str, schema_path: str, out_model_path: str, report_path: str,
                     summary_path: str) -> BiasChecked:
    """Check the model's decisions per group; mitigate; write the package to register.

    Raises:
        PolicyError: a fairness limit is broken after mitigation (or mitigation is off) and
            ``governance.block_deploy_on_bias`` is true. The reports and the audit event
            are written first.
    """
    from autokfp.governance import fairness

    cfg = read_config(config)
    policy = cfg.governance
    model, plan, meta = read_package(model_path)
    # the test rows scored batch by batch, and only their target and sensitive columns held
    # whole; of the training rows a bounded sample for fitting the mitigation (and the
    # package's examples), and only the sensitive and target columns of all of them
    train, train_rows = read_parquet_sample(train_path, MITIGATION_FIT_ROWS, seed=cfg.split.seed)
    target = meta["target"]
    stored = parquet_columns(test_path)
    columns, source, problems = fairness.resolve_sensitive_columns(read_schema(schema_path), policy,
                                                                   stored)
    test = pd.read_parquet(test_path, columns=list(dict.fromkeys([target, *columns])))
    # the model's scores are read only for a binary classifier with a sensitive column: for
    # any other the check is not run (``assess_fairness`` says why) and they were thrown away
    test_predictions = (predict_file(lambda rows: model.predict(None, rows), test_path,
                                     [c for c in stored if c != target])
                        if _scores_needed(meta, columns) else None)
    if len(train) < train_rows:
        log.info("bias mitigation fitted on %d of %d training rows (a uniform sample)",
                 len(train), train_rows)
    report, mitigation, fit_rows = _assess(cfg, model, meta, model_path, train, train_path, test,
                                           test_predictions, columns, source, problems)
    report["model"] = cfg.model_name
    if columns:
        positive = meta["classes"][-1] if meta["task"] == "binary" else None
        every_train_row = (train if len(train) == train_rows else
                           pd.read_parquet(train_path, columns=list(dict.fromkeys([target, *columns]))))
        report["data"] = fairness.check_training_data(every_train_row, target, positive, columns,
                                                      policy)
    report["mitigation_fit_rows"] = {"used": fit_rows, "training_rows": train_rows}

    _save_checked_package(out_model_path, model_path, plan, meta, mitigation, report, columns,
                          train, cfg.split.seed)
    write_json(summary_path, report)
    write_text(report_path, fairness.render_markdown(report))
    _record_verdict(cfg, report, columns)
    return _result(report)


def _assess(cfg: RunConfig, model: Any, meta: dict[str, Any], model_path: str,
            train: pd.DataFrame, train_path: str, test: pd.DataFrame,
            test_predictions: pd.DataFrame | None, columns: list[str],
            source: Any, problems: Any) -> tuple[dict[str, Any], Any, int]:
    """The fairness report and the mitigation, on the test rows, or on the engine's
    out-of-fold predictions of the training rows when only those can measure a sensitive
    column; and how many rows the mitigation was fitted on."""
    from autokfp.governance import fairness

    policy = cfg.governance
    target = meta["target"]
    # held-out groups too small to measure a column (fewer than two of min_group_size rows)
    # that the engine's out-of-fold predictions of the training rows can measure: the whole
    # check runs on those instead (never pooled with the final model's test scores)
    oof = (_out_of_fold(model_path, meta, train_path, [target, *columns], cfg.split.seed)
           if columns else None)
    on_test = fairness.measurable_groups(test, columns, policy, train)
    on_oof = (fairness.measurable_groups(oof[0], columns, policy, train) if oof is not None
              else None)
    unmeasured = [c for c in columns if on_test[c] < 2 and on_oof is not None and on_oof[c] >= 2]
    if unmeasured and oof is not None:
        rows, predictions = oof
        report, mitigation = fairness.assess_fairness(rows, predictions, meta, columns, source,
                                                      policy, problems=problems,
                                                      cross_fit=CROSS_FIT_FOLDS,
                                                      seed=cfg.split.seed)
        report["measured_on"] = "out-of-fold"
        report["notes"].append(
            f"Measured on {len(rows)} training rows scored out of fold by the engine "
            f"({meta.get('engine', 'engine')}: cross-validation models or validation rows, not "
            f"the final model), because the {len(test)} held-out test rows cannot measure "
            f"{', '.join(unmeasured)} (fewer than two groups of governance.min_group_size = "
            f"{policy.min_group_size} rows; groups measurable on the test rows: {on_test}, out "
            f"of fold: {on_oof}). The final model is fitted on "
            "every training row, so its own scores of them would flatter it; any mitigation "
            f"is cross-fitted on these rows ({CROSS_FIT_FOLDS} folds) and its transfer to the "
            "final model's scores is assumed, not measured.")
        fit_rows = len(rows)
    else:
        train_predictions = (model.predict(None, train.drop(columns=[target]))
                             if test_predictions is not None else None)
        report, mitigation = fairness.assess_fairness(test, test_predictions, meta, columns,
                                                      source, policy, fit=train,
                                                      fit_predictions=train_predictions,
                                                      problems=problems)
        report["measured_on"] = "test"
        fit_rows = len(train)
    report["measured_groups"] = {"test": on_test, "out_of_fold": on_oof}
    return report, mitigation, fit_rows


def _scores_needed(meta: dict[str, Any], columns: list[str]) -> bool:
    """Whether the fairness check uses the model's scores: ``assess_fairness`` reports
    ``not_run`` before it reads them for a model that is not a binary classifier and when no
    column is sensitive (session 23: Males, a regression, scored its 653 test rows and the
    training rows' sample in the run's JVM for nothing)."""
    return meta["task"] == "binary" and bool(columns)


def _save_checked_package(out_model_path: str, model_path: str, plan: Any, meta: dict[str, Any],
                          mitigation: Any, report: dict[str, Any], columns: list[str],
                          train: pd.DataFrame, seed: int) -> None:
    """The package to register: the model with its mitigation (if any), the fairness verdict
    and the explainer's background rows in its meta."""
    from autokfp.governance.explain import background_records
    from autokfp.modeling.model_package import save_model_package

    new_meta = dict(meta)
    new_meta.pop("fairness_mitigation", None)
    if mitigation:
        new_meta["fairness_mitigation"] = mitigation
    new_meta["fairness"] = {"verdict": report["verdict"], "sensitive_columns": columns}
    new_meta["explain_background"] = background_records(train, list(plan.input_columns),
                                                        seed=seed)
    save_model_package(out_model_path, plan, Path(model_path, "artifacts", "engine"), new_meta,
                       train.drop(columns=[meta["target"]]))


def _record_verdict(cfg: RunConfig, report: dict[str, Any], columns: list[str]) -> None:
    """The verdict in the audit trail (a warning when fairness was not checked).

    Raises:
        PolicyError: the verdict is ``fail`` and ``governance.block_deploy_on_bias`` is true.
    """
    verdict = report["verdict"]
    blocked = verdict == "fail" and cfg.governance.block_deploy_on_bias
    details = {"verdict": verdict, "reason": report["verdict_reason"],
               "sensitive_columns": columns, "blocked": blocked}
    if verdict == "mitigated":
        applied = report["mitigation"]
        details.update({"column": applied["column"], "method": applied["method"],
                        "thresholds": applied["thresholds"],
                        "score_repair_strength": applied["score_repair_strength"],
                        "accuracy_before": report["overall_before"]["accuracy"],
                        "accuracy_after": report["overall_after"]["accuracy"],
                        "accuracy_cost": report["accuracy_cost"], "auc_cost": report["auc_cost"]})
    kind = {"mitigated": "bias.mitigated", "pass": "bias.passed", "not_run": "bias.not_run"}.get(
        verdict, "bias.blocked" if blocked else "bias.accepted_despite_failure")
    if verdict == "not_run":  # never silent: a warning in the run summary and the trail
        from autokfp.governance.audit import record_warning

        record_warning(kind, f"fairness not checked: {report['verdict_reason']}", details,
                       model=cfg.model_name)
    else:
        record_event(kind, details, cfg.model_name)
    if blocked:
        raise PolicyError(
            f"{cfg.model_name}: fairness policy not met, nothing registered or deployed: "
            f"{report['verdict_reason']}. See the fairness report; relax governance limits, "
            "fix the data, or set governance.block_deploy_on_bias: false to deploy anyway")


def _result(report: dict[str, Any]) -> BiasChecked:
    """The step's typed result: the verdict, the costs and every disparity before and after."""
    verdict = report["verdict"]
    summary: dict[str, Any] = {"verdict": verdict, "reason": report["verdict_reason"],
                               "mitigated": verdict == "mitigated",
                               "accuracy_cost": float(report.get("accuracy_cost", 0.0)),
                               "auc_cost": float(report.get("auc_cost", 0.0))}
    for stage in ("before", "after"):
        for column, data in (report.get(stage) or {}).items():
            for key in ("demographic_parity_difference", "demographic_parity_ratio",
                        "ranking_parity_difference", "ranking_parity_ratio",
                        "equalized_odds_difference"):
                value = data["disparities"].get(key)
                if value is not None:
                    summary[f"{stage}_{column}_{key}"] = float(value)
    headline = ("verdict", "reason", "mitigated", "accuracy_cost", "auc_cost")
    return BiasChecked(verdict=verdict, reason=summary["reason"], mitigated=summary["mitigated"],
                       accuracy_cost=summary["accuracy_cost"], auc_cost=summary["auc_cost"],
                       disparities={k: v for k, v in summary.items() if k not in headline})


def _out_of_fold(model_path: str, meta: dict[str, Any], train_path: str, columns: list[str],
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(training rows, their predictions) from the package's out-of-fold predictions
    (``estimate.HOLDOUT_FILE``, the served calibration applied, decided at the model's
    threshold), at most ``MITIGATION_FIT_ROWS`` of them (a seeded uniform sample); None for
    a package without them or a model that is not a binary classifier."""
    import numpy as np

    from autokfp.modeling.estimate import load_holdout

    labels = meta.get("class_labels")
    if meta.get("task") != "binary" or not labels:
        return None
    try:
        found = load_holdout(model_path, meta)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("out-of-fold predictions unreadable, fairness is measured on the test "
                    "rows: %s", exc)
        return None
    if found is None or len(found[0]) == 0:
        return None
    positions, scores, truth = found
    rows = pd.read_parquet(train_path, columns=list(dict.fromkeys(columns)))
    target = meta["target"]
    if int(positions.max()) >= len(rows) or not np.array_equal(
            rows[target].astype(str).to_numpy()[positions],
            np.asarray(labels, dtype=object)[np.asarray(truth, dtype=int)].astype(str)):
        log.warning("out-of-fold predictions do not match the training rows (%d rows, labels "
                    "differ or a position is out of range): fairness is measured on the test "
                    "rows", len(rows))
        return None
    if len(positions) > MITIGATION_FIT_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(positions), MITIGATION_FIT_ROWS,
                                                          replace=False))
        positions, scores = positions[keep], scores[keep]
    rows = rows.iloc[positions].reset_index(drop=True)
    predicted = pd.DataFrame(np.asarray(scores, dtype="float64"),
                             columns=[f"probability_{label}" for label in labels])
    negative, positive = meta["classes"][0], meta["classes"][1]
    predicted.insert(0, "prediction", np.where(
        predicted[f"probability_{labels[1]}"].to_numpy() >= float(meta.get("threshold", 0.5)),
        positive, negative))
    return rows, predicted
