"""The bundled churn example: deterministic, realistic, learnable, biased and leaky as documented."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from autokfp.errors import ConfigError, SchemaError
from autokfp.examples import churn
from autokfp.examples.churn import (
    COLUMNS,
    DOCUMENTED_ACHIEVABLE_AUC,
    EXAMPLE_ID,
    EXAMPLE_LEAK,
    EXAMPLE_PII,
    EXAMPLE_SENSITIVE,
    EXAMPLE_TARGET,
    ORACLE_AUC,
    REFERENCE_GBM_AUC,
    SPLIT_SEED,
    TEST_FRACTION,
    churn_probability,
    generate_churn,
    learner_features,
    measure_reference_scores,
    split_example,
    write_example_data,
)
from autokfp.modeling.partition import holdout_mask, split_holdout

NUMERIC = (
    "age", "tenure_months", "monthly_charges", "total_charges", "num_support_tickets",
    "last_login_days_ago",
)  # fmt: skip
CATEGORIES = {
    "gender": {"female", "male", "nonbinary"},
    "contract_type": {"month-to-month", "one-year", "two-year"},
    "internet_service": {"fiber", "dsl", "none"},
    "payment_method": {"credit-card", "bank-transfer", "electronic-check", "mailed-check"},
}


@pytest.fixture(scope="module")
def default_frame() -> pd.DataFrame:
    return generate_churn()


def test_same_seed_gives_the_same_frame_and_another_seed_does_not():
    first = generate_churn(800, seed=3)
    pd.testing.assert_frame_equal(first, generate_churn(800, seed=3))
    other = generate_churn(800, seed=4)
    assert not first[EXAMPLE_ID].equals(other[EXAMPLE_ID])
    assert not first["monthly_charges"].equals(other["monthly_charges"])


def test_default_table_is_large_enough_and_has_exactly_the_documented_columns(default_frame):
    assert len(default_frame) >= 5000
    assert tuple(default_frame.columns) == COLUMNS
    assert EXAMPLE_TARGET in COLUMNS and EXAMPLE_LEAK in COLUMNS
    assert EXAMPLE_SENSITIVE == "gender" and set(EXAMPLE_PII) == {"email", "phone"}


def test_invalid_row_count_is_refused_with_a_config_error():
    with pytest.raises(ConfigError, match="n_rows"):
        generate_churn(0)
    with pytest.raises(ConfigError, match="n_rows"):
        generate_churn(10.5)  # type: ignore[arg-type]


def test_every_column_kind_is_present(default_frame):
    df = default_frame
    for col in NUMERIC:
        assert pd.api.types.is_numeric_dtype(df[col]), col
    assert pd.api.types.is_datetime64_any_dtype(df["signup_date"])
    assert df["signup_date"].max() <= churn.SNAPSHOT_DATE
    assert df["signup_date"].nunique() > 500
    for col, values in CATEGORIES.items():
        assert set(df[col].dropna().unique()) == values, col
    assert 4 <= df["region"].nunique() <= 6
    assert set(df[EXAMPLE_TARGET].unique()) == {0, 1}
    assert pd.api.types.is_integer_dtype(df[EXAMPLE_TARGET])
    # The id: unique, one pattern.
    assert df[EXAMPLE_ID].is_unique
    assert df[EXAMPLE_ID].str.fullmatch(r"C\d{6}").all()
    # PII-looking columns match their patterns on every row.
    assert df["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d{1,2}@example\.(com|org|net)").all()
    assert df["phone"].str.fullmatch(r"\+1-555-\d{3}-\d{4}").all()
    # Free text: sentences, with many distinct values (not a small enum).
    notes = df["support_notes"].dropna()
    assert notes.str.split().str.len().mean() >= 5
    assert notes.nunique() >= 40


def test_total_charges_bill_monthly_times_tenure(default_frame):
    known = default_frame.dropna(subset=["monthly_charges"])
    billed = known["monthly_charges"] * known["tenure_months"]
    assert np.allclose(known["total_charges"], billed, atol=0.01)


def test_missing_values_sit_where_documented(default_frame):
    share = default_frame.isna().mean()
    assert 0.035 <= share["age"] <= 0.065
    assert 0.02 <= share["payment_method"] <= 0.04
    assert 0.01 <= share["monthly_charges"] <= 0.03
    assert 0.25 <= share["support_notes"] <= 0.35
    documented = {"age", "payment_method", "monthly_charges", "support_notes"}
    assert set(share[share > 0].index) == documented


def test_base_rate_and_oracle_are_in_the_documented_band(default_frame):
    assert 0.25 <= default_frame[EXAMPLE_TARGET].mean() <= 0.30
    assert 0.85 <= ORACLE_AUC <= 0.88


def test_true_probability_is_calibrated_and_never_a_column(default_frame):
    p = churn_probability(default_frame)
    y = default_frame[EXAMPLE_TARGET].to_numpy()
    assert p.shape == (len(default_frame),) and ((p >= 0) & (p <= 1)).all()
    assert abs(p.mean() - y.mean()) < 0.02
    deciles = pd.qcut(p, 10, labels=False)
    rate_by_decile = pd.Series(y).groupby(deciles).mean()
    assert rate_by_decile.iloc[-1] - rate_by_decile.iloc[0] > 0.6
    assert not any("prob" in c for c in default_frame.columns)


def test_true_probability_needs_the_model_columns(default_frame):
    with pytest.raises(SchemaError, match="tenure_months"):
        churn_probability(default_frame.drop(columns=["tenure_months"]))


def test_support_note_wording_correlates_with_churn(default_frame):
    df = default_frame
    complaint = df["support_notes"].str.contains(
        r"too high|price|fees|expensive|outage|dropping|down", na=False
    )
    rate = df.groupby(complaint)[EXAMPLE_TARGET].mean()
    assert rate[True] - rate[False] > 0.04


def test_female_customers_churn_more_regardless_of_behaviour(default_frame):
    df = default_frame
    rate = df.groupby(EXAMPLE_SENSITIVE)[EXAMPLE_TARGET].mean()
    assert rate["female"] - rate["male"] >= 0.05
    # The true probability gap is the documented behaviour-blind offset.
    p = pd.Series(churn_probability(df), index=df.index).groupby(df[EXAMPLE_SENSITIVE]).mean()
    assert p["female"] - p["male"] == pytest.approx(churn.FEMALE_EXTRA_CHURN, abs=0.02)


def test_leak_column_alone_almost_spells_out_the_label(default_frame):
    df = default_frame
    train, test = split_example(df)
    rate = df.iloc[train].groupby(EXAMPLE_LEAK)[EXAMPLE_TARGET].mean()
    scores = df.iloc[test][EXAMPLE_LEAK].map(rate)
    auc = roc_auc_score(df.iloc[test][EXAMPLE_TARGET], scores)
    assert auc >= 0.95
    assert auc > ORACLE_AUC + 0.05  # far better than any honest model: a leak


def test_quick_learner_without_the_leak_reaches_the_documented_auc(default_frame):
    df = default_frame
    train, test = split_example(df)
    x = pd.get_dummies(learner_features(df), dtype=float)
    assert not {EXAMPLE_LEAK, EXAMPLE_ID, *EXAMPLE_PII} & set(x.columns)
    y = df[EXAMPLE_TARGET].to_numpy()
    model = HistGradientBoostingClassifier(
        learning_rate=0.05, max_iter=150, max_leaf_nodes=8, random_state=0
    ).fit(x.iloc[train], y[train])
    auc = roc_auc_score(y[test], model.predict_proba(x.iloc[test])[:, 1])
    assert abs(auc - DOCUMENTED_ACHIEVABLE_AUC) <= 0.03
    assert auc < ORACLE_AUC + 0.02


def test_the_split_is_the_pipelines_fixed_holdout_of_the_demo_config(default_frame):
    config = yaml.safe_load((Path(churn.__file__).parent / "churn.yaml").read_text())
    assert SPLIT_SEED == config["split"]["seed"] == 42
    assert TEST_FRACTION == config["split"]["test_fraction"] == 0.2
    assert EXAMPLE_ID == config["training"]["id_column"]

    train, test = split_example(default_frame)
    mask = holdout_mask(default_frame, test_fraction=0.2, seed=42, id_column="customer_id")
    np.testing.assert_array_equal(test, np.flatnonzero(mask))
    np.testing.assert_array_equal(train, np.flatnonzero(~mask))
    assert len(train) + len(test) == len(default_frame)
    assert abs(len(test) / len(default_frame) - TEST_FRACTION) < 0.01

    # The same test rows the pipeline holds out (it splits the labelled rows by id).
    _, pipeline_test = split_holdout(default_frame, 0.2, 42, "customer_id", EXAMPLE_TARGET)
    assert set(pipeline_test[EXAMPLE_ID]) == set(default_frame.iloc[test][EXAMPLE_ID])


def test_documented_constants_are_what_the_measurement_gives():
    scores = measure_reference_scores()
    assert scores.oracle_auc == pytest.approx(ORACLE_AUC, abs=1e-4)
    assert scores.gbm_auc == pytest.approx(REFERENCE_GBM_AUC, abs=1e-4)
    assert round(scores.gbm_auc, 2) == DOCUMENTED_ACHIEVABLE_AUC == round(REFERENCE_GBM_AUC, 2)
    assert scores.gbm_auc > scores.linear_auc  # the non-linear terms reward trees
    gap = scores.gbm_selection_rate_by_gender
    assert gap["female"] - gap["male"] > 0.03  # a trained model inherits the bias


def _assert_same_table(read: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(read.columns) == list(expected.columns)
    assert len(read) == len(expected)
    # Text files and SQL give missing strings back as NaN where the frame holds None.
    pd.testing.assert_frame_equal(
        read.where(read.notna(), np.nan),
        expected.where(expected.notna(), np.nan),
        check_dtype=False,
    )


def test_write_example_data_round_trips_through_csv_parquet_and_sqlite(tmp_path: Path):
    data = write_example_data(tmp_path / "example", n_rows=400, seed=5)
    expected = generate_churn(400, seed=5)
    for path in (data.customers_csv, data.customers_parquet, data.plans_csv, data.warehouse_db):
        assert path.is_file() and path.stat().st_size > 0
    assert data.customers_csv.parent == tmp_path / "example" / "files"
    assert data.warehouse_db == tmp_path / "example" / "warehouse.db"

    _assert_same_table(pd.read_csv(data.customers_csv, parse_dates=["signup_date"]), expected)
    parquet = pd.read_parquet(data.customers_parquet)
    pd.testing.assert_frame_equal(parquet, expected)
    with sqlite3.connect(data.warehouse_db) as con:
        sql = pd.read_sql("SELECT * FROM customers", con, parse_dates=["signup_date"])
        plans_sql = pd.read_sql("SELECT * FROM plans", con)
    _assert_same_table(sql, expected)

    plans = pd.read_csv(data.plans_csv)
    assert list(plans.columns) == ["contract_type", "monthly_base_price", "min_months"]
    assert set(plans["contract_type"]) == CATEGORIES["contract_type"]
    pd.testing.assert_frame_equal(plans_sql, plans)


def test_rewriting_replaces_every_file_cleanly(tmp_path: Path):
    write_example_data(tmp_path, n_rows=300, seed=1)
    data = write_example_data(tmp_path, n_rows=200, seed=2)
    assert len(pd.read_csv(data.customers_csv)) == 200
    assert len(pd.read_parquet(data.customers_parquet)) == 200
    with sqlite3.connect(data.warehouse_db) as con:
        assert con.execute("SELECT COUNT(*) FROM customers").fetchone() == (200,)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path: Path):
    data = write_example_data(tmp_path, n_rows=100, seed=1)
    before = data.customers_csv.read_bytes()

    def crash_halfway(path: Path) -> None:
        path.write_text("customer_id,signup\nC0")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        churn._write_atomically(data.customers_csv, crash_halfway)
    assert data.customers_csv.read_bytes() == before
    assert not [p for p in data.customers_csv.parent.iterdir() if p.name.endswith(".tmp")]
