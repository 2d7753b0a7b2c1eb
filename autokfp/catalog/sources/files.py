"""Reading data files (CSV, Parquet, JSON lines) wherever they are: what the folder and
object-store sources (gcs, s3) share. A file is profiled on a streamed random sample and
loaded in full on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pandas as pd

from autokfp.catalog.profiling import profile_frame
from autokfp.catalog.sources.base import (
    FORMATS,
    CrawlCache,
    DiscoveredDataset,
    bottom_k,
    describe,
    empty_error,
    failed,
    file_format,
    log,
    mixed_type_notes,
)
from autokfp.errors import DataError


def _restore_index(df: pd.DataFrame) -> pd.DataFrame:
    # A named index saved by DataFrame.to_parquet is data the writer meant to keep.
    if any(name is not None for name in df.index.names):
        return df.reset_index()
    return df


def _read_chunks(path: Path, fmt: str, encoding: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if fmt == "csv":
        with pd.read_csv(path, encoding=encoding, chunksize=chunk_rows) as reader:
            yield from reader
    elif fmt == "jsonl":
        with pd.read_json(path, lines=True, encoding=encoding, chunksize=chunk_rows) as reader:
            yield from reader
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(path)
        if handle.metadata.num_rows <= chunk_rows:
            yield _restore_index(pd.read_parquet(path))
            return
        for batch in handle.iter_batches(batch_size=chunk_rows):
            yield _restore_index(pa.Table.from_batches([batch]).to_pandas())


def _with_encoding(
    label: str, fmt: str, work: Callable[[str], pd.DataFrame | tuple], notes: list[str]
) -> tuple[str, object]:
    """Run ``work(encoding)`` as UTF-8, falling back to latin-1 for text formats."""
    from pandas.errors import EmptyDataError

    encodings = ["utf-8", "latin-1"] if fmt in ("csv", "jsonl") else ["utf-8"]
    for encoding in encodings:
        try:
            return encoding, work(encoding)
        except UnicodeDecodeError:
            if encoding == encodings[-1]:
                raise DataError(f"cannot decode '{label}' as UTF-8 or latin-1") from None
            note = f"'{label}' is not UTF-8; read it as latin-1"
            log.warning(note)
            notes.append(note)
        except EmptyDataError:
            raise empty_error(label) from None
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"cannot read '{label}' as {fmt}: {describe(exc)}; fix or re-export the file"
            ) from exc
    raise AssertionError("unreachable")


def _sample_file(
    path: Path, fmt: str, label: str, k: int, notes: list[str]
) -> tuple[pd.DataFrame, int, str]:
    encoding, result = _with_encoding(
        label, fmt, lambda enc: bottom_k(_read_chunks(path, fmt, enc, k), k), notes
    )
    sample, total = result  # type: ignore[misc]
    if total == 0:
        raise empty_error(label)
    return sample, total, encoding


def read_file(path: Path, fmt: str, label: str) -> pd.DataFrame:
    """Read a whole local file; DataError names the file and the parser's complaint."""

    def work(encoding: str) -> pd.DataFrame:
        if fmt == "csv":
            return pd.read_csv(path, encoding=encoding, low_memory=False)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, encoding=encoding)
        return _restore_index(pd.read_parquet(path))

    _, df = _with_encoding(label, fmt, work, [])
    assert isinstance(df, pd.DataFrame)
    if len(df) == 0:
        raise empty_error(label)
    return df


def discover_file(
    open_local: Callable[[], AbstractContextManager[Path]],
    label: str,
    relative: str,
    source_name: str,
    platform: str,
    k: int,
    signature: str | None = None,
    modified_at: str | None = None,
    cache: CrawlCache | None = None,
) -> DiscoveredDataset:
    dataset_id = f"{source_name}/{relative}"
    fmt = file_format(relative)
    if fmt is None:
        return failed(
            dataset_id,
            platform,
            label,
            f"'{label}' has an unsupported format; use {', '.join(sorted(FORMATS))}",
        )
    notes: list[str] = []

    def reader() -> pd.DataFrame:
        with open_local() as path:
            return read_file(path, fmt, label)

    if cache is not None:
        known = cache.lookup(dataset_id, signature, reader)
        if known is not None:
            return known
    try:
        with open_local() as path:
            sample, total, _ = _sample_file(path, fmt, label, k, notes)
        notes += mixed_type_notes(sample, label)
        schema = profile_frame(
            sample, dataset_id, platform, label, fmt=fmt, row_count=total, max_rows=k
        )
        schema.modified_at = modified_at
        item = DiscoveredDataset(schema=schema, notes=notes, signature=signature,
                                 _reader=reader)
    except Exception as exc:
        item = failed(dataset_id, platform, label, describe(exc), fmt, reader, notes)
        item.schema.modified_at = modified_at
        item.signature = signature
    if cache is not None:
        cache.store(item)
    return item

