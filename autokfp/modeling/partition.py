"""A held-out test split that is fixed per dataset: the same rows every run.

Rows are assigned by a keyed hash of their id (or, without an id, of their content), so
re-running on the same data, or on a later version that only appended rows, keeps every
earlier test row in the test set. That is what makes "the challenger beats the champion on
the same test rows" a fair comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autokfp.errors import DataError


def holdout_mask(frame: pd.DataFrame, test_fraction: float, seed: int, id_column: str | None) -> np.ndarray:
    """Boolean mask: True for rows in the test split."""
    if id_column and id_column in frame.columns:
        keys = frame[id_column].astype(str)
        if keys.duplicated().any():
            raise DataError(
                f"id column '{id_column}' has duplicate values; the fixed test split needs unique "
                "ids (deduplicate the data or set training.id_column to a unique column)"
            )
        hashed = pd.util.hash_pandas_object(keys, index=False, hash_key=_hash_key(seed))
    else:
        hashed = pd.util.hash_pandas_object(frame, index=False, hash_key=_hash_key(seed))
    bucket = (hashed.to_numpy(dtype=np.uint64) % np.uint64(10_000)).astype(np.int64)
    return bucket < int(round(test_fraction * 10_000))


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
