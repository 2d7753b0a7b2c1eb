"""Validation reports: CV spread, calibration and robustness of a packaged model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss

from autokfp.modeling.features import FeaturePlan
from autokfp.modeling.validation import (
    calibration_report,
    cv_summary,
    metric_spread,
    robustness_report,
)

BINARY = {"task": "binary", "class_labels": ["0", "1"], "classes": [0, 1], "threshold": 0.5}
rng = np.random.default_rng(3)


def _frame(p: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"prediction": (p >= 0.5).astype(int), "probability_0": 1 - p,
                         "probability_1": p})


# ---------------------------------------------------------------------------- calibration


def test_calibrated_probabilities_have_small_error_and_overconfident_ones_do_not() -> None:
    p = rng.uniform(0.02, 0.98, 5000)
    y = pd.Series((rng.uniform(size=5000) < p).astype(int))
    calibrated = calibration_report(y, _frame(p), BINARY)
    overconfident = calibration_report(y, _frame(np.where(p > 0.5, 0.99, 0.01)), BINARY)
    assert calibrated["ece"] < 0.03
    assert overconfident["ece"] > 0.15
    assert calibrated["brier"] == pytest.approx(brier_score_loss(y, p))
    assert len(calibrated["bins"]) == 10
    assert sum(b["count"] for b in calibrated["bins"]) == 5000
    for b in calibrated["bins"]:
        assert b["low"] <= b["predicted"] <= b["high"]


def test_multiclass_calibration_uses_the_top_class() -> None:
    meta = {"task": "multiclass", "class_labels": ["a", "b", "c"], "classes": ["a", "b", "c"]}
    probs = rng.dirichlet([1, 1, 1], 600)
    y = pd.Series([["a", "b", "c"][rng.choice(3, p=row)] for row in probs])
    frame = pd.DataFrame({f"probability_{c}": probs[:, i] for i, c in enumerate("abc")})
    report = calibration_report(y, frame, meta)
    assert report["kind"].startswith("top-class")
    assert 0.0 < report["brier"] < 2.0
    assert report["ece"] < 0.1


def test_regression_has_no_calibration() -> None:
    meta = {"task": "regression"}
    assert calibration_report(pd.Series([1.0]), pd.DataFrame({"prediction": [1.0]}), meta) is None


# ----------------------------------------------------------------------------- CV spread


def test_metric_spread_shrinks_with_more_rows() -> None:
    def spread(n: int) -> float:
        truth = rng.integers(0, 2, n)
        p = np.clip(truth * 0.3 + rng.uniform(0, 0.7, n), 0, 1)
        scores = np.column_stack([1 - p, p])
        return metric_spread("auc", truth, scores, "binary", samples=100, seed=0)[1]

    assert spread(2000) < spread(100)


def test_cv_summary_puts_the_estimate_next_to_the_test_score() -> None:
    meta = {"primary_metric": "auc", "cv_metrics": {"cv_auc": 0.84, "cv_auc_sd": 0.01},
            "params": {"nfolds": 5}}
    summary = cv_summary(meta, 0.81)
    assert summary["method"] == "5-fold cross-validation"
    assert summary["mean"] == 0.84 and summary["sd"] == 0.01
    assert summary["test_gap_in_sd"] == pytest.approx(3.0)
    assert cv_summary({"primary_metric": "auc"}, 0.8)["method"] == "not reported"


# ----------------------------------------------------------------------------- robustness


def test_the_trained_package_passes_every_robustness_check(trained_package) -> None:
    from autokfp.modeling.model_package import load_model_package

    model = load_model_package(str(trained_package.paths.model))
    plan = FeaturePlan.from_json((trained_package.paths.model / "artifacts" / "plan.json")
                                 .read_text())
    test = pd.read_parquet(trained_package.paths.test).drop(columns=["churned"])
    report = robustness_report(model, test, plan, BINARY, seed=1, rows=80)
    result = report.to_dict()
    assert result["passed"], result
    assert {c["check"] for c in result["checks"]} == {
        "column_order", "extra_columns", "numeric_noise", "unseen_categories", "missing_values"}
    noise = next(c for c in result["checks"] if c["check"] == "numeric_noise")
    assert noise["values"]["label_flip_rate"] <= 0.05


class _Fragile:
    """A fake model: crashes on unseen categories, or flips labels under tiny noise."""

    def __init__(self, crash_on_unseen: bool = False, jittery: bool = False):
        self.crash_on_unseen = crash_on_unseen
        self.jittery = jittery

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.crash_on_unseen and frame["plan"].astype(str).str.startswith("__a_value").any():
            raise KeyError("plan")
        x = pd.to_numeric(frame["x"], errors="coerce").fillna(0.0).to_numpy()
        p = (np.floor(x * 1000) % 2) * 0.8 + 0.1 if self.jittery else np.full(len(x), 0.3)
        return _frame(p)


def _fake_inputs() -> tuple[pd.DataFrame, FeaturePlan]:
    frame = pd.DataFrame({"x": rng.normal(size=50), "plan": rng.choice(["a", "b"], 50)})
    plan = FeaturePlan(target="y", task="binary", classes=[0, 1], numeric=["x"],
                       categorical=["plan"], categorical_levels={"plan": ["a", "b"]})
    return frame, plan


def test_a_model_that_cannot_score_unseen_categories_is_disqualified() -> None:
    frame, plan = _fake_inputs()
    report = robustness_report(_Fragile(crash_on_unseen=True), frame, plan, BINARY)
    failed = {c.check for c in report.checks if not c.passed}
    assert failed == {"unseen_categories"}
    assert report.disqualified and "KeyError" in report.disqualified[0]


def test_a_model_that_flips_under_tiny_noise_fails_the_noise_check_only() -> None:
    frame, plan = _fake_inputs()
    report = robustness_report(_Fragile(jittery=True), frame, plan, BINARY)
    failed = {c.check for c in report.checks if not c.passed}
    assert failed == {"numeric_noise"}
    assert not report.disqualified  # unstable, but it can serve: reported, not excluded
