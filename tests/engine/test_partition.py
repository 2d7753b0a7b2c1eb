"""The fixed held-out split: same rows every run, stable as data grows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.errors import DataError
from autokfp.modeling.partition import holdout_mask, split_holdout


def _frame(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + start)
    return pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(start, start + n)],
        "spend": rng.normal(50, 10, n).round(2),
        "plan": rng.choice(["basic", "pro"], n),
        "churned": rng.integers(0, 2, n),
    })


def _test_ids(frame: pd.DataFrame, seed: int = 42, fraction: float = 0.2,
              id_column: str | None = "customer_id") -> set[str]:
    _, test = split_holdout(frame, fraction, seed, id_column, "churned")
    return set(test["customer_id"])


def test_split_is_deterministic() -> None:
    frame = _frame(3000)
    train_a, test_a = split_holdout(frame, 0.2, 42, "customer_id", "churned")
    train_b, test_b = split_holdout(frame.copy(), 0.2, 42, "customer_id", "churned")
    pd.testing.assert_frame_equal(train_a, train_b)
    pd.testing.assert_frame_equal(test_a, test_b)
    assert len(train_a) + len(test_a) == len(frame)
    assert set(train_a["customer_id"]).isdisjoint(test_a["customer_id"])


def test_split_does_not_depend_on_row_order() -> None:
    frame = _frame(3000)
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert _test_ids(frame) == _test_ids(shuffled)


def test_appended_rows_keep_every_earlier_test_row_in_test() -> None:
    first = _frame(2000)
    grown = pd.concat([first, _frame(1500, start=2000)], ignore_index=True)
    before, after = _test_ids(first), _test_ids(grown)
    assert before <= after
    # and no earlier training row moved into the test set
    earlier = set(first["customer_id"])
    assert after & earlier == before
    # changing other columns of a row (a later snapshot) does not move it
    updated = grown.assign(spend=grown["spend"] + 1.0)
    assert _test_ids(updated) == after


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3])
def test_fraction_within_tolerance(fraction: float) -> None:
    frame = _frame(10_000)
    mask = holdout_mask(frame, fraction, 42, "customer_id")
    assert mask.dtype == bool
    assert abs(mask.mean() - fraction) < 0.015


def test_different_seeds_give_different_splits() -> None:
    frame = _frame(2000)
    a, b = _test_ids(frame, seed=1), _test_ids(frame, seed=2)
    assert a != b
    # independent draws overlap about fraction^2 of rows, far from identical
    assert len(a & b) < 0.5 * len(a)


def test_duplicate_ids_raise_naming_the_column() -> None:
    frame = _frame(100)
    frame.loc[5, "customer_id"] = frame.loc[6, "customer_id"]
    with pytest.raises(DataError, match="'customer_id'") as info:
        split_holdout(frame, 0.2, 42, "customer_id", "churned")
    assert "duplicate" in str(info.value)


def test_rows_without_target_are_dropped() -> None:
    frame = _frame(1000).astype({"churned": "float64"})
    frame.loc[frame.index % 10 == 0, "churned"] = np.nan
    train, test = split_holdout(frame, 0.2, 42, "customer_id", "churned")
    assert len(train) + len(test) == 900
    assert train["churned"].notna().all()
    assert test["churned"].notna().all()
    # the unlabelled rows do not shift where the labelled rows land
    labelled = frame[frame["churned"].notna()]
    assert set(test["customer_id"]) == _test_ids(labelled)


def test_without_id_column_rows_are_hashed_by_content() -> None:
    frame = _frame(3000).drop(columns=["customer_id"])
    for id_column in (None, "customer_id"):  # a configured id that is absent falls back too
        train, test = split_holdout(frame, 0.2, 42, id_column, "churned")
        assert len(train) + len(test) == len(frame)
        assert abs(len(test) / len(frame) - 0.2) < 0.03
    shuffled = frame.sample(frac=1.0, random_state=3)
    mask = pd.Series(holdout_mask(frame, 0.2, 42, None), index=frame.index)
    shuffled_mask = pd.Series(holdout_mask(shuffled, 0.2, 42, None), index=shuffled.index)
    pd.testing.assert_series_equal(mask, shuffled_mask.sort_index())


def test_too_few_rows_for_a_split_says_so() -> None:
    frame = _frame(2)
    with pytest.raises(DataError, match="split.test_fraction"):
        split_holdout(frame, 0.06, 42, "customer_id", "churned")


# ------------------------------------------------------------------ streamed from Parquet

def _awkward(n: int) -> pd.DataFrame:
    """Columns whose pandas dtype a single batch gets wrong: an integer and a boolean with a
    missing value in one place only, categories, text, and unlabelled rows."""
    rng = np.random.default_rng(5)
    frame = _frame(n)
    frame["visits"] = pd.array(rng.integers(0, 50, n), dtype="float64")
    frame.loc[n - 3, "visits"] = np.nan  # only the last batch has it: an int column elsewhere
    frame["visits"] = frame["visits"].astype("Int64")
    frame["active"] = pd.array(rng.integers(0, 2, n).astype(bool), dtype="boolean")
    frame.loc[7, "active"] = pd.NA
    frame["tier"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
    frame["churned"] = frame["churned"].astype("float64")
    frame.loc[frame.index % 17 == 0, "churned"] = np.nan
    return frame


@pytest.mark.parametrize("pandas_metadata", [True, False])
@pytest.mark.parametrize("id_column", ["customer_id", None])
def test_streamed_split_puts_every_row_where_the_whole_frame_split_does(
        tmp_path, id_column, pandas_metadata) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.modeling.partition import split_holdout_parquet

    source = tmp_path / "data.parquet"
    table = pa.Table.from_pandas(_awkward(3000), preserve_index=False)
    if not pandas_metadata:  # as Spark or DuckDB write it
        table = table.replace_schema_metadata(None)
    pq.write_table(table, source)
    whole = pd.read_parquet(source)  # as the step read it before
    if pandas_metadata:
        assert str(whole["visits"].dtype) == "Int64" and whole["tier"].dtype == "category"
    else:  # int + a missing value -> float, bool + a missing value -> object
        assert whole["visits"].dtype == "float64" and whole["active"].dtype == object
    train, test = split_holdout(whole, 0.2, 42, id_column, "churned")
    split = split_holdout_parquet(source, tmp_path / "train.parquet", tmp_path / "test.parquet",
                                  0.2, 42, id_column, "churned", batch_rows=256)
    streamed_train = pd.read_parquet(tmp_path / "train.parquet")
    streamed_test = pd.read_parquet(tmp_path / "test.parquet")
    assert streamed_train["customer_id"].tolist() == train["customer_id"].tolist()
    assert streamed_test["customer_id"].tolist() == test["customer_id"].tolist()
    pd.testing.assert_frame_equal(streamed_train.astype(str), train.astype(str))
    assert (split.train_rows, split.test_rows, split.unlabelled_rows) == (
        len(train), len(test), int(whole["churned"].isna().sum()))
    assert sorted(split.train_target_values) == sorted(train["churned"].unique().tolist())
    assert split.train_missing == {str(k): bool(v) for k, v in train.isna().any().items()}


def test_streamed_split_refuses_duplicate_ids_and_writes_nothing(tmp_path) -> None:
    from autokfp.modeling.partition import split_holdout_parquet

    frame = _frame(1000)
    frame.loc[900, "customer_id"] = frame.loc[3, "customer_id"]  # in different batches
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    with pytest.raises(DataError, match="'customer_id' has duplicate values"):
        split_holdout_parquet(tmp_path / "data.parquet", tmp_path / "train.parquet",
                              tmp_path / "test.parquet", 0.2, 42, "customer_id", "churned",
                              batch_rows=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.parquet"]


def test_a_large_table_holds_out_about_max_test_rows_and_a_small_one_its_fraction() -> None:
    from autokfp.modeling.partition import held_out_fraction

    rng = np.random.default_rng(0)
    values = pd.Series(rng.normal(size=60_000))
    share = held_out_fraction(values, "regression", 0.2, 5_000)
    frame = _frame(60_000)
    held = holdout_mask(frame, share, 42, "customer_id").sum()
    assert 0.08 < share < 0.09 and 4_800 < held < 5_200  # 5,000 of 60,000, not 12,000
    # a table whose 20% is under the cap, or no cap, keeps split.test_fraction
    assert held_out_fraction(values.head(20_000), "regression", 0.2, 5_000) == 0.2
    assert held_out_fraction(values, "regression", 0.2, None) == 0.2
    # unlabelled rows do not count: 30,000 labelled rows hold out 5,000 of them
    assert held_out_fraction(values.where(values.index % 2 == 0), "regression", 0.2,
                             5_000) == pytest.approx(5_000 / 30_000, abs=1e-4)
    # a classifier keeps ~500 rows of its rarest class there: 5% positives (3,000) hold out
    # 500 / 3,000 of the rows, not 5,000 / 60,000; 1% (600) keep split.test_fraction
    five = pd.Series(np.where(np.arange(60_000) % 20 == 0, "yes", "no"))
    assert held_out_fraction(five, "binary", 0.2, 5_000) == pytest.approx(500 / 3_000, abs=1e-4)
    one = pd.Series(np.where(np.arange(60_000) % 100 == 0, "yes", "no"))
    assert held_out_fraction(one, "binary", 0.2, 5_000) == 0.2
    balanced = pd.Series(np.where(np.arange(60_000) % 2 == 0, "yes", "no"))
    assert held_out_fraction(balanced, "binary", 0.2, 5_000) == pytest.approx(5_000 / 60_000,
                                                                              abs=1e-4)
    # a million-row table still holds out a whole hash bucket at least
    assert held_out_fraction(pd.Series(np.zeros(10**8 // 100)), "regression", 0.2, 1_000) >= 1e-4


def test_a_growing_table_never_moves_an_earlier_training_row_into_its_test_rows() -> None:
    """With the cap the share falls as rows are added: the test rows of the grown table are
    earlier test rows and new rows, so no model of an earlier run was fitted on any of them."""
    from autokfp.modeling.partition import held_out_fraction

    first = _frame(40_000)
    grown = pd.concat([first, _frame(30_000, start=40_000)], ignore_index=True)
    shares = [held_out_fraction(f["spend"], "regression", 0.2, 5_000) for f in (first, grown)]
    assert shares[1] < shares[0] < 0.2
    before = _test_ids(first, fraction=shares[0])
    after = _test_ids(grown, fraction=shares[1])
    assert after & set(first["customer_id"]) <= before
    assert len(after) == pytest.approx(5_000, rel=0.05)
