"""Feature planning and application on the example churn data (and small synthetic frames)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.profiling import profile_frame
from autokfp.config import FeatureSpec
from autokfp.errors import SchemaError, TrainingError
from autokfp.modeling.features import OTHER_LEVEL, FeaturePlan, apply_features, plan_features
from autokfp.modeling.partition import split_holdout


@pytest.fixture(scope="module")
def churn_split(churn_frame):
    schema = profile_frame(churn_frame, "files/customers.parquet", "file", "/data")
    train, test = split_holdout(churn_frame, 0.2, 42, "customer_id", "churned")
    return schema, train, test


@pytest.fixture(scope="module")
def churn_plan(churn_split) -> FeaturePlan:
    schema, train, _ = churn_split
    return plan_features(train, schema, "churned", "binary", FeatureSpec(),
                         id_column="customer_id", classes=[0, 1])


def _raw_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["churned"])


# ------------------------------------------------------------------------------ plan


def test_id_and_pii_columns_are_dropped_with_reasons(churn_plan: FeaturePlan) -> None:
    dropped = churn_plan.dropped
    assert "identifier" in dropped["customer_id"]
    assert "personal data" in dropped["email"] and "email" in dropped["email"]
    assert "personal data" in dropped["phone"]
    assert "features.drop_pii" in dropped["email"]  # says how to keep it
    for column in ("customer_id", "email", "phone"):
        assert column not in churn_plan.input_columns
        assert column not in churn_plan.feature_columns


def test_leaky_column_is_dropped_as_leakage(churn_plan: FeaturePlan) -> None:
    reason = churn_plan.dropped["retention_offer_outcome"]
    assert "leakage" in reason
    assert "features.leakage_threshold" in reason
    assert "retention_offer_outcome" not in churn_plan.input_columns
    assert "retention_offer_outcome" not in churn_plan.categorical_levels
    assert churn_plan.leakage_scores["retention_offer_outcome"] >= 0.97


def test_genuine_signals_are_kept(churn_plan: FeaturePlan) -> None:
    assert "contract_type" in churn_plan.categorical
    assert "tenure_months" in churn_plan.numeric
    for column in ("monthly_charges", "internet_service", "num_support_tickets"):
        assert column in churn_plan.input_columns
        assert column not in churn_plan.dropped
    assert "churned" not in churn_plan.input_columns
    # real signals score well below the leak
    assert churn_plan.leakage_scores["contract_type"] < 0.9
    assert churn_plan.leakage_scores["tenure_months"] < 0.9


def test_datetime_column_is_expanded_into_parts(churn_plan, churn_split) -> None:
    _, train, _ = churn_split
    assert churn_plan.datetime == ["signup_date"]
    parts = [f"signup_date__{p}" for p in ("year", "month", "dayofweek", "age_days")]
    features = apply_features(_raw_inputs(train), churn_plan)
    for part in parts:
        assert part in features.columns
    assert "signup_date" not in features.columns
    # the latest signup is the reference time: its age is 0 and no age is negative
    assert features["signup_date__age_days"].min() == pytest.approx(0.0)
    assert features["signup_date__year"].between(2018, 2025).all()
    assert set(features["signup_date__month"].unique()) <= set(range(1, 13))


def test_apply_features_is_deterministic_and_single_row_matches(churn_plan, churn_split) -> None:
    _, _, test = churn_split
    inputs = _raw_inputs(test)
    first = apply_features(inputs, churn_plan)
    second = apply_features(inputs.copy(), churn_plan)
    pd.testing.assert_frame_equal(first, second)
    assert list(first.columns) == churn_plan.feature_columns
    for position in (0, 7, len(inputs) - 1):
        single = apply_features(inputs.iloc[[position]], churn_plan)
        assert list(single.columns) == list(first.columns)
        pd.testing.assert_frame_equal(single, first.iloc[[position]], check_dtype=False)


def test_train_and_single_row_have_identical_columns_and_types(churn_plan, churn_split) -> None:
    _, train, test = churn_split
    on_train = apply_features(_raw_inputs(train), churn_plan)
    request = _raw_inputs(test).head(1).to_dict(orient="records")
    single = apply_features(pd.DataFrame(request), churn_plan)
    assert list(single.columns) == list(on_train.columns)
    for name in churn_plan.numeric:
        assert single[name].dtype == on_train[name].dtype == np.float64


def test_unseen_category_becomes_other(churn_plan, churn_split) -> None:
    _, _, test = churn_split
    row = _raw_inputs(test).head(3).copy()
    row["contract_type"] = ["ten-year", "month-to-month", None]
    features = apply_features(row, churn_plan)
    assert features["contract_type"].iloc[0] == OTHER_LEVEL
    assert features["contract_type"].iloc[1] == "month-to-month"
    assert pd.isna(features["contract_type"].iloc[2])  # missing stays missing


def test_nan_numeric_is_missing_with_indicator(churn_plan, churn_split) -> None:
    _, _, test = churn_split
    # age and monthly_charges have missing values in the training rows
    assert "age" in churn_plan.missing_indicators
    assert "monthly_charges" in churn_plan.missing_indicators
    rows = _raw_inputs(test).head(3).copy()
    rows["age"] = [np.nan, 40.0, "not a number"]
    features = apply_features(rows, churn_plan)
    assert features["age__missing"].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(features["age"].iloc[0])
    assert features["age"].iloc[1] == 40.0
    assert np.isnan(features["age"].iloc[2])


def test_unknown_extra_columns_are_ignored(churn_plan, churn_split) -> None:
    _, _, test = churn_split
    inputs = _raw_inputs(test).head(20)
    plain = apply_features(inputs, churn_plan)
    extra = apply_features(inputs.assign(surprise=1, email="x@example.com", churned=1), churn_plan)
    pd.testing.assert_frame_equal(plain, extra)


def test_missing_required_column_names_it(churn_plan, churn_split) -> None:
    _, _, test = churn_split
    inputs = _raw_inputs(test).head(5).drop(columns=["tenure_months"])
    with pytest.raises(SchemaError, match="tenure_months"):
        apply_features(inputs, churn_plan)


def test_plan_json_round_trip(churn_plan, churn_split) -> None:
    _, _, test = churn_split
    again = FeaturePlan.from_json(churn_plan.to_json())
    assert again == churn_plan
    assert again.feature_columns == churn_plan.feature_columns
    inputs = _raw_inputs(test)
    pd.testing.assert_frame_equal(apply_features(inputs, again), apply_features(inputs, churn_plan))


def test_plan_learns_only_from_training_rows(churn_split) -> None:
    schema, train, test = churn_split
    without_two_year = train[train["contract_type"] != "two-year"]
    plan = plan_features(without_two_year, schema, "churned", "binary", FeatureSpec(),
                         "customer_id", [0, 1])
    # a level the training rows never showed is not learnt, so it scores as __other__
    assert "two-year" not in plan.categorical_levels["contract_type"]
    assert set(plan.categorical_levels["contract_type"]) == {"month-to-month", "one-year"}
    rows = _raw_inputs(test[test["contract_type"] == "two-year"].head(2))
    assert apply_features(rows, plan)["contract_type"].tolist() == [OTHER_LEVEL, OTHER_LEVEL]


def test_drop_pii_false_keeps_email(churn_split) -> None:
    schema, train, _ = churn_split
    plan = plan_features(train, schema, "churned", "binary", FeatureSpec(drop_pii=False),
                         id_column="customer_id", classes=[0, 1])
    assert "email" not in plan.dropped
    assert "email" in plan.input_columns
    assert "customer_id" in plan.dropped  # the id still goes


def test_drop_columns_is_honoured(churn_split) -> None:
    schema, train, _ = churn_split
    plan = plan_features(train, schema, "churned", "binary",
                         FeatureSpec(drop_columns=["region", "not_a_column"]),
                         id_column="customer_id", classes=[0, 1])
    assert plan.dropped["region"] == "listed in features.drop_columns"
    assert "region" not in plan.input_columns


def test_every_column_dropped_raises_training_error(churn_split) -> None:
    schema, train, _ = churn_split
    keep = {"customer_id", "email", "phone", "retention_offer_outcome", "churned"}
    small = train[[c for c in train.columns if c in keep]]
    with pytest.raises(TrainingError, match="every column was dropped") as info:
        plan_features(small, schema, "churned", "binary", FeatureSpec(),
                      id_column="customer_id", classes=[0, 1])
    message = str(info.value)
    for column in ("customer_id", "email", "phone", "retention_offer_outcome"):
        assert column in message


def test_missing_target_column_names_it(churn_split) -> None:
    schema, train, _ = churn_split
    with pytest.raises(SchemaError, match="'churned'"):
        plan_features(train.drop(columns=["churned"]), schema, "churned", "binary", FeatureSpec())


def test_regression_leak_is_dropped() -> None:
    rng = np.random.default_rng(3)
    n = 800
    x = rng.normal(size=n)
    target = 3.0 * x + rng.normal(scale=2.0, size=n)
    frame = pd.DataFrame({
        "x": x,
        "noise": rng.normal(size=n),
        "segment": rng.choice(["a", "b", "c"], n),
        "invoice_total": target + rng.normal(scale=1e-3, size=n),
        "price": target,
    })
    schema = profile_frame(frame, "files/prices.csv", "file", "/data")
    plan = plan_features(frame, schema, "price", "regression", FeatureSpec())
    assert "leakage" in plan.dropped["invoice_total"]
    assert plan.leakage_scores["invoice_total"] > 0.99
    assert "invoice_total" not in plan.feature_columns
    for kept in ("x", "noise", "segment"):
        assert kept in plan.input_columns
    features = apply_features(frame.drop(columns=["price"]), plan)
    assert "invoice_total" not in features.columns


def _strong_legitimate_table(seed: int = 5, n: int = 600) -> pd.DataFrame:
    """Four independent measurements that each separate the classes well (AUC ~0.98), as on
    breast_cancer or penguins: an easy problem, not a leak."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        f"measure_{i}": label * 3.0 + rng.normal(scale=1.0, size=n) for i in range(4)})
    frame["weak"] = label * 0.3 + rng.normal(size=n)
    frame["site"] = rng.choice(["north", "south", "east"], n)
    frame["label"] = np.where(label == 1, "yes", "no")
    return frame


def test_several_strong_legitimate_predictors_are_all_kept() -> None:
    frame = _strong_legitimate_table()
    schema = profile_frame(frame, "files/measures.csv", "file", "/data")
    plan = plan_features(frame, schema, "label", "binary", FeatureSpec(), classes=["no", "yes"])
    strong = [f"measure_{i}" for i in range(4)]
    assert all(plan.leakage_scores[c] >= 0.97 for c in strong)  # each alone is above the threshold
    for column in strong:
        assert column in plan.numeric and column not in plan.dropped
        # kept, with the evidence, so the run summary and the audit trail can say so
        assert "does not stand out" in plan.strong_predictors[column]
    assert "weak" not in plan.strong_predictors


def test_one_planted_leak_among_strong_predictors_is_the_only_column_dropped() -> None:
    frame = _strong_legitimate_table().iloc[:, [0, 4, 5, 6]].copy()  # one strong measure
    rng = np.random.default_rng(9)
    # recorded after the outcome: it spells out the label but for 0.5% of rows
    flip = rng.random(len(frame)) < 0.005
    frame["case_closed_reason"] = np.where((frame["label"] == "yes") ^ flip, "resolved-yes", "resolved-no")
    # a good, not near-perfect, predictor (AUC ~0.8)
    frame["measure_0"] = frame["measure_0"] + rng.normal(scale=2.5, size=len(frame))
    schema = profile_frame(frame, "files/cases.csv", "file", "/data")
    plan = plan_features(frame, schema, "label", "binary", FeatureSpec(), classes=["no", "yes"])
    assert "target leakage" in plan.dropped["case_closed_reason"]
    assert "far above every other column" in plan.dropped["case_closed_reason"]
    assert [c for c, why in plan.dropped.items() if "leakage" in why] == ["case_closed_reason"]
    assert {"measure_0", "weak", "site"} <= set(plan.input_columns)


def test_an_id_like_column_that_predicts_the_target_is_a_leak() -> None:
    frame = _strong_legitimate_table()
    # rows numbered after sorting by outcome: the number predicts the label
    frame = frame.sort_values("label", kind="stable").reset_index(drop=True)
    frame["case_number"] = np.arange(100_000, 100_000 + len(frame))
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    schema = profile_frame(frame, "files/cases.csv", "file", "/data")
    plan = plan_features(frame, schema, "label", "binary", FeatureSpec(), classes=["no", "yes"])
    assert "case_number" in plan.dropped
    assert "id" in plan.dropped["case_number"]
    assert all(f"measure_{i}" in plan.numeric for i in range(4))


def test_training_on_typed_pandas_columns_learns_the_same_plan_and_features(churn_split) -> None:
    """category, string, nullable Int64/boolean and tz-aware datetime columns (a Parquet file
    written by pandas) give the plan and features the plain columns give."""
    _, train, test = churn_split
    typed = train.copy()
    typed["contract_type"] = typed["contract_type"].astype("category")
    typed["region"] = typed["region"].astype("string")
    typed["tenure_months"] = typed["tenure_months"].astype("Int64")
    typed["signup_date"] = pd.to_datetime(typed["signup_date"], utc=True).dt.tz_convert("US/Eastern")
    typed["is_flagged"] = pd.array([True, False, None] * (len(typed) // 3) + [True] * (len(typed) % 3),
                                   dtype="boolean")
    plain = typed.assign(is_flagged=typed["is_flagged"].astype(object),
                         contract_type=train["contract_type"], region=train["region"],
                         tenure_months=train["tenure_months"], signup_date=train["signup_date"])
    plans = []
    for frame in (plain, typed):
        schema = profile_frame(frame, "files/customers.parquet", "file", "/data")
        plans.append(plan_features(frame, schema, "churned", "binary", FeatureSpec(),
                                   id_column="customer_id", classes=[0, 1]))
    assert plans[1].to_json() == plans[0].to_json()
    assert "is_flagged" in plans[1].input_columns
    pd.testing.assert_frame_equal(apply_features(typed, plans[1]), apply_features(plain, plans[0]))
