"""Group keys (issue 17, Males): an integer code shared by many rows (a person's id in a
panel of yearly rows) becomes categories, one per group, when its values' own target means
predict far better out of fold than a trend over its order; measurements and counts stay
numbers, and a table without such a column gets the plan it always had."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.profiling import profile_frame
from autokfp.config import FeatureSpec
from autokfp.modeling.features import (
    OTHER_LEVEL,
    apply_features,
    apply_features_records,
    group_key_evidence,
    plan_features,
    select_features,
)


def panel(seed: int, groups: int = 150, rows: int = 6, task: str = "regression") -> pd.DataFrame:
    """A person's rows over the years, shuffled: arbitrary 5-digit codes, a strong level per
    person, a numeric feature and an age (an integer measurement with a smooth effect)."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(np.arange(10_000, 100_000), groups, replace=False)
    level = rng.normal(0.0, 1.0, groups)
    person = np.repeat(np.arange(groups), rows)
    x = rng.normal(size=len(person))
    age = rng.integers(20, 70, len(person))
    signal = level[person] + 0.5 * x + 0.02 * (age - 45)
    if task == "regression":
        y: np.ndarray = signal + rng.normal(0.0, 0.5, len(person))
    else:
        y = np.where(rng.random(len(person)) < 1 / (1 + np.exp(-2.0 * signal)), "yes", "no")
    frame = pd.DataFrame({"person": codes[person], "x": x, "age": age, "y": y})
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _plan(frame: pd.DataFrame, task: str = "regression", **spec) -> object:
    schema = profile_frame(frame, "files/panel.parquet", "file", "/data")
    classes = None if task == "regression" else ["no", "yes"]
    return plan_features(frame, schema, "y", task, FeatureSpec(**spec), classes=classes)


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_a_persons_code_becomes_categories_one_per_person_with_the_evidence(task: str) -> None:
    frame = panel(1, task=task)
    plan = _plan(frame, task)
    assert "person" in plan.categorical and "person" not in plan.numeric
    assert set(plan.categorical_levels["person"]) == {str(c) for c in frame["person"].unique()}
    assert list(plan.group_keys) == ["person"]
    why = plan.group_keys["person"]
    assert "150 values, 6.0 training rows each" in why and "features.drop_columns" in why
    # the measurement beside it stays a number
    assert plan.numeric == ["x", "age"]
    # and the setting turns the rule off
    off = _plan(frame, task, group_keys=False)
    assert "person" in off.numeric and off.group_keys == {}


def test_the_evidence_separates_a_code_from_a_measurement() -> None:
    """Panel seeds 0-5: the code's values remove 39-45% of the mean's squared error, its order
    at most 5.0% (z 13.5-15.9; binary 16-23% against at most 2.3%, z 7.9-11.4); age's values
    never beat its own trend (z -2.5 to 0.3)."""
    frame = panel(2)
    code = group_key_evidence(frame["person"], frame["y"], "regression")
    age = group_key_evidence(frame["age"], frame["y"], "regression")
    assert code is not None and age is not None
    assert code["gain_values"] > 0.3 and code["gain_order"] < 0.1 and code["z"] > 8
    assert age["z"] < 2 and age["gain_values"] < age["gain_order"] + 0.02
    # a column of few values or of one row per value is no candidate
    assert group_key_evidence(frame["person"] % 10, frame["y"], "regression") is None
    unique = pd.Series(np.arange(len(frame)), index=frame.index)
    assert group_key_evidence(unique, frame["y"], "regression") is None


def test_a_table_without_a_group_key_gets_the_plan_it_always_had(churn_frame) -> None:
    """Counts, ages and other integer measurements: the plan with the rule is the plan
    without it, byte for byte apart from the empty ``group_keys``."""
    rng = np.random.default_rng(5)
    n = 900
    measured = pd.DataFrame({"rooms": rng.integers(1, 9, n), "age": rng.integers(18, 90, n),
                             "income": rng.integers(1_000, 90_000, n),
                             "visits": rng.poisson(30, n)})
    measured["y"] = (0.3 * measured["rooms"] + 0.01 * measured["age"]
                     + measured["income"] / 30_000 + rng.normal(0, 0.5, n))
    schema = profile_frame(churn_frame, "files/customers.parquet", "file", "/data")
    for frame, target, task, id_column, classes in (
            (measured, "y", "regression", None, None),
            (churn_frame, "churned", "binary", "customer_id", [0, 1])):
        plans = []
        for rule in (True, False):
            table_schema = (schema if frame is churn_frame
                            else profile_frame(frame, "files/m.parquet", "file", "/data"))
            plan = plan_features(frame, table_schema, target, task, FeatureSpec(group_keys=rule),
                                 id_column=id_column, classes=classes)
            assert plan.group_keys == {}
            plans.append(json.loads(plan.to_json()))
        assert plans[0] == plans[1]


def test_a_group_key_reads_the_same_on_every_path_and_an_unseen_group_is_other() -> None:
    frame = panel(3)
    plan = _plan(frame)
    request = frame.drop(columns="y").head(4).copy()
    request.loc[request.index[1], "person"] = 99_999_999  # a person not in training
    request["person"] = request["person"].astype("float64")  # as JSON or a NaN would bring it
    request.loc[request.index[2], "person"] = np.nan
    framed = apply_features(request, plan)
    records = apply_features_records(request.to_dict("records"), plan)
    assert framed["person"].tolist()[1] == OTHER_LEVEL
    assert framed["person"].tolist()[0] == str(int(request["person"].iloc[0]))
    assert pd.isna(framed["person"].iloc[2])
    assert [r["person"] for r in records] == [None if pd.isna(v) else v
                                              for v in framed["person"].tolist()]


def test_feature_selection_runs_beside_a_group_key_of_more_levels_than_its_quick_model_takes(
        ) -> None:
    """The quick model (scikit-learn, at most 255 categories) reads a group key's codes as
    the numbers they were stored as; 300 persons here."""
    frame = panel(4, groups=300, rows=4)
    frame["noise"] = np.random.default_rng(4).normal(size=len(frame))
    plan = _plan(frame)
    assert len(plan.categorical_levels["person"]) == 300
    select_features(plan, frame, seed=0)
    assert plan.selection["status"] == "done"
    assert "person" in plan.categorical_features and "person" in plan.group_keys


def test_more_groups_than_a_category_keeps_or_codes_past_float64_stay_numbers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The review of a57b981: (1) with more groups of 2+ rows than a category keeps
    (MAX_GROUP_LEVELS), the rest would all read as one level, which the test did not
    measure: kept a number; (2) codes of 2**53 or more, which float64 (a JSON number, a
    column with a NaN) cannot hold exactly, are no candidates."""
    from autokfp.modeling import features

    frame = panel(1)
    assert list(_plan(frame).group_keys) == ["person"]  # the same panel fires at 150 groups
    monkeypatch.setattr(features, "MAX_GROUP_LEVELS", 149)
    plan = _plan(frame)
    assert plan.group_keys == {} and "person" in plan.numeric
    monkeypatch.undo()
    big = frame.assign(person=frame["person"].astype("int64") + 2**53)
    assert group_key_evidence(big["person"], big["y"], "regression") is None
    assert _plan(big).group_keys == {} and "person" in _plan(big).numeric


class _KnownGroup:
    """A stand-in engine: 1.0 for a row whose group key is a level of the plan, 0.0 for
    ``__other__`` (what the model would read as a group it has not seen)."""

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return (features["person"] != OTHER_LEVEL).to_numpy(dtype="float64")


def test_a_served_code_written_as_a_float_string_reads_as_its_group() -> None:
    """A served (JSON) value "12345.0", as a code that passed through a float arrives, is the
    person's level, as 12345, 12345.0 and "12345" are, through predict, predict_records and
    the server's predict_answers; an unseen code and text stay ``__other__``."""
    from autokfp.modeling.model_package import AutokfpModel

    frame = panel(3)
    model = AutokfpModel()
    model.plan = _plan(frame)
    assert "person" in model.plan.group_keys
    model.meta = {"task": "regression", "target": "y", "engine": "stub"}
    model.scorer = _KnownGroup()
    code = int(frame["person"].iloc[0])
    row = frame.drop(columns="y").iloc[0].to_dict()
    sent = [code, float(code), str(code), f"{code}.0", f" {code}.00 ", f"+{code}",
            "99999999.0", f"{code}.5", "n/k"]
    records = [{**row, "person": value} for value in sent]
    known = [1.0] * 6 + [0.0] * 3
    assert model.predict(None, pd.DataFrame(records))["prediction"].tolist() == known
    assert model.predict_records(records)["prediction"].tolist() == known
    assert [a["prediction"] for a in model.predict_answers(records)] == known
