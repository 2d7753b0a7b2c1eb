"""Probability calibration fitted on out-of-sample training predictions, kept in the model.

An engine hands back scores for training rows that did not fit them (H2O: the leader's
cross-validation holdout predictions; AutoKeras: its k-fold refits' out-of-fold scores, or
its validation rows when those did not fit its budget). On those rows:

- binary: Platt scaling of the positive-class score, p' = sigmoid(a·logit(p) + b) with
  a > 0 (p clipped to [1e-6, 1 - 1e-6]);
- multiclass: temperature scaling, p' = softmax(log p / T) with T > 0.

Both keep the order of the scores (binary AUC and the multiclass argmax are unchanged); the
parameters minimise the log loss. Whether to apply them is decided honestly: the log loss
of the calibrated scores is *cross-fitted* (stratified k-fold: each fold is calibrated by
parameters fitted on the other folds) and compared with the raw scores' log loss on the
same rows; calibration is applied only when that gain exceeds ``MIN_RELATIVE_GAIN`` and there
are enough rows. The record (``meta['calibration']``) always says what was measured and why
it was or was not applied; ``apply_calibration`` is what the packaged model runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-6
FOLDS = 5
MIN_ROWS = 100
MIN_CLASS_ROWS = 10
MIN_RELATIVE_GAIN = 0.005  # cross-fitted log loss must fall by more than 0.5% of itself
ECE_BINS = 10
METHODS = {"binary": "platt", "multiclass": "temperature"}


# ----------------------------------------------------------------------------- transforms


def _logit(positive: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(positive, dtype="float64"), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _log_probs(scores: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(scores, dtype="float64"), EPS, 1.0))


def _platt(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    from scipy.special import expit

    positive = expit(a * _logit(scores[:, 1]) + b)
    return np.column_stack([1.0 - positive, positive])


def _temperature(scores: np.ndarray, temperature: float) -> np.ndarray:
    from scipy.special import softmax

    return softmax(_log_probs(scores) / temperature, axis=1)


def _transform(scores: np.ndarray, method: str, parameters: dict[str, float]) -> np.ndarray:
    if method == "platt":
        return _platt(scores, float(parameters["a"]), float(parameters["b"]))
    if method == "temperature":
        return _temperature(scores, float(parameters["temperature"]))
    raise ValueError(f"unknown calibration method '{method}'")


def apply_calibration(raw: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """Class probabilities (n x k) after ``calibration``; unchanged when it is not applied."""
    if not calibration or not calibration.get("applied"):
        return raw
    raw = np.asarray(raw, dtype="float64")
    if raw.ndim != 2 or len(raw) == 0:
        return raw
    return _transform(raw, calibration["method"], calibration["parameters"])


# -------------------------------------------------------------------------------- fitting


def _fit_platt(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from scipy.optimize import minimize
    from scipy.special import expit

    z = _logit(scores[:, 1])
    y = (truth == 1).astype("float64")

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = theta[0] * z + theta[1]
        value = float(np.mean(np.logaddexp(0.0, s) - y * s))
        residual = expit(s) - y
        return value, np.array([np.mean(residual * z), np.mean(residual)])

    # a > 0 keeps the transform increasing (ranking, AUC unchanged)
    fitted = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                      bounds=[(1e-3, 100.0), (-50.0, 50.0)])
    return {"a": float(fitted.x[0]), "b": float(fitted.x[1])}


def _fit_temperature(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    logp = _log_probs(scores)
    rows = np.arange(len(truth))

    def loss(log_t: float) -> float:
        z = logp / np.exp(log_t)
        return float(np.mean(logsumexp(z, axis=1) - z[rows, truth]))

    fitted = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                             options={"xatol": 1e-6})
    return {"temperature": float(np.exp(fitted.x))}


def _fit(truth: np.ndarray, scores: np.ndarray, method: str) -> dict[str, float]:
    return _fit_platt(truth, scores) if method == "platt" else _fit_temperature(truth, scores)


def log_loss(truth: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log probability of the true class (probabilities clipped at 1e-6)."""
    chosen = np.asarray(probs, dtype="float64")[np.arange(len(truth)), truth]
    return float(-np.mean(np.log(np.clip(chosen, EPS, 1.0))))


def expected_calibration_error(truth: np.ndarray, probs: np.ndarray, task: str,
                               bins: int = ECE_BINS) -> float:
    """ECE as ``validation.calibration_report`` measures it (equal-count bins; binary:
    P(positive) vs the observed rate, multiclass: top-class probability vs accuracy)."""
    from autokfp.modeling.validation import _reliability_curve

    if task == "binary":
        confidence, outcome = probs[:, 1], (truth == 1).astype(float)
    else:
        confidence = probs.max(axis=1)
        outcome = (probs.argmax(axis=1) == truth).astype(float)
    curve = _reliability_curve(np.asarray(confidence, dtype="float64"), outcome, bins)
    return float(sum(b["count"] * abs(b["observed"] - b["predicted"]) for b in curve) / len(truth))


def _cross_fitted(truth: np.ndarray, scores: np.ndarray, method: str, folds: int,
                  seed: int) -> np.ndarray:
    """Each row calibrated by parameters fitted on the other folds (stratified, seeded)."""
    from sklearn.model_selection import StratifiedKFold

    out = np.empty_like(scores, dtype="float64")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in splitter.split(scores, truth):
        parameters = _fit(truth[fit_rows], scores[fit_rows], method)
        out[held_rows] = _transform(scores[held_rows], method, parameters)
    return out


def fit_calibration(truth_codes: Any, scores: Any, task: str, seed: int = 0, *,
                    min_rows: int = MIN_ROWS, min_class_rows: int = MIN_CLASS_ROWS,
                    min_relative_gain: float = MIN_RELATIVE_GAIN,
                    folds: int = FOLDS) -> dict[str, Any] | None:
    """Fit Platt (binary) or temperature (multiclass) scaling; say whether it is worth applying.

    ``truth_codes``: each row's class index into the columns of ``scores`` (n x k, rows the
    model did not fit). Returns the record the packaged model keeps (``applied``, ``method``,
    ``parameters`` fitted on all rows, ``rows``, cross-fitted ``log_loss_before/after`` and
    ``ece_before/after``, ``relative_gain``, ``reason``), or None for regression.
    """
    if task == "regression":
        return None
    if task not in METHODS:
        raise ValueError(f"unknown task '{task}'")
    truth = np.asarray(truth_codes, dtype=int).reshape(-1)
    scores = np.asarray(scores, dtype="float64")
    k = 2 if task == "binary" else (scores.shape[1] if scores.ndim == 2 else 0)
    if scores.ndim != 2 or scores.shape != (len(truth), k) or k < 2:
        raise ValueError(f"scores must be an n x k matrix matching {len(truth)} truth codes "
                         f"({'2 columns' if task == 'binary' else 'k >= 2 columns'}), got "
                         f"shape {scores.shape}")
    if len(truth) and (truth.min() < 0 or truth.max() >= k):
        raise ValueError(f"truth codes must lie in [0, {k}), got {truth.min()}..{truth.max()}")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold non-finite values")
    method = METHODS[task]
    counts = np.bincount(truth, minlength=k)
    record: dict[str, Any] = {
        "method": method, "applied": False, "parameters": None, "rows": int(len(truth)),
        "class_rows": counts.tolist(), "folds": None, "seed": int(seed),
        "log_loss_before": None, "log_loss_after": None, "relative_gain": None,
        "ece_before": None, "ece_after": None, "min_relative_gain": min_relative_gain,
        "reason": "",
    }
    if len(truth) == 0:
        record["reason"] = "no out-of-sample rows to fit on"
        return record
    record["log_loss_before"] = log_loss(truth, scores)
    record["ece_before"] = expected_calibration_error(truth, scores, task)
    if counts.min() >= 2:
        record["parameters"] = _fit(truth, scores, method)
        splits = int(min(folds, counts.min()))
        record["folds"] = splits
        calibrated = _cross_fitted(truth, scores, method, splits, seed)
        after = log_loss(truth, calibrated)
        record["log_loss_after"] = after
        record["ece_after"] = expected_calibration_error(truth, calibrated, task)
        before = record["log_loss_before"]
        record["relative_gain"] = float((before - after) / before) if before > 0 else 0.0
    if len(truth) < min_rows or counts.min() < min_class_rows:
        record["reason"] = (f"too few out-of-sample rows to fit it reliably ({len(truth)} rows, "
                            f"{int(counts.min())} of the rarest class; needs {min_rows} and "
                            f"{min_class_rows} per class)")
    elif record["relative_gain"] is None or record["relative_gain"] <= min_relative_gain:
        gain = record["relative_gain"] or 0.0
        change = (f"improves by only {gain:.2%}" if gain > 0 else f"gets worse by {-gain:.2%}")
        record["reason"] = (f"cross-fitted log loss {change} (needs an improvement above "
                            f"{min_relative_gain:.1%}): the scores are calibrated enough")
    else:
        record["applied"] = True
        record["reason"] = (f"cross-fitted log loss {record['log_loss_before']:.4f} -> "
                            f"{record['log_loss_after']:.4f} ({record['relative_gain']:.1%} "
                            "better)")
    return record


def describe_calibration(calibration: dict[str, Any] | None) -> str:
    """One sentence for people (model card, reports)."""
    if not calibration:
        return "Probabilities are the engine's; they were not recalibrated."
    names = {"platt": "Platt scaling", "temperature": "temperature scaling"}
    method = names.get(calibration.get("method") or "", calibration.get("method") or "")
    source = f" ({calibration['source']})" if calibration.get("source") else ""
    if calibration.get("applied"):
        p = calibration.get("parameters") or {}
        shown = (f"a={p['a']:.3f}, b={p['b']:.3f}" if "a" in p
                 else f"T={p['temperature']:.3f}" if "temperature" in p else "")
        return (f"Probabilities are recalibrated by {method} ({shown}) fitted on "
                f"{calibration['rows']} out-of-sample training rows{source}; cross-fitted over "
                f"{calibration['folds']} folds, expected calibration error "
                f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f} and log loss "
                f"{calibration['log_loss_before']:.4f} -> {calibration['log_loss_after']:.4f}.")
    reason = (calibration.get("reason") or "not fitted").rstrip(".")
    text = f"Probabilities are the engine's, not recalibrated: {reason}."
    if calibration.get("ece_before") is not None and calibration.get("ece_after") is not None:
        text += (f" {method[:1].upper()}{method[1:]} was tried on {calibration['rows']} "
                 f"out-of-sample training rows{source}: cross-fitted expected calibration error "
                 f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}.")
    return text
