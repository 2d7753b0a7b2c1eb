"""Fairness: per-group metrics, policy checks and mitigation by per-group thresholds.

Sensitive attributes come from ``governance.sensitive_columns`` or, when that is empty,
from the columns the catalog tagged ``sensitive``. Before training, ``check_training_data``
looks at group representation and the label rate of each group. After training,
``assess_fairness`` computes, per group, the selection rate, mean score, TPR, FPR, error
rate and AUC (with fairlearn's ``MetricFrame``), then over the groups large enough to
measure: demographic-parity difference and ratio of the decisions at the model's threshold,
the same parity when the top-scored share equal to the training positive rate is flagged
(``governance.ranking_parity``: a churn score is mostly used to rank, and a model can
reproduce a biased label in its scores while its decisions at one threshold look fair),
and the equalized-odds difference; each is checked against the policy.

When a limit is broken, the mitigation is post-processing fitted on the training rows and
re-checked on the held-out rows, deterministic so a request always gets the same answer:

1. if the ranking breaks parity, a per-group **score repair** moves each group's scores
   part of the way towards the pooled distribution at the same rank (order within a group
   is kept); the smallest strength that meets the policy wins;
2. if decisions still break parity (or equalized odds), ``fit_group_thresholds`` picks
   one decision threshold per group (in the spirit of fairlearn's ``ThresholdOptimizer``):
   among thresholds whose per-group rates satisfy the policy with a safety margin, the
   most accurate.

Both travel inside the registered pyfunc (``meta['fairness_mitigation']``), so serving
applies them. Nothing is ever silently passed: a check that cannot run says ``not_run``
and why.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from autokfp.config import GovernanceSpec
from autokfp.modeling.model_package import group_key

log = logging.getLogger(__name__)

PASS, FAIL, WARN, NOT_RUN, INFO = "pass", "fail", "warn", "not_run", "info"
# safety margins tried in turn: the fitted thresholds aim inside the limit by this fraction,
# so the held-out re-check (other rows than the fitting ones) lands inside it too
MARGINS = (0.25, 0.5, 0.75)


@dataclass
class Check:
    """One fairness check: what, on which column, its status, value and limit, and why."""

    name: str
    column: str | None
    status: str
    detail: str
    value: float | None = None
    limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


# ------------------------------------------------------------------ sensitive attributes


def resolve_sensitive_columns(schema: Any, spec: GovernanceSpec,
                              columns: list[str]) -> tuple[list[str], str, list[Check]]:
    """Which columns to check, where that came from, and checks for named-but-absent ones.

    ``schema`` is the catalog's ``DatasetSchema`` (or None); ``columns`` the data's columns.
    """
    problems: list[Check] = []
    if spec.sensitive_columns:
        source = "config (governance.sensitive_columns)"
        wanted = list(spec.sensitive_columns)
    else:
        source = "catalog tag 'sensitive'"
        wanted = [c.name for c in (schema.columns if schema is not None else []) if c.is_sensitive]
    found = []
    for name in wanted:
        if name in columns:
            found.append(name)
        else:
            problems.append(Check("sensitive_attribute", name, NOT_RUN,
                                  f"column '{name}' (from the {source}) is not in the data: it cannot "
                                  "be checked; fix governance.sensitive_columns"))
    return found, source, problems


def no_sensitive_attribute(source: str) -> Check:
    return Check("sensitive_attribute", None, NOT_RUN,
                 "no sensitive attribute known: the catalog tagged no column 'sensitive' and "
                 "governance.sensitive_columns is empty, so no fairness check ran; name the "
                 f"protected attributes in governance.sensitive_columns (looked in: {source})")


# ------------------------------------------------------------------------- per group


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> float:
    total = float(np.sum(denominator))
    return float(np.sum(numerator)) / total if total else float("nan")


def _selection_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_pred)) if len(y_pred) else float("nan")


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rate((y_true == 1) & (y_pred == 1), y_true == 1)


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rate((y_true == 0) & (y_pred == 1), y_true == 0)


def _error_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true != y_pred)) if len(y_true) else float("nan")


def _positives(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sum(y_true == 1))


def _count(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(len(y_true))


def _mean(y_true: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(scores)) if len(scores) else float("nan")


def _auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(y_true)) < 2:
        return float("nan")  # one class in the group: AUC is undefined
    return float(skm.roc_auc_score(y_true, scores))


def top_share_cut(scores: Any, share: float) -> float:
    """The score above which the top ``share`` of rows lie (flagging as many as are positive)."""
    return float(np.quantile(np.asarray(scores, dtype="float64"), 1.0 - share))


def group_metrics(y_true: Any, y_pred: Any, scores: Any, groups: Any,
                  top_share: float | None = None) -> dict[str, dict[str, Any]]:
    """Per group: rows, positives (label), selection rate, mean score, TPR, FPR, error rate,
    accuracy, AUC, and (with ``top_share``) the ranking rate: the share of the group among
    the top-``top_share`` scores of all rows.

    ``y_true`` and ``y_pred`` are 0/1, ``scores`` the positive-class probability, ``groups``
    the group of each row. Undefined values (TPR without positives, AUC with one class)
    are None. Computed with fairlearn's MetricFrame.
    """
    from fairlearn.metrics import MetricFrame

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    scores = np.asarray(scores, dtype="float64")
    groups = pd.Series([group_key(g) for g in groups], name="group")
    cut = top_share_cut(scores, top_share) if top_share is not None and len(scores) else None
    frame = MetricFrame(
        metrics={"rows": _count, "positives": _positives, "selection_rate": _selection_rate,
                 "tpr": _tpr, "fpr": _fpr, "error_rate": _error_rate},
        y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_score = MetricFrame(metrics={"auc": _auc, "mean_score": _mean}, y_true=y_true, y_pred=scores,
                           sensitive_features=groups)
    result: dict[str, dict[str, Any]] = {}
    for group, row in frame.by_group.iterrows():
        stats = {k: _float(v) for k, v in row.items()}
        stats["rows"] = int(stats["rows"] or 0)
        stats["positives"] = int(stats["positives"] or 0)
        stats["accuracy"] = None if stats["error_rate"] is None else 1.0 - stats["error_rate"]
        stats["mean_score"] = _float(by_score.by_group.loc[group, "mean_score"])
        stats["auc"] = _float(by_score.by_group.loc[group, "auc"])
        if top_share is not None:
            in_group = groups.to_numpy() == group
            stats["ranking_rate"] = float(np.mean(scores[in_group] >= cut)) if in_group.any() else None
        result[str(group)] = stats
    return dict(sorted(result.items()))


def disparities(stats: dict[str, dict[str, Any]], measured: list[str]) -> dict[str, float | None]:
    """Demographic-parity difference and ratio (of decisions, and of the ranking) and the
    equalized-odds difference over ``measured``.

    Difference = largest minus smallest group rate; ratio = smallest / largest; equalized
    odds = the larger of the TPR and FPR differences (fairlearn's definitions).
    """
    def spread(key: str) -> tuple[float | None, float | None]:
        values = [stats[g][key] for g in measured]
        if len(values) < 2 or any(v is None for v in values):
            return None, None
        high, low = max(values), min(values)
        return high - low, (low / high if high > 0 else (1.0 if low == high else 0.0))

    dp_difference, dp_ratio = spread("selection_rate")
    ranking_difference, ranking_ratio = (spread("ranking_rate")
                                         if all("ranking_rate" in stats[g] for g in measured)
                                         else (None, None))
    tpr_difference, _ = spread("tpr")
    fpr_difference, _ = spread("fpr")
    eo = None if tpr_difference is None or fpr_difference is None else max(tpr_difference,
                                                                           fpr_difference)
    return {"demographic_parity_difference": dp_difference, "demographic_parity_ratio": dp_ratio,
            "ranking_parity_difference": ranking_difference, "ranking_parity_ratio": ranking_ratio,
            "tpr_difference": tpr_difference, "fpr_difference": fpr_difference,
            "equalized_odds_difference": eo}


@dataclass
class ColumnAssessment:
    """The fairness of one model's decisions with respect to one sensitive column."""

    column: str
    groups: dict[str, dict[str, Any]]
    measured: list[str]
    too_small: dict[str, int]
    disparities: dict[str, float | None]
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    @property
    def violation(self) -> float:
        """How far past the limits (0 when within them): ranks columns for mitigation."""
        worst = 0.0
        for check in self.checks:
            if check.status == FAIL and check.value is not None and check.limit is not None:
                worst = max(worst, abs(check.value - check.limit))
        return worst

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [c.to_dict() for c in self.checks]
        return data


def assess_column(column: str, y_true: Any, y_pred: Any, scores: Any, groups: Any,
                  spec: GovernanceSpec, top_share: float | None = None) -> ColumnAssessment:
    """Per-group metrics and the policy checks for one sensitive column.

    ``top_share`` (the training positive rate) enables the ranking-parity checks.
    """
    ranking = spec.ranking_parity and top_share is not None
    stats = group_metrics(y_true, y_pred, scores, groups, top_share if ranking else None)
    measured = [g for g, s in stats.items() if s["rows"] >= spec.min_group_size]
    too_small = {g: s["rows"] for g, s in stats.items() if s["rows"] < spec.min_group_size}
    gaps = disparities(stats, measured)
    checks: list[Check] = []
    for group, rows in too_small.items():
        checks.append(Check("group_size", column, NOT_RUN,
                            f"group '{group}' has {rows} held-out rows, fewer than "
                            f"governance.min_group_size ({spec.min_group_size}): too small to "
                            "measure, left out of the parity checks (and of mitigation)",
                            value=float(rows), limit=float(spec.min_group_size)))
    if len(measured) < 2:
        sizes = ", ".join(f"{g}={s['rows']}" for g, s in stats.items())
        reason = (f"fewer than two groups of '{column}' have at least {spec.min_group_size} "
                  f"held-out rows (groups: {sizes})")
        names = ["demographic_parity_difference", "demographic_parity_ratio",
                 "equalized_odds_difference"]
        if ranking:
            names[2:2] = ["ranking_parity_difference", "ranking_parity_ratio"]
        for name in names:
            checks.append(Check(name, column, NOT_RUN, f"not run: {reason}"))
        return ColumnAssessment(column, stats, measured, too_small, gaps, checks)

    checks += _parity_checks("demographic_parity", "selection_rate", "selection rate",
                             column, measured, stats, gaps, spec)
    if ranking:
        checks += _parity_checks("ranking_parity", "ranking_rate",
                                 f"flagging the top {top_share:.1%} of scores:",
                                 column, measured, stats, gaps, spec)
    eo = gaps["equalized_odds_difference"]
    limit = spec.max_equalized_odds_difference
    if eo is None:
        undefined = [g for g in measured if stats[g]["tpr"] is None or stats[g]["fpr"] is None]
        checks.append(Check("equalized_odds_difference", column, NOT_RUN,
                            f"not run: TPR or FPR undefined for {undefined} (a group without "
                            "positive or without negative held-out rows)", limit=limit))
    elif limit is None:
        checks.append(Check("equalized_odds_difference", column, INFO,
                            f"{eo:.3f} (TPR gap {gaps['tpr_difference']:.3f}, FPR gap "
                            f"{gaps['fpr_difference']:.3f}); reported only: no limit set in "
                            "governance.max_equalized_odds_difference", value=eo))
    else:
        checks.append(Check("equalized_odds_difference", column, PASS if eo <= limit else FAIL,
                            f"{eo:.3f} (TPR gap {gaps['tpr_difference']:.3f}, FPR gap "
                            f"{gaps['fpr_difference']:.3f}), policy at most {limit}",
                            value=eo, limit=limit))
    return ColumnAssessment(column, stats, measured, too_small, gaps, checks)


# ------------------------------------------------------------------------- pre-training



def _parity_checks(name: str, rate: str, label: str, column: str, measured: list[str],
                   stats: dict[str, dict[str, Any]], gaps: dict[str, Any], spec: Any) -> list[Check]:
    """The ``<name>_difference`` and ``<name>_ratio`` checks of one rate across groups,
    against the demographic-parity limits of the policy."""
    low = min(measured, key=lambda g: stats[g][rate])
    high = max(measured, key=lambda g: stats[g][rate])
    rates = f"{label} {stats[high][rate]:.3f} ({high}) vs {stats[low][rate]:.3f} ({low})"
    difference, ratio = gaps[f"{name}_difference"], gaps[f"{name}_ratio"]
    most, least = spec.max_demographic_parity_difference, spec.min_demographic_parity_ratio
    return [
        Check(f"{name}_difference", column, PASS if difference <= most else FAIL,
              f"{rates}: difference {difference:.3f}, policy at most {most}",
              value=difference, limit=most),
        Check(f"{name}_ratio", column, PASS if ratio >= least else FAIL,
              f"{rates}: ratio {ratio:.3f}, policy at least {least}", value=ratio, limit=least),
    ]

def check_training_data(frame: pd.DataFrame, target: str, positive: Any, columns: list[str],
                        spec: GovernanceSpec) -> dict[str, Any]:
    """Group representation and label balance per sensitive column, before training.

    These warn (never block): a label rate that differs by group is what a model learns
    and reproduces, which the post-training check then measures. ``positive`` None (not a
    binary target): representation only.
    """
    positive_mask = frame[target].astype(str) == str(positive)
    result: dict[str, Any] = {}
    for column in columns:
        keys = frame[column].map(group_key)
        counts = keys.value_counts()
        rates = positive_mask.groupby(keys).mean()
        groups = {str(g): {"rows": int(counts[g]), "share": float(counts[g] / len(frame)),
                           "positive_rate": None if positive is None else float(rates[g])}
                  for g in sorted(counts.index)}
        checks: list[Check] = []
        small = {g: s["rows"] for g, s in groups.items() if s["rows"] < spec.min_group_size}
        if small:
            checks.append(Check("group_representation", column, WARN,
                                f"groups with fewer than {spec.min_group_size} training rows: "
                                f"{small}; the model learns little about them and they cannot "
                                "be measured reliably", value=float(min(small.values())),
                                limit=float(spec.min_group_size)))
        else:
            shares = ", ".join(f"{g} {s['share']:.1%}" for g, s in groups.items())
            checks.append(Check("group_representation", column, PASS,
                                f"every group has at least {spec.min_group_size} training rows "
                                f"({shares})", value=float(min(counts)),
                                limit=float(spec.min_group_size)))
        measured = [g for g, s in groups.items() if s["rows"] >= spec.min_group_size]
        if positive is None:
            checks.append(Check("label_balance", column, NOT_RUN,
                                "not run: label rates by group are checked for binary targets"))
        elif len(measured) < 2:
            checks.append(Check("label_balance", column, NOT_RUN,
                                f"fewer than two groups with {spec.min_group_size}+ rows"))
        else:
            high = max(measured, key=lambda g: groups[g]["positive_rate"])
            low = min(measured, key=lambda g: groups[g]["positive_rate"])
            difference = groups[high]["positive_rate"] - groups[low]["positive_rate"]
            ratio = (groups[low]["positive_rate"] / groups[high]["positive_rate"]
                     if groups[high]["positive_rate"] > 0 else 1.0)
            broken = (difference > spec.max_demographic_parity_difference
                      or ratio < spec.min_demographic_parity_ratio)
            detail = (f"label '{positive}' rate {groups[high]['positive_rate']:.3f} ({high}) vs "
                      f"{groups[low]['positive_rate']:.3f} ({low}): difference {difference:.3f}, "
                      f"ratio {ratio:.3f}")
            if broken:
                detail += ("; beyond the parity policy: a model that learns these labels will "
                           "reproduce the gap, the post-training check measures it")
            checks.append(Check("label_balance", column, WARN if broken else PASS, detail,
                                value=difference, limit=spec.max_demographic_parity_difference))
        result[column] = {"groups": groups, "checks": [c.to_dict() for c in checks]}
    return result


# -------------------------------------------------------------------------- mitigation


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


# ----------------------------------------------------------------------------- report


def summary_metrics(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC of the scores; accuracy, F1, precision, recall and selection rate of the decisions."""
    auc = _auc(np.asarray(y_true), np.asarray(scores))
    return {"auc": auc, "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
            "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
            "selection_rate": float(np.mean(y_pred)) if len(y_pred) else float("nan")}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _checks_table(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["| check | column | status | value | limit | detail |", "| --- | --- | --- | --- | --- | --- |"]
    for c in checks:
        lines.append(f"| {c['name']} | {c['column'] or '-'} | **{c['status']}** | "
                     f"{_fmt(c.get('value'))} | {_fmt(c.get('limit'))} | {c['detail']} |")
    return lines


def _groups_table(groups: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| group | rows | positives | selection rate | mean score | TPR | FPR | error rate | AUC |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for g, s in groups.items():
        lines.append(f"| {g} | {s['rows']} | {s['positives']} | {_fmt(s['selection_rate'])} | "
                     f"{_fmt(s['mean_score'])} | {_fmt(s['tpr'])} | {_fmt(s['fpr'])} | "
                     f"{_fmt(s['error_rate'])} | {_fmt(s['auc'])} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The fairness report (pre-training, before and after mitigation) as Markdown."""
    lines = [f"# Fairness report: {report.get('model', '')}", "",
             f"**Verdict: {report['verdict']}**: {report['verdict_reason']}", ""]
    policy = report["policy"]
    eo_limit = policy["max_equalized_odds_difference"]
    eo_text = "reported only" if eo_limit is None else f"at most {eo_limit}"
    lines += ["Policy: demographic-parity difference at most "
              f"{policy['max_demographic_parity_difference']}, ratio at least "
              f"{policy['min_demographic_parity_ratio']} (for the decisions"
              + (", and for the ranking: the top-scored share equal to the training positive "
                 f"rate ({report['top_share']:.1%}) flagged" if policy.get("ranking_parity")
                 and report.get("top_share") is not None else "")
              + f"), equalized-odds difference {eo_text}"
              f"; groups need {policy['min_group_size']} held-out rows to be measured; "
              f"mitigate: {policy['mitigate']}; block deployment on bias: "
              f"{policy['block_deploy_on_bias']}.", "",
             f"Sensitive attributes: {', '.join(report['sensitive_columns']) or 'none known'} "
             f"(from the {report['sensitive_source']}).", ""]
    if report.get("notes"):
        lines += ["## Not run", ""] + [f"- {n}" for n in report["notes"]] + [""]
    for column, data in (report.get("data") or {}).items():
        lines += [f"## Before training: `{column}` in the training rows", "",
                  "| group | rows | share | label rate |", "| --- | --- | --- | --- |"]
        lines += [f"| {g} | {s['rows']} | {s['share']:.1%} | {_fmt(s['positive_rate'])} |"
                  for g, s in data["groups"].items()]
        lines += [""] + _checks_table(data["checks"]) + [""]
    for stage, title in (("before", "The trained model"), ("after", "After mitigation")):
        for column, data in (report.get(stage) or {}).items():
            lines += [f"## {title}: `{column}` on the held-out rows", ""]
            lines += _groups_table(data["groups"]) + [""]
            lines += _checks_table(data["checks"]) + [""]
    mitigation = report.get("mitigation") or {}
    if mitigation:
        lines += ["## Mitigation", "", mitigation.get("summary", ""), ""]
        if mitigation.get("attempts"):
            lines += ["| safety margin | mitigation | held-out re-check |", "| --- | --- | --- |"]
            lines += [f"| {a['margin']} | {a.get('method', '-')} | {a['result']} |"
                      for a in mitigation["attempts"]]
            lines.append("")
        if mitigation.get("thresholds"):
            lines += ["| group | threshold |", "| --- | --- |"]
            lines += [f"| {g} | {t:.4f} |" for g, t in mitigation["thresholds"].items()]
            lines += [f"| every other group | {mitigation['default_threshold']:.4f} |", ""]
        before, after = report.get("overall_before"), report.get("overall_after")
        if before and after:
            lines += ["| metric (held-out rows) | before | after | change |", "| --- | --- | --- | --- |"]
            for key in ("auc", "accuracy", "f1", "precision", "recall", "selection_rate"):
                lines.append(f"| {key} | {before[key]:.4f} | {after[key]:.4f} | "
                             f"{after[key] - before[key]:+.4f} |")
            lines += ["", "A score repair moves probabilities (within each group their order is "
                          "kept); thresholds move decisions only.", ""]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ whole check


def _binary_arrays(frame: pd.DataFrame, predictions: pd.DataFrame,
                   meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, decisions (0/1 for the positive class) and positive-class scores."""
    positive_label = str(meta["class_labels"][1])
    positive_class = str(meta["classes"][1])
    y_true = (frame[meta["target"]].astype(str) == positive_label).to_numpy(dtype=int)
    y_pred = (predictions["prediction"].astype(str) == positive_class).to_numpy(dtype=int)
    scores = predictions[f"probability_{positive_label}"].to_numpy(dtype="float64")
    return y_true, y_pred, scores


def assess_fairness(test: pd.DataFrame, test_predictions: pd.DataFrame, meta: dict[str, Any],
                    columns: list[str], source: str, spec: GovernanceSpec,
                    fit: pd.DataFrame | None = None, fit_predictions: pd.DataFrame | None = None,
                    problems: list[Check] | None = None) -> tuple[dict[str, Any], dict | None]:
    """Check the model's held-out decisions against the policy; mitigate if it is broken.

    ``fit`` / ``fit_predictions`` are the rows the mitigation is fitted on (the training
    rows); the re-check always uses the held-out ``test`` rows. Returns the report and the
    ``meta['fairness_mitigation']`` to package (None when nothing was mitigated).

    Verdicts: ``pass`` (every limit met), ``mitigated`` (broken, then met after score repair
    and/or per-group thresholds), ``fail`` (broken and still broken, or mitigation off),
    ``not_run`` (no sensitive attribute, no measurable groups, or not a binary classifier).
    """
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

    def finish(verdict: str, reason: str) -> tuple[dict[str, Any], dict | None]:
        return finish_with(verdict, reason, None)

    def finish_with(verdict: str, reason: str,
                    mitigation: dict | None) -> tuple[dict[str, Any], dict | None]:
        report["verdict"], report["verdict_reason"] = verdict, reason
        return report, mitigation
    if meta["task"] != "binary":
        note = (f"not run: the parity checks (selection rate, TPR, FPR) are defined for binary "
                f"classifiers and this model's task is {meta['task']}")
        report["notes"].append(note)
        return finish(NOT_RUN, note)
    if not columns:
        check = no_sensitive_attribute(source)
        report["checks"].append(check.to_dict())
        report["notes"].append(check.detail)
        return finish(NOT_RUN, check.detail)

    y_true, y_pred, scores = _binary_arrays(test, test_predictions, meta)
    default_threshold = float(meta.get("threshold", 0.5))
    fit_frame, fit_pred = (fit, fit_predictions) if fit is not None else (test, test_predictions)
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
        return finish(NOT_RUN, "no sensitive attribute has two groups large enough to measure; "
                               "see the not-run checks")
    failing = sorted((a for a in before.values() if a.failed), key=lambda a: -a.violation)
    if not failing:
        unmeasured = [c for c, a in before.items() if len(a.measured) < 2]
        reason = "every measured fairness limit is met"
        if unmeasured:
            reason += f"; not measured: {', '.join(unmeasured)} (see the not-run checks)"
        return finish(PASS, reason)
    broken = "; ".join(f"{c.column}: {c.name} {c.value:.3f} (limit {c.limit})"
                       for a in failing for c in a.checks if c.status == FAIL)
    if not spec.mitigate:
        report["mitigation"] = {"applied": False, "summary": "governance.mitigate is false: no "
                                                            "mitigation attempted"}
        return finish(FAIL, f"limits broken ({broken}) and mitigation is off")

    target = failing[0]
    fitted_on = "training rows" if fit is not None else "held-out rows (no training rows given)"
    fit_groups = fit_frame[target.column].tolist()
    test_groups = test[target.column].tolist()
    attempts = []
    accepted = None
    for margin in MARGINS:
        mitigation = fit_mitigation(fit_scores, fit_y, fit_groups, target.measured, target.column,
                                    spec, margin, default_threshold, top_share)
        if mitigation is None:
            attempts.append({"margin": margin, "result": "nothing meets the tightened policy on "
                                                         "the fitting rows"})
            continue
        adjusted, decided = apply_mitigation(scores, test_groups, mitigation, default_threshold)
        after = {c: assess_column(c, y_true, decided, adjusted, test[c].tolist(), spec, top_share)
                 for c in columns}
        still = [f"{c.column}: {c.name} {c.value:.3f}" for a in after.values() for c in a.checks
                 if c.status == FAIL]
        attempts.append({"margin": margin, "method": describe_mitigation(mitigation),
                         "result": "within policy" if not still else "still broken: " + "; ".join(still)})
        accepted = (mitigation, adjusted, decided, after)
        if not still:
            break
    report["mitigation"] = {"applied": False, "column": target.column, "fitted_on": fitted_on,
                            "default_threshold": default_threshold, "attempts": attempts}
    if accepted is None:
        report["mitigation"]["summary"] = (f"no score repair or per-group thresholds on "
                                           f"'{target.column}' meet the policy on the fitting rows")
        return finish(FAIL, f"limits broken ({broken}) and mitigation found nothing that meets them")
    mitigation, adjusted, decided, after = accepted
    report["after"] = {c: a.to_dict() for c, a in after.items()}
    report["overall_after"] = summary_metrics(y_true, decided, adjusted)
    before_metrics, after_metrics = report["overall_before"], report["overall_after"]
    cost = before_metrics["accuracy"] - after_metrics["accuracy"]
    report["accuracy_cost"] = cost
    report["auc_cost"] = before_metrics["auc"] - after_metrics["auc"]
    ok = not any(a.failed for a in after.values())
    method = describe_mitigation(mitigation)
    summary = (f"{method[0].upper()}{method[1:]}, fitted on the {fitted_on} ({len(fit_frame)}), "
               f"re-checked on the {len(test)} held-out rows: "
               f"{'within policy' if ok else 'still outside the policy'}. Accuracy "
               f"{before_metrics['accuracy']:.4f} → {after_metrics['accuracy']:.4f} "
               f"(cost {cost:+.4f}), AUC {before_metrics['auc']:.4f} → {after_metrics['auc']:.4f}.")
    report["mitigation"].update({"applied": ok, "method": method, "summary": summary,
                                 "thresholds": mitigation.get("thresholds") or {},
                                 "score_repair_strength": (mitigation.get("score_repair") or {}).get("strength")})
    if ok:
        packaged = {**mitigation, "method": method}
        return finish_with("mitigated", f"limits broken before ({broken}); {method} brings every "
                                        f"limit within policy at an accuracy cost of {cost:+.4f} "
                                        f"(AUC cost {report['auc_cost']:+.4f})", packaged)
    return finish(FAIL, f"limits broken ({broken}) and still broken after mitigation ({method})")
