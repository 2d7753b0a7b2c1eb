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
