"""Mitigation fitted on the training rows: per-group score repair and decision thresholds
(both applied inside the registered pyfunc)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from autokfp.config import GovernanceSpec
from autokfp.governance.fairness.groups import _fpr, _tpr, top_share_cut
from autokfp.modeling.model_package import group_key

log = logging.getLogger("autokfp.governance.fairness")


@dataclass
class GroupRates:
    """Rates of one group at each candidate threshold (vectors over candidates)."""

    thresholds: np.ndarray
    selection: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    correct: np.ndarray


def _group_rates(scores: np.ndarray, y: np.ndarray, extra: list[float]) -> GroupRates:
    quantiles = np.quantile(scores, np.linspace(0, 1, 201)) if len(scores) else np.array([])
    candidates = np.unique(np.concatenate([quantiles, np.asarray(extra, dtype="float64"),
                                           [0.0, np.nextafter(1.0, 2.0)]]))
    chosen = scores[:, None] >= candidates[None, :]
    positives = max(int(np.sum(y == 1)), 1)
    negatives = max(int(np.sum(y == 0)), 1)
    true_positive = np.sum(chosen & (y[:, None] == 1), axis=0)
    false_positive = np.sum(chosen & (y[:, None] == 0), axis=0)
    correct = true_positive + (np.sum(y == 0) - false_positive)
    return GroupRates(candidates, chosen.mean(axis=0), true_positive / positives,
                      false_positive / negatives, correct.astype("float64"))


def _bands(limit_difference: float | None, limit_ratio: float | None,
           step: float) -> list[tuple[float, float]]:
    bands = []
    for low in np.arange(0.0, 1.0 + 1e-9, step):
        high = 1.0
        if limit_difference is not None:
            high = min(high, low + limit_difference)
        if limit_ratio is not None and limit_ratio > 0:
            high = min(high, low / limit_ratio)
        if high >= low:
            bands.append((float(low), float(high)))
    return bands


def fit_group_thresholds(scores: Any, y_true: Any, groups: Any, measured: list[str],
                         spec: GovernanceSpec, margin: float,
                         default_threshold: float = 0.5) -> dict[str, float] | None:
    """One threshold per measured group, meeting the policy with ``margin`` to spare.

    Every group's selection rate must fall in one band [low, high] whose width meets the
    demographic-parity difference and ratio targets and hold the model's overall selection
    rate on these rows (and, when an equalized-odds limit is set, TPRs and FPRs in bands of
    that width). Groups are independent given the bands, so
    each takes its most accurate threshold inside them; the bands with the most correct
    decisions overall win. Returns None when no thresholds satisfy the targets.
    """
    scores = np.asarray(scores, dtype="float64")
    y_true = np.asarray(y_true, dtype=int)
    keys = np.array([group_key(g) for g in groups])
    difference = spec.max_demographic_parity_difference * (1 - margin)
    ratio = 1 - (1 - spec.min_demographic_parity_ratio) * (1 - margin)
    rates = {g: _group_rates(scores[keys == g], y_true[keys == g], [default_threshold])
             for g in measured}
    eo_limit = spec.max_equalized_odds_difference
    # the band must hold the model's own overall selection rate: the share of rows flagged
    # stays about what it was, and the degenerate "flag nobody" answer (accurate when
    # positives are rare, and trivially at parity) is ruled out
    overall = float(np.mean(scores[np.isin(keys, measured)] >= default_threshold))
    selection_bands = [(low, high) for low, high in
                       _bands(difference, ratio, 0.005 if eo_limit is None else 0.02)
                       if low - 1e-9 <= overall <= high + 1e-9]
    odds_bands: list[tuple[tuple[float, float], tuple[float, float]]] = [((0.0, 1.0), (0.0, 1.0))]
    if eo_limit is not None:
        width = eo_limit * (1 - margin)
        single = _bands(width, None, 0.02)
        odds_bands = [(a, b) for a in single for b in single]
    best: tuple[float, dict[str, float]] | None = None
    for tpr_band, fpr_band in odds_bands:
        allowed = {g: (r.tpr >= tpr_band[0] - 1e-12) & (r.tpr <= tpr_band[1] + 1e-12)
                   & (r.fpr >= fpr_band[0] - 1e-12) & (r.fpr <= fpr_band[1] + 1e-12)
                   for g, r in rates.items()}
        if not all(a.any() for a in allowed.values()):
            continue
        for low, high in selection_bands:
            total = 0.0
            chosen: dict[str, float] = {}
            for group, r in rates.items():
                ok = allowed[group] & (r.selection >= low - 1e-12) & (r.selection <= high + 1e-12)
                if not ok.any():
                    break
                scored = np.where(ok, r.correct, -1.0)
                # ties: the threshold nearest the model's own keeps decisions least changed
                top = np.flatnonzero(scored == scored.max())
                pick = top[np.argmin(np.abs(r.thresholds[top] - default_threshold))]
                chosen[group] = float(r.thresholds[pick])
                total += float(r.correct[pick])
            else:
                if best is None or total > best[0]:
                    best = (total, chosen)
    return None if best is None else best[1]


def _targets(spec: GovernanceSpec, margin: float) -> tuple[float, float, float | None]:
    """The policy tightened by ``margin``: (max difference, min ratio, max equalized odds)."""
    difference = spec.max_demographic_parity_difference * (1 - margin)
    ratio = 1 - (1 - spec.min_demographic_parity_ratio) * (1 - margin)
    odds = (None if spec.max_equalized_odds_difference is None
            else spec.max_equalized_odds_difference * (1 - margin))
    return difference, ratio, odds


def _parity_ok(values: list[float], difference: float, ratio: float) -> bool:
    high, low = max(values), min(values)
    return high - low <= difference + 1e-12 and (low / high if high > 0 else 1.0) >= ratio - 1e-12


def _decisions_ok(scores: np.ndarray, y: np.ndarray, keys: np.ndarray, measured: list[str],
                  threshold: float, spec: GovernanceSpec, margin: float) -> bool:
    difference, ratio, odds = _targets(spec, margin)
    chosen = scores >= threshold
    if not _parity_ok([float(chosen[keys == g].mean()) for g in measured], difference, ratio):
        return False
    if odds is None:
        return True
    tpr = [_tpr(y[keys == g], chosen[keys == g]) for g in measured]
    fpr = [_fpr(y[keys == g], chosen[keys == g]) for g in measured]
    if any(v != v for v in tpr + fpr):
        return False
    return max(tpr) - min(tpr) <= odds and max(fpr) - min(fpr) <= odds


def _quantiles(values: np.ndarray, levels: int) -> list[float]:
    # strictly increasing, so interpolation is well defined where scores tie
    q = np.quantile(values, np.linspace(0.0, 1.0, levels))
    return (q + np.arange(levels) * 1e-12).tolist()


def _ranking_rates(scores: np.ndarray, keys: np.ndarray, measured: list[str],
                   share: float) -> list[float]:
    chosen = scores >= top_share_cut(scores, share)
    return [float(chosen[keys == g].mean()) for g in measured]


def fit_score_repair(scores: Any, groups: Any, measured: list[str], spec: GovernanceSpec,
                     margin: float, top_share: float, levels: int = 101) -> dict[str, Any] | None:
    """The weakest per-group score repair whose ranking (the top ``top_share`` flagged) meets
    the parity targets.

    Each measured group's scores move ``strength`` of the way towards the pooled score at
    the same within-group rank; strengths 0.1, 0.2, ... 1.0 are tried in turn.
    """
    from autokfp.modeling.model_package import adjust_scores

    scores = np.asarray(scores, dtype="float64")
    keys = np.array([group_key(g) for g in groups], dtype=object)
    difference, ratio, _ = _targets(spec, margin)
    pooled = scores[np.isin(keys, measured)]
    repair: dict[str, Any] = {"reference": _quantiles(pooled, levels),
                              "groups": {g: _quantiles(scores[keys == g], levels) for g in measured}}
    raw = np.column_stack([1 - scores, scores])
    for strength in np.round(np.arange(0.1, 1.0001, 0.1), 2):
        repair["strength"] = float(strength)
        meta = {"fairness_mitigation": {"score_repair": repair}}
        repaired = adjust_scores(raw, meta, list(keys))[:, 1]
        if _parity_ok(_ranking_rates(repaired, keys, measured, top_share), difference, ratio):
            return repair
    return None


def fit_mitigation(scores: Any, y_true: Any, groups: Any, measured: list[str], column: str,
                   spec: GovernanceSpec, margin: float, default_threshold: float = 0.5,
                   top_share: float | None = None) -> dict[str, Any] | None:
    """Score repair (when the ranking breaks parity), then per-group thresholds (when
    decisions still do), fitted on these rows with ``margin``. None: nothing meets it."""
    from autokfp.modeling.model_package import adjust_scores

    scores = np.asarray(scores, dtype="float64")
    y_true = np.asarray(y_true, dtype=int)
    keys = np.array([group_key(g) for g in groups], dtype=object)
    difference, ratio, _ = _targets(spec, margin)
    mitigation: dict[str, Any] = {"column": column, "default_threshold": default_threshold}
    working = scores
    if (spec.ranking_parity and top_share is not None
            and not _parity_ok(_ranking_rates(scores, keys, measured, top_share), difference, ratio)):
        repair = fit_score_repair(scores, keys, measured, spec, margin, top_share)
        if repair is None:
            return None
        mitigation["score_repair"] = repair
        working = adjust_scores(np.column_stack([1 - scores, scores]),
                                {"fairness_mitigation": mitigation}, list(keys))[:, 1]
    if not _decisions_ok(working, y_true, keys, measured, default_threshold, spec, margin):
        thresholds = fit_group_thresholds(working, y_true, keys, measured, spec, margin,
                                          default_threshold)
        if thresholds is None:
            return None
        mitigation["thresholds"] = thresholds
    return mitigation


def apply_mitigation(scores: Any, groups: Any, mitigation: dict[str, Any] | None,
                     default_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(scores, 0/1 decisions) after ``mitigation``: the very functions the pyfunc uses."""
    from autokfp.modeling.model_package import adjust_scores, decision_thresholds

    scores = np.asarray(scores, dtype="float64")
    keys = [group_key(g) for g in groups]
    meta: dict[str, Any] = {"task": "binary", "threshold": default_threshold}
    if mitigation:
        meta["fairness_mitigation"] = mitigation
    adjusted = adjust_scores(np.column_stack([1 - scores, scores]), meta, keys)[:, 1]
    return adjusted, (adjusted >= decision_thresholds(meta, keys, len(adjusted))).astype(int)


def describe_mitigation(mitigation: dict[str, Any]) -> str:
    parts = []
    if mitigation.get("score_repair"):
        parts.append(f"score repair on `{mitigation['column']}` at strength "
                     f"{mitigation['score_repair']['strength']:.1f}")
    if mitigation.get("thresholds"):
        parts.append(f"per-group thresholds on `{mitigation['column']}` ("
                     + ", ".join(f"{g} {t:.3f}" for g, t in mitigation["thresholds"].items()) + ")")
    return " + ".join(parts) or "no change needed on the fitting rows"
