"""The whole check after training: assess every sensitive column, mitigate when a limit
is broken, re-check on the held-out rows, and give the verdict."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autokfp.config import GovernanceSpec
from autokfp.governance.fairness.base import FAIL, MARGINS, NOT_RUN, PASS, Check
from autokfp.governance.fairness.groups import assess_column
from autokfp.governance.fairness.mitigation import (
    apply_mitigation,
    describe_mitigation,
    fit_mitigation,
)
from autokfp.governance.fairness.report import summary_metrics
from autokfp.governance.fairness.sensitive import no_sensitive_attribute
from autokfp.modeling.model_package import group_labels, numeric_bands

log = logging.getLogger("autokfp.governance.fairness")


def _binary_arrays(frame: pd.DataFrame, predictions: pd.DataFrame,
                   meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, decisions (0/1 for the positive class) and positive-class scores."""
    positive_label = str(meta["class_labels"][1])
    positive_class = str(meta["classes"][1])
    y_true = (frame[meta["target"]].astype(str) == positive_label).to_numpy(dtype=int)
    y_pred = (predictions["prediction"].astype(str) == positive_class).to_numpy(dtype=int)
    scores = predictions[f"probability_{positive_label}"].to_numpy(dtype="float64")
    return y_true, y_pred, scores


def assess_fairness(test: pd.DataFrame, test_predictions: pd.DataFrame | None,
                    meta: dict[str, Any],
                    columns: list[str], source: str, spec: GovernanceSpec,
                    fit: pd.DataFrame | None = None, fit_predictions: pd.DataFrame | None = None,
                    problems: list[Check] | None = None, cross_fit: int = 0,
                    seed: int = 0) -> tuple[dict[str, Any], dict | None]:
    """Check the model's held-out decisions against the policy; mitigate if it is broken.

    ``fit`` / ``fit_predictions`` are the rows the mitigation is fitted on (the training
    rows); the re-check always uses the held-out ``test`` rows. With ``cross_fit`` = k ≥ 2
    (and no ``fit``) the mitigation is **cross-fitted** on the measured rows themselves: they
    are dealt into k seeded folds, each fold is re-checked with the mitigation fitted on the
    other k − 1, and the mitigation packaged is the one fitted on every row (so no row is
    judged by a mitigation fitted on it). Returns the report and the
    ``meta['fairness_mitigation']`` to package (None when nothing was mitigated).

    Verdicts: ``pass`` (every limit met), ``mitigated`` (broken, then met after score repair
    and/or per-group thresholds), ``fail`` (broken and still broken, or mitigation off),
    ``not_run`` (no sensitive attribute, no measurable groups, or not a binary classifier).
    The predictions are read only once the model is a binary classifier with a sensitive
    column (None is taken for the other two, whose verdict needs none).
    """
    report = _new_report(test, meta, columns, source, spec, problems)
    if meta["task"] != "binary":
        note = (f"not run: the parity checks (selection rate, TPR, FPR) are defined for binary "
                f"classifiers and this model's task is {meta['task']}")
        report["notes"].append(note)
        return _finish(report, NOT_RUN, note)
    if not columns:
        check = no_sensitive_attribute(source)
        report["checks"].append(check.to_dict())
        report["notes"].append(check.detail)
        return _finish(report, NOT_RUN, check.detail)
    if test_predictions is None or (fit is not None and fit_predictions is None):
        missing = " and ".join(what for what, absent in (
            ("test_predictions", test_predictions is None),
            ("fit_predictions (fit was given)", fit is not None and fit_predictions is None))
            if absent)
        raise ValueError("assess_fairness: a binary classifier with a sensitive column is "
                         "assessed on its predictions of the test rows (and of the fit rows, "
                         f"when given); missing: {missing}")

    y_true, y_pred, scores = _binary_arrays(test, test_predictions, meta)
    fit_frame, fit_pred = (fit, fit_predictions) if fit is not None else (test, test_predictions)
    # a numeric attribute such as age is judged in bands (training quartiles), not per value
    bands = {c: numeric_bands(fit_frame[c]) for c in columns}
    bands = {c: edges for c, edges in bands.items() if edges}
    if bands:
        report["bands"] = bands
        test = test.assign(**{c: group_labels(test[c].tolist(), e) for c, e in bands.items()})
        fit_frame = fit_frame.assign(**{c: group_labels(fit_frame[c].tolist(), e)
                                        for c, e in bands.items()})
    fit_y, _, fit_scores = _binary_arrays(fit_frame, fit_pred, meta)
    # the ranking checks flag as many rows as the training labels say are positive
    top_share = float(np.mean(fit_y)) if len(fit_y) else None
    report["top_share"] = top_share
    before = {c: assess_column(c, y_true, y_pred, scores, test[c].tolist(), spec, top_share)
              for c in columns}
    report["before"] = {c: a.to_dict() for c, a in before.items()}
    report["overall_before"] = summary_metrics(y_true, y_pred, scores)
    for assessment in before.values():
        report["notes"] += [c.detail for c in assessment.checks if c.status == NOT_RUN]
    if all(not a.measured or len(a.measured) < 2 for a in before.values()):
        return _finish(report, NOT_RUN, "no sensitive attribute has two groups large enough to "
                                        "measure; see the not-run checks")
    failing = sorted((a for a in before.values() if a.failed), key=lambda a: -a.violation)
    if not failing:
        unmeasured = [c for c, a in before.items() if len(a.measured) < 2]
        reason = "every measured fairness limit is met"
        if unmeasured:
            reason += f"; not measured: {', '.join(unmeasured)} (see the not-run checks)"
        return _finish(report, PASS, reason)
    broken = "; ".join(f"{c.column}: {c.name} {c.value:.3f} (limit {c.limit})"
                       for a in failing for c in a.checks if c.status == FAIL)
    if not spec.mitigate:
        report["mitigation"] = {"applied": False, "summary": "governance.mitigate is false: no "
                                                            "mitigation attempted"}
        return _finish(report, FAIL, f"limits broken ({broken}) and mitigation is off")
    target = failing[0]
    folds = None
    if cross_fit >= 2 and fit is None:
        folds = np.random.default_rng(seed).permutation(len(test)) % cross_fit
        described = f"measured rows, cross-fitted in {cross_fit} folds"
    elif fit is not None:
        described = "training rows"
    else:
        described = "held-out rows (no training rows given)"
    fitting = _Fitting(fit_scores, fit_y, fit_frame[target.column].tolist(), len(fit_frame),
                       described, folds)
    return _mitigate(report, test, meta, columns, spec, target, fitting, broken,
                     (y_true, scores))


@dataclass
class _Fitting:
    """The rows a mitigation is fitted on (the training rows, else the held-out ones)."""

    scores: np.ndarray
    y: np.ndarray
    groups: list[Any]
    rows: int
    described: str
    folds: np.ndarray | None = None
    """Cross-fitting: the fold of each row (the fitting rows are the measured rows)."""


def _new_report(test: pd.DataFrame, meta: dict[str, Any], columns: list[str], source: str,
                spec: GovernanceSpec, problems: list[Check] | None) -> dict[str, Any]:
    policy = spec.model_dump(include={"max_demographic_parity_difference",
                                      "min_demographic_parity_ratio",
                                      "max_equalized_odds_difference", "min_group_size",
                                      "ranking_parity", "mitigate", "block_deploy_on_bias"})
    report: dict[str, Any] = {"policy": policy, "sensitive_columns": list(columns),
                              "sensitive_source": source, "task": meta["task"],
                              "test_rows": len(test), "notes": [], "checks": [],
                              "before": {}, "after": {}, "mitigation": {}}
    report["checks"] += [c.to_dict() for c in problems or []]
    report["notes"] += [c.detail for c in problems or []]
    return report


def _finish(report: dict[str, Any], verdict: str, reason: str,
            mitigation: dict | None = None) -> tuple[dict[str, Any], dict | None]:
    report["verdict"], report["verdict_reason"] = verdict, reason
    return report, mitigation


def _search(test: pd.DataFrame, columns: list[str], spec: GovernanceSpec, target: Any,
            fitting: _Fitting, held_out: tuple[np.ndarray, np.ndarray], default_threshold: float,
            top_share: float | None) -> tuple[list[dict[str, Any]], tuple | None]:
    """Fit a mitigation at each margin in turn until one meets the policy on held-out rows.

    Returns the attempts and the last fitted (mitigation, scores, decisions, assessments).
    """
    y_true, scores = held_out
    test_groups = test[target.column].tolist()
    attempts: list[dict[str, Any]] = []
    accepted = None
    for margin in MARGINS:
        mitigation = fit_mitigation(fitting.scores, fitting.y, fitting.groups, target.measured,
                                    target.column, spec, margin, default_threshold, top_share)
        crossed = (None if mitigation is None or fitting.folds is None else
                   _cross_fitted(fitting, scores, test_groups, target, spec, margin,
                                 default_threshold, top_share))
        if mitigation is None or (fitting.folds is not None and crossed is None):
            attempts.append({"margin": margin, "result": "nothing meets the tightened policy on "
                                                         "the fitting rows"})
            continue
        if crossed is not None:
            adjusted, decided = crossed
        else:
            adjusted, decided = apply_mitigation(scores, test_groups, mitigation,
                                                 default_threshold)
        after = {c: assess_column(c, y_true, decided, adjusted, test[c].tolist(), spec, top_share)
                 for c in columns}
        still = [f"{c.column}: {c.name} {c.value:.3f}" for a in after.values() for c in a.checks
                 if c.status == FAIL]
        attempts.append({"margin": margin, "method": describe_mitigation(mitigation),
                         "result": "within policy" if not still
                         else "still broken: " + "; ".join(still)})
        accepted = (mitigation, adjusted, decided, after)
        if not still:
            break
    return attempts, accepted


def _cross_fitted(fitting: _Fitting, scores: np.ndarray, groups: list[Any], target: Any,
                  spec: GovernanceSpec, margin: float, default_threshold: float,
                  top_share: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores, decisions) of every row after the mitigation fitted on the other folds;
    None when some fold's fit finds nothing."""
    assert fitting.folds is not None
    adjusted = np.empty(len(scores), dtype="float64")
    decided = np.empty(len(scores), dtype=int)
    fitting_groups = np.asarray(fitting.groups, dtype=object)
    measured_groups = np.asarray(groups, dtype=object)
    for fold in np.unique(fitting.folds):
        inside = fitting.folds == fold
        fitted = fit_mitigation(fitting.scores[~inside], fitting.y[~inside],
                                fitting_groups[~inside].tolist(), target.measured,
                                target.column, spec, margin, default_threshold, top_share)
        if fitted is None:
            return None
        adjusted[inside], decided[inside] = apply_mitigation(
            scores[inside], measured_groups[inside].tolist(), fitted, default_threshold)
    return adjusted, decided


def _mitigate(report: dict[str, Any], test: pd.DataFrame, meta: dict[str, Any],
              columns: list[str], spec: GovernanceSpec, target: Any, fitting: _Fitting,
              broken: str, held_out: tuple[np.ndarray, np.ndarray],
              ) -> tuple[dict[str, Any], dict | None]:
    default_threshold = float(meta.get("threshold", 0.5))
    attempts, accepted = _search(test, columns, spec, target, fitting, held_out,
                                 default_threshold, report["top_share"])
    report["mitigation"] = {"applied": False, "column": target.column,
                            "fitted_on": fitting.described,
                            "default_threshold": default_threshold, "attempts": attempts}
    if accepted is None:
        report["mitigation"]["summary"] = (f"no score repair or per-group thresholds on "
                                           f"'{target.column}' meet the policy on the fitting rows")
        return _finish(report, FAIL, f"limits broken ({broken}) and mitigation found nothing "
                                     "that meets them")
    mitigation, adjusted, decided, after = accepted
    report["after"] = {c: a.to_dict() for c, a in after.items()}
    report["overall_after"] = summary_metrics(held_out[0], decided, adjusted)
    before_metrics, after_metrics = report["overall_before"], report["overall_after"]
    cost = before_metrics["accuracy"] - after_metrics["accuracy"]
    report["accuracy_cost"] = cost
    report["auc_cost"] = before_metrics["auc"] - after_metrics["auc"]
    ok = not any(a.failed for a in after.values())
    method = describe_mitigation(mitigation)
    summary = (f"{method[0].upper()}{method[1:]}, fitted on the {fitting.described} "
               f"({fitting.rows}), re-checked on the {len(test)} "
               + ("held-out rows: " if fitting.folds is None else
                  "measured rows, each by the mitigation fitted on the other folds: ")
               + f"{'within policy' if ok else 'still outside the policy'}. Accuracy "
               f"{before_metrics['accuracy']:.4f} → {after_metrics['accuracy']:.4f} "
               f"(cost {cost:+.4f}), AUC {before_metrics['auc']:.4f} → {after_metrics['auc']:.4f}.")
    report["mitigation"].update({"applied": ok, "method": method, "summary": summary,
                                 "thresholds": mitigation.get("thresholds") or {},
                                 "score_repair_strength":
                                     (mitigation.get("score_repair") or {}).get("strength")})
    if ok:
        packaged = {**mitigation, "method": method}
        if target.column in report.get("bands", {}):  # serving bands each row the same way
            packaged["bands"] = report["bands"][target.column]
        return _finish(report, "mitigated", f"limits broken before ({broken}); {method} brings "
                                            f"every limit within policy at an accuracy cost of "
                                            f"{cost:+.4f} (AUC cost {report['auc_cost']:+.4f})",
                       packaged)
    return _finish(report, FAIL, f"limits broken ({broken}) and still broken after mitigation "
                                 f"({method})")


def measurable_groups(frame: pd.DataFrame, columns: list[str], spec: GovernanceSpec,
                      band_source: pd.DataFrame) -> dict[str, int]:
    """Per sensitive column, how many of its groups have ``min_group_size`` rows in
    ``frame`` (a numeric attribute in the bands of ``band_source``'s quartiles)."""
    counts = {}
    for column in columns:
        labels = group_labels(frame[column].tolist(), numeric_bands(band_source[column]))
        sizes = pd.Series(labels, dtype=object).value_counts()
        counts[column] = int((sizes >= spec.min_group_size).sum())
    return counts
