"""Discovery: crawl folders, gs:// prefixes and SQL databases into profiled dataset schemas.

Each file or table becomes one ``DiscoveredDataset`` whose id is ``<source name>/<relative
path or table>``. A dataset (or whole source) that cannot be read is reported with an
``error`` and the crawl goes on, so one bad export never hides the good ones.

Large inputs are profiled on a uniform random sample of at most ``sample_rows`` rows that
is drawn while streaming (chunks are read, each row gets a random key and the rows with
the smallest keys are kept), so memory stays bounded while the row count stays exact.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

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
    _reader: Callable[[], pd.DataFrame] | None = field(default=None, repr=False, compare=False)

    @property
    def dataset_id(self) -> str:
        return self.schema.dataset_id

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

    try:
        with open_local() as path:
            sample, total, _ = _sample_file(path, fmt, label, k, notes)
        schema = profile_frame(
            sample, dataset_id, platform, label, fmt=fmt, row_count=total, max_rows=k
        )
    except Exception as exc:
        return _failed(dataset_id, platform, label, _describe(exc), fmt, reader, notes)
    return DiscoveredDataset(schema=schema, notes=notes, _reader=reader)


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


def _discover_folder(source: FolderSource, k: int) -> list[DiscoveredDataset]:
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
    return [
        _discover_file(
            lambda p=root / rel: nullcontext(p), str(root / rel), rel, source.name, "file", k
        )
        for rel in _folder_files(source)
    ]


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


def _discover_gcs(source: GcsSource, k: int) -> list[DiscoveredDataset]:
    from autokfp import storage

    try:
        files = _gcs_files(source)
    except Exception as exc:
        return [_failed(source.name, "gcs", source.uri, _describe(exc))]
    return [
        _discover_file(lambda u=uri: storage.local_copy(u), uri, rel, source.name, "gcs", k)
        for uri, rel in files
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


def _discover_sql(source: SqlSource, k: int) -> list[DiscoveredDataset]:
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
        except Exception as exc:
            return [_failed(source.name, platform, location, _sql_error(source, exc))]
        for table_name in names:
            dataset_id = f"{source.name}/{table_name}"

            def reader(t: str = table_name) -> pd.DataFrame:
                return _read_table(source, t)

            try:
                table, query = _select_all(source, table_name)
                with engine.connect() as connection:
                    total = _count_rows(connection, table)
                    if total == 0:
                        raise _empty_error(dataset_id)
                    if total <= k:
                        sample = pd.read_sql(query, connection)
                    else:
                        sample, total = _bottom_k(pd.read_sql(query, connection, chunksize=k), k)
                schema = profile_frame(
                    parse_datetime_text(sample),
                    dataset_id,
                    platform,
                    location,
                    row_count=total,
                    max_rows=k,
                )
            except Exception as exc:
                results.append(
                    _failed(
                        dataset_id,
                        platform,
                        location,
                        f"cannot read table '{table_name}': {_sql_error(source, exc)}",
                        reader=reader,
                    )
                )
                continue
            results.append(DiscoveredDataset(schema=schema, _reader=reader))
    finally:
        engine.dispose()
    return results


# --------------------------------------------------------------------------- public


def discover(
    sources: Iterable[Source], sample_rows: int = DEFAULT_MAX_ROWS
) -> list[DiscoveredDataset]:
    """Crawl every source and profile each file or table found.

    Args:
        sources: ``FolderSource``, ``GcsSource`` and ``SqlSource`` models from the run config.
        sample_rows: profile at most this many rows per dataset (row counts stay exact).

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
            found += _discover_folder(source, sample_rows)
        elif isinstance(source, GcsSource):
            found += _discover_gcs(source, sample_rows)
        elif isinstance(source, SqlSource):
            found += _discover_sql(source, sample_rows)
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
