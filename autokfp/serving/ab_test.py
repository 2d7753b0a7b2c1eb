"""The outcome test of an A/B split: is the new version worse for users than the serving one?

Each arm's outcome is measured on the rows its version answered during the split whose
ground truth has arrived (the prediction log joined to ``monitoring.labels`` by id). The unit
of the test is the **id** (the customer), not the request: a customer who asked three times
gets the same answer three times, and counting those as three independent rows would make the
interval too narrow (a false "worse" for the same model, seen with customers who came back
during a split). Each id's answers in an arm are averaged into one outcome; ``rows`` is the
number of ids, ``answers`` the labelled answers behind them:

* a classifier: the share of correct decisions (accuracy). The difference new - old gets
  Newcombe's hybrid score interval (his method 10, built from the two Wilson intervals;
  it keeps its coverage for small arms and rates near 0 or 1, where the Wald interval
  does not);
* a regression: the mean absolute error. The difference new - old gets Welch's t
  interval; the margin is a share of the serving version's error.

The decision rule (``deploy.ab_confidence``, ``deploy.ab_margin``), on the interval of
"how much worse the new version is" (old - new for accuracy, new - old for error):

* **worse**: the whole interval shows a loss (the new version is significantly worse):
  roll back;
* **not worse**: the interval's worst end is within the margin (non-inferior): promote;
* **inconclusive**: the interval straddles the margin, or an arm has fewer than
  ``deploy.ab_min_rows`` labelled ids: ``deploy.ab_inconclusive`` decides (``promote``
  by default: the version already beat the champion on the held-out rows, and the split
  showed it healthy; ``rollback`` to demand the evidence).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

log = logging.getLogger(__name__)

WORSE, NOT_WORSE, INCONCLUSIVE = "worse", "not worse", "inconclusive"
LABEL_COLUMN = "_autokfp_label"  # the ground truth joined to a logged row


@dataclass
class Arm:
    version: str
    rows: int  # labelled ids (customers) it answered during the split: the test's sample size
    value: float | None  # accuracy or mean absolute error, over the ids
    outcomes: list[float] = field(default_factory=list, repr=False)  # per id: share right or |error|
    answers: int | None = None  # labelled answers behind those ids (>= rows)


@dataclass
class AbOutcome:
    metric: str  # accuracy | mean_absolute_error
    old: Arm
    new: Arm
    difference: float | None  # new - old
    interval: tuple[float, float] | None  # of new - old
    confidence: float
    margin: float  # in the metric's units
    verdict: str  # worse | not worse | inconclusive
    promote: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for arm in ("old", "new"):
            data[arm].pop("outcomes")
        return data


def arm_outcomes(rows: pd.DataFrame, label_column: str,
                 id_column: str | None = None) -> tuple[str, list[float], int]:
    """(metric, one outcome per labelled id, labelled answers) of the rows one version
    answered: logged outputs (``output_prediction``, ``output_probability_*``) and the label.
    With ``id_column`` in the rows, an id's answers are averaged into one outcome (the share
    it got right, or its mean absolute error); without it every answer counts alone."""
    labelled = rows[rows[label_column].notna()] if label_column in rows.columns else rows.iloc[0:0]
    classifier = any(str(c).startswith("output_probability_") for c in rows.columns)
    if labelled.empty or "output_prediction" not in labelled.columns:
        return ("accuracy" if classifier else "mean_absolute_error"), [], 0
    if classifier:
        metric = "accuracy"
        per_answer = pd.Series([float(category_text(p) == category_text(t)) for p, t in
                                zip(labelled["output_prediction"], labelled[label_column])],
                               index=labelled.index)
    else:
        metric = "mean_absolute_error"
        predicted = pd.to_numeric(labelled["output_prediction"], errors="coerce")
        truth = pd.to_numeric(labelled[label_column], errors="coerce")
        per_answer = (predicted - truth).abs().dropna()
    if id_column and id_column not in labelled.columns and not per_answer.empty:
        log.warning("the logged rows have no id column '%s': each answer counts as its own "
                    "customer, and a customer who asked again narrows the A/B interval too "
                    "much; send the id column with the requests (the model ignores it)",
                    id_column)
    if id_column and id_column in labelled.columns and not per_answer.empty:
        ids = labelled.loc[per_answer.index, id_column].map(category_text)
        per_id = per_answer.groupby(ids.to_numpy(), sort=False).mean()
        return metric, [float(v) for v in per_id], len(per_answer)
    return metric, [float(v) for v in per_answer], len(per_answer)


def category_text(value: Any) -> str | None:
    """One text form per class value: 1, 1.0 and "1" are "1", True is "True"."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _wilson(successes: float, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe_interval(success_new: float, n_new: int, success_old: float, n_old: int,
                      confidence: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_new - p_old (1998, method 10)."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p_new, p_old = success_new / n_new, success_old / n_old
    low_new, high_new = _wilson(success_new, n_new, z)
    low_old, high_old = _wilson(success_old, n_old, z)
    difference = p_new - p_old
    lower = difference - math.sqrt((p_new - low_new) ** 2 + (high_old - p_old) ** 2)
    upper = difference + math.sqrt((high_new - p_new) ** 2 + (p_old - low_old) ** 2)
    return lower, upper


def welch_interval(new: np.ndarray, old: np.ndarray, confidence: float) -> tuple[float, float]:
    """Welch's t interval for mean(new) - mean(old)."""
    var_new, var_old = new.var(ddof=1) / len(new), old.var(ddof=1) / len(old)
    difference = float(new.mean() - old.mean())
    spread = math.sqrt(var_new + var_old)
    if spread == 0:
        return difference, difference
    dof = (var_new + var_old) ** 2 / (var_new ** 2 / (len(new) - 1) + var_old ** 2 / (len(old) - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2, dof))
    return difference - t * spread, difference + t * spread


def compare_arms(metric: str, old: Arm, new: Arm, confidence: float, margin: float,
                 min_rows: int, inconclusive: str) -> AbOutcome:
    """The test and the decision (see the module docstring)."""
    higher_better = metric == "accuracy"
    units = margin if higher_better else margin * (old.value or 0.0)
    name = "accuracy" if higher_better else "mean absolute error"
    arms = (f"v{old.version} {name} {_fmt(old.value)} on {_units(old)}, "
            f"v{new.version} {_fmt(new.value)} on {_units(new)}")
    promote_inconclusive = inconclusive == "promote"
    if min(old.rows, new.rows) < min_rows:
        detail = (f"{arms}: fewer than deploy.ab_min_rows ({min_rows}) labelled ids in an arm, "
                  f"no outcome test; deploy.ab_inconclusive is {inconclusive}")
        return AbOutcome(metric, old, new, None, None, confidence, units, INCONCLUSIVE,
                         promote_inconclusive, detail)
    if higher_better:
        interval = newcombe_interval(sum(new.outcomes), new.rows, sum(old.outcomes), old.rows,
                                     confidence)
        loss_low, loss_high = -interval[1], -interval[0]  # how much worse: old - new
    else:
        interval = welch_interval(np.asarray(new.outcomes), np.asarray(old.outcomes), confidence)
        loss_low, loss_high = interval
    difference = float((new.value or 0.0) - (old.value or 0.0))
    if loss_low > 0:
        verdict, promote = WORSE, False
        rule = "the whole interval is a loss: the new version is worse"
    elif loss_high <= units:
        verdict, promote = NOT_WORSE, True
        rule = f"its worst end is within the margin {units:.4f}: not worse"
    else:
        verdict, promote = INCONCLUSIVE, promote_inconclusive
        rule = (f"it reaches past the margin {units:.4f} but shows no sure loss: inconclusive, "
                f"deploy.ab_inconclusive is {inconclusive}")
    detail = (f"{arms}; difference (new - old) {difference:+.4f}, {confidence:.0%} interval "
              f"[{interval[0]:+.4f}, {interval[1]:+.4f}]; {rule}")
    return AbOutcome(metric, old, new, difference, (float(interval[0]), float(interval[1])),
                     confidence, units, verdict, promote, detail)


def _units(arm: Arm) -> str:
    if arm.answers is None or arm.answers == arm.rows:
        return f"{arm.rows} labelled rows"
    return f"{arm.rows} labelled ids ({arm.answers} answers)"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def build_arm(version: str, rows: pd.DataFrame, label_column: str,
              id_column: str | None = None) -> tuple[str, Arm]:
    metric, outcomes, answers = arm_outcomes(rows, label_column, id_column)
    value = float(np.mean(outcomes)) if outcomes else None
    return metric, Arm(version, len(outcomes), value, outcomes, answers)
