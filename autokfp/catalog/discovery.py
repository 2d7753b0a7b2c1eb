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

import fnmatch
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.catalog.profiling import DEFAULT_MAX_ROWS, parse_datetime_text, profile_frame
from autokfp.catalog.schema import DatasetSchema
from autokfp.config import FolderSource, GcsSource, RunConfig, SqlSource, expand_env
from autokfp.errors import AutokfpError, ConfigError, DataError

log = logging.getLogger(__name__)

Source = FolderSource | GcsSource | SqlSource

FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SEED = 0
_MAX_LISTED = 25


@dataclass
class DiscoveredDataset:
    """One discovered file or table: its schema, or the error that stopped profiling it."""

    schema: DatasetSchema
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    # what identifies this version of the input (size + mtime, generation, row count +
    # columns); None when it could not be told
    signature: str | None = None
    reused: bool = False  # the schema came from the crawl cache, the data was not read
    _reader: Callable[[], pd.DataFrame] | None = field(default=None, repr=False, compare=False)

    @property
    def dataset_id(self) -> str:
        return self.schema.dataset_id

    @property
    def source_name(self) -> str:
        return self.dataset_id.split("/", 1)[0]

    @property
    def source_failed(self) -> bool:
        """The whole source failed (it could not be listed or reached)."""
        return "/" not in self.dataset_id

    @property
    def ok(self) -> bool:
        return self.error is None

    def load(self) -> pd.DataFrame:
        """Read the FULL data (discovery only profiled a sample).

        Raises:
            DataError: the dataset cannot be read or has no rows.
        """
        if self._reader is None:
            raise DataError(f"dataset '{self.dataset_id}' cannot be loaded: {self.error}")
        return self._reader()


class CrawlCache:
    """What earlier crawls learnt: per dataset, the input's signature and its schema or error.

    ``entries`` is plain JSON (``{dataset_id: {"signature", "schema", "error", "notes"}}``)
    so the catalog can keep it in the artifact store between runs.
    """

    def __init__(self, entries: dict[str, dict[str, Any]] | None = None):
        self.entries: dict[str, dict[str, Any]] = dict(entries or {})
        self.hits = 0
        self.misses = 0

    def lookup(self, dataset_id: str, signature: str | None,
               reader: Callable[[], pd.DataFrame] | None) -> DiscoveredDataset | None:
        """The cached result for ``dataset_id`` if its input still has ``signature``."""
        entry = self.entries.get(dataset_id)
        if not signature or not entry or entry.get("signature") != signature:
            self.misses += 1
            return None
        try:
            schema = DatasetSchema.from_dict(entry["schema"])
        except (KeyError, TypeError, ValueError):  # an entry from an older layout: re-read
            self.misses += 1
            return None
        self.hits += 1
        return DiscoveredDataset(schema=schema, error=entry.get("error"),
                                 notes=list(entry.get("notes", [])), signature=signature,
                                 reused=True, _reader=reader)

    def store(self, item: DiscoveredDataset) -> None:
        if item.signature:
            self.entries[item.dataset_id] = {
                "signature": item.signature, "schema": item.schema.to_dict(),
                "error": item.error, "notes": list(item.notes)}


def _signature(*parts: Any) -> str:
    text = json.dumps(parts, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _iso_utc(stamp: float | datetime | None) -> str | None:
    if stamp is None:
        return None
    if isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    else:
        moment = datetime.fromtimestamp(stamp, tz=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- helpers


def file_format(path: str) -> str | None:
    """``csv``, ``parquet`` or ``jsonl`` from a file name's extension; None if unsupported."""
    return FORMATS.get(os.path.splitext(path.lower())[1])


def _selected(relative: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    rel = relative.lower()
    base = rel.rsplit("/", 1)[-1]

    def matches(pattern: str) -> bool:
        pattern = pattern.lower()
        return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(base, pattern)

    return any(matches(p) for p in include) and not any(matches(p) for p in exclude)


def _empty_error(label: str) -> DataError:
    return DataError(f"'{label}' has 0 rows; check the export that writes it")


def _failed(
    dataset_id: str,
    platform: str,
    location: str,
    error: str,
    fmt: str | None = None,
    reader: Callable[[], pd.DataFrame] | None = None,
    notes: list[str] | None = None,
) -> DiscoveredDataset:
    schema = DatasetSchema(
        dataset_id=dataset_id,
        platform=platform,
        location=location,
        row_count=0,
        sample_rows=0,
        columns=[],
        format=fmt,
    )
    log.warning("discovery: %s: %s", dataset_id, error)
    return DiscoveredDataset(schema=schema, error=error, notes=notes or [], _reader=reader)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AutokfpError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}"


def _bottom_k(chunks: Iterable[pd.DataFrame], k: int) -> tuple[pd.DataFrame, int]:
    """A uniform random sample of at most ``k`` rows from streamed chunks, and the row count."""
    rng = np.random.default_rng(_SEED)
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    total = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # concat of all-NA chunks
        for chunk in chunks:
            total += len(chunk)
            chunk_keys = rng.random(len(chunk))
            if kept is None:
                kept, keys = chunk, chunk_keys
            else:
                kept = pd.concat([kept, chunk], ignore_index=True)
                keys = np.concatenate([keys, chunk_keys])
            if len(kept) > k:
                index = np.sort(np.argpartition(keys, k)[:k])
                kept, keys = kept.iloc[index], keys[index]
    if kept is None:
        return pd.DataFrame(), 0
    return kept.reset_index(drop=True), total


def _listing(names: list[str]) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def mixed_type_notes(frame: pd.DataFrame, label: str) -> list[str]:
    """Notes on columns whose values mix Python types (a JSON field or SQLite column
    holding numbers and text); such a column is catalogued as text."""
    notes = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        values = column.dropna()
        if len(values) > 1000:
            values = values.sample(1000, random_state=_SEED)
        kinds = {type(v).__name__ for v in values}
        if {"int", "float"} >= kinds or len(kinds) < 2:
            continue
        note = (f"column '{name}' of '{label}' mixes {', '.join(sorted(kinds))} values; "
                "it is catalogued as text")
        log.warning(note)
        notes.append(note)
    return notes


# --------------------------------------------------------------------------- files


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
            raise _empty_error(label) from None
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"cannot read '{label}' as {fmt}: {_describe(exc)}; fix or re-export the file"
            ) from exc
    raise AssertionError("unreachable")


def _sample_file(
    path: Path, fmt: str, label: str, k: int, notes: list[str]
) -> tuple[pd.DataFrame, int, str]:
    encoding, result = _with_encoding(
        label, fmt, lambda enc: _bottom_k(_read_chunks(path, fmt, enc, k), k), notes
    )
    sample, total = result  # type: ignore[misc]
    if total == 0:
        raise _empty_error(label)
    return sample, total, encoding


def _read_file(path: Path, fmt: str, label: str) -> pd.DataFrame:
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
        raise _empty_error(label)
    return df


def _discover_file(
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
        return _failed(
            dataset_id,
            platform,
            label,
            f"'{label}' has an unsupported format; use {', '.join(sorted(FORMATS))}",
        )
    notes: list[str] = []

    def reader() -> pd.DataFrame:
        with open_local() as path:
            return _read_file(path, fmt, label)

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
        item = _failed(dataset_id, platform, label, _describe(exc), fmt, reader, notes)
        item.schema.modified_at = modified_at
        item.signature = signature
    if cache is not None:
        cache.store(item)
    return item


def _folder_files(source: FolderSource) -> list[str]:
    """Relative POSIX paths of the selected files under a folder source (hidden ones skipped)."""
    root = Path(source.path)
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_folder = Path(folder).relative_to(root)
        for name in files:
            if name.startswith("."):
                continue
            relative = (rel_folder / name).as_posix()
            if _selected(relative, source.include, source.exclude):
                found.append(relative)
    return sorted(found)


def _discover_folder(source: FolderSource, k: int,
                     cache: CrawlCache | None = None) -> list[DiscoveredDataset]:
    root = Path(source.path)
    if not root.is_dir():
        return [
            _failed(
                source.name,
                "file",
                str(root),
                f"folder '{root}' of source '{source.name}' does not exist; fix the source's path",
            )
        ]
    found = []
    for rel in _folder_files(source):
        path = root / rel
        try:
            stat = path.stat()
            signature = _signature("file", stat.st_size, stat.st_mtime_ns)
            modified = _iso_utc(stat.st_mtime)
        except OSError:  # vanished or unreadable: profiling reports it
            signature, modified = None, None
        found.append(_discover_file(lambda p=path: nullcontext(p), str(path), rel, source.name,
                                    "file", k, signature, modified, cache))
    return found


def _gcs_files(source: GcsSource) -> list[tuple[str, str]]:
    """(uri, relative path) of the selected objects under a gs:// source."""
    from autokfp import storage

    prefix = source.uri.rstrip("/")
    out = []
    for uri in storage.list_uris(prefix, recursive=True):
        relative = uri[len(prefix) :].lstrip("/")
        hidden = any(part.startswith(".") for part in relative.split("/"))
        if relative and not hidden and _selected(relative, source.include, source.exclude):
            out.append((uri, relative))
    return out


def _gcs_objects(source: GcsSource) -> list[tuple[str, str, str, str | None]]:
    """(uri, relative path, signature, modified) of the selected objects under a source.

    Lists the blobs themselves (not just names) so generation and size, which change with
    every upload, identify the version of each object without downloading it.
    """
    # storage keeps one configured client (emulator, credentials) and turns GCS failures
    # into StorageError naming the URI; listing with metadata needs the client itself.
    from autokfp import storage

    prefix_uri = source.uri.rstrip("/")
    bucket, key = storage._split_gs(prefix_uri)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    out = []
    with storage._gcs_errors(prefix_uri):
        blobs = list(storage._gcs_client().list_blobs(bucket, prefix=prefix or None))
    for blob in blobs:
        relative = blob.name[len(prefix):]
        if not relative or blob.name.endswith("/"):
            continue
        hidden = any(part.startswith(".") for part in relative.split("/"))
        if hidden or not _selected(relative, source.include, source.exclude):
            continue
        signature = _signature("gcs", blob.generation, blob.size, blob.md5_hash)
        out.append((storage.join(prefix_uri, relative), relative, signature,
                    _iso_utc(blob.updated)))
    return sorted(out)


def _discover_gcs(source: GcsSource, k: int,
                  cache: CrawlCache | None = None) -> list[DiscoveredDataset]:
    from autokfp import storage

    try:
        objects = _gcs_objects(source)
    except Exception as exc:
        return [_failed(source.name, "gcs", source.uri, _describe(exc))]
    return [
        _discover_file(lambda u=uri: storage.local_copy(u), uri, rel, source.name, "gcs", k,
                       signature, modified, cache)
        for uri, rel, signature, modified in objects
    ]


# --------------------------------------------------------------------------- SQL


def sql_platform(url: str) -> str:
    """The DataHub platform of a SQLAlchemy URL: sqlite, postgres, mysql, mssql..."""
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)


def masked_url(url: str) -> str:
    """A SQLAlchemy URL with its password replaced by ``***`` (safe for logs and catalogs)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _engine(source: SqlSource):  # -> sqlalchemy.Engine
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(expand_env(source.url))
    database = url.database
    # SQLite would silently create a missing database file and report no tables.
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not database.startswith("file:") and not Path(database).is_file():
            raise DataError(
                f"SQLite database '{database}' of source '{source.name}' does not exist; "
                "fix the source's url"
            )
    return sa.create_engine(url)


def _sql_location(source: SqlSource) -> str:
    """The source's URL with the password masked (also when an env var is not set)."""
    for expand in (expand_env, str):
        try:
            return masked_url(expand(source.url))
        except Exception:
            continue
    return f"<unparseable URL of source '{source.name}'>"


def _sql_platform_of(source: SqlSource) -> str:
    try:
        return sql_platform(source.url)
    except Exception:
        return "sql"


def _secrets(source: SqlSource) -> list[str]:
    """Values that must never appear in a message: the URL's password and ${VAR} values."""
    values = [os.environ.get(name, "") for name in re.findall(r"\$\{(\w+)\}", source.url)]
    try:
        from sqlalchemy.engine import make_url

        values.append(make_url(expand_env(source.url)).password or "")
    except Exception:
        pass
    return sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)


def _sql_error(source: SqlSource, exc: BaseException) -> str:
    missing = exc if isinstance(exc, ModuleNotFoundError) else None
    if missing is None and isinstance(exc.__cause__, ModuleNotFoundError):
        missing = exc.__cause__
    if missing is not None:
        return (f"the database driver '{missing.name}' for source '{source.name}' is not "
                "installed; pip install it (psycopg2-binary or pg8000 for postgresql, pymysql "
                "for mysql+pymysql) or name an installed driver in the URL")
    text = _describe(exc)
    for secret in _secrets(source):
        text = text.replace(secret, "***")
    return text


def _table_names(source: SqlSource, engine) -> list[str]:
    import sqlalchemy as sa

    if source.tables:
        return list(source.tables)
    return sorted(sa.inspect(engine).get_table_names(schema=source.schema_name))


def _select_all(source: SqlSource, table_name: str):
    import sqlalchemy as sa

    # table() quotes the identifier, so odd (or hostile) names are data, never SQL.
    table = sa.table(table_name, schema=source.schema_name)
    return table, sa.select(sa.literal_column("*")).select_from(table)


def _count_rows(connection, table) -> int:
    import sqlalchemy as sa

    return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _read_table(source: SqlSource, table_name: str) -> pd.DataFrame:
    label = f"table '{table_name}' of source '{source.name}'"
    engine = _engine(source)
    try:
        _, query = _select_all(source, table_name)
        with engine.connect() as connection:
            df = pd.read_sql(query, connection)
    except Exception as exc:
        raise DataError(f"cannot read {label}: {_sql_error(source, exc)}") from None
    finally:
        engine.dispose()
    if len(df) == 0:
        raise _empty_error(f"{source.name}/{table_name}")
    return parse_datetime_text(df)


def _declared_columns(inspector, source: SqlSource, table_name: str) -> list[list[str]]:
    try:
        columns = inspector.get_columns(table_name, schema=source.schema_name)
    except Exception:  # a view or an odd backend: the row count alone must do
        return []
    return [[str(c["name"]), str(c["type"])] for c in columns]


def _discover_sql(source: SqlSource, k: int,
                  cache: CrawlCache | None = None) -> list[DiscoveredDataset]:
    import sqlalchemy as sa

    location = _sql_location(source)
    platform = _sql_platform_of(source)
    try:
        engine = _engine(source)
    except Exception as exc:
        return [_failed(source.name, platform, location, _sql_error(source, exc))]
    results = []
    try:
        try:
            names = _table_names(source, engine)
            inspector = sa.inspect(engine)
        except Exception as exc:
            return [_failed(source.name, platform, location, _sql_error(source, exc))]
        with engine.connect() as connection:
            for table_name in names:
                results.append(_discover_table(source, table_name, connection, inspector,
                                               platform, location, k, cache))
    except Exception as exc:  # the connection itself broke mid-crawl
        results.append(_failed(source.name, platform, location, _sql_error(source, exc)))
    finally:
        engine.dispose()
    return results


def _discover_table(source: SqlSource, table_name: str, connection, inspector, platform: str,
                    location: str, k: int, cache: CrawlCache | None) -> DiscoveredDataset:
    dataset_id = f"{source.name}/{table_name}"

    def reader(t: str = table_name) -> pd.DataFrame:
        return _read_table(source, t)

    signature = None
    try:
        table, query = _select_all(source, table_name)
        total = _count_rows(connection, table)
        signature = _signature("sql", total, _declared_columns(inspector, source, table_name))
        if cache is not None:
            known = cache.lookup(dataset_id, signature, reader)
            if known is not None:
                return known
        if total == 0:
            raise _empty_error(dataset_id)
        if total <= k:
            sample = pd.read_sql(query, connection)
        else:
            sample, total = _bottom_k(pd.read_sql(query, connection, chunksize=k), k)
        notes = mixed_type_notes(sample, dataset_id)
        schema = profile_frame(
            parse_datetime_text(sample), dataset_id, platform, location, row_count=total,
            max_rows=k,
        )
        item = DiscoveredDataset(schema=schema, notes=notes, signature=signature,
                                 _reader=reader)
    except Exception as exc:
        connection.rollback()  # a failed statement must not poison the next table's
        item = _failed(dataset_id, platform, location,
                       f"cannot read table '{table_name}': {_sql_error(source, exc)}",
                       reader=reader)
        item.signature = signature
    if cache is not None:
        cache.store(item)
    return item


# --------------------------------------------------------------------------- public


def discover(
    sources: Iterable[Source], sample_rows: int = DEFAULT_MAX_ROWS,
    cache: CrawlCache | None = None,
) -> list[DiscoveredDataset]:
    """Crawl every source and profile each file or table found.

    Args:
        sources: ``FolderSource``, ``GcsSource`` and ``SqlSource`` models from the run config.
        sample_rows: profile at most this many rows per dataset (row counts stay exact).
        cache: results of earlier crawls; inputs whose signature is unchanged are not read
            again (``item.reused``), and the cache is updated with what was read.

    Returns:
        One ``DiscoveredDataset`` per file/table, in source order then path order; a
        dataset or source that failed carries ``error`` (with an empty schema) instead of
        stopping the crawl.

    Example:
        >>> found = discover(config.sources)
        >>> [d.dataset_id for d in found if d.ok]
        ['files/customers.parquet', 'warehouse/orders']
    """
    found: list[DiscoveredDataset] = []
    for source in sources:
        if isinstance(source, FolderSource):
            found += _discover_folder(source, sample_rows, cache)
        elif isinstance(source, GcsSource):
            found += _discover_gcs(source, sample_rows, cache)
        elif isinstance(source, SqlSource):
            found += _discover_sql(source, sample_rows, cache)
        else:
            raise ConfigError(f"unknown source kind: {type(source).__name__}")
    ok = sum(d.ok for d in found)
    log.info("discovery found %d dataset(s), %d failed", ok, len(found) - ok)
    return found


def list_datasets(source: Source) -> list[str]:
    """The dataset ids a source holds, without reading or profiling any data."""
    if isinstance(source, FolderSource):
        if not Path(source.path).is_dir():
            return []
        return [f"{source.name}/{rel}" for rel in _folder_files(source)]
    if isinstance(source, GcsSource):
        return [f"{source.name}/{rel}" for _, rel in _gcs_files(source)]
    engine = _engine(source)
    try:
        return [f"{source.name}/{t}" for t in _table_names(source, engine)]
    finally:
        engine.dispose()


def _missing(dataset_id: str, source: Source) -> DataError:
    try:
        existing = list_datasets(source)
    except Exception as exc:  # the source itself is broken: say that instead
        reason = _sql_error(source, exc) if isinstance(source, SqlSource) else _describe(exc)
        return DataError(
            f"dataset '{dataset_id}' not found; source '{source.name}' cannot be listed: {reason}"
        )
    return DataError(
        f"dataset '{dataset_id}' does not exist; source '{source.name}' has: "
        f"{_listing(existing)}. Set training.dataset to one of them"
    )


def _load_source_dataset(
    source: Source, dataset_id: str, relative: str
) -> tuple[pd.DataFrame, str, str, str | None]:
    """(data, platform, location, format) of one dataset of ``source``."""
    if isinstance(source, FolderSource):
        root = Path(source.path).resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise _missing(dataset_id, source)
        fmt = file_format(relative)
        if fmt is None:
            raise DataError(f"'{path}' has an unsupported format; use {', '.join(sorted(FORMATS))}")
        return _read_file(path, fmt, str(path)), "file", str(path), fmt
    if isinstance(source, GcsSource):
        from autokfp import storage

        uri = storage.join(source.uri, relative)
        fmt = file_format(relative)
        if not storage.exists(uri) or fmt is None:
            raise _missing(dataset_id, source)
        with storage.local_copy(uri) as path:
            return _read_file(path, fmt, uri), "gcs", uri, fmt
    import sqlalchemy as sa

    try:
        engine = _engine(source)
        try:
            inspector = sa.inspect(engine)
            present = inspector.has_table(relative, schema=source.schema_name)
            if not present:
                present = relative in inspector.get_view_names(schema=source.schema_name)
        finally:
            engine.dispose()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"cannot reach source '{source.name}' ({_sql_location(source)}) to load "
            f"'{dataset_id}': {_sql_error(source, exc)}"
        ) from None
    if not present:
        raise _missing(dataset_id, source)
    df = _read_table(source, relative)
    return df, _sql_platform_of(source), _sql_location(source), None


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
    df, platform, location, fmt = _load_source_dataset(source, dataset_id, relative)
    schema = profile_frame(
        df, dataset_id, platform, location, fmt=fmt, row_count=len(df), max_rows=sample_rows
    )
    if dataset_id == config.training.dataset and config.training.target in schema.column_names:
        target = schema.column(config.training.target)
        if "target" not in target.tags:
            target.tags.append("target")
    log.info("loaded %s: %d rows x %d columns", dataset_id, len(df), len(df.columns))
    return df, schema
