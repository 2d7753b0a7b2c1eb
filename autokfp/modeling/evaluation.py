"""Scoring candidates on held-out rows and deciding whether a challenger beats the champion.

Every candidate, the current champion included, is scored on the same test rows. A paired
bootstrap over those rows estimates how often the challenger is better; a champion is
replaced only when the challenger is better by at least ``selection.min_improvement`` and
with probability at least ``selection.confidence``. The evidence is returned as data so it
can be logged, audited and shown.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from autokfp.errors import DataError
from autokfp.modeling.tasks import GREATER_IS_BETTER

log = logging.getLogger(__name__)


def probability_matrix(predictions: pd.DataFrame, meta: dict[str, Any]) -> np.ndarray:
    """Class probabilities (n x k) from a prediction frame, in ``meta['class_labels']`` order."""
    columns = [f"probability_{label}" for label in meta["class_labels"]]
    missing = [c for c in columns if c not in predictions.columns]
    if missing:
        raise DataError(f"prediction frame lacks {missing}; was it made by an autokfp classifier?")
    return predictions[columns].to_numpy(dtype="float64")


def encode_labels(y: pd.Series, meta: dict[str, Any]) -> np.ndarray:
    """Map target values to class indices in ``meta['class_labels']`` order (-1 = unseen)."""
    lookup = {label: i for i, label in enumerate(meta["class_labels"])}
    return np.array([lookup.get(str(v), -1) for v in y], dtype=int)


def scored_probabilities(predictions: Any, meta: dict[str, Any], keep: np.ndarray) -> np.ndarray:
    """The class probabilities of the rows ``keep`` as the metrics score them: clipped off 0
    and renormalised (a model that puts exact zeros would otherwise tie there)."""
    probs = np.clip(probability_matrix(predictions, meta)[keep], 1e-15, 1.0)
    return probs / probs.sum(axis=1, keepdims=True)


def compute_metrics(y: pd.Series, predictions: pd.DataFrame, meta: dict[str, Any],
                    only: Collection[str] | None = None) -> dict[str, float]:
    """Every metric of the task, on rows with a known label; with ``only``, just those
    metrics (and ``rows``), each computed as here, without the others' cost (permutation
    importance scores dozens of shuffled copies on one metric)."""

    def wanted(name: str) -> bool:
        return only is None or name in only

    task = meta["task"]
    if task == "regression":
        truth = y.astype("float64").to_numpy()
        pred = predictions["prediction"].to_numpy(dtype="float64")
        figures = {
            "rmse": lambda: float(np.sqrt(skm.mean_squared_error(truth, pred))),
            "mae": lambda: float(skm.mean_absolute_error(truth, pred)),
            "r2": lambda: float(skm.r2_score(truth, pred)),
        }
        return {**{name: f() for name, f in figures.items() if wanted(name)},
                "rows": float(len(truth))}
    codes = encode_labels(y, meta)
    known = codes >= 0
    if not known.all():
        log.warning("%d test rows have labels the model never saw; they are left out", int((~known).sum()))
    codes = codes[known]
    probs = scored_probabilities(predictions, meta, known)
    predicted = predicted_codes(probs, meta)
    k = len(meta["class_labels"])
    result: dict[str, float] = {}
    if wanted("logloss"):
        result["logloss"] = float(skm.log_loss(codes, probs, labels=list(range(k))))
    if wanted("accuracy"):
        result["accuracy"] = float(skm.accuracy_score(codes, predicted))
    result["rows"] = float(len(codes))
    if task == "binary":
        # the same AUC as the bootstraps' (metric_value): the step's primary figure and the
        # published test_auc must be one number, not two that differ in the last bit
        if wanted("auc"):
            result["auc"] = (binary_auc(codes, probs[:, 1]) if len(set(codes)) == 2
                             else float("nan"))
        if wanted("f1"):
            result["f1"] = float(skm.f1_score(codes, predicted, zero_division=0))
        if wanted("precision"):
            result["precision"] = float(skm.precision_score(codes, predicted, zero_division=0))
        if wanted("recall"):
            result["recall"] = float(skm.recall_score(codes, predicted, zero_division=0))
    elif wanted("f1"):
        result["f1"] = float(skm.f1_score(codes, predicted, average="macro", zero_division=0))
    return result


def predicted_codes(probs: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    if meta["task"] == "binary":
        return (probs[:, 1] >= float(meta.get("threshold", 0.5))).astype(int)
    return probs.argmax(axis=1)


def classification_details(y: pd.Series, predictions: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Confusion matrix and (binary) ROC curve points, sized for the Kubeflow UI."""
    codes = encode_labels(y, meta)
    known = codes >= 0
    probs = probability_matrix(predictions, meta)[known]
    codes = codes[known]
    predicted = predicted_codes(probs, meta)
    k = len(meta["class_labels"])
    details: dict[str, Any] = {
        "labels": list(meta["class_labels"]),
        "confusion_matrix": skm.confusion_matrix(codes, predicted, labels=list(range(k))).tolist(),
    }
    if meta["task"] == "binary" and len(set(codes)) == 2:
        fpr, tpr, thresholds = skm.roc_curve(codes, probs[:, 1])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
        thresholds = np.clip(thresholds[keep], 0.0, 1.0)
        details["roc"] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "thresholds": thresholds.tolist()}
    return details


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of 0/1 labels, as scikit-learn's ``roc_auc_score`` (ties count a half), by
    the rank sum (Mann-Whitney): a fraction of a millisecond where scikit-learn's input
    checks take several, and the bootstraps call it hundreds of times. Like scikit-learn,
    refuses scores that are NaN or infinite (a rank sum would give NaN, or rank them as
    ordinary extremes)."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("Only one class present in y_true. ROC AUC score is not defined in "
                         "that case.")
    score = np.asarray(score, dtype="float64")
    if not np.isfinite(score).all():
        raise ValueError(f"ROC AUC of {int((~np.isfinite(score)).sum())} NaN or infinite "
                         "score(s): the model's probabilities must be finite numbers")
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0)
                 / (positives * negatives))


def metric_value(metric: str, y_codes_or_values: np.ndarray, scores: np.ndarray, task: str) -> float:
    """One metric on arrays (used inside the bootstrap)."""
    if task == "regression":
        if metric == "rmse":
            return float(np.sqrt(np.mean((y_codes_or_values - scores) ** 2)))
        if metric == "mae":
            return float(np.mean(np.abs(y_codes_or_values - scores)))
        return float(skm.r2_score(y_codes_or_values, scores))
    if metric == "auc":
        return binary_auc(y_codes_or_values, scores[:, 1])
    if metric == "logloss":
        return float(skm.log_loss(y_codes_or_values, scores, labels=list(range(scores.shape[1]))))
    predicted = (scores[:, 1] >= 0.5).astype(int) if task == "binary" else scores.argmax(axis=1)
    if metric == "accuracy":
        return float(np.mean(predicted == y_codes_or_values))
    if metric == "f1":
        average = "binary" if task == "binary" else "macro"
        return float(skm.f1_score(y_codes_or_values, predicted, average=average, zero_division=0))
    raise ValueError(f"unknown metric {metric}")


@dataclass
class Comparison:
    """Evidence for a champion/challenger decision."""

    metric: str
    challenger: float
    champion: float | None
    improvement: float | None = None
    probability_better: float | None = None
    bootstrap_samples: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    promote: bool = False
    reason: str = ""
    champion_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_to_champion(
    y: pd.Series,
    challenger: pd.DataFrame,
    champion: pd.DataFrame | None,
    meta: dict[str, Any],
    metric: str,
    min_improvement: float,
    confidence: float,
    samples: int,
    seed: int = 0,
    champion_version: str | None = None,
    baseline_margin: float = 0.02,
) -> Comparison:
    """Paired bootstrap on the same rows: is the challenger better beyond noise?

    Without a champion, the challenger is compared with the trivial baseline instead (the
    class prior, or the mean for regression): a first model must beat it by more than
    ``baseline_margin`` (see ``required_margin``) in at least ``confidence`` of the bootstrap
    samples, or it is not made champion.
    """
    task = meta["task"]
    if task == "regression":
        truth = y.astype("float64").to_numpy()
        a = challenger["prediction"].to_numpy(dtype="float64")
        b = None if champion is None else champion["prediction"].to_numpy(dtype="float64")
    else:
        truth = encode_labels(y, meta)
        keep = truth >= 0
        truth = truth[keep]
        a = probability_matrix(challenger, meta)[keep]
        b = None if champion is None else probability_matrix(champion, meta)[keep]
    challenger_score = metric_value(metric, truth, a, task)
    if b is None:
        return _compare_to_baseline(truth, a, challenger_score, task, metric, baseline_margin,
                                    confidence, samples, seed)
    champion_score = metric_value(metric, truth, b, task)
    improvement, p_better, low, high, count = _paired_bootstrap(truth, a, b, task, metric,
                                                                samples, seed)
    promote = improvement > min_improvement and p_better >= confidence
    if promote:
        reason = (f"challenger {metric} {challenger_score:.4f} beats champion {champion_score:.4f} "
                  f"(improvement {improvement:+.4f}, P(better) {p_better:.2f} >= {confidence})")
    else:
        reason = (f"champion kept: challenger {metric} {challenger_score:.4f} vs champion "
                  f"{champion_score:.4f} (improvement {improvement:+.4f}, P(better) {p_better:.2f}; "
                  f"needs > {min_improvement} and >= {confidence})")
    return Comparison(metric=metric, challenger=challenger_score, champion=champion_score,
                      improvement=improvement, probability_better=p_better,
                      bootstrap_samples=count, ci_low=low, ci_high=high, promote=promote,
                      reason=reason, champion_version=champion_version)


def baseline_scores(truth: np.ndarray, task: str, classes: int) -> np.ndarray:
    """The trivial model's predictions on ``truth``'s rows: the class prior, or the mean."""
    if task == "regression":
        return np.full(len(truth), float(np.mean(truth)) if len(truth) else 0.0)
    counts = np.bincount(truth, minlength=classes).astype("float64") + 0.5  # no zero probability
    return np.tile(counts / counts.sum(), (len(truth), 1))


def required_margin(metric: str, baseline: float, margin: float) -> float:
    """How much better than the baseline a first model must be, in the metric's own units.

    Bounded scores (auc, accuracy, f1, r2) need ``margin`` points more; error metrics (logloss,
    rmse, mae) need ``margin`` of the baseline's error less.
    """
    if metric in ("logloss", "rmse", "mae"):
        return margin * abs(baseline)
    return margin


def _compare_to_baseline(truth: np.ndarray, a: np.ndarray, challenger_score: float, task: str,
                         metric: str, margin: float, confidence: float, samples: int,
                         seed: int) -> Comparison:
    classes = 1 if task == "regression" else a.shape[1]
    baseline = baseline_scores(truth, task, classes)
    baseline_score = metric_value(metric, truth, baseline, task)
    needed = required_margin(metric, baseline_score, margin)
    improvement, p_better, low, high, count = _paired_bootstrap(truth, a, baseline, task, metric,
                                                                samples, seed, by=needed)
    name = "the mean" if task == "regression" else "the class prior"
    figures = (f"{metric} {challenger_score:.4f} vs {baseline_score:.4f} for {name} on the same "
               f"{len(truth)} held-out rows (improvement {improvement:+.4f}, needs > {needed:.4f} "
               f"with P {p_better:.2f}, needs >= {confidence})")
    promote = improvement > needed and p_better >= confidence
    if promote:
        reason = f"no current champion: the first model becomes champion; it beats {name}: {figures}"
    else:
        reason = (f"not made champion: the first model does not beat the trivial baseline: "
                  f"{figures}. The features may carry no signal for the target, or the data is "
                  f"mislabelled or too small; check them (or lower "
                  f"selection.baseline_margin, now {margin})")
    return Comparison(metric=metric, challenger=challenger_score, champion=None,
                      improvement=improvement, probability_better=p_better,
                      bootstrap_samples=count, ci_low=low, ci_high=high, promote=promote,
                      reason=reason, extra={"baseline": {"name": name, metric: baseline_score,
                                                         "required_improvement": needed,
                                                         "passed": promote}})


def _paired_bootstrap(truth: np.ndarray, a: np.ndarray, b: np.ndarray, task: str, metric: str,
                      samples: int, seed: int, by: float = 0.0
                      ) -> tuple[float, float, float | None, float | None, int]:
    """Improvement of ``a`` over ``b``, P(a better by more than ``by``), its 90% interval and
    the sample count."""
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    from autokfp.modeling.bootstrap import bootstrap_values

    # linear in the rows: each sample weights the rows by how often it drew them
    pairs = bootstrap_values(metric, truth, (a, b), task, samples, seed)
    diffs_arr = np.asarray([sign * (first - second) for first, second in pairs])
    improvement = sign * (metric_value(metric, truth, a, task) - metric_value(metric, truth, b, task))
    p_better = float(np.mean(diffs_arr > by)) if len(diffs_arr) else 0.0
    low, high = (np.quantile(diffs_arr, [0.05, 0.95]).tolist() if len(diffs_arr) else (None, None))
    return float(improvement), p_better, low, high, len(diffs_arr)


def rank_key(metric: str, value: float) -> float:
    """Sort key: smaller is better, whatever the metric's direction (NaN last)."""
    if value is None or value != value:
        return float("inf")
    return -float(value) if GREATER_IS_BETTER[metric] else float(value)
