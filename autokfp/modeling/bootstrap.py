"""Bootstrap resamples of a metric in time linear in the rows.

A bootstrap sample draws ``n`` of the ``n`` rows with replacement. Drawing the row indices
and recomputing the metric on the drawn rows sorts them again for every sample (an AUC
ranks the scores; the one-class check sorted the labels): at 10M pooled rows that made
evaluate's time grow faster than its rows (docs/scale.md). Here the same draw is turned into
how many times each row was drawn (``np.bincount`` of the indices: the multinomial counts),
and each metric is computed as a weighted sum over the rows, prepared once per score set:
for the AUC the scores are sorted (and their ties grouped) once, and each sample is a
cumulative sum over the rows in that order (pairs of tied scores count a half, as in
``roc_auc_score``). Every step per sample is O(n).

The random draws are those of the earlier loop (``rng.integers(0, n, n)`` per sample, the
samples with one class skipped), so each sample's metric equals that loop's on the same
rows (to float rounding): ``tests/engine/test_bootstrap.py`` compares them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# sklearn's log_loss clips probabilities to [eps, 1 - eps] of their float type
_EPS = float(np.finfo("float64").eps)


class Resampled:
    """One metric of one score set on fixed rows, recomputed on weighted rows in O(n).

    ``truth``: class codes 0..k-1 (classification) or values; ``scores``: probabilities
    (n x k) or values, as ``evaluation.metric_value`` takes them. ``value(counts)`` is the
    metric on the rows repeated ``counts`` times (``counts.sum()`` rows).
    """

    def __init__(self, metric: str, truth: np.ndarray, scores: np.ndarray, task: str) -> None:
        self.metric, self.task = metric, task
        truth = np.asarray(truth)
        scores = np.asarray(scores, dtype="float64")
        if task == "regression":
            values = truth.astype("float64")
            self.values = values
            errors = values - scores.reshape(-1)
            self.per_row = errors**2 if metric in ("rmse", "r2") else np.abs(errors)
            if metric not in ("rmse", "mae", "r2"):
                raise ValueError(f"unknown metric {metric}")
            return
        codes = truth.astype("int64")
        if metric == "auc":
            score = scores[:, 1]
            if not np.isfinite(score).all():
                raise ValueError(f"ROC AUC of {int((~np.isfinite(score)).sum())} NaN or "
                                 "infinite score(s): the model's probabilities must be finite "
                                 "numbers")
            self.order = np.argsort(score, kind="stable")
            ordered = score[self.order]
            self.positive = codes[self.order] == 1
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            # groups of tied scores (None: every score distinct, each row its own group)
            self.starts = starts if len(starts) < len(score) else None
            return
        if metric == "logloss":
            picked = scores[np.arange(len(codes)), codes]
            self.per_row = -np.log(np.clip(picked, _EPS, 1 - _EPS))
            return
        predicted = ((scores[:, 1] >= 0.5).astype("int64") if task == "binary"
                     else scores.argmax(axis=1))
        if metric == "accuracy":
            self.per_row = (predicted == codes).astype("float64")
        elif metric == "f1":
            self.codes, self.predicted = codes, predicted
            self.classes = scores.shape[1]
            self.correct = predicted == codes
        else:
            raise ValueError(f"unknown metric {metric}")

    def value(self, counts: np.ndarray) -> float:
        weights = np.asarray(counts, dtype="float64")
        total = weights.sum()
        metric = self.metric
        if self.task == "regression":
            mean_error = float(weights @ self.per_row) / total
            if metric == "rmse":
                return float(np.sqrt(mean_error))
            if metric == "mae":
                return mean_error
            centre = float(weights @ self.values) / total
            spread = float(weights @ (self.values - centre) ** 2)
            if spread == 0.0:  # scikit-learn's r2_score (force_finite)
                return 1.0 if mean_error == 0.0 else 0.0
            return 1.0 - mean_error * total / spread
        if metric == "auc":
            return self._auc(weights)
        if metric in ("logloss", "accuracy"):
            return float(weights @ self.per_row) / total
        return self._f1(weights)

    def _auc(self, weights: np.ndarray) -> float:
        ordered = weights[self.order]
        positives = np.where(self.positive, ordered, 0.0)
        if self.starts is not None:
            positives = np.add.reduceat(positives, self.starts)
            ordered = np.add.reduceat(ordered, self.starts)
        negatives = ordered - positives
        below = np.cumsum(negatives) - negatives  # negatives with a lower score
        p, n = float(positives.sum()), float(negatives.sum())
        if p == 0 or n == 0:
            raise ValueError("Only one class present in y_true. ROC AUC score is not defined "
                             "in that case.")
        return float(positives @ (below + 0.5 * negatives)) / (p * n)

    def _f1(self, weights: np.ndarray) -> float:
        k = self.classes
        hits = np.bincount(self.codes[self.correct], weights=weights[self.correct], minlength=k)
        said = np.bincount(self.predicted, weights=weights, minlength=k)
        true = np.bincount(self.codes, weights=weights, minlength=k)
        denominator = said + true  # 2 tp + fp + fn
        if self.task == "binary":  # the positive class, zero_division=0
            return float(2 * hits[1] / denominator[1]) if denominator[1] > 0 else 0.0
        present = denominator > 0  # the labels of y_true or y_pred, as scikit-learn takes them
        return float(np.mean(2 * hits[present] / denominator[present])) if present.any() else 0.0


def bootstrap_values(metric: str, truth: np.ndarray, score_sets: Sequence[np.ndarray],
                     task: str, samples: int, seed: int, skip_errors: bool = False
                     ) -> list[tuple[float, ...]]:
    """The metric of each score set on ``samples`` bootstrap resamples of the rows (the same
    resample for every set: a paired bootstrap). Samples with a single class are left out,
    as are, with ``skip_errors``, samples whose metric raises ValueError."""
    truth = np.asarray(truth)
    n = len(truth)
    prepared = [Resampled(metric, truth, scores, task) for scores in score_sets] if samples else []
    classes = None if task == "regression" else truth.astype("int64")
    rng = np.random.default_rng(seed)
    out: list[tuple[float, ...]] = []
    for _ in range(samples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype("float64")
        if classes is not None and np.count_nonzero(
                np.bincount(classes, weights=counts)) < 2:
            continue
        try:
            out.append(tuple(p.value(counts) for p in prepared))
        except ValueError:
            if not skip_errors:
                raise
    return out
