"""Validation beyond one test score: cross-validation spread, calibration and robustness.

- **CV score and spread**: H2O reports k-fold cross-validation metrics of its leader (mean
  and standard deviation over folds); AutoKeras reports its validation rows' score with a
  bootstrap standard deviation (a k-fold search would cost k times the budget). Both land in
  the model's ``meta['cv_metrics']`` as ``cv_<metric>`` and ``cv_<metric>_sd``;
  ``cv_summary`` puts them next to the test score.
- **Calibration** (classifiers): the reliability curve (mean predicted probability against
  the observed frequency, in equal-count bins), the Brier score and the expected calibration
  error.
- **Robustness**: the packaged model, through the same pyfunc that serves it, must give the
  same answer whatever the column order and with unknown extra columns, must stay stable
  under small numeric noise, and must still score rows with unseen categories and missing
  values. A candidate that cannot score such rows is disqualified during selection.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from autokfp.modeling.bootstrap import bootstrap_values
from autokfp.modeling.evaluation import encode_labels, metric_value, probability_matrix

log = logging.getLogger(__name__)

# robustness thresholds (documented in docs/training.md)
NOISE_FRACTION = 0.01  # noise: 1% of each numeric column's standard deviation
MAX_FLIP_RATE = 0.05  # at most 5% of predicted labels may change under that noise
MAX_MEAN_SHIFT = 0.05  # mean |change| of probabilities (or of values / their std) at most
ORDER_TOLERANCE = 1e-9
ROBUSTNESS_ROWS = 200


# ------------------------------------------------------------- shared validation rows

def validation_ranks(groups: np.ndarray, seed: int) -> np.ndarray:
    """Each training row's place in a seeded random order of its group (its class; one group
    for regression), as a share in [0, 1): the rows ranked below ``f`` are a stratified
    share ``f`` of every group, at least one row of each group of two or more (a group of one
    row ranks 1.0 and is never held out), and those below a smaller share are among them.

    Every engine that holds rows out of its search draws them from here with the run's seed:
    H2O's blending validation rows (the lowest 10%) are then among AutoKeras's (the lowest
    20%), and selection compares the candidates on the same out-of-sample rows. The ranks
    depend only on the rows' groups and order, not on how an engine codes the classes.
    """
    rows = len(groups)
    draw = np.random.default_rng(seed).random(rows)
    if rows == 0:
        return draw
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse)
    order = np.lexsort((draw, inverse))  # by group, then by the draw within it
    in_group = inverse[order]
    starts = np.cumsum(counts) - counts
    ranks = np.empty(rows)
    ranks[order] = (np.arange(rows) - starts[in_group]) / counts[in_group]
    ranks[counts[inverse] < 2] = 1.0
    return ranks


# ---------------------------------------------------------------------- metric + spread


def metric_spread(metric: str, truth: np.ndarray, scores: np.ndarray, task: str,
                  samples: int = 200, seed: int = 0) -> tuple[float, float]:
    """A metric on all rows and its bootstrap standard deviation over ``samples`` resamples.

    ``truth`` holds class codes (classification) or values; ``scores`` probabilities (n x k)
    or values. Raises ValueError when the metric is undefined on these rows.
    """
    value = metric_value(metric, truth, scores, task)
    values = [v for (v,) in bootstrap_values(metric, truth, (scores,), task, samples, seed,
                                             skip_errors=True)]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(value), spread


def cv_summary(meta: dict[str, Any], test_value: float | None) -> dict[str, Any]:
    """The engine's cross-validation (or validation-split) estimate next to the test score."""
    metric = meta.get("primary_metric")
    cv = meta.get("cv_metrics") or {}
    params = meta.get("params") or {}
    mean = cv.get(f"cv_{metric}")
    spread = cv.get(f"cv_{metric}_sd")
    method = params.get("cv_method") or (f"{params['nfolds']}-fold cross-validation"
                                         if params.get("nfolds") else "not reported")
    summary: dict[str, Any] = {"metric": metric, "method": method, "mean": mean, "sd": spread,
                               "test": test_value}
    if mean is not None and test_value is not None and spread and spread == spread:
        # how many spreads the test score lies from the estimate: large gaps flag an
        # optimistic estimate or a test split that differs from the training rows
        summary["test_gap_in_sd"] = round(abs(float(test_value) - float(mean)) / float(spread), 3)
    return summary


# --------------------------------------------------------------------------- calibration


def calibration_report(y: pd.Series, predictions: pd.DataFrame, meta: dict[str, Any],
                       bins: int = 10) -> dict[str, Any] | None:
    """Reliability curve, Brier score and expected calibration error (None for regression).

    Binary: the positive class's probability against the observed positive rate. Multiclass:
    the top class's probability (confidence) against accuracy, and the multiclass Brier score
    (sum over classes, averaged over rows).
    """
    if meta["task"] == "regression":
        return None
    codes = encode_labels(y, meta)
    known = codes >= 0
    codes = codes[known]
    probs = probability_matrix(predictions, meta)[known]
    if len(codes) == 0:
        return None
    k = probs.shape[1]
    onehot = np.eye(k)[codes]
    brier = float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
    if meta["task"] == "binary":
        confidence = probs[:, 1]
        outcome = (codes == 1).astype(float)
        brier = float(np.mean((confidence - outcome) ** 2))  # the usual binary definition
        kind = f"P({meta['class_labels'][1]}) vs observed rate"
    else:
        confidence = probs.max(axis=1)
        outcome = (probs.argmax(axis=1) == codes).astype(float)
        kind = "top-class probability vs accuracy"
    curve = _reliability_curve(confidence, outcome, bins)
    ece = float(sum(b["count"] * abs(b["observed"] - b["predicted"]) for b in curve) / len(codes))
    return {"kind": kind, "brier": brier, "ece": ece, "bins": curve, "rows": int(len(codes))}


def _reliability_curve(confidence: np.ndarray, outcome: np.ndarray, bins: int) -> list[dict]:
    order = np.argsort(confidence, kind="stable")
    curve = []
    for chunk in np.array_split(order, min(bins, len(order))):
        if len(chunk) == 0:
            continue
        curve.append({"predicted": float(confidence[chunk].mean()),
                      "observed": float(outcome[chunk].mean()), "count": int(len(chunk)),
                      "low": float(confidence[chunk].min()),
                      "high": float(confidence[chunk].max())})
    return curve


# ---------------------------------------------------------------------------- robustness


@dataclass
class RobustnessCheck:
    check: str
    passed: bool
    detail: str
    values: dict[str, float] = field(default_factory=dict)
    disqualifying: bool = False  # a model failing this cannot serve real traffic


@dataclass
class RobustnessReport:
    checks: list[RobustnessCheck] = field(default_factory=list)
    rows: int = 0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def disqualified(self) -> list[str]:
        return [f"{c.check}: {c.detail}" for c in self.checks if c.disqualifying and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rows": self.rows, "disqualified": self.disqualified,
                "checks": [asdict(c) for c in self.checks]}


def robustness_report(model: Any, inputs: pd.DataFrame, plan: Any, meta: dict[str, Any],
                      seed: int = 0, rows: int = ROBUSTNESS_ROWS,
                      drawn: bool = False) -> RobustnessReport:
    """Run every robustness check of ``model`` (a pyfunc) on a sample of raw ``inputs``
    (``drawn``: ``inputs`` is that sample already, ``TestRows.sample``)."""
    sample = (inputs if drawn or not len(inputs)
              else inputs.sample(min(rows, len(inputs)), random_state=seed))
    sample = sample.reset_index(drop=True)
    report = RobustnessReport(rows=len(sample))
    if sample.empty:
        return report
    rng = np.random.default_rng(seed)
    base = model.predict(sample)
    checks = (
        lambda: _column_order(model, sample, base, rng),
        lambda: _extra_columns(model, sample, base),
        lambda: _numeric_noise(model, sample, base, plan, meta, rng),
        lambda: _unseen_categories(model, sample, plan, meta),
        lambda: _missing_values(model, sample, plan, meta, rng),
    )
    for run in checks:
        report.checks.append(run())
    return report


def _outputs(frame: pd.DataFrame) -> np.ndarray:
    columns = [c for c in frame.columns if c.startswith("probability_")] or ["prediction"]
    return frame[columns].to_numpy(dtype="float64")


def _usable(frame: pd.DataFrame, meta: dict[str, Any], rows: int) -> tuple[bool, str]:
    if len(frame) != rows:
        return False, f"returned {len(frame)} rows for {rows}"
    values = _outputs(frame)
    if not np.isfinite(values).all():
        return False, "returned missing or infinite scores"
    if meta["task"] != "regression":
        sums = values.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-6):
            return False, "class probabilities do not sum to 1"
    return True, ""


def _safely(name: str, disqualifying: bool, body: Any) -> RobustnessCheck:
    try:
        return body()
    except Exception as exc:  # noqa: BLE001 - a crash is the finding
        return RobustnessCheck(name, False, f"scoring failed: {type(exc).__name__}: {exc}"[:500],
                               disqualifying=disqualifying)


def _column_order(model: Any, sample: pd.DataFrame, base: pd.DataFrame,
                  rng: np.random.Generator) -> RobustnessCheck:
    def body() -> RobustnessCheck:
        shuffled = sample[list(rng.permutation(sample.columns))]
        diff = float(np.max(np.abs(_outputs(model.predict(shuffled)) - _outputs(base))))
        passed = diff <= ORDER_TOLERANCE
        return RobustnessCheck("column_order", passed,
                               f"max change {diff:.2e} when the input columns are shuffled",
                               {"max_abs_change": diff})
    return _safely("column_order", False, body)


def _extra_columns(model: Any, sample: pd.DataFrame, base: pd.DataFrame) -> RobustnessCheck:
    def body() -> RobustnessCheck:
        extra = sample.assign(__unknown_column__="x", __unknown_number__=1.0)
        diff = float(np.max(np.abs(_outputs(model.predict(extra)) - _outputs(base))))
        return RobustnessCheck("extra_columns", diff <= ORDER_TOLERANCE,
                               f"max change {diff:.2e} with two unknown extra columns",
                               {"max_abs_change": diff})
    return _safely("extra_columns", False, body)


def _numeric_noise(model: Any, sample: pd.DataFrame, base: pd.DataFrame, plan: Any,
                   meta: dict[str, Any], rng: np.random.Generator) -> RobustnessCheck:
    def body() -> RobustnessCheck:
        numeric = [c for c in plan.numeric if c in sample.columns]
        if not numeric:
            return RobustnessCheck("numeric_noise", True, "no numeric inputs")
        noisy = sample.copy()
        for name in numeric:
            values = pd.to_numeric(sample[name], errors="coerce").astype("float64")
            spread = float(values.std()) if values.notna().sum() > 1 else 0.0
            noisy[name] = values + rng.normal(0.0, NOISE_FRACTION * spread, len(values))
        scored = model.predict(noisy)
        before, after = _outputs(base), _outputs(scored)
        if meta["task"] == "regression":
            scale = float(np.std(before)) or 1.0
            shift = float(np.mean(np.abs(after - before))) / scale
            passed = shift <= MAX_MEAN_SHIFT
            return RobustnessCheck(
                "numeric_noise", passed,
                f"noise of {NOISE_FRACTION:.0%} of each numeric column's deviation moves "
                f"predictions by {shift:.4f} prediction deviations on average "
                f"(limit {MAX_MEAN_SHIFT})", {"mean_relative_shift": shift})
        shift = float(np.mean(np.abs(after - before)))
        flips = float(np.mean(base["prediction"].astype(str).to_numpy()
                              != scored["prediction"].astype(str).to_numpy()))
        passed = flips <= MAX_FLIP_RATE and shift <= MAX_MEAN_SHIFT
        return RobustnessCheck(
            "numeric_noise", passed,
            f"noise of {NOISE_FRACTION:.0%} of each numeric column's deviation changes "
            f"{flips:.1%} of predicted labels (limit {MAX_FLIP_RATE:.0%}) and probabilities by "
            f"{shift:.4f} on average (limit {MAX_MEAN_SHIFT})",
            {"label_flip_rate": flips, "mean_probability_shift": shift})
    return _safely("numeric_noise", False, body)


def _unseen_categories(model: Any, sample: pd.DataFrame, plan: Any,
                       meta: dict[str, Any]) -> RobustnessCheck:
    def body() -> RobustnessCheck:
        columns = [c for c in plan.categorical if c in sample.columns]
        if not columns:
            return RobustnessCheck("unseen_categories", True, "no categorical inputs",
                                   disqualifying=True)
        changed = sample.copy()
        for name in columns:
            changed[name] = "__a_value_never_seen_in_training__"
        ok, why = _usable(model.predict(changed), meta, len(changed))
        detail = (f"scores rows whose {len(columns)} categorical input(s) hold a value never seen "
                  "in training" if ok else why)
        return RobustnessCheck("unseen_categories", ok, detail, disqualifying=True)
    return _safely("unseen_categories", True, body)


def _missing_values(model: Any, sample: pd.DataFrame, plan: Any, meta: dict[str, Any],
                    rng: np.random.Generator) -> RobustnessCheck:
    def body() -> RobustnessCheck:
        inputs = [c for c in plan.input_columns if c in sample.columns]
        if not inputs:
            return RobustnessCheck("missing_values", True, "no inputs", disqualifying=True)
        holes = sample.copy().astype({c: "object" for c in inputs
                                      if c not in plan.numeric and c not in plan.datetime})
        picked = rng.integers(0, len(inputs), len(holes))
        for row, column in enumerate(picked):
            name = inputs[column]
            holes.loc[row, name] = np.nan if name in plan.numeric else None
        all_missing = holes.head(min(10, len(holes))).copy()
        for name in inputs:
            if name in plan.numeric:
                all_missing[name] = np.nan
            elif name in plan.datetime:
                all_missing[name] = pd.NaT
            else:
                all_missing[name] = None
        ok_one, why_one = _usable(model.predict(holes), meta, len(holes))
        ok_all, why_all = _usable(model.predict(all_missing), meta, len(all_missing))
        passed = ok_one and ok_all
        detail = ("scores rows with one input missing each and rows with every input missing"
                  if passed else f"one missing: {why_one or 'ok'}; all missing: {why_all or 'ok'}")
        return RobustnessCheck("missing_values", passed, detail, disqualifying=True)
    return _safely("missing_values", True, body)
