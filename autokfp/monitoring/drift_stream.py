"""Drift verdicts straight from Parquet, one column at a time, for windows larger than memory.

``detect_drift`` (drift.py) takes two pandas frames, so both sides must fit in memory at
once. ``detect_drift_parquet`` reads each side column by column in Arrow batches
(``catalog.batches.parquet_scan``), so memory is bounded by the longest column, not the table: about
8 bytes x rows per side for a numerical column (10M rows: 80 MB a side) and the distinct
values for a categorical one, times the worker threads.

The tests and thresholds are drift.py's (Evidently's defaults), and so are the verdicts:

* categorical columns are counted batch by batch (``pyarrow.compute.value_counts``), then
  tested exactly as on frames (chi-square, z-test or Jensen-Shannon on the counts);
* numerical columns with a small reference (<= 1,000 values) or few distinct values run
  the exact frame code (K-S, chi-square, z-test, Jensen-Shannon);
* the Wasserstein distance (large numerical columns) is where frames spend their time:
  two full sorts per column. Here both sides are counted into 2**20 equal-width bins over
  their common range instead (one pass, no sort), which bounds the distance from both
  sides: within a bin each CDF can only rise by that bin's share. When the whole bound
  lies on one side of the threshold the verdict is certain; otherwise (rare: a score
  within about 1e-5 of the threshold, or a range stretched by a far outlier) the column
  falls back to the exact sorted computation. The reported score is the distance with
  values spread evenly within each bin, within that bound of the exact one (a relative
  error of about 1e-5 for ordinary data); the verdict is the exact one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.catalog.batches import parquet_scan
from autokfp.catalog.batches import sample_rows as sample_rows  # re-exported
from autokfp.monitoring.drift import (
    CATEGORICAL,
    FEW_VALUES,
    METHODS,
    MIN_NORM,
    NUMERICAL,
    SMALL_REFERENCE_ROWS,
    ColumnDrift,
    DriftReport,
    _aligned,
    categorical_method,
    check_methods,
    infer_kind,
    jensen_shannon_distance,
    numerical_method,
    plan_columns,
    report_from_jobs,
    wasserstein_distance_sorted,
)

log = logging.getLogger(__name__)

BINS = 1 << 20  # most equal-width bins per numerical column: 8 MB of counts a side
MIN_BINS = 1 << 12
BATCH_ROWS = 1 << 18
# relative slack on the bounds: float rounding must not decide a verdict the bound calls sure
_SLACK = 1e-9


def _dataset(path: str | Path, text_as_dictionary: bool = True) -> Any:
    """The Parquet file (or folder), text columns read as dictionaries: counting categories
    then bincounts the codes of each batch instead of hashing every string."""
    import pyarrow as pa

    plain = parquet_scan(path)
    if not text_as_dictionary:
        return plain
    text = [f.name for f in plain.schema if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)]
    if not text:
        return plain
    return parquet_scan(path, dictionary_columns=text)


class _Buffers:
    """Scratch arrays of one ``detect_drift_parquet`` call, one set per worker thread, reused
    from column to column: a fresh 80 MB array (a side of a 10M-row column, or its bin
    indices) is mapped and zeroed by the kernel page by page on first touch, which the
    profile at 10M rows x 50 columns put at several CPU seconds of the call (docs/scale.md).
    They are the arrays each column held before, kept between columns, and dropped with the
    call."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, slot: str, size: int, dtype: str) -> np.ndarray:
        arrays: dict[str, np.ndarray] = self._local.__dict__.setdefault("arrays", {})
        array = arrays.get(slot)
        if array is None or len(array) < size or array.dtype != np.dtype(dtype):
            arrays[slot] = array = np.empty(size, dtype=dtype)
        return array[:size]


def _batches(dataset: Any, column: str, batch_rows: int) -> Iterable[Any]:
    for batch in dataset.to_batches(columns=[column], batch_size=batch_rows, use_threads=False):
        if batch.num_rows:
            yield batch.column(0)


def read_numbers(dataset: Any, column: str, batch_rows: int = BATCH_ROWS,
                 buffers: _Buffers | None = None, slot: str = "values") -> np.ndarray:
    """One column as float64 with missing and infinite values dropped (pd.to_numeric rules).

    Each batch is copied once, straight into place, its missing and infinite values
    squeezed out on the way (into ``buffers``' array ``slot`` when given: see ``_Buffers``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    total = dataset.count_rows()
    values = (buffers.get(slot, total, "float64") if buffers is not None
              else np.empty(total, dtype="float64"))
    filled = 0
    for array in _batches(dataset, column, batch_rows):
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if pa.types.is_float64(array.type) and array.null_count == 0:
            chunk = array.to_numpy(zero_copy_only=True)  # a view of the Arrow buffer
        elif pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or (
            pa.types.is_boolean(array.type) or pa.types.is_decimal(array.type)
        ):
            chunk = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        else:  # text holding numbers: pandas' coercion, as on frames (not a number -> missing)
            chunk = pd.to_numeric(array.to_pandas(), errors="coerce").to_numpy(
                dtype="float64", na_value=np.nan
            )
        finite = np.isfinite(chunk)
        if finite.all():
            values[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        else:
            kept = int(np.count_nonzero(finite))
            np.compress(finite, chunk, out=values[filled:filled + kept])
            filled += kept
    return values[:filled]


def count_values(
    dataset: Any,
    column: str,
    key: Callable[[Any], Any] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> pd.Series:
    """Counts of each value present, batch by batch (missing and infinite values left out).

    ``key`` respells values before they are counted together (the monitoring step passes
    ``category_text`` so that 2, 2.0 and "2" are one category, as ``normalise_kinds`` does).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    totals: dict[Any, int] = {}
    for array in _batches(dataset, column, batch_rows):
        if pa.types.is_dictionary(array.type):
            codes = array.indices.to_numpy(zero_copy_only=False)
            if array.null_count:
                codes = codes[array.is_valid().to_numpy(zero_copy_only=False)]
            per_code = np.bincount(codes.astype(np.int64), minlength=len(array.dictionary))
            used = np.flatnonzero(per_code)
            values = array.dictionary.take(used).to_pylist()
            counts = per_code[used].tolist()
        else:
            counted = pc.value_counts(array)
            values = counted.field("values").to_pylist()
            counts = counted.field("counts").to_pylist()
        for value, count in zip(values, counts):
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                continue
            name = key(value) if key is not None else value
            totals[name] = totals.get(name, 0) + count
    series = pd.Series(totals, dtype="int64")
    return series[series > 0]


# ------------------------------------------------------------------------ Wasserstein bounds


def bins_for(rows: int) -> int:
    """About two bins per value (so the work stays linear in rows), between 4,096 and 2**20."""
    return int(min(BINS, max(MIN_BINS, 1 << int(rows * 2).bit_length())))


def binned_wasserstein(
    reference: np.ndarray, current: np.ndarray, bins: int | None = None,
    buffers: _Buffers | None = None,
) -> tuple[float, float, float]:
    """(estimate, lower bound, upper bound) of the first Wasserstein distance, without sorting.

    Both samples are counted into equal-width bins over their common range. At a bin's left
    edge the CDF gap ``g`` is exact; inside the bin the reference CDF rises by at most its
    share ``a_r`` there and the current CDF by ``a_c``, so the gap stays within
    ``[g - a_c, g + a_r]``. Integrating the smallest and largest ``|gap|`` those allow gives
    the bounds; the estimate takes the gap as linear across the bin.
    """
    low = min(float(reference.min()), float(current.min()))
    high = max(float(reference.max()), float(current.max()))
    if high <= low:
        return 0.0, 0.0, 0.0
    bins = bins or bins_for(len(reference) + len(current))
    width = (high - low) / bins
    scale = bins / (high - low)

    def histogram(values: np.ndarray) -> np.ndarray:
        # bin indices computed in slices that stay in cache (three passes over each slice,
        # not over memory), then one bincount
        positions = (buffers.get("bin", len(values), "int64") if buffers is not None
                     else np.empty(len(values), dtype=np.int64))
        step = 1 << 15
        scratch = np.empty(min(step, len(values)), dtype="float64")
        for start in range(0, len(values), step):
            part = values[start:start + step]
            work, where = scratch[: len(part)], positions[start:start + len(part)]
            np.subtract(part, low, out=work)
            np.multiply(work, scale, out=work)
            np.copyto(where, work, casting="unsafe")  # truncation: the bin index
        counts = np.bincount(positions, minlength=bins + 1)
        # the top of the range (index ``bins``, or past it by rounding) is the last bin's
        counts[bins - 1] += counts[bins:].sum()
        return counts[:bins] / len(values)

    # about 18 passes over the bins (2**20 of them: a fixed cost per column, whatever the
    # rows), where the first version made about 35 (profiled at 10M rows: docs/scale.md)
    share_ref, share_cur = histogram(reference), histogram(current)
    gap_end = np.cumsum(share_ref - share_cur)
    gap_start = np.empty_like(gap_end)
    gap_start[0], gap_start[1:] = 0.0, gap_end[:-1]
    gap_end[-1] = 0.0  # both CDFs reach 1 at the top of the range (rounding aside)
    lowest = gap_start - share_cur
    highest = np.add(gap_start, share_ref, out=share_ref)
    # lowest <= highest (they differ by both shares), so the largest |gap| in a bin is
    # max(highest, -lowest) and the smallest max(lowest, -highest, 0): 0 when they straddle
    upper = float(np.maximum(highest, np.negative(lowest, out=share_cur)).sum() * width)
    np.negative(highest, out=highest)
    np.maximum(lowest, highest, out=lowest)
    lower = float(np.maximum(lowest, 0.0, out=lowest).sum() * width)
    # the gap linear across each bin: |area| (a + b) / 2 where the gap keeps its sign, and
    # (a^2 + b^2) / (2 (a + b)) = (a + b) / 2 - a b / (a + b) where it crosses zero; the
    # sum of a = |gap_start| equals the sum of b = |gap_end| (shifted by one, 0 at both ends)
    crossing = np.flatnonzero(gap_start * gap_end < 0)
    a, b = np.abs(gap_start[crossing]), np.abs(gap_end[crossing])
    estimate = float((np.abs(gap_end).sum() - (a * b / (a + b)).sum()) * width)
    return min(max(estimate, lower), upper), lower, upper


def _few_value_counts(
    reference: np.ndarray, current: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Count vectors over the values of both sides when the reference and both sides together
    hold at most FEW_VALUES distinct values, else None. Never sorts or hashes a long column:
    the first values name the candidates, and one comparison per candidate counts them (when
    the counts do not add up to the column, some other value is there)."""
    probe = 10 * FEW_VALUES + 1
    candidates = pd.unique(np.concatenate((reference[:probe], current[:probe])))
    if len(candidates) > FEW_VALUES:
        return None
    candidates = np.sort(candidates)

    def counted(values: np.ndarray) -> np.ndarray | None:
        counts = np.array([np.count_nonzero(values == v) for v in candidates], dtype="float64")
        return counts if counts.sum() == len(values) else None

    ref_counts = counted(reference)
    if ref_counts is None:
        if len(pd.unique(reference)) > FEW_VALUES:
            return None
        return _few_value_counts_hashed(reference, current)
    cur_counts = counted(current)
    if cur_counts is None:
        return _few_value_counts_hashed(reference, current)
    present = (ref_counts > 0) | (cur_counts > 0)
    return ref_counts[present], cur_counts[present]


def _few_value_counts_hashed(
    reference: np.ndarray, current: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    ref_counts = pd.Series(reference).value_counts(sort=False)
    if len(ref_counts) > FEW_VALUES:
        return None
    cur_counts = pd.Series(current).value_counts(sort=False)
    if len(ref_counts.index.union(cur_counts.index)) > FEW_VALUES:
        return None
    return _aligned(ref_counts, cur_counts)


def numerical_verdict(
    reference: np.ndarray, current: np.ndarray, threshold: float | None = None,
    buffers: _Buffers | None = None,
) -> tuple[str, float]:
    """(method, score) for finite numbers, the verdict equal to drift.py's on the same values."""
    if len(reference) <= SMALL_REFERENCE_ROWS:
        return numerical_method(reference, current)
    few = _few_value_counts(reference, current)
    if few is not None:
        return "jensenshannon", jensen_shannon_distance(*few)
    spec = METHODS["wasserstein"]
    threshold = spec.threshold if threshold is None else threshold
    norm = max(_std(reference), MIN_NORM)
    estimate, lower, upper = binned_wasserstein(reference, current, buffers=buffers)
    if lower / norm >= threshold * (1 + _SLACK) or upper / norm < threshold * (1 - _SLACK):
        return "wasserstein", estimate / norm
    log.info("Wasserstein bound [%.6g, %.6g] straddles the threshold %.3g: exact sort",
             lower / norm, upper / norm, threshold)
    exact = wasserstein_distance_sorted(np.sort(reference), np.sort(current))
    return "wasserstein", exact / max(float(np.std(reference)), MIN_NORM)  # as frames do


def _std(values: np.ndarray) -> float:
    """np.std (two passes: the mean, then the centred squares), the centred values made in
    slices that stay in cache instead of one array as long as the column, and summed by
    numpy rather than a BLAS dot product (whose threads cost more than the sum on a busy
    machine: at 2M rows 4 ms against 28 ms for the array and dot it replaces)."""
    mean = values.mean()
    step = 1 << 15
    scratch = np.empty(min(step, len(values)), dtype="float64")
    total = 0.0
    for start in range(0, len(values), step):
        part = values[start:start + step]
        work = np.subtract(part, mean, out=scratch[: len(part)])
        total += float(np.multiply(work, work, out=work).sum())
    return float(np.sqrt(total / len(values)))


# --------------------------------------------------------------------------------- report


def _kind_of(dataset: Any, column: str) -> str | None:
    """Evidently's rules (``infer_kind``) from the Arrow type, counting values only if needed."""
    import pyarrow as pa

    arrow_type = dataset.schema.field(column).type
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return NUMERICAL
    text = pa.types.is_dictionary(arrow_type) and (
        pa.types.is_string(arrow_type.value_type) or pa.types.is_large_string(arrow_type.value_type)
    ) and not _categorical_in_pandas(dataset, column)
    if pa.types.is_boolean(arrow_type) or (pa.types.is_dictionary(arrow_type) and not text):
        return CATEGORICAL
    if pa.types.is_integer(arrow_type) or text:
        counts = count_values(dataset, column)
        present = int(counts.sum())
        if pa.types.is_integer(arrow_type):
            return infer_kind(pd.Series(counts.index.to_numpy()[:11], dtype="int64"))
        if present == 0 or len(counts) > present * 0.5:
            return None
        return CATEGORICAL
    return None


def _categorical_in_pandas(dataset: Any, column: str) -> bool:
    """Whether pandas wrote the column from a ``category`` dtype (Evidently: categorical
    whatever its cardinality), as opposed to plain text read as a dictionary here."""
    import json

    metadata = (dataset.schema.metadata or {}).get(b"pandas")
    if not metadata:
        return False
    for entry in json.loads(metadata).get("columns", []):
        if entry.get("name") == column:
            return entry.get("pandas_type") == "categorical"
    return False


def detect_drift_parquet(
    reference_path: str | Path,
    current_path: str | Path,
    columns: Iterable[str] | None = None,
    kinds: dict[str, str] | None = None,
    drift_share: float = 0.5,
    thresholds: dict[str, float] | None = None,
    workers: int = 2,
    category_key: Callable[[Any], Any] | None = None,
    coerce_numbers: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> DriftReport:
    """``detect_drift`` on two Parquet files (or folders of them), streamed column by column.

    Args:
        reference_path: The reference sample as Parquet (a file or a folder of files).
        current_path: The live window as Parquet.
        columns: Columns to compare (default: every column of the reference).
        kinds: ``numerical`` / ``categorical`` per column; columns not given are inferred
            from the current side with Evidently's rules.
        drift_share: Share of drifted columns from which the dataset counts as drifted.
        thresholds: Per-method threshold overrides, e.g. ``{"wasserstein": 0.2}``.
        workers: Columns tested in parallel (each holds one column of both sides).
        category_key: Respelling of category values before counting (e.g. ``category_text``).
        coerce_numbers: Read numerical columns stored as text or booleans as numbers
            (``pd.to_numeric`` rules, what the monitoring step's ``normalise_kinds`` does);
            without it such a column is skipped, as ``detect_drift`` skips it on frames.
        batch_rows: Rows per Arrow batch.

    Returns:
        The DriftReport, column for column the verdicts ``detect_drift`` gives on the frames.
    """
    check_methods(thresholds)
    reference, current = _dataset(reference_path), _dataset(current_path)
    names = list(reference.schema.names if columns is None else columns)
    jobs, skipped = plan_columns(names, set(reference.schema.names), set(current.schema.names),
                                 dict(kinds or {}), partial(_kind_of, current))
    run = partial(_column_drift, reference, current, thresholds=thresholds or {},
                  category_key=category_key, coerce_numbers=coerce_numbers,
                  batch_rows=batch_rows, buffers=_Buffers())
    return report_from_jobs(jobs, run, skipped, drift_share, workers)


def _column_drift(reference: Any, current: Any, job: tuple[str, str], *,
                  thresholds: dict[str, float], category_key: Callable[[Any], Any] | None,
                  coerce_numbers: bool, batch_rows: int,
                  buffers: _Buffers | None = None) -> ColumnDrift | str:
    """One column's verdict, holding only that column of both sides; or why it is skipped."""
    name, kind = job
    if kind == NUMERICAL:
        if not coerce_numbers and not all(_holds_numbers(d, name) for d in (reference, current)):
            return "numerical column holds values that are not numbers on one side"
        ref = read_numbers(reference, name, batch_rows, buffers, "reference")
        cur = read_numbers(current, name, batch_rows, buffers, "current")
        if len(ref) == 0 or len(cur) == 0:
            side = "reference" if len(ref) == 0 else "current window"
            return f"no non-missing values in the {side}"
        method, score = numerical_verdict(ref, cur, thresholds.get("wasserstein"), buffers)
        n_ref, n_cur = len(ref), len(cur)
        del ref, cur
    else:
        ref_counts = count_values(reference, name, category_key, batch_rows)
        cur_counts = count_values(current, name, category_key, batch_rows)
        method, score, n_ref, n_cur = categorical_method(ref_counts, cur_counts)
        if not method:
            side = "reference" if n_ref == 0 else "current window"
            return f"no non-missing values in the {side}"
    spec = METHODS[method]
    threshold = thresholds.get(method, spec.threshold)
    return ColumnDrift(
        column=name, kind=kind, method=method,
        score=None if score != score else float(score), threshold=threshold,
        drifted=spec.drifted(score, threshold), reference_rows=n_ref, current_rows=n_cur,
    )


def _holds_numbers(dataset: Any, column: str) -> bool:
    """Frames refuse a numerical test on bool or non-numeric columns; so does this (text
    columns count as numbers here only because the monitoring step coerces them first)."""
    import pyarrow as pa

    arrow_type = dataset.schema.field(column).type
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return not pa.types.is_boolean(arrow_type) and (
        pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type) or pa.types.is_null(arrow_type)
    )


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a Parquet file (or folder), from the footer."""
    return list(_dataset(path).schema.names)


def parquet_rows(path: str | Path) -> int:
    """The row count of a Parquet file (or folder), from the footer."""
    return int(_dataset(path).count_rows())
