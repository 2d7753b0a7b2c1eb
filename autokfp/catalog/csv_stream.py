"""A CSV file of a folder source copied to Parquet in Arrow batches, never whole in memory.

``copy_csv_dataset`` is ``load_dataset`` for a CSV training file, streamed: the file is
parsed block by block (``pyarrow.csv.open_csv``) straight into a Parquet file, which is then
profiled on a uniform sample drawn batch by batch. Arrow is held to what ``pd.read_csv``
makes of the file: the same missing-value spellings and booleans, no dates parsed (pandas
keeps them as text). Whenever it cannot promise the same columns (a delimiter or header
pandas would rename, a value a later block cannot convert to the type the first block
inferred, text that is not UTF-8), nothing is written and None is returned: the caller
loads the file whole as before.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autokfp.catalog.profiling import DEFAULT_MAX_ROWS, profile_frame
from autokfp.catalog.schema import DatasetSchema
from autokfp.config import RunConfig

if TYPE_CHECKING:
    from autokfp.catalog.discovery import LocalFile

log = logging.getLogger(__name__)

BLOCK_BYTES = 4 << 20  # Arrow reads ahead: ~40 MB held with 1 MB blocks, ~130 MB with 4 MB
# pandas' default missing-value spellings (pandas.io.parsers: STR_NA_VALUES)
PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
PANDAS_TRUE = ["True", "TRUE", "true"]
PANDAS_FALSE = ["False", "FALSE", "false"]


def _options(sep: str, block_bytes: int, column_types: dict[str, Any] | None = None) -> Any:
    import pyarrow.csv as pcsv

    return dict(
        read_options=pcsv.ReadOptions(block_size=block_bytes, encoding="utf8"),
        parse_options=pcsv.ParseOptions(delimiter=sep),
        convert_options=pcsv.ConvertOptions(
            null_values=PANDAS_NA, true_values=PANDAS_TRUE, false_values=PANDAS_FALSE,
            strings_can_be_null=True, quoted_strings_can_be_null=True, timestamp_parsers=[],
            column_types=column_types or {}))


def _pandas_like_types(schema: Any) -> dict[str, Any] | None:
    """Column types that make Arrow read what pandas reads: dates and times as text. None
    when a column is typed in a way pandas would not (then the copy is not streamed)."""
    import pyarrow as pa

    overrides: dict[str, Any] = {}
    for field in schema:
        kind = field.type
        if pa.types.is_temporal(kind):
            overrides[field.name] = pa.string()
        elif pa.types.is_null(kind):
            # a first block without a value: pandas gives float64 when the whole column is
            # empty, else whatever the later rows are; Arrow would fix null type here
            return None
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                  or pa.types.is_boolean(kind) or pa.types.is_string(kind)
                  or pa.types.is_large_string(kind)):
            return None
    return overrides


def copy_csv_dataset(config: RunConfig, dataset_id: str, out_path: str,
                     sample_rows: int = DEFAULT_MAX_ROWS, block_bytes: int = BLOCK_BYTES,
                     changes: list[str] | None = None,
                     local: LocalFile | None = None) -> DatasetSchema | None:
    """``load_dataset`` for a CSV file of a folder source (or a bucket object downloaded to
    ``local``: ``discovery.object_file``), without reading it whole (see the module); None, writing nothing, for any other dataset or a file it cannot promise to
    read as ``pd.read_csv`` does. What reading it changed (the delimiter found) is appended
    to ``changes``, as ``load_dataset`` records it in the frame's ``DATA_CHANGES``."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from autokfp.catalog.batches import RowSampler
    from autokfp.catalog.discovery import finish_schema, folder_file, open_source
    from autokfp.catalog.sources.files import csv_layout

    found = folder_file(config, dataset_id, "csv", local)
    if found is None:
        return None
    source, path = found.source, found.path
    try:
        sep, notes = csv_layout(path, "utf-8", found.location)
        if any("repeats column names" in note for note in notes):
            return None  # pandas renames the repeats (x1, x1.1): read it whole
        with pcsv.open_csv(path, **_options(sep, block_bytes)) as probe:
            overrides = _pandas_like_types(probe.schema)
    except Exception as exc:  # noqa: BLE001 - load_dataset reads (and reports) it
        log.debug("streamed copy of %s not possible: %s", dataset_id, exc)
        return None
    if overrides is None:
        return None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    try:
        rows = 0
        with pcsv.open_csv(path, **_options(sep, block_bytes, overrides)) as reader, \
                pq.ParquetWriter(str(temp), reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        if rows == 0:
            return None  # load_dataset names an empty file
        handle = pq.ParquetFile(temp)
        sampler = RowSampler(rows, sample_rows)
        for group in range(handle.num_row_groups):  # one per block: memory stays a block's
            for batch in handle.read_row_group(group).to_batches():
                sampler.add(batch)
        # typed as pd.read_parquet types the whole file (an int column with a missing value
        # in another block is float64, as pd.read_csv makes it)
        schema = profile_frame(sampler.frame(handle.schema_arrow, temp), dataset_id,
                               found.platform, found.location, fmt="csv", row_count=rows,
                               max_rows=sample_rows)
        del sampler
        finish_schema(config, open_source(source), schema)
        os.replace(temp, out)
        if changes is not None:
            changes.extend(notes)
    except Exception as exc:  # noqa: BLE001 - a later block pandas would read differently
        log.info("%s is read whole: its streamed copy stopped (%s: %s)", dataset_id,
                 type(exc).__name__, str(exc)[:200])
        return None
    finally:
        temp.unlink(missing_ok=True)
    log.info("copied %s in batches: %d rows x %d columns", dataset_id, schema.row_count,
             len(schema.columns))
    return schema
