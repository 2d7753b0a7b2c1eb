"""Bias mitigation inside the pyfunc (per-group thresholds, score repair): predict and
predict_records agree, and a package without it behaves exactly as before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.modeling.features import FeaturePlan
from autokfp.modeling.model_package import (
    AutokfpModel,
    adjust_scores,
    decision_thresholds,
    format_predictions,
    group_key,
    group_values,
)

META = {"task": "binary", "classes": [0, 1], "class_labels": ["0", "1"], "target": "y",
        "threshold": 0.5, "engine": "stub"}


class _Scorer:
    """Positive-class probability = the ``score`` feature (a stand-in for an engine)."""

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        p = features["score"].to_numpy(dtype="float64")
        return np.column_stack([1 - p, p])


def _model(meta: dict) -> AutokfpModel:
    model = AutokfpModel()
    model.plan = FeaturePlan(target="y", task="binary", classes=[0, 1], numeric=["score"],
                             categorical=["gender"],
                             categorical_levels={"gender": ["female", "male", "nonbinary"]})
    model.meta = meta
    model.scorer = _Scorer()
    return model


ROWS = pd.DataFrame({"score": [0.45, 0.55, 0.62, 0.45, 0.52, 0.7],
                     "gender": ["male", "male", "female", "female", None, "nonbinary"]})


def test_without_group_thresholds_nothing_changes() -> None:
    model = _model(dict(META))
    out = model.predict(None, ROWS)
    assert out["prediction"].tolist() == [0, 1, 1, 0, 1, 1]
    assert decision_thresholds(META, None, 3) == 0.5
    assert group_values(META, ROWS) is None


def test_group_thresholds_decide_each_row_in_predict_and_predict_records() -> None:
    meta = {**META, "fairness_mitigation": {"column": "gender",
                                            "thresholds": {"female": 0.65, "male": 0.4}}}
    model = _model(meta)
    out = model.predict(None, ROWS)
    # male 0.45 >= 0.4; female 0.62 < 0.65; missing and nonbinary keep 0.5
    assert out["prediction"].tolist() == [1, 1, 0, 0, 1, 1]
    records = ROWS.astype(object).where(ROWS.notna(), None).to_dict("records")
    fast = model.predict_records(records)
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), out.reset_index(drop=True))
    # probabilities are untouched: only decisions move
    assert out["probability_1"].tolist() == pytest.approx(ROWS["score"].tolist())


def test_rows_without_the_sensitive_column_get_the_overall_threshold() -> None:
    meta = {**META, "fairness_mitigation": {"column": "gender", "thresholds": {"male": 0.4}}}
    raw = np.array([[0.55, 0.45]])
    frame = pd.DataFrame({"score": [0.45]})
    assert format_predictions(raw, meta, frame.index,
                              groups=group_values(meta, frame))["prediction"].tolist() == [0]


@pytest.mark.parametrize(("value", "key"), [(2.0, "2"), (2, "2"), ("2", "2"), (None, "(missing)"),
                                            (float("nan"), "(missing)"), (True, "True"),
                                            ("female", "female"), (1.5, "1.5")])
def test_group_keys_are_the_same_whatever_the_dtype(value, key) -> None:
    assert group_key(value) == key


def _repair(strength: float) -> dict:
    levels = np.linspace(0, 1, 11)
    return {"column": "gender", "score_repair": {
        "strength": strength, "reference": (0.2 + 0.6 * levels).tolist(),
        "groups": {"female": (0.4 + 0.6 * levels).tolist(), "male": (0.0 + 0.6 * levels).tolist()}}}


def test_score_repair_moves_each_group_towards_the_pooled_ranking() -> None:
    raw = np.array([[0.3, 0.7], [0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    groups = ["female", "female", "male", "nonbinary"]
    full = adjust_scores(raw, {**META, "fairness_mitigation": _repair(1.0)}, groups)
    # female 0.7 is the 50th percentile of [0.4, 1.0] → reference 0.5, 0.9 the 83rd → 0.7
    assert full[:, 1] == pytest.approx([0.5, 0.7, 0.5, 0.5])
    half = adjust_scores(raw, {**META, "fairness_mitigation": _repair(0.5)}, groups)
    assert half[:, 1] == pytest.approx([0.6, 0.8, 0.4, 0.5])
    assert half.sum(axis=1) == pytest.approx(1.0)
    none = adjust_scores(raw, {**META, "fairness_mitigation": _repair(0.0)}, groups)
    assert none == pytest.approx(raw)


def test_score_repair_is_the_same_in_predict_and_predict_records() -> None:
    model = _model({**META, "fairness_mitigation": _repair(0.7)})
    out = model.predict(None, ROWS)
    records = ROWS.astype(object).where(ROWS.notna(), None).to_dict("records")
    pd.testing.assert_frame_equal(model.predict_records(records).reset_index(drop=True),
                                  out.reset_index(drop=True))
    plain = _model(dict(META)).predict(None, ROWS)
    changed = out["probability_1"] != plain["probability_1"]
    assert changed.tolist() == [True, True, True, True, False, False]  # missing, nonbinary kept
