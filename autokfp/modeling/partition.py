"""A held-out test split that is fixed per dataset: the same rows every run.

Rows are assigned by a keyed hash of their id (or, without an id, of their content), so
re-running on the same data puts the same rows in the test set, and a later version that
only appended rows puts no earlier training row there: every test row is one no model of an
earlier run was fitted on. That is what makes "the challenger beats the champion on the same
test rows" a fair comparison.

A large table holds out fewer than ``split.test_fraction`` of its rows
(``held_out_fraction``): the gate's noise depends on how many test rows there are, not on
their share, and every row held out is lost to the model for good above
``training.refit_max_rows``. The share only falls as the table grows, so the test set of a
grown table is part of the earlier one (plus new rows).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.catalog.batches import batch_frame, file_dtypes
from autokfp.errors import DataError

BATCH_ROWS = 1 << 18  # rows per Arrow batch of the streamed split
# rows are placed by their hash's bucket among this many: a test share is a whole number of them
BUCKETS = 10_000
# a classifier's test split keeps about this many rows of its rarest class before
# split.max_test_rows may shrink it (an AUC measured on 500 positives has a standard error
# near 0.01; on 50, near 0.04)
MIN_TEST_CLASS_ROWS = 500


def _duplicate_ids_error(id_column: str) -> DataError:
    return DataError(
        f"id column '{id_column}' has duplicate values; the fixed test split needs unique "
        "ids (deduplicate the data or set training.id_column to a unique column)"
    )


def _row_hashes(frame: pd.DataFrame, seed: int, id_column: str | None) -> np.ndarray:
    """The keyed hash that places each row: of its id when there is one, else of its content."""
    if id_column and id_column in frame.columns:
        hashed = pd.util.hash_pandas_object(frame[id_column].astype(str), index=False,
                                            hash_key=_hash_key(seed))
    else:
        hashed = pd.util.hash_pandas_object(frame, index=False, hash_key=_hash_key(seed))
    return hashed.to_numpy(dtype=np.uint64)


def _in_test(hashed: np.ndarray, test_fraction: float) -> np.ndarray:
    bucket = (hashed % np.uint64(BUCKETS)).astype(np.int64)
    return bucket < int(round(test_fraction * BUCKETS))


def held_out_fraction(target: pd.Series, task: str, test_fraction: float,
                      max_test_rows: int | None) -> float:
    """The share of the labelled rows (``target`` not missing) the test split holds:
    ``test_fraction``, or less on a large table, so that about ``max_test_rows`` rows are held
    out, but a classifier still keeps about ``MIN_TEST_CLASS_ROWS`` rows of its rarest class
    there (never more than ``test_fraction``).

    The share is a whole number of hash buckets (at least one), rounded up, and it only falls
    as rows are added: a grown table's test rows are some of the earlier test rows plus new
    rows, never a row an earlier model was fitted on. (A table that loses rows can get a
    larger share back; rows an earlier champion was fitted on then count against it in the
    gate, which errs towards keeping it.)"""
    labelled = target.dropna()
    if max_test_rows is None or len(labelled) * test_fraction <= max_test_rows:
        return test_fraction
    needed = max_test_rows / len(labelled)
    if task != "regression":
        rarest = int(labelled.astype(str).value_counts().min())
        needed = max(needed, MIN_TEST_CLASS_ROWS / rarest)
    buckets = min(int(round(test_fraction * BUCKETS)), max(1, int(np.ceil(needed * BUCKETS))))
    return buckets / BUCKETS


def holdout_mask(frame: pd.DataFrame, test_fraction: float, seed: int, id_column: str | None) -> np.ndarray:
    """Boolean mask: True for rows in the test split."""
    if id_column and id_column in frame.columns and frame[id_column].astype(str).duplicated().any():
        raise _duplicate_ids_error(id_column)
    return _in_test(_row_hashes(frame, seed, id_column), test_fraction)


def split_holdout(
    frame: pd.DataFrame, test_fraction: float, seed: int, id_column: str | None, target: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, test); rows without a target value are dropped first."""
    labelled = frame[frame[target].notna()]
    mask = holdout_mask(labelled, test_fraction, seed, id_column)
    train, test = labelled[~mask], labelled[mask]
    if len(test) == 0 or len(train) == 0:
        raise DataError(
            f"the {len(labelled)} labelled rows are too few to hold out a test split of "
            f"{test_fraction:.0%}; add rows or change split.test_fraction"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _hash_key(seed: int) -> str:
    # pandas needs exactly 16 characters; keep the seed's last 14 digits
    return f"ak{abs(seed) % 10**14:014d}"


@dataclass
class StreamedSplit:
    """What ``split_holdout_parquet`` wrote, and the facts learnt on the way."""

    train_rows: int = 0
    test_rows: int = 0
    unlabelled_rows: int = 0
    train_target_values: list[Any] = field(default_factory=list)
    """The distinct target values of the training rows (as ``pd.read_parquet`` types them)."""
    train_missing: dict[str, bool] = field(default_factory=dict)
    """Column -> whether any training row lacks a value (``isna``)."""


def split_holdout_parquet(
    path: str | Path, train_path: str | Path, test_path: str | Path, test_fraction: float,
    seed: int, id_column: str | None, target: str, batch_rows: int = BATCH_ROWS,
    on_batch: Callable[[pd.DataFrame], None] | None = None,
) -> StreamedSplit:
    """``split_holdout`` from a Parquet file to two Parquet files, in Arrow batches.

    The same rows land in the same split as ``split_holdout`` on the whole frame (each row's
    hash depends on its own values only, and every batch is typed as the whole file). Memory
    is bounded by a batch plus 8 bytes per row for the id check. The files keep the input's
    Arrow schema; both appear only when the split succeeded. ``on_batch`` sees the labelled
    training rows of each batch.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(str(path))
    schema = handle.schema_arrow
    dtypes = file_dtypes(path)
    by_id = bool(id_column and id_column in schema.names)
    outcome = StreamedSplit()
    targets: list[Any] = []
    hashes: list[np.ndarray] = []
    temps = [Path(p).with_name(f".{Path(p).name}.tmp") for p in (train_path, test_path)]
    for temp in temps:
        temp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with pq.ParquetWriter(str(temps[0]), schema) as train_out, \
                pq.ParquetWriter(str(temps[1]), schema) as test_out:
            for batch in handle.iter_batches(batch_size=batch_rows, use_threads=False):
                frame = batch_frame(batch, schema, dtypes)
                labelled = frame[target].notna().to_numpy()
                outcome.unlabelled_rows += int((~labelled).sum())
                frame = frame[labelled]
                hashed = _row_hashes(frame, seed, id_column)
                if by_id:
                    hashes.append(hashed)
                test = _in_test(hashed, test_fraction)
                rows = np.flatnonzero(labelled)
                train_out.write_batch(batch.take(pa.array(rows[~test])))
                test_out.write_batch(batch.take(pa.array(rows[test])))
                train = frame[~test]
                outcome.train_rows += len(train)
                outcome.test_rows += int(test.sum())
                targets.append(train[target].drop_duplicates())
                for name, missing in train.isna().any().items():
                    outcome.train_missing[str(name)] = outcome.train_missing.get(str(name), False) or bool(missing)
                if on_batch is not None and len(train):
                    on_batch(train)
        if by_id and hashes:
            _check_unique_ids(path, id_column or "", target, np.concatenate(hashes), dtypes)
        if outcome.test_rows == 0 or outcome.train_rows == 0:
            raise DataError(
                f"the {outcome.train_rows + outcome.test_rows} labelled rows are too few to hold "
                f"out a test split of {test_fraction:.0%}; add rows or change split.test_fraction"
            )
        if targets:
            outcome.train_target_values = pd.concat(targets).drop_duplicates().tolist()
        for temp, final in zip(temps, (train_path, test_path)):
            os.replace(temp, final)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return outcome


def _check_unique_ids(path: str | Path, id_column: str, target: str, hashes: np.ndarray,
                      dtypes: dict[str, Any]) -> None:
    """Unique ids among the labelled rows: equal hashes are confirmed on the ids' text (a
    64-bit collision of two different ids is possible, only rarer than one in 10**6 at 10M
    rows), so the verdict is exact."""
    ordered = np.sort(hashes)
    if not (ordered[1:] == ordered[:-1]).any():
        return
    columns = pd.read_parquet(str(path), columns=[id_column, target])
    if id_column in dtypes:
        columns[id_column] = columns[id_column].astype(dtypes[id_column])
    keys = columns.loc[columns[target].notna(), id_column].astype(str)
    if keys.duplicated().any():
        raise _duplicate_ids_error(id_column)
