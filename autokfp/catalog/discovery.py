"""Discovery: crawl folders, gs:// prefixes and SQL databases into profiled dataset schemas.

Each file or table becomes one ``DiscoveredDataset`` whose id is ``<source name>/<relative
path or table>``. A dataset (or whole source) that cannot be read is reported with an
``error`` and the crawl goes on, so one bad export never hides the good ones.

Large inputs are profiled on a uniform random sample of at most ``sample_rows`` rows that
is drawn while streaming (chunks are read, each row gets a random key and the rows with
the smallest keys are kept), so memory stays bounded while the row count stays exact.

A re-crawl reuses what is known: with a ``CrawlCache``, a file whose size and modification
time (an object whose generation and size, a table whose row count and declared columns)
are unchanged is not read again; its schema (or error) comes from the cache.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autokfp.catalog.profiling import DEFAULT_MAX_ROWS, profile_frame
from autokfp.catalog.schema import DatasetSchema
from autokfp.catalog.sources import CrawlCache, DiscoveredDataset, open_source
from autokfp.catalog.sources import Source as SourceReader
from autokfp.catalog.sources.base import file_format, mixed_type_notes
from autokfp.catalog.sources.sql import masked_url, preload_sql, sql_platform
from autokfp.catalog.workers import Pending, ReadPool
from autokfp.config import FolderSource, GcsSource, RunConfig, S3Source, SqlSource
from autokfp.errors import DataError

log = logging.getLogger(__name__)

# A source's config model (the readers live in autokfp.catalog.sources).
Source = FolderSource | GcsSource | S3Source | SqlSource

__all__ = ["CrawlCache", "DiscoveredDataset", "Source", "discover", "file_format", "iter_discover",
           "list_datasets", "load_dataset", "masked_url", "mixed_type_notes", "sql_platform"]


def discover(
    sources: Iterable[Source], sample_rows: int = DEFAULT_MAX_ROWS,
    cache: CrawlCache | None = None,
    naming: dict[str, tuple[str | None, str | None]] | None = None,
) -> list[DiscoveredDataset]:
    """Crawl every source and profile each file or table found.

    Args:
        sources: ``FolderSource``, ``GcsSource`` and ``SqlSource`` models from the run config.
        sample_rows: profile at most this many rows per dataset (row counts stay exact).
        cache: results of earlier crawls; inputs whose signature is unchanged are not read
            again (``item.reused``), and the cache is updated with what was read.
        naming: filled with ``{source name: (database, schema)}`` of each SQL source the
            crawl connected to (the names DataHub's source gives its tables).

    Returns:
        One ``DiscoveredDataset`` per file/table, in source order then path order; a
        dataset or source that failed carries ``error`` (with an empty schema) instead of
        stopping the crawl.

    Example:
        >>> found = discover(config.sources)
        >>> [d.dataset_id for d in found if d.ok]
        ['files/customers.parquet', 'warehouse/orders']
    """
    found = list(iter_discover(sources, sample_rows, cache, naming))
    ok = sum(d.ok for d in found)
    log.info("discovery found %d dataset(s), %d failed", ok, len(found) - ok)
    return found


def iter_discover(
    sources: Iterable[Source], sample_rows: int = DEFAULT_MAX_ROWS,
    cache: CrawlCache | None = None,
    naming: dict[str, tuple[str | None, str | None]] | None = None,
    workers: int = 1,
) -> Generator[DiscoveredDataset, None, None]:
    """``discover``, one dataset at a time: each is yielded as its source profiles it, so a
    caller that keeps none holds one dataset whatever the count (the crawl of a bucket of
    100,000 objects). ``naming`` gets a SQL source's names once that source is done.

    ``workers`` above 1: datasets are read and profiled by that many worker processes
    (``catalog.workers``: see ``catalog.workers.ReadPool``), at most a window of them in
    flight, and yielded in the same order with the same content as with one process. Close
    the iterator (``contextlib.closing``) to stop the workers when it is left early."""
    if workers <= 1:
        for source in sources:
            reader = open_source(source)
            for item in reader.discover(sample_rows, cache):
                assert isinstance(item, DiscoveredDataset)  # no pool: read here
                if not item.source_failed:
                    _name(reader, item.schema)
                yield item
            known = getattr(reader, "known_naming", None)
            if naming is not None and known is not None:
                naming[source.name] = known
        return
    sources = list(sources)
    sql_sources = [s for s in sources if isinstance(s, SqlSource)]
    with ReadPool(workers, preload=lambda: [preload_sql(s) for s in sql_sources]) as pool:
        # (source reader, dataset or Pending) in the sources' order, resolved from the left
        waiting: deque[tuple[SourceReader, DiscoveredDataset | Pending]] = deque()
        for source in sources:
            reader = open_source(source)
            for got in reader.discover(sample_rows, cache, pool=pool):
                waiting.append((reader, got))
                while waiting and (len(waiting) > pool.window or not isinstance(
                        waiting[0][1], Pending) or pool.done(waiting[0][1])):
                    yield _resolved(pool, *waiting.popleft())
            known = getattr(reader, "known_naming", None)
            if naming is not None and known is not None:
                naming[source.name] = known
        while waiting:
            yield _resolved(pool, *waiting.popleft())


def _resolved(pool: ReadPool, reader: SourceReader,
              got: DiscoveredDataset | Pending) -> DiscoveredDataset:
    item = pool.resolve(got) if isinstance(got, Pending) else got
    if not item.source_failed:
        _name(reader, item.schema)
    return item


def _name(reader: SourceReader, schema: DatasetSchema) -> None:
    """Give a schema its DataHub URN; a source that cannot name it leaves the old form."""
    try:
        schema.urn = reader.urn(schema.dataset_id.split("/", 1)[1])
    except Exception as exc:  # naming must never fail a crawl that read the data
        log.warning("cannot name %s as DataHub does: %s", schema.dataset_id, exc)


def finish_schema(config: RunConfig, reader: SourceReader, schema: DatasetSchema) -> None:
    """What every loaded or copied dataset's schema gets: its DataHub URN and, for the run's
    training dataset, the ``target`` tag on the target column."""
    _name(reader, schema)
    if (schema.dataset_id == config.training.dataset
            and config.training.target in schema.column_names):
        target = schema.column(config.training.target)
        if "target" not in target.tags:
            target.tags.append("target")


@dataclass(frozen=True)
class LocalFile:
    """A file the streamed copies read: a file of a folder source, or an object of a bucket
    downloaded to a local temporary file (``object_file``), and how ``load_dataset`` names
    where it came from (``platform`` and ``location``)."""

    source: Source
    path: Path
    platform: str = "file"
    location: str = ""


def folder_file(config: RunConfig, dataset_id: str, fmt: str,
                local: LocalFile | None = None) -> LocalFile | None:
    """The file of ``dataset_id`` when it names a file of format ``fmt`` inside a folder
    source, or is the bucket object ``local`` holds (what the streamed copies take); else
    None."""
    source_name, _, relative = dataset_id.partition("/")
    if file_format(relative) != fmt:
        return None
    if local is not None:
        return local
    source = next((s for s in config.sources if s.name == source_name), None)
    if not isinstance(source, FolderSource):
        return None
    root = Path(source.path).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return LocalFile(source, path, "file", str(path))


@contextmanager
def object_file(config: RunConfig, dataset_id: str) -> Iterator[LocalFile | None]:
    """An object of a gcs or s3 source downloaded to a local temporary file (written to disk
    as it arrives, never whole in memory) for the streamed copies; None for any other
    dataset, or an object that is not there (``load_dataset`` then says so)."""
    from autokfp import storage

    source_name, _, relative = dataset_id.partition("/")
    source = next((s for s in config.sources if s.name == source_name), None)
    if not isinstance(source, (GcsSource, S3Source)) or file_format(relative) is None:
        yield None
        return
    reader = open_source(source)
    uri = storage.join(source.uri, relative)
    try:
        present = storage.exists(uri)
    except Exception as exc:  # noqa: BLE001 - load_dataset reports it
        log.debug("cannot check %s: %s", uri, exc)
        present = False
    if not present:
        yield None
        return
    with storage.local_copy(uri) as path:
        yield LocalFile(source, path, reader.platform, uri)


def list_datasets(source: Source) -> list[str]:
    """The dataset ids a source holds, without reading or profiling any data."""
    reader = open_source(source)
    return [f"{source.name}/{rel}" for rel in reader.list_datasets()]


def _check_folder(source: object, index: int, dataset_id: str, training: bool) -> None:
    """A folder source's folder that does not exist, when a dataset is read from it: one
    error naming the folder and its key in the config (not a listing that says the source
    has no datasets)."""
    if not isinstance(source, FolderSource) or Path(source.path).is_dir():
        return
    needed = f"training.dataset '{dataset_id}'" if training else f"dataset '{dataset_id}'"
    raise DataError(
        f"folder '{source.path}' does not exist: it is sources[{index}].path (source "
        f"'{source.name}') in the config, and {needed} is read from it. Fix that path "
        "(a relative path is relative to the config file) or create the folder")


def load_dataset(
    config: RunConfig, dataset_id: str | None = None, sample_rows: int = DEFAULT_MAX_ROWS
) -> tuple[pd.DataFrame, DatasetSchema]:
    """Load one dataset in full and profile it.

    Args:
        config: the run configuration (its sources).
        dataset_id: ``<source name>/<table or relative path>``; default
            ``config.training.dataset``.
        sample_rows: profile at most this many rows (the data returned is complete).

    Returns:
        The data and its schema; the training target column is tagged ``target``.

    Raises:
        DataError: the dataset does not exist (the message lists the ones that do), has
            no rows, or cannot be parsed (the message names the file and the parser error).
    """
    dataset_id = dataset_id or config.training.dataset
    source_name, _, relative = dataset_id.partition("/")
    names = [s.name for s in config.sources]
    if source_name not in names or not relative:
        raise DataError(
            f"dataset '{dataset_id}' must be '<source name>/<table or file>' with a source "
            f"from the config ({', '.join(names)})"
        )
    source = config.source(source_name)
    _check_folder(source, names.index(source_name), dataset_id,
                  dataset_id == config.training.dataset)
    reader = open_source(source)
    df, platform, location, fmt = reader.load(dataset_id, relative)
    schema = profile_frame(
        df, dataset_id, platform, location, fmt=fmt, row_count=len(df), max_rows=sample_rows
    )
    finish_schema(config, reader, schema)
    log.info("loaded %s: %d rows x %d columns", dataset_id, len(df), len(df.columns))
    return df, schema


def copy_parquet_dataset(config: RunConfig, dataset_id: str, out_path: str,
                         sample_rows: int = DEFAULT_MAX_ROWS,
                         local: LocalFile | None = None) -> DatasetSchema | None:
    """``load_dataset`` for a Parquet file of a folder source (or a bucket object downloaded
    to ``local``: ``object_file``), without reading it whole.

    The file is copied to ``out_path`` in Arrow batches (its columns and Arrow types kept,
    so ``pd.read_parquet`` reads the copy as it reads the original) and profiled on a
    uniform sample of at most ``sample_rows`` rows drawn during the copy (a smaller file is
    profiled whole, exactly as ``load_dataset`` does): one pass over the file. Returns
    None, writing nothing, for any other dataset, and for a file that keeps a pandas index
    or cannot be read: the caller loads those with ``load_dataset``, whose errors name the
    problem.
    """
    import os

    import pyarrow.parquet as pq

    from autokfp.catalog.batches import BATCH_ROWS, RowSampler

    found = folder_file(config, dataset_id, "parquet", local)
    if found is None:
        return None
    source, path = found.source, found.path
    try:
        handle = pq.ParquetFile(path)
        pandas_meta = handle.schema_arrow.pandas_metadata or {}
    except Exception as exc:  # noqa: BLE001 - load_dataset reports it
        log.debug("streamed copy of %s not possible: %s", dataset_id, exc)
        return None
    if handle.metadata.num_rows == 0 or any(
            isinstance(c, str) for c in pandas_meta.get("index_columns", [])):
        return None  # empty (load_dataset says so) or an index load_dataset restores
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    sampler = RowSampler(handle.metadata.num_rows, sample_rows)  # drawn during the copy
    try:
        with pq.ParquetWriter(str(temp), handle.schema_arrow) as writer:
            for batch in handle.iter_batches(batch_size=BATCH_ROWS):
                writer.write_batch(batch)
                sampler.add(batch)
        schema = profile_frame(sampler.frame(handle.schema_arrow, path), dataset_id,
                               found.platform, found.location, fmt="parquet",
                               row_count=handle.metadata.num_rows, max_rows=sample_rows)
        del sampler
        finish_schema(config, open_source(source), schema)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    log.info("copied %s in batches: %d rows x %d columns", dataset_id, schema.row_count,
             len(schema.columns))
    return schema
