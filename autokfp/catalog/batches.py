"""Parquet read in Arrow batches, typed as pandas reads the whole file: for steps whose table
must never be in memory whole (the split, the quality gate, samples for plans and summaries)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    # what a batch without a missing value gets (one thread: see RowSampler.frame)
    plain = schema.empty_table().to_pandas(use_threads=False).dtypes
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


class RowSampler:
    """At most ``rows`` of a file's ``total`` rows, drawn uniformly without replacement while
    its batches stream past (``add`` each batch in file order), so a pass that reads the
    file anyway (a copy) also draws the sample."""

    def __init__(self, total: int, rows: int, seed: int = 0) -> None:
        self.chosen = (None if total <= rows else
                       np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False)))
        self.parts: list[Any] = []
        self.start = 0

    def add(self, batch: Any) -> None:
        stop = self.start + batch.num_rows
        if self.chosen is None:
            self.parts.append(batch)
        else:
            lo, hi = np.searchsorted(self.chosen, [self.start, stop])
            if hi > lo:
                self.parts.append(batch.take(self.chosen[lo:hi] - self.start))
        self.start = stop

    def frame(self, schema: Any, path: str | Path | None = None) -> pd.DataFrame:
        """The sample as pandas: joined as Arrow and converted once, with the file's pandas
        metadata (``schema``'s), and the dtypes ``pd.read_parquet`` gives the whole file."""
        import pyarrow as pa

        # one thread (a sample is small): Arrow's pool, started by a threaded conversion,
        # would stay in this process, and a local task that runs one starts its children
        # (Evidently's) as new interpreters rather than forks (lifeline.fork_wanted)
        sample = pa.Table.from_batches(self.parts, schema=schema).to_pandas(use_threads=False)
        if self.chosen is not None and path is not None and Path(path).is_file():
            for name, dtype in file_dtypes(path).items():
                if name in sample.columns and sample[name].dtype != dtype:
                    sample[name] = sample[name].astype(dtype)
        return sample


class ParquetFileScan:
    """One Parquet file read as ``pyarrow.dataset`` would read it (``schema``,
    ``count_rows``, ``to_batches``, ``to_table``), but synchronously with
    ``pyarrow.parquet.ParquetFile``: no Arrow I/O thread is left holding a scan.

    Why not ``pyarrow.dataset`` for a single file: a dataset scan's batch generator is
    driven by Arrow's I/O thread pool, and an abandoned or finished generator chain can be
    released on one of those threads while the interpreter shuts down; releasing it needs
    the GIL, the thread is unwound through a ``noexcept`` frame, and the process dies in
    ``std::terminate`` ("terminate called without an active exception") after the step's
    work was done. Seen as a core dump of the profile step (1 in 16-30 runs under load),
    and as a red test in CI. A folder of parts is read part by part with it too
    (``autokfp.serving.parts``); ``parquet_scan`` still gives ``pyarrow.dataset`` for a
    local folder.

    Each ``to_batches`` opens the file anew, so threads may each stream a column at once.
    ``dictionary_columns`` are read as dictionaries (their codes are counted, not hashed).
    ``filesystem`` (a ``pyarrow.fs`` filesystem, e.g. S3 through s3fs) reads ``path`` in it
    instead of on the local disk; ``open_file`` (a function giving a new seekable binary
    file object each call) reads what it opens instead, for a store read through its own
    Python client (a GCS object through google-cloud-storage).
    """

    def __init__(self, path: str | Path, dictionary_columns: list[str] | None = None,
                 filesystem: Any = None, open_file: Callable[[], Any] | None = None) -> None:
        self.path = str(path)
        self._dictionary = list(dictionary_columns or []) or None
        self._filesystem = filesystem
        self._open_file = open_file
        with self._open() as handle:
            self.schema = handle.schema_arrow
            self._rows = int(handle.metadata.num_rows)

    def count_rows(self) -> int:
        return self._rows

    @contextmanager
    def _open(self) -> Iterator[Any]:
        import pyarrow.parquet as pq

        if self._open_file is None:
            with pq.ParquetFile(self.path, read_dictionary=self._dictionary,
                                filesystem=self._filesystem) as handle:
                yield handle
            return
        with self._open_file() as source, pq.ParquetFile(
                source, read_dictionary=self._dictionary) as handle:
            yield handle

    def to_batches(self, columns: list[str] | None = None, batch_size: int = BATCH_ROWS,
                   use_threads: bool = False) -> Iterator[Any]:
        with self._open() as handle:
            yield from handle.iter_batches(batch_size=batch_size, columns=columns,
                                           use_threads=use_threads)

    def to_table(self, columns: list[str] | None = None) -> Any:
        with self._open() as handle:
            return handle.read(columns=columns, use_threads=False)


def parquet_scan(path: str | Path, dictionary_columns: list[str] | None = None) -> Any:
    """A Parquet file (``ParquetFileScan``) or a folder of parts (``pyarrow.dataset``),
    read through the same few calls; ``dictionary_columns`` read as dictionaries."""
    if not Path(path).is_dir():
        return ParquetFileScan(path, dictionary_columns)
    import pyarrow.dataset as ds

    if not dictionary_columns:
        return ds.dataset(str(path), format="parquet")
    options = ds.ParquetReadOptions(dictionary_columns=list(dictionary_columns))
    return ds.dataset(str(path), format=ds.ParquetFileFormat(read_options=options))


def sample_rows(
    path: str | Path, columns: list[str], rows: int, seed: int = 0,
    batch_rows: int = BATCH_ROWS,
) -> pd.DataFrame:
    """At most ``rows`` rows drawn uniformly without replacement, read batch by batch (with
    the dtypes ``pd.read_parquet`` gives the whole file, ``file_dtypes``)."""
    import pyarrow as pa

    dataset = parquet_scan(path)
    total = dataset.count_rows()
    present = [c for c in columns if c in dataset.schema.names]
    if total <= rows:
        return dataset.to_table(columns=present).to_pandas(use_threads=False)  # as frame()
    sampler = RowSampler(total, rows, seed)
    for batch in dataset.to_batches(columns=present, batch_size=batch_rows, use_threads=False):
        sampler.add(batch)
    schema = pa.schema([dataset.schema.field(c) for c in present],
                       metadata=dataset.schema.metadata)
    return sampler.frame(schema, path)
