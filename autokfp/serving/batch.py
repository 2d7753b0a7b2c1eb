"""Batch scoring: a dataset scored by a registered model, in chunks, resumably.

The predictions are written next to the input's key columns, one chunk at a time:

- to an object store or folder (a local path, ``gs://``, ``s3://``, ``minio://``) as Parquet
  parts under ``<output>/<model>/v<version>/<batch id>/part-<chunk>.parquet`` with a
  ``_manifest.json`` and a ``_SUCCESS`` marker. The parts are staged under
  ``<output>/<model>/v<version>/_temporary/<batch id>/`` (skipped by Parquet readers) and
  the batch folder appears only once every chunk is there: a local folder by one rename, an
  object store part by part and then the manifest and ``_SUCCESS``;
- or to a SQL table (``<SQLAlchemy URL>#<table>``) with ``batch_id`` and ``chunk`` columns:
  each chunk in its own transaction into ``<table>__staging``, then the whole batch moved
  into the table in one transaction once every chunk is there.

The batch id is a hash of the model version, the input's content, the keys and the chunk
size. A rerun of the same batch (after a crash, a preempted pod, a retried task) finds the
chunks already written and scores only the others; a changed input or model is a new batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from autokfp import storage
from autokfp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
ROW_KEY = "row_number"  # the key written when the input has no key columns
STAGING_SUFFIX = "__staging"  # a SQL output's chunks wait in <table>__staging
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True)
class ScoringTarget:
    """Where predictions go: a folder or object-store prefix, or a SQL table."""

    kind: str  # "store" or "sql"
    location: str  # the prefix, or the SQLAlchemy URL (may hold ${VAR} references)
    table: str | None = None

    def describe(self) -> str:
        """The target without secrets (``${VAR}`` references are never expanded here)."""
        if self.kind == "sql":
            return f"{_without_password(self.location)}#{self.table}"
        return self.location


def _without_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def parse_target(output: str) -> ScoringTarget:
    """``<SQLAlchemy URL>#<table>`` is a SQL table; anything else a folder or object-store
    prefix (a local path, ``gs://``, ``s3://``, ``minio://``)."""
    output = output.strip()
    if not output:
        raise ConfigError("output is empty: give a folder, a gs:// or s3:// prefix, or "
                          "<SQLAlchemy URL>#<table>")
    scheme = output.split("://", 1)[0].split("+", 1)[0].lower() if "://" in output else ""
    if scheme in _SQL_SCHEMES:
        url, _, table = output.partition("#")
        if not _TABLE.match(table):
            raise ConfigError(f"output '{_without_password(url)}' is a database: name the table "
                              "after '#', e.g. sqlite:///scores.db#churn_scores (letters, digits, "
                              "'_', optionally schema.table)")
        return ScoringTarget("sql", url, table)
    if "://" in output and scheme not in ("gs", "s3", "minio", "file"):
        raise ConfigError(f"output '{output}': use a folder, gs://, s3://, minio://, or a "
                          f"database URL ({', '.join(_SQL_SCHEMES)}) with #<table>")
    return ScoringTarget("store", output.removeprefix("file://").rstrip("/"))


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the frame's columns and content (row order included)."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def batch_id(model: str, version: str, fingerprint: str, keys: list[str], chunk_rows: int) -> str:
    text = json.dumps([model, str(version), fingerprint, keys, int(chunk_rows)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_keys(columns: Any, dropped: dict[str, str]) -> list[str]:
    """The columns the model's feature plan dropped as identifiers, when the input's
    ``columns`` (a list, or a frame: its columns) have them."""
    names = set(map(str, columns.columns if isinstance(columns, pd.DataFrame) else columns))
    return [c for c, why in dropped.items() if why.startswith("identifier") and c in names]


@dataclass
class BatchResult:
    """What one batch-scoring run did."""

    model: str
    version: str
    dataset: str
    output: str
    batch_id: str
    keys: list[str]
    rows: int
    chunks: int
    scored_chunks: int
    skipped_chunks: int
    seconds: float
    prediction_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _StoreWriter:
    """Parts are staged under ``<output>/<model>/v<version>/_temporary/<batch id>/`` (a
    name every Parquet reader skips, as Spark's committer does) and the batch folder
    appears only when every chunk is there: a local folder by one rename of the staged
    folder; an object store part by part, then ``_manifest.json`` and ``_SUCCESS`` last.
    ``read_store_predictions`` reads a batch only when its manifest is there."""

    def __init__(self, target: ScoringTarget, model: str, version: str, batch: str):
        self.prefix = storage.join(target.location, model, f"v{version}", batch)
        self.staging = storage.join(target.location, model, f"v{version}", "_temporary", batch)
        self.local = not storage.is_remote(target.location)

    def part(self, chunk: int, root: str | None = None) -> str:
        return storage.join(root or self.prefix, f"part-{chunk:05d}.parquet")

    def done(self, chunks: int) -> set[int]:
        """The chunks written, staged or in the batch folder (one listing of each)."""
        names = {uri.rsplit("/", 1)[-1] for root in (self.prefix, self.staging)
                 for uri in storage.list_uris(root, recursive=False)}
        return {c for c in range(chunks) if f"part-{c:05d}.parquet" in names}

    def write(self, chunk: int, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        # one object (or a local temp file renamed): a part is all or nothing
        storage.write_bytes(self.part(chunk, self.staging), buffer.getvalue())

    def finish(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, default=str)
        if self.local:
            self._finish_local(text)
            return
        # one listing, not a request per chunk; a part not staged was moved by an earlier,
        # stopped finish
        names = {uri.rsplit("/", 1)[-1] for uri in storage.list_uris(self.staging,
                                                                     recursive=False)}
        for chunk in range(int(manifest["chunks"])):
            staged = self.part(chunk, self.staging)
            if staged.rsplit("/", 1)[-1] in names:
                storage.write_bytes(self.part(chunk), storage.read_bytes(staged))
                storage.delete(staged)
        if not storage.exists(storage.join(self.prefix, "_manifest.json")):
            storage.write_text(storage.join(self.prefix, "_manifest.json"), text)
        storage.write_bytes(storage.join(self.prefix, "_SUCCESS"), b"")

    def _finish_local(self, text: str) -> None:
        import os
        import shutil

        from autokfp.storage.local import fsync_dir
        from autokfp.storage.uris import local_path

        final, staging = local_path(self.prefix), local_path(self.staging)
        if final.exists():  # a rerun of a finished batch: it stays as it is
            shutil.rmtree(staging, ignore_errors=True)
            return
        staging.mkdir(parents=True, exist_ok=True)
        storage.write_text(str(staging / "_manifest.json"), text)
        storage.write_bytes(str(staging / "_SUCCESS"), b"")
        os.replace(staging, final)  # the batch folder appears whole, or not at all
        fsync_dir(final.parent)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # _temporary/, when no other batch is staged there

    @property
    def location(self) -> str:
        return self.prefix


class _SqlWriter:
    """Chunks go to a staging table, ``<table>__staging`` (each chunk in one transaction,
    tagged with ``batch_id`` and ``chunk``); when every chunk is there, one transaction
    moves the batch's rows into the table (created like the staging table when missing) and
    deletes them from the staging table. The table never holds part of a batch."""

    def __init__(self, target: ScoringTarget, batch: str):
        import sqlalchemy

        from autokfp.config import expand_env

        self.table = target.table or ""
        self.schema, _, self.name = self.table.rpartition(".")
        self.staging = f"{self.name}{STAGING_SUFFIX}"
        self.batch = batch
        self.shown = target.describe()
        self._checked = False
        try:
            self.engine = sqlalchemy.create_engine(expand_env(target.location))
        except Exception as exc:  # noqa: BLE001 - drivers raise their own types
            raise ConfigError(f"output {self.shown}: cannot open the database: "
                              f"{type(exc).__name__}") from None

    def _chunks_in(self, name: str) -> set[int]:
        import sqlalchemy

        if not sqlalchemy.inspect(self.engine).has_table(name, schema=self.schema or None):
            return set()
        table = self._reflect(name)
        if not {"batch_id", "chunk"} <= set(table.c.keys()):
            return set()  # not a table of batches: the first write names what it lacks
        with self.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.select(table.c.chunk).distinct()
                                      .where(table.c.batch_id == self.batch))
            return {int(r[0]) for r in rows}

    def _reflect(self, name: str, connection: Any = None) -> Any:
        import sqlalchemy

        return sqlalchemy.Table(name, sqlalchemy.MetaData(), schema=self.schema or None,
                                autoload_with=connection or self.engine)

    def done(self, chunks: int) -> set[int]:
        if self._chunks_in(self.name):  # moved as a whole: the batch is complete
            return set(range(chunks))
        return self._chunks_in(self.staging)

    def write(self, chunk: int, frame: pd.DataFrame) -> None:
        frame = frame.assign(batch_id=self.batch, chunk=chunk)
        if not self._checked:  # an existing table that cannot take the rows: say so now,
            self._check_table(list(frame.columns))  # not after every chunk is scored
            self._checked = True
        try:
            with self.engine.begin() as connection:  # one transaction: a chunk is all or nothing
                frame.to_sql(self.staging, connection, schema=self.schema or None,
                             if_exists="append", index=False)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"output {self.shown}: writing chunk {chunk} to {self.staging} "
                            f"failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
                            ) from None

    def _check_table(self, columns: list[str]) -> None:
        import sqlalchemy

        if not sqlalchemy.inspect(self.engine).has_table(self.name, schema=self.schema or None):
            return
        have = {c.name for c in self._reflect(self.name).columns}
        missing = [c for c in columns if c not in have]
        if missing:
            raise DataError(f"output {self.shown}: the table has no column(s) "
                            f"{', '.join(missing)}; it must have the key, prediction, "
                            "model_version, batch_id and chunk columns: give another table "
                            "(it is created with them) or add the columns")

    def finish(self, manifest: dict[str, Any]) -> None:
        import sqlalchemy

        try:
            with self.engine.begin() as connection:  # the whole batch, or nothing
                inspector = sqlalchemy.inspect(connection)
                if inspector.has_table(self.staging, schema=self.schema or None):
                    self._move(connection, inspector)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"output {self.shown}: moving the batch from {self.staging} "
                            f"failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                            "an existing table must have the key, prediction, model_version, "
                            "batch_id and chunk columns; rerun to retry") from None
        finally:
            self.engine.dispose()

    def _move(self, connection: Any, inspector: Any) -> None:
        import sqlalchemy

        staging = self._reflect(self.staging, connection)
        if not inspector.has_table(self.name, schema=self.schema or None):
            sqlalchemy.Table(self.name, sqlalchemy.MetaData(),
                             *[sqlalchemy.Column(c.name, c.type) for c in staging.columns],
                             schema=self.schema or None).create(connection)
        final = self._reflect(self.name, connection)
        names = [c.name for c in staging.columns]
        mine = staging.c.batch_id == self.batch
        connection.execute(final.insert().from_select(
            names, sqlalchemy.select(*[staging.c[n] for n in names]).where(mine)))
        connection.execute(staging.delete().where(mine))

    @property
    def location(self) -> str:
        return self.shown


def score_frame(frame: pd.DataFrame, predict: Callable[[pd.DataFrame], pd.DataFrame], *,
                model: str, version: str, dataset: str, target: ScoringTarget,
                keys: list[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> BatchResult:
    """Score ``frame`` chunk by chunk with ``predict`` and write each chunk's predictions
    with the ``keys`` columns; chunks of the same batch already written are skipped."""
    _check_input(len(frame), list(frame.columns), dataset, keys, chunk_rows)
    chunks = (frame.iloc[start:start + chunk_rows] for start in range(0, len(frame), chunk_rows))
    return score_chunks(chunks, predict, rows=len(frame), fingerprint=frame_fingerprint(frame),
                        model=model, version=version, dataset=dataset, target=target,
                        keys=keys, chunk_rows=chunk_rows)


def score_parts(parts: Any, predict: Callable[[pd.DataFrame], pd.DataFrame], *,
                model: str, version: str, target: ScoringTarget, keys: list[str],
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> BatchResult:
    """Score a folder of Parquet parts (``autokfp.serving.parts.PartsDataset``) as
    ``score_frame`` scores a frame, streamed: one chunk of rows is held at a time, and each
    chunk's predictions are written before the next chunk is read. The batch id comes from
    the parts' paths, sizes and checksums (``PartsDataset.fingerprint``)."""
    _check_input(parts.rows, parts.columns, parts.folder, keys, chunk_rows)
    return score_chunks(parts.chunks(chunk_rows), predict, rows=parts.rows,
                        fingerprint=f"parts:{parts.fingerprint}", model=model, version=version,
                        dataset=parts.folder, target=target, keys=keys, chunk_rows=chunk_rows)


def _check_input(rows: int, columns: list[Any], dataset: str, keys: list[str],
                 chunk_rows: int) -> None:
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if not rows:
        raise DataError(f"dataset '{dataset}' has no rows to score")
    missing = [k for k in keys if k not in columns]
    if missing:
        raise DataError(f"key column(s) {missing} are not in dataset '{dataset}'; its columns "
                        f"are: {', '.join(map(str, columns))}")


def score_chunks(chunks: Iterable[pd.DataFrame],
                 predict: Callable[[pd.DataFrame], pd.DataFrame], *, rows: int,
                 fingerprint: str, model: str, version: str, dataset: str,
                 target: ScoringTarget, keys: list[str], chunk_rows: int) -> BatchResult:
    """Score ``chunks`` (``rows`` rows in frames of ``chunk_rows``, the last may be shorter)
    and write each one's predictions; the chunks of this batch already written are read
    past, not scored."""
    started = time.monotonic()
    batch = batch_id(model, version, fingerprint, keys, chunk_rows)
    writer: _StoreWriter | _SqlWriter = (
        _SqlWriter(target, batch) if target.kind == "sql"
        else _StoreWriter(target, model, version, batch))
    count = (rows + chunk_rows - 1) // chunk_rows
    done = writer.done(count)
    if done:
        log.info("batch %s: %d of %d chunks already written; scoring the rest", batch,
                 len(done), count)
    columns: list[str] = []
    seen = 0
    for chunk, frame in enumerate(chunks):
        seen += len(frame)
        if chunk in done:
            continue
        predictions = _predictions(predict(frame), len(frame), chunk, dataset)
        columns = [str(c) for c in predictions.columns]
        key_frame = (frame[keys].reset_index(drop=True) if keys
                     else pd.DataFrame({ROW_KEY: range(chunk * chunk_rows,
                                                       chunk * chunk_rows + len(frame))}))
        clash = set(key_frame.columns) & set(predictions.columns)
        out = pd.concat([key_frame, predictions.drop(columns=list(clash))], axis=1)
        writer.write(chunk, out.assign(model_version=str(version)))
        log.info("batch %s: chunk %d/%d scored (%d rows)", batch, chunk + 1, count, len(frame))
    if seen != rows:  # the input changed while it was read
        raise DataError(f"dataset '{dataset}' gave {seen} rows while being read, not the "
                        f"{rows} it held when scoring started: it changed during the run; "
                        "rerun once it is stable")
    result = BatchResult(model=model, version=str(version), dataset=dataset,
                         output=writer.location, batch_id=batch, keys=keys or [ROW_KEY],
                         rows=rows, chunks=count, scored_chunks=count - len(done),
                         skipped_chunks=len(done), seconds=round(time.monotonic() - started, 2),
                         prediction_columns=columns)
    writer.finish(result.to_dict())
    return result


def _predictions(answer: Any, rows: int, chunk: int, dataset: str) -> pd.DataFrame:
    """The model's answer for one chunk as a frame of one row per input row, in order: a
    frame as it is, a Series or a one-dimensional array as the column ``prediction``.
    Anything else, or another number of rows (a model that drops or adds rows), is a
    DataError before the chunk is written: keys and predictions side by side must be the
    same rows, never shifted ones."""
    import numpy as np

    if isinstance(answer, pd.Series) or (isinstance(answer, np.ndarray) and answer.ndim == 1):
        answer = pd.DataFrame({"prediction": np.asarray(answer)})
    if not isinstance(answer, pd.DataFrame):
        shape = getattr(answer, "shape", None)
        raise DataError(f"dataset '{dataset}', chunk {chunk}: the model's predict returned "
                        f"{type(answer).__name__}" + (f" of shape {shape}" if shape else "")
                        + ", not a frame (or a Series/1-D array) of one row per input row; "
                        "nothing of this chunk was written")
    if len(answer) != rows:
        raise DataError(f"dataset '{dataset}', chunk {chunk}: the model's predict returned "
                        f"{len(answer)} rows for the chunk's {rows}; keys and predictions "
                        "would not line up, so nothing of this chunk was written (the "
                        "chunks before it are kept: a rerun resumes there). A model must "
                        "answer every input row, in order")
    return answer.reset_index(drop=True)


def read_store_predictions(location: str) -> pd.DataFrame:
    """Every part of a batch written to a folder or object store, in chunk order."""
    from autokfp.serving.parts import is_ignored

    if not storage.exists(storage.join(location, "_manifest.json")):
        raise DataError(f"the batch at {location} is not complete (no _manifest.json): its "
                        "run stopped before the end; rerun the same scoring to finish it")
    start = len(location.rstrip("/")) + 1
    parts = sorted(u for u in storage.list_uris(location)
                   if u.endswith(".parquet") and not is_ignored(u[start:]))
    if not parts:
        raise DataError(f"no predictions under {location}")
    frames = []
    for uri in parts:
        data = storage.read_bytes(uri)
        try:
            frames.append(pd.read_parquet(io.BytesIO(data)))
        except Exception as exc:  # noqa: BLE001 - Arrow's and pandas' errors alike
            raise DataError(f"the batch at {location}: part {uri[start:]} ({len(data)} bytes) "
                            f"cannot be read as Parquet ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it was "
                            "changed after the batch was written: delete the batch folder "
                            "and rerun the same scoring to write it again") from None
    return pd.concat(frames, ignore_index=True)
