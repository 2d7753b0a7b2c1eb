"""Parquet read in Arrow batches, typed as pandas reads the whole file: for steps whose table
must never be in memory whole (the split, the quality gate, samples for plans and summaries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BATCH_ROWS = 1 << 18


def file_dtypes(path: str | Path) -> dict[str, Any]:
    """The pandas dtype ``pd.read_parquet`` gives each integer or boolean column of the whole
    file, where a single batch can differ: without pandas' own dtype in the file's metadata,
    a column with a missing value anywhere is float64 (integers) or object (booleans), also
    in the batches without one. Read from the footer's null counts (a column without them
    is counted)."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(str(path))
    schema = handle.schema_arrow
    plain = schema.empty_table().to_pandas().dtypes  # what a batch without a missing value gets
    wanted = {str(name): ("float64" if dtype.kind in "iu" else object)
              for name, dtype in plain.items()
              if isinstance(dtype, np.dtype) and dtype.kind in "iub"}
    meta = handle.metadata
    columns = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    dtypes: dict[str, Any] = {}
    for name, widened in wanted.items():
        index = columns.get(name)
        nulls = 0
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics if index is not None else None
            if stats is None or not stats.has_null_count:
                nulls = handle.read(columns=[name]).column(0).null_count
                break
            nulls += stats.null_count
        if nulls:
            dtypes[name] = widened
    return dtypes


def batch_frame(batch: Any, schema: Any, dtypes: dict[str, Any]) -> pd.DataFrame:
    """One Arrow batch as pandas, typed as the whole file would be (``file_dtypes``)."""
    import pyarrow as pa

    frame = pa.Table.from_batches([batch], schema=schema).to_pandas()
    for name, dtype in dtypes.items():
        if name in frame.columns and frame[name].dtype != dtype:
            frame[name] = frame[name].astype(dtype)
    return frame


def sample_rows(
    path: str | Path, columns: list[str], rows: int, seed: int = 0,
    batch_rows: int = BATCH_ROWS,
) -> pd.DataFrame:
    """At most ``rows`` rows drawn uniformly without replacement, read batch by batch (with
    the dtypes ``pd.read_parquet`` gives the whole file, ``file_dtypes``)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet")
    total = dataset.count_rows()
    present = [c for c in columns if c in dataset.schema.names]
    if total <= rows:
        return dataset.to_table(columns=present).to_pandas()

    chosen = np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))
    parts, start = [], 0
    for batch in dataset.to_batches(columns=present, batch_size=batch_rows, use_threads=False):
        stop = start + batch.num_rows
        lo, hi = np.searchsorted(chosen, [start, stop])
        if hi > lo:
            parts.append(batch.take(chosen[lo:hi] - start))
        start = stop
    # joined as Arrow and converted once, with the file's pandas metadata (dtypes, categories)
    schema = pa.schema([dataset.schema.field(c) for c in present],
                       metadata=dataset.schema.metadata)
    sample = pa.Table.from_batches(parts, schema=schema).to_pandas()
    if Path(path).is_file():
        for name, dtype in file_dtypes(path).items():
            if name in sample.columns and sample[name].dtype != dtype:
                sample[name] = sample[name].astype(dtype)
    return sample


