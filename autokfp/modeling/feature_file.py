"""The training rows' features as a Parquet file, written batch by batch.

``apply_features`` works row by row, so it can run on Arrow batches of the training file:
``write_feature_file`` reads ``BATCH_ROWS`` rows at a time, applies the plan and appends the
features (and the target, as ``TARGET_COLUMN``) to a Parquet file, so the training rows are
never in pandas whole. An engine that reads files (H2O: ``h2o.import_file``, locally or on a
multi-node cluster) trains on that file; the other engines get the rows of
``read_frame_sample`` (all of them up to ``FRAME_ENGINE_MAX_ROWS``, a stated random sample
above).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.errors import SchemaError
from autokfp.modeling.features import FeaturePlan, apply_features

TARGET_COLUMN = "__target__"
BATCH_ROWS = 131_072
# engines that train on a pandas frame (AutoKeras, plugins) get at most this many training
# rows, drawn at random without replacement (the model's meta records how many)
FRAME_ENGINE_MAX_ROWS = 2_000_000


@dataclass(frozen=True)
class FeatureFile:
    """The model's features of every training row and the target, in one Parquet file."""

    path: Path
    columns: list[str]
    """The feature columns, in the plan's order (the target is ``response``)."""
    categorical: list[str]
    response: str
    rows: int

    def __len__(self) -> int:
        return self.rows

    def column_types(self) -> dict[str, str]:
        """H2O's column types: categories (and a class target) ``enum``, the rest ``real``."""
        types = {c: ("enum" if c in self.categorical else "real") for c in self.columns}
        return types


def _schema(plan: FeaturePlan) -> Any:
    import pyarrow as pa

    categorical = set(plan.categorical_features)
    fields = [pa.field(c, pa.string() if c in categorical else pa.float64())
              for c in plan.feature_columns]
    fields.append(pa.field(TARGET_COLUMN,
                           pa.float64() if plan.task == "regression" else pa.string()))
    return pa.schema(fields)


def target_values(target: pd.Series, task: str) -> pd.Series:
    """The target as the engine file holds it: text labels for classes, numbers otherwise."""
    return target.astype("float64") if task == "regression" else target.astype(str)


def iter_frames(path: str | Path, columns: list[str] | None = None,
                batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The rows of a Parquet file as pandas frames of at most ``batch_rows`` rows, typed as
    ``pd.read_parquet`` types the whole file (``catalog.batches.batch_frame``)."""
    import pyarrow.parquet as pq

    from autokfp.catalog.batches import batch_frame, file_dtypes

    dtypes = file_dtypes(path)
    with pq.ParquetFile(str(path)) as handle:
        schema = handle.schema_arrow
        if columns is not None:
            schema = schema.empty_table().select(columns).schema
        for batch in handle.iter_batches(batch_size=batch_rows, columns=columns,
                                         use_threads=False):
            yield batch_frame(batch, schema, dtypes)


def parquet_columns(path: str | Path) -> list[str]:
    """The columns ``pd.read_parquet`` gives the file (its index columns left out), read from
    the footer."""
    import pyarrow.parquet as pq

    return [str(c) for c in pq.read_schema(str(path)).empty_table().to_pandas().columns]


def predict_file(predict: Callable[[pd.DataFrame], pd.DataFrame], path: str | Path,
                 columns: list[str], batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """``predict`` of every row of the Parquet file ``path``, batch by batch, reading only
    ``columns`` (the model's input columns): the rows are never in pandas whole, only the
    predictions are (index 0..n-1, in file order)."""
    import pyarrow.parquet as pq

    parts = [predict(frame).reset_index(drop=True)
             for frame in iter_frames(path, columns, batch_rows)]
    if not parts:  # no rows: the predictions' columns, from an empty frame
        empty = pq.ParquetFile(str(path)).schema_arrow.empty_table().select(columns)
        return predict(empty.to_pandas())
    return pd.concat(parts, ignore_index=True)


def read_target(path: str | Path, plan: FeaturePlan) -> pd.Series:
    """The target column of every row of the training file (one column, read alone)."""
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(str(path), columns=[plan.target], use_threads=False)
    except (KeyError, ValueError) as exc:
        raise SchemaError(f"the training file {path} has no target column '{plan.target}' "
                          f"({exc}); train on the engineer step's training file") from None
    return column.column(0).to_pandas().rename(plan.target)


def write_feature_file(source: str | Path, plan: FeaturePlan, dest: str | Path,
                       batch_rows: int = BATCH_ROWS) -> FeatureFile:
    """Apply ``plan`` to the rows of the Parquet file ``source`` in batches of ``batch_rows``
    and write the features and the target (``TARGET_COLUMN``) as the Parquet file ``dest``.

    Holds one batch at a time. ``dest`` appears whole or not at all (written beside it,
    then renamed).

    A missing target value is written as is (the engine rejects it: ``read_target`` first).

    Raises:
        SchemaError: ``source`` lacks a column the plan reads (named).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest = Path(dest)
    schema = _schema(plan)
    part = dest.with_name(f".{dest.name}.part")
    rows = 0
    writer = None
    try:
        with pq.ParquetFile(str(source)) as handle:
            stored = set(handle.schema_arrow.names)
            missing = [c for c in [*plan.input_columns, plan.target] if c not in stored]
            if missing:
                raise SchemaError(f"the training file {source} lacks column(s) {missing} that "
                                  "the feature plan reads; train on the engineer step's files")
            writer = pq.ParquetWriter(str(part), schema)
            for batch in handle.iter_batches(batch_size=batch_rows,
                                             columns=[*plan.input_columns, plan.target],
                                             use_threads=False):
                frame = batch.to_pandas()
                target = frame[plan.target]
                features = apply_features(frame, plan)
                features[TARGET_COLUMN] = target_values(target, plan.task).to_numpy()
                writer.write_table(pa.Table.from_pandas(features, schema=schema,
                                                        preserve_index=False))
                rows += len(frame)
                del frame, features, target
        writer.close()
        writer = None
        os.replace(part, dest)
    finally:
        if writer is not None:
            writer.close()
        part.unlink(missing_ok=True)
    return FeatureFile(path=dest, columns=list(plan.feature_columns),
                       categorical=list(plan.categorical_features), response=TARGET_COLUMN,
                       rows=rows)


def read_frame_sample(path: str | Path, plan: FeaturePlan, max_rows: int = FRAME_ENGINE_MAX_ROWS,
                      seed: int = 0) -> tuple[pd.DataFrame, int]:
    """The training rows for an engine that trains on a pandas frame, and how many the file
    has: every row up to ``max_rows``, else ``max_rows`` rows drawn at random without
    replacement (in file order), read batch by batch. Only the plan's input columns and the
    target are read."""
    import pyarrow.parquet as pq

    columns = [*plan.input_columns, plan.target]
    with pq.ParquetFile(str(path)) as handle:
        total = handle.metadata.num_rows
    if total <= max_rows:
        return pd.read_parquet(str(path), columns=columns), total
    keep = np.zeros(total, dtype=bool)
    keep[sampled_positions(total, max_rows, seed)] = True
    pieces = []
    start = 0
    for frame in iter_frames(path, columns):
        chosen = keep[start:start + len(frame)]
        pieces.append(frame[chosen])
        start += len(frame)
    return pd.concat(pieces, ignore_index=True), total


def sampled_positions(total: int, max_rows: int = FRAME_ENGINE_MAX_ROWS,
                      seed: int = 0) -> np.ndarray:
    """The file positions of the rows ``read_frame_sample`` reads, in file order (all of them
    up to ``max_rows``): an engine's positions in the sample map back to the file's through
    them, so engines that read the whole file (H2O) and a sample (AutoKeras) name the same
    rows alike (selection pools their out-of-sample rows by position)."""
    if total <= max_rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))


class TestRows:
    """Rows to score (the test rows), as a pandas frame or a Parquet file read a batch at a
    time: the target column is held whole, the other columns only a batch at a time while
    a model scores them, and the few rows robustness checks perturb are drawn on demand."""

    __test__ = False  # not a pytest class

    def __init__(self, frame: pd.DataFrame | None = None, path: str | Path | None = None,
                 batch_rows: int = BATCH_ROWS) -> None:
        if (frame is None) == (path is None):
            raise ValueError("TestRows takes a frame or a path")
        self.frame = frame
        self.path = None if path is None else Path(path)
        self.batch_rows = batch_rows
        self.columns = (list(frame.columns) if frame is not None
                        else parquet_columns(str(path)))
        self._rows: int | None = len(frame) if frame is not None else None

    def __len__(self) -> int:
        if self._rows is None:
            import pyarrow.parquet as pq

            self._rows = pq.ParquetFile(str(self.path)).metadata.num_rows
        return self._rows

    def column(self, name: str) -> pd.Series:
        """One column of every row (the target), index 0..n-1."""
        if self.frame is not None:
            return self.frame[name]
        return pd.read_parquet(str(self.path), columns=[name])[name]

    def predict(self, predict: Callable[[pd.DataFrame], pd.DataFrame],
                without: str) -> pd.DataFrame:
        """``predict`` of the rows without the column ``without`` (the target); a file batch
        by batch (``predict_file``)."""
        if self.frame is not None:
            return predict(self.frame.drop(columns=[without]))
        return predict_file(predict, str(self.path), [c for c in self.columns if c != without],
                            self.batch_rows)

    def sample(self, rows: int, seed: int, without: str) -> pd.DataFrame:
        """The rows (without ``without``) that ``DataFrame.sample(min(rows, n),
        random_state=seed)`` draws from the whole frame, in its order, index 0..k-1."""
        inputs = [c for c in self.columns if c != without]
        if self.frame is not None:
            frame = self.frame[inputs]
            return frame.sample(min(rows, len(frame)), random_state=seed).reset_index(drop=True)
        return sample_file(self.path, inputs, rows, seed, self.batch_rows)  # type: ignore[arg-type]


def sample_file(path: str | Path, columns: list[str], rows: int, seed: int,
                batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """The rows of the Parquet file ``path`` (``columns`` only) that ``DataFrame.sample(
    min(rows, n), random_state=seed)`` draws from the whole file read by ``pd.read_parquet``,
    in the draw's order, index 0..k-1. Read a batch at a time; a row group without a drawn
    row is not read at all."""
    import pyarrow.parquet as pq

    from autokfp.catalog.batches import file_dtypes

    dtypes = file_dtypes(path)  # once: it reads every row group's statistics
    with pq.ParquetFile(str(path)) as handle:
        schema = handle.schema_arrow.empty_table().select(columns).schema
        total = handle.metadata.num_rows
        # pandas draws with RandomState(seed).choice(n, k, replace=False)
        positions = np.random.RandomState(seed).choice(total, size=min(rows, total),
                                                       replace=False)
        order = np.argsort(positions, kind="stable")
        wanted = positions[order]
        pieces, start = [], 0
        for group in range(handle.num_row_groups):
            size = handle.metadata.row_group(group).num_rows
            lo, hi = np.searchsorted(wanted, [start, start + size])
            if hi > lo:
                offset = start
                for frame in _group_frames(handle, group, columns, schema, dtypes,
                                           batch_rows):
                    a, b = np.searchsorted(wanted, [offset, offset + len(frame)])
                    if b > a:
                        pieces.append(frame.iloc[wanted[a:b] - offset])
                    offset += len(frame)
            start += size
    if not pieces:
        return _empty(path, columns)
    drawn = pd.concat(pieces, ignore_index=True)
    # back from file order to the order of the draw
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    return drawn.iloc[restore].reset_index(drop=True)


def head_file(path: str | Path, columns: list[str], rows: int,
              batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """The first ``rows`` rows of the Parquet file ``path`` (``columns`` only), as
    ``pd.read_parquet(path).head(rows)`` gives them, index 0..k-1: only the batches
    that hold them are read."""
    pieces: list[pd.DataFrame] = []
    held = 0
    if rows > 0:
        for frame in iter_frames(path, columns, min(batch_rows, rows)):
            pieces.append(frame.iloc[:rows - held])
            held += len(pieces[-1])
            if held >= rows:
                break
    if not pieces:
        return _empty(path, columns)
    return pd.concat(pieces, ignore_index=True)


def _empty(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """No rows, with the columns and dtypes ``pd.read_parquet`` gives the file's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.catalog.batches import batch_frame, file_dtypes

    schema = pq.read_schema(str(path)).empty_table().select(columns).schema
    batch = pa.record_batch([pa.array([], type=f.type) for f in schema], schema=schema)
    return batch_frame(batch, schema, file_dtypes(path))


def _group_frames(handle: Any, group: int, columns: list[str], schema: Any,
                  dtypes: dict[str, Any], batch_rows: int) -> Iterator[pd.DataFrame]:
    """One row group's rows as frames of at most ``batch_rows`` rows, typed as
    ``iter_frames`` types them (``schema``: the columns' Arrow schema; ``dtypes``:
    ``file_dtypes`` of the file)."""
    from autokfp.catalog.batches import batch_frame

    for batch in handle.iter_batches(batch_size=batch_rows, row_groups=[group],
                                     columns=columns, use_threads=False):
        yield batch_frame(batch, schema, dtypes)
