"""A SQL table or a JSON-lines file copied to Parquet chunk by chunk, never whole in memory.

``copy_sql_dataset`` and ``copy_jsonl_dataset`` are ``load_dataset`` for a table of a SQL
source and a JSON-lines file of a folder source, streamed. The rows are read by the same
pandas calls ``load_dataset`` makes, a chunk at a time: ``pd.read_sql`` over a server-side
cursor (``stream_results``: the driver fetches ``CHUNK_ROWS`` rows at a time instead of the
whole result) with text dates parsed as ``parse_datetime_text`` parses them, and
``pd.read_json(lines=True, chunksize=...)``. Each chunk goes to Arrow and is appended to the
Parquet file; the profile sample is drawn while copying.

pandas types each chunk on its own, so the copy keeps one Arrow type per column the way
pandas types the whole table:
- a column without a value so far (Arrow null) takes the type of the first chunk with one;
- an integer column becomes float64 once a chunk has fractions (pandas makes the whole column
  float64); missing values in an integer column need nothing (Arrow keeps them as nulls,
  which pandas reads as float64, as it reads the whole table);
- a key only later records of a JSON-lines file have is a new column at the end (pandas
  orders the whole file's columns by first appearance), missing in the rows before; a key
  a chunk lacks is missing in its rows.
The rows already written are then rewritten with the wider type or the new column (Parquet
to Parquet, batch by batch). A JSON-lines file that is not UTF-8 is read again as latin-1,
as ``load_dataset`` reads it, and noted. A column of a JSON-lines file that mixes text with
numbers or booleans (in one chunk, or text in one chunk and numbers in another), which
pandas' whole read keeps as an object column and the discover step writes as text (each
value as Python writes what JSON gave: ``1.0``, ``True``) and reports, is read again as
text from the values JSON gives (``MixedText``, ``jsonl_chunks``), and noted as the step
notes it. A text column of a SQL table that parses as dates in some chunks only
(``MixedDates``) is parsed or kept as text as ``parse_datetime_text`` decides for the whole
column: its test on the same values, the 1,000 it draws from the column (or every one),
found in two more passes over the table (``_decide_dates``), and the table is read again
with that answer. A column of a SQL table with text in some rows and numbers in others
(SQLite's), which the whole read keeps as an object column and the step writes as text, is
read again as text from the values the driver gives, as for JSON lines (``sql_chunks``);
unless some of its text has a date's shape (the whole read might then parse it as dates).
A column of a JSON-lines file that pandas tries as dates by its name (``json_date_named``)
and parses in some chunks only (``MixedDates``): the whole column holds the values no
chunk could parse, so the whole read keeps it as the values JSON gave (pandas converts each
value on its own); it is read again as those values, as a column of text and numbers is,
unless it has a time zone beside numbers or booleans (pandas 2.3's whole read can fail on
that outright; a time zone beside other text is read as text). So is such a column that is
dates in every chunk, in time zones that differ between chunks (``ZonesDiffer``: ``+01:00``
and, after a daylight-saving change, ``+02:00``; a zone and none), which the whole read
keeps as the values JSON gave.
Nested JSON values (objects, arrays; session 23) are written as the discover step writes
the whole read's column, as Arrow infers it from all its values: the rows so far rewritten
when a chunk adds an object key (Arrow orders them by name), fractions beside whole numbers
or items to arrays empty so far (``_nested_wider``); the profile sample keeps each such
value as pandas read it (its JSON text, ``_json_texts``), so the profile is the whole
read's. Where Arrow cannot make one type of them (an object beside a number or text, a
boolean beside a number inside: the whole read's write fails too), the file is left to the
whole read. An object type without keys so far (a chunk's objects all ``{}``, which Parquet
cannot write) is written with a placeholder key (``_held``) until a chunk has keys; one
without keys in every chunk is left to the whole read (whose write fails on it too).
Whenever the chunks cannot give the whole table's columns (a type
outside numbers/booleans/text/dates or nested values), nothing is written and None is
returned: the caller loads the dataset whole as before, and a WARNING names the dataset,
the reason and (for a file) the memory pandas may take.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autokfp.catalog.profiling import (
    _DATE_SHAPE,
    DEFAULT_MAX_ROWS,
    parse_datetime_text,
    profile_frame,
)
from autokfp.catalog.schema import DatasetSchema
from autokfp.config import RunConfig, SqlSource

if TYPE_CHECKING:
    from autokfp.catalog.discovery import LocalFile

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
_ZONE = re.compile(r"(Z|[+-]\d\d:?\d\d)$", re.I)  # a time zone ends a date's text


class NotStreamable(Exception):
    """The chunks cannot be copied as pandas reads the whole dataset."""


class MixedText(NotStreamable):
    """Column ``name`` mixes text with numbers or booleans (in one chunk, or text in one and
    numbers in another): pandas' whole read keeps an object column of both."""

    def __init__(self, name: str) -> None:
        super().__init__(f"column '{name}' mixes text with numbers or booleans")
        self.name = name


class MixedDates(NotStreamable):
    """Column ``name`` is text dates in one chunk and other text in another: only the whole
    column's values decide what pandas' whole read makes of it (``parse_datetime_text``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"column '{name}' parses as dates in some chunks only")
        self.name = name


class ZonesDiffer(MixedDates):
    """Column ``name`` is dates in every chunk, in a time zone in one chunk and another (or
    none) in another (a daylight-saving offset: ``+01:00``, then ``+02:00``): one column of
    dates cannot hold both, so pandas' whole read of a JSON-lines file keeps the values JSON
    gave (``scripts/check_jsonl_dates.py --dated``)."""

    def __init__(self, name: str) -> None:
        NotStreamable.__init__(self, f"column '{name}' is dates in time zones that differ "
                                     "between chunks")
        self.name = name


def _scalar_kinds(values: Any) -> set[type]:
    return {type(v) for v in values if v is not None and not (isinstance(v, float) and v != v)}


def _mixed_column(frame: pd.DataFrame) -> str | None:
    """The first object column of ``frame`` whose values mix text with numbers or booleans
    (only those: a nested value is not text)."""
    for name in frame.columns:
        if frame[name].dtype == object:
            kinds = _scalar_kinds(frame[name].tolist())
            if str in kinds and len(kinds) > 1 and kinds <= {str, int, float, bool}:
                return str(name)
    return None


def _text_or_time(kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return "time" if pa.types.is_timestamp(kind) else "other"


def _text_and_scalar(old: Any, new: Any) -> bool:
    """One type is text and the other numbers or booleans."""
    import pyarrow as pa

    def text(kind: Any) -> bool:
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))

    def scalar(kind: Any) -> bool:
        return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind))

    return (text(old) and scalar(new)) or (scalar(old) and text(new))


def _allowed(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_null(kind) or pa.types.is_integer(kind)
                or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_timestamp(kind) or pa.types.is_date32(kind))


def _nested(kind: Any) -> bool:
    """A type Arrow infers for nested JSON values (objects: struct, arrays: list)."""
    import pyarrow as pa

    return bool(pa.types.is_struct(kind) or pa.types.is_list(kind))


_NO_KEYS = "\0"  # the key of an object type without keys so far (Parquet needs one)


def _held(kind: Any, hold: bool = True) -> Any:
    """``kind`` with each object type without keys (a chunk's objects all ``{}``, which
    Parquet cannot write) given the placeholder key ``_NO_KEYS`` (null in every row), and the
    placeholder dropped from one that has keys now; with ``hold`` off, the placeholder only
    taken out (``_without_keys``)."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        fields = [(kind.field(i).name, _held(kind.field(i).type, hold))
                  for i in range(kind.num_fields) if kind.field(i).name != _NO_KEYS]
        return pa.struct(fields or ([(_NO_KEYS, pa.null())] if hold else []))
    if pa.types.is_list(kind):
        return pa.list_(_held(kind.value_type, hold))
    return kind


def _without_keys(kind: Any) -> Any:
    """``kind`` with the placeholder key taken out (it differs from ``kind`` when an object
    type in it still has no key)."""
    return _held(kind, hold=False)


def _nested_wider(old: Any, new: Any) -> Any:
    """The type Arrow infers for a column of nested values (what the discover step writes
    of the whole read: ``pa.Table.from_pandas``) whose rows so far gave ``old`` and the next
    chunk's ``new``: object keys merged by name (Arrow orders them by name), whole
    numbers beside fractions float64, an empty array's items (null) the other's; None where
    the two cannot be one type (the whole read's Parquet fails then too: text beside
    numbers, a boolean beside a number, an object beside an array).
    ``scripts/check_jsonl_nested.py`` checks it against the whole column's inference."""
    import pyarrow as pa

    def atom(kind: Any) -> bool:  # what Arrow infers from a JSON scalar
        return bool(pa.types.is_null(kind) or pa.types.is_boolean(kind)
                    or pa.types.is_string(kind) or pa.types.is_floating(kind)
                    or pa.types.is_int64(kind))

    def wider(a: Any, b: Any) -> Any:
        if a == b or pa.types.is_null(b):
            return a
        if pa.types.is_null(a):
            return b
        if pa.types.is_struct(a) and pa.types.is_struct(b):
            fields = {a.field(i).name: a.field(i).type for i in range(a.num_fields)}
            for i in range(b.num_fields):
                name, kind = b.field(i).name, b.field(i).type
                fields[name] = wider(fields[name], kind) if name in fields else kind
                if fields[name] is None:
                    return None
            return pa.struct(sorted(fields.items()))  # Arrow infers an object's keys sorted
        if pa.types.is_list(a) and pa.types.is_list(b):
            item = wider(a.value_type, b.value_type)
            return None if item is None else pa.list_(item)
        numbers = {a, b} == {pa.int64(), pa.float64()}
        return pa.float64() if numbers else None

    def inferred(kind: Any) -> bool:
        if pa.types.is_struct(kind):
            return all(inferred(kind.field(i).type) for i in range(kind.num_fields))
        if pa.types.is_list(kind):
            return inferred(kind.value_type)
        return atom(kind)

    if not (inferred(old) and inferred(new)):
        return None
    merged = wider(old, new)
    return None if merged is None else _held(merged)


def wider_type(old: Any, new: Any) -> Any:
    """The Arrow type a column keeps when one chunk gave ``old`` and the next ``new``, as
    pandas types the whole column; None when pandas would make it something Arrow cannot
    hold the same (object of mixed values, text dates next to text)."""
    import pyarrow as pa

    if (_nested(old) or _nested(new)) and (_nested(old) or pa.types.is_null(old)) and (
            _nested(new) or pa.types.is_null(new)):
        return _nested_wider(old, new)
    if not (_allowed(old) and _allowed(new)):
        return None
    if old == new or pa.types.is_null(new):
        return old
    if pa.types.is_null(old):
        return new
    numbers = (pa.types.is_integer, pa.types.is_floating)
    if any(f(old) for f in numbers) and any(f(new) for f in numbers):
        if pa.types.is_integer(old) and pa.types.is_integer(new):
            return pa.int64()
        return pa.float64()
    return None


def _conform(table: Any, schema: Any, cast: bool = True) -> Any:
    """``table`` with the columns of ``schema`` in its order: a column it lacks as missing
    values (of the schema's type); cast to the schema when ``cast``."""
    import pyarrow as pa

    columns = [table.column(f.name) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    names = [f.name for f in schema]
    out = pa.Table.from_arrays(columns, names=names)
    return out.cast(schema) if cast else out


class _Sample:
    """At most ``rows`` rows drawn uniformly while the chunks stream past (the smallest of a
    random key per row, as ``bottom_k``), kept as Arrow; every row, in order, when the
    dataset has no more."""

    def __init__(self, rows: int, seed: int = 0) -> None:
        self.rows = rows
        self.rng = np.random.default_rng(seed)
        self.table: Any = None
        self.keys = np.empty(0)

    def add(self, table: Any) -> None:
        import pyarrow as pa

        keys = self.rng.random(table.num_rows)
        if self.table is None:
            self.table, self.keys = table, keys
        else:
            self.table = pa.concat_tables([self.table, table])
            self.keys = np.concatenate([self.keys, keys])
        if self.table.num_rows > self.rows:
            keep = np.sort(np.argpartition(self.keys, self.rows)[:self.rows])
            self.table, self.keys = self.table.take(keep), self.keys[keep]

    def cast(self, schema: Any) -> None:
        """The rows kept, with the file's ``schema`` (nested columns kept as JSON text:
        ``ChunkWriter``)."""
        if self.table is not None:
            kept = _sample_schema(schema)
            self.table = _conform(self.table, kept, cast=False).cast(kept)


def _sample_schema(schema: Any) -> Any:
    """``schema`` with its nested columns as text: the profile sample keeps each nested
    value as the JSON text of what pandas read (``json.dumps``), not as Arrow's struct
    (whose rows have every key of the column, a missing one null) or list (numpy arrays):
    the profile then sees the values ``load_dataset``'s frame holds."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.string()) if _nested(f.type) else f for f in schema])


def _json_texts(frame: pd.DataFrame, table: Any) -> Any:
    """``table`` (the chunk ``frame`` as written) with each nested column as the JSON text
    of ``frame``'s values (a missing value null), for the profile sample."""
    import json

    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if not _nested(field.type):
            continue
        values = frame[field.name].tolist() if field.name in frame.columns else []
        texts = pa.array([None if v is None or (isinstance(v, float) and v != v)
                          else json.dumps(v) for v in values], pa.string()) \
            if values else pa.nulls(table.num_rows, pa.string())
        table = table.set_column(index, pa.field(field.name, pa.string()), texts)
    return table


class ChunkWriter:
    """Chunks of pandas rows appended to one Parquet file with one Arrow type per column
    (``wider_type``); raises NotStreamable where that is not possible."""

    def __init__(self, path: Path, sample_rows: int) -> None:
        self.path = path
        self.schema: Any = None
        self.writer: Any = None
        self.rows = 0
        self.sample = _Sample(sample_rows)
        # the type pandas gave a column in a chunk without any value (read_json: float64),
        # which the whole column has if no chunk has a value
        self.empty_types: dict[str, Any] = {}

    def add(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if len(frame) == 0:
            return
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            mixed = _mixed_column(frame)
            if mixed is not None:
                raise MixedText(mixed) from None
            raise NotStreamable(f"a chunk Arrow cannot hold as pandas does: {exc}") from None
        table = table.replace_schema_metadata(None)  # typed by Arrow alone, as when read back
        for index, column in enumerate(table.columns):
            if column.null_count == len(column) and not pa.types.is_null(column.type):
                self.empty_types.setdefault(table.column_names[index], column.type)
                table = table.set_column(index, pa.field(table.column_names[index], pa.null()),
                                         pa.nulls(len(column)))
            elif _nested(column.type) and _held(column.type) != column.type:
                # objects without keys so far: a placeholder key until a chunk has keys
                table = table.set_column(index, table.schema.field(index).with_type(
                    _held(column.type)), column.cast(_held(column.type)))
        if self.schema is None:
            bad = [f.name for f in table.schema if not _allowed(f.type)
                   and not (_nested(f.type) and _nested_wider(f.type, f.type) is not None)]
            if bad:
                raise NotStreamable(f"columns of nested or other values: {bad[:5]}")
            self.schema = table.schema
            self.writer = pq.ParquetWriter(str(self.path), self.schema)
        else:
            # keys only later records have are new columns at the end, in the order they
            # first appear (as pandas orders the whole file's); a column a chunk lacks is
            # missing in its rows
            known = self.schema.names
            fresh = [pa.field(name, pa.null()) for name in table.column_names
                     if name not in known]
            before_schema = pa.schema([*self.schema, *fresh])
            table = _conform(table, before_schema, cast=False)
            fields = []
            for before, now in zip(before_schema, table.schema):
                kind = wider_type(before.type, now.type)
                if kind is None and _text_and_scalar(before.type, now.type):
                    raise MixedText(before.name)
                if kind is None and {_text_or_time(before.type), _text_or_time(now.type)} == {
                        "text", "time"}:
                    raise MixedDates(before.name)
                if (kind is None and pa.types.is_timestamp(before.type)
                        and pa.types.is_timestamp(now.type)
                        and (before.type.tz is not None or now.type.tz is not None)):
                    raise ZonesDiffer(before.name)
                if kind is None:
                    raise NotStreamable(f"column '{before.name}' is {before.type} in one chunk "
                                        f"and {now.type} in another")
                fields.append(pa.field(before.name, kind))
            wanted = pa.schema(fields)
            if not wanted.equals(self.schema):
                self._rewrite(wanted)
            table = self._cast(table, wanted)
        self.writer.write_table(table)
        self.sample.add(_json_texts(frame, table))
        self.rows += table.num_rows

    @staticmethod
    def _cast(table: Any, schema: Any) -> Any:
        import pyarrow as pa

        try:
            return table.cast(schema)  # safe: an integer a float64 cannot hold stops it
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise NotStreamable(f"cannot widen a chunk to {schema}: {exc}") from None

    def _rewrite(self, schema: Any) -> None:
        """The rows written so far, rewritten with ``schema`` (a chunk at a time)."""
        import pyarrow.parquet as pq

        self.writer.close()
        old = self.path.with_name(self.path.name + ".narrow")
        os.replace(self.path, old)
        try:
            self.writer = pq.ParquetWriter(str(self.path), schema)
            handle = pq.ParquetFile(old)
            for group in range(handle.num_row_groups):  # one per chunk written
                self.writer.write_table(self._cast(
                    _conform(handle.read_row_group(group), schema, cast=False), schema))
        finally:
            old.unlink(missing_ok=True)
        self.sample.cast(schema)
        self.schema = schema

    def close(self) -> None:
        """Finish the file: a column no chunk had a value in gets the type pandas gave it."""
        import pyarrow as pa

        if self.writer is None:
            return
        held = [f.name for f in self.schema if _without_keys(f.type) != f.type]
        if held:  # the whole read's write fails on such a column too
            raise NotStreamable(f"column '{held[0]}' has objects without keys ({{}}) and no "
                                "key in any chunk: Parquet cannot write such an object")
        if any(pa.types.is_null(f.type) and f.name in self.empty_types for f in self.schema):
            self._rewrite(pa.schema([
                pa.field(f.name, self.empty_types[f.name]) if pa.types.is_null(f.type)
                and f.name in self.empty_types else f for f in self.schema]))
        self.writer.close()
        self.writer = None

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def sample_frame(self) -> pd.DataFrame:
        """The sample as pandas, with the dtypes ``pd.read_parquet`` gives the whole file."""
        import json

        from autokfp.catalog.batches import file_dtypes

        frame = self.sample.table.to_pandas()
        for field in self.schema:
            if _nested(field.type):  # the values pandas read (``_json_texts``)
                frame[field.name] = frame[field.name].map(
                    lambda text: None if text is None else json.loads(text)).astype(object)
        if self.rows > self.sample.rows:
            for name, dtype in file_dtypes(self.path).items():
                if frame[name].dtype != dtype:
                    frame[name] = frame[name].astype(dtype)
        return frame


def _copy(chunks: Iterator[pd.DataFrame], out_path: str,
          sample_rows: int) -> tuple[pd.DataFrame, int, Path]:
    """Write ``chunks`` to a temporary file beside ``out_path``: (the profile sample, rows,
    the temporary file). Raises (nothing left behind) when they cannot be streamed."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    writer = ChunkWriter(temp, sample_rows)
    try:
        try:
            for chunk in chunks:
                writer.add(chunk)
            writer.close()
        finally:
            writer.abandon()
        if writer.rows == 0:
            raise NotStreamable("no rows")  # load_dataset names an empty dataset
        return writer.sample_frame(), writer.rows, temp
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _counted(chunks: Iterator[pd.DataFrame], read: list[int]) -> Iterator[pd.DataFrame]:
    """``chunks``, each counted in ``read`` as it arrives."""
    for chunk in chunks:
        read.append(len(chunk))
        yield chunk


def _not_streamed(dataset_id: str, exc: Exception, read: list[int],
                  warn: Callable[[str], None]) -> None:
    """Say why a dataset is not streamed: a WARNING (``warn``) when its chunks could be read
    but not copied as pandas reads the whole, so it is loaded whole; INFO when not even one
    chunk could be read or it has no rows (``load_dataset`` then names the problem)."""
    reason = f"{type(exc).__name__}: {str(exc)[:300]}"
    if read and sum(read):
        warn(reason)
    else:
        log.info("%s is not streamed (%s); load_dataset reads it", dataset_id, reason)


def _finish(config: RunConfig, source: Any, copied: tuple[pd.DataFrame, int, Path],
            out_path: str, dataset_id: str, platform: str, location: str, fmt: str | None,
            sample_rows: int) -> DatasetSchema:
    from autokfp.catalog.discovery import finish_schema, open_source

    sample, rows, temp = copied
    try:
        schema = profile_frame(sample, dataset_id, platform, location, fmt=fmt, row_count=rows,
                               max_rows=sample_rows)
        finish_schema(config, open_source(source), schema)
        os.replace(temp, out_path)
    finally:
        temp.unlink(missing_ok=True)
    log.info("copied %s in chunks: %d rows x %d columns", dataset_id, rows, len(schema.columns))
    return schema


def sql_chunks(source: SqlSource, table_name: str, chunk_rows: int = CHUNK_ROWS,
               dates: dict[str, bool] | None = None,
               unparsed: dict[str, list[Any]] | None = None,
               texts: _TextColumns | None = None) -> Iterator[pd.DataFrame]:
    """A table's rows as ``load_dataset`` reads them (``pd.read_sql`` of ``SELECT *``, text
    dates parsed), ``chunk_rows`` at a time over a server-side cursor; the text columns of
    ``dates`` parsed (True) or kept as text (False) as the whole table's values decided
    (``_decide_dates``); ``unparsed``: ``parse_datetime_text``'s count of values that are
    not dates made missing, over all chunks. The columns of ``texts`` (text in some rows,
    numbers in others) as text from the values the driver gives (``_TextColumns``): the
    rows are then fetched here and made a frame by the function ``pd.read_sql`` makes each
    chunk with (``pandas.io.sql._wrap_result``, with its defaults), which keeps them."""
    from autokfp.catalog.sources.sql import _engine, _select_all

    engine = _engine(source)
    try:
        _, query = _select_all(source, table_name)
        query = query.execution_options(stream_results=True, max_row_buffer=chunk_rows)
        with engine.connect() as connection:
            if texts is None or not texts.names:
                for chunk in pd.read_sql(query, connection, chunksize=chunk_rows):
                    yield parse_datetime_text(chunk, dates, unparsed)
                return
            try:
                from pandas.io.sql import _wrap_result
            except ImportError:  # another pandas: the whole read decides
                raise NotStreamable("this pandas has no pandas.io.sql._wrap_result") from None
            kept = {**(dates or {}), **dict.fromkeys(texts.names, False)}
            with connection.begin():  # as pandas reads it (SQLDatabase: a transaction)
                result = connection.execute(query)
                columns = list(result.keys())
                wanted = [(columns.index(name), name) for name in texts.names
                          if name in columns]
                while data := result.fetchmany(chunk_rows):
                    frame = parse_datetime_text(_wrap_result(data, columns), kept, unparsed)
                    for index, name in wanted:
                        frame[name] = pd.Series(
                            texts.values(name, [row[index] for row in data]),
                            index=frame.index, dtype=object)
                    yield frame
    finally:
        engine.dispose()


def _decide_dates(source: SqlSource, table_name: str, name: str, chunk_rows: int,
                  dates: dict[str, bool]) -> bool:
    """Whether ``parse_datetime_text`` parses column ``name`` of the whole table: its test
    (``datetime_text_decision``) on the values it would test (``datetime_text_sample``),
    found in two passes over the table (the non-missing values counted, then those drawn),
    holding at most those values."""
    from autokfp.catalog.profiling import datetime_text_decision, datetime_text_sample

    as_text = {**dates, name: False}

    def present() -> Iterator[Any]:
        for chunk in sql_chunks(source, table_name, chunk_rows, as_text):
            yield from chunk[name].dropna().tolist()

    count = sum(1 for _ in present())
    chosen = datetime_text_sample(count)
    if chosen is None:
        return datetime_text_decision(list(present()))
    wanted, values = iter(chosen.tolist()), []
    place = next(wanted, None)
    for index, value in enumerate(present()):
        if index == place:
            values.append(value)
            place = next(wanted, None)
            if place is None:
                break
    return datetime_text_decision(values)


def copy_sql_dataset(config: RunConfig, dataset_id: str, out_path: str,
                     sample_rows: int = DEFAULT_MAX_ROWS,
                     chunk_rows: int = CHUNK_ROWS,
                     changes: list[str] | None = None) -> DatasetSchema | None:
    """``load_dataset`` for a table of a SQL source, streamed (see the module); None,
    writing nothing, for any other dataset or a table it cannot copy as pandas reads it.
    Text that is not dates in a column parsed as dates (made missing, as ``load_dataset``
    does) is appended to ``changes``, as ``load_dataset`` records it in ``DATA_CHANGES``."""
    from autokfp.catalog.profiling import unparsed_date_notes
    from autokfp.catalog.sources.sql import _sql_location, _sql_platform_of

    source_name, _, table_name = dataset_id.partition("/")
    source = next((s for s in config.sources if s.name == source_name), None)
    if not isinstance(source, SqlSource) or not table_name:
        return None
    from autokfp.catalog.csv_stream import MAX_PASSES

    read: list[int] = []
    dates: dict[str, bool] = {}
    texts = _TextColumns(dates_too=True)
    try:
        for _ in range(MAX_PASSES):  # each pass may find a column of text dates in some
            # chunks only, which the whole table's values then decide (two passes more), or
            # a column of text and numbers, read again as text
            # read: every pass's chunks (one read before a later pass fails: a WARNING)
            texts.new_pass()
            unparsed: dict[str, list[Any]] = {}
            try:
                copied = _copy(_counted(sql_chunks(source, table_name, chunk_rows, dates,
                                                   unparsed, texts), read),
                               out_path, sample_rows)
                break
            except MixedText as mixed:
                if mixed.name in texts.names:
                    raise
                texts.names.append(mixed.name)
                log.debug("%s: column '%s' mixes text with numbers; read it again as text",
                          dataset_id, mixed.name)
            except ZonesDiffer as mixed:  # not text dates: the whole read decides
                raise NotStreamable(str(mixed)) from None
            except MixedDates as mixed:
                if mixed.name in dates:
                    raise
                dates[mixed.name] = _decide_dates(source, table_name, mixed.name, chunk_rows,
                                                  dates)
                log.debug("%s: column '%s' is dates in some chunks only; the whole table's "
                          "values %s it", dataset_id, mixed.name,
                          "parse" if dates[mixed.name] else "keep it as text")
        else:
            raise NotStreamable(f"it needed more than {MAX_PASSES} passes")
    except Exception as exc:  # noqa: BLE001 - load_dataset reads (and reports) it
        _not_streamed(dataset_id, exc, read, lambda reason: log.warning(
            "%s is loaded whole, not streamed: %s; pandas holds the whole table in memory",
            dataset_id, reason))
        return None
    schema = _finish(config, source, copied, out_path, dataset_id, _sql_platform_of(source),
                     _sql_location(source), None, sample_rows)
    if changes is not None:
        changes.extend(unparsed_date_notes(unparsed, schema.column_names, dataset_id)
                       + texts.notes(schema.column_names, dataset_id))
    return schema


class _TextColumns:
    """The columns a JSON-lines copy reads as text (``MixedText``), each value as Python
    writes what pandas' whole read holds (``str`` of the number or boolean JSON gives), as
    the discover step writes such a column of the whole read (``steps.discover``); what
    each pass saw, for the notes."""

    def __init__(self, dates_too: bool = False) -> None:
        self.names: list[str] = []
        self.first: dict[str, str] = {}  # the first text value (in the file's order)
        self.other: set[str] = set()  # columns that had numbers or booleans
        # a SQL table's: ``parse_datetime_text`` tests the whole column for dates; with a
        # number among its values it is not dates, but its 1,000 drawn values may all be
        # text; text none of which has a date's shape is never dates (one that has one:
        # NotStreamable, the whole read decides)
        self.dates_too = dates_too
        # a JSON-lines file's columns pandas tries as dates (``json_date_named``): the whole
        # read cannot parse one whose chunks it did not all parse (a value no chunk could
        # parse is in it), but a time zone beside numbers or booleans can make it fail
        # outright (pandas 2.3: RuntimeError), which the copy must not hide; beside text
        # alone it never did (scripts/check_jsonl_dates.py: no failure without a number)
        self.zoned: set[str] = set()
        self.zone_seen: set[str] = set()  # of those, the columns with a time zone this pass

    def new_pass(self) -> None:
        self.first.clear()
        self.other.clear()
        self.zone_seen.clear()

    def _zone_beside_numbers(self, name: str, value: Any) -> None:
        if name in self.zone_seen and name in self.other:
            raise NotStreamable(f"column '{name}' is tried as dates by pandas, and has a "
                                f"time zone beside numbers or booleans: {str(value)[:40]!r}")

    def values(self, name: str, raw: list[Any]) -> list[str | None]:
        out: list[str | None] = []
        for value in raw:
            if value is None or (isinstance(value, float) and value != value):
                out.append(None)
            elif isinstance(value, str):
                self.first.setdefault(name, value)
                if self.dates_too and _DATE_SHAPE.match(value.strip()):
                    raise NotStreamable(f"column '{name}' mixes numbers with text that may "
                                        f"be dates: {value[:40]!r}")
                if name in self.zoned and _ZONE.search(value.strip()):
                    self.zone_seen.add(name)
                    self._zone_beside_numbers(name, value)
                out.append(value)
            elif isinstance(value, (bool, int, float)):
                self.other.add(name)
                self._zone_beside_numbers(name, value)
                out.append(str(value))
            else:  # a nested value: pandas' object column is not text
                raise NotStreamable(f"column '{name}' mixes text with nested values")
        return out

    def notes(self, columns: list[str], dataset_id: str) -> list[str]:
        """A note for each column read as text that had numbers or booleans beside text (a
        column of text alone is what the whole read gives anyway), in the file's order."""
        from autokfp.catalog.sources.files import mixed_text_note

        return [mixed_text_note(name, dataset_id, self.first[name]) for name in columns
                if name in self.other and name in self.first]


def json_date_named(name: Any) -> bool:
    """Whether ``pd.read_json`` tries column ``name`` as dates (``keep_default_dates``: the
    names ``FrameParser._try_convert_dates`` takes)."""
    if not isinstance(name, str):
        return False
    lower = name.lower()
    return (lower.endswith(("_at", "_time")) or lower in ("modified", "date", "datetime")
            or lower.startswith("timestamp"))


class _Recorded:
    """A text file whose lines, as pandas' JSON reader takes them (``islice`` of the
    handle), are kept until ``take``n: the lines of the chunk it has just read."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.lines: list[str] = []

    def read(self, size: int = -1) -> str:
        # present so pandas takes this for a file; it reads a chunk's lines by iterating
        # (``__next__`` records them). A pandas that read instead would bypass the record
        # and pair chunks with the wrong lines: fail loudly rather than copy wrong values
        raise RuntimeError("pandas read the JSON-lines file with read(), not by lines: "
                           "this pandas version is not supported by the streamed copy")

    def __iter__(self) -> _Recorded:
        return self

    def __next__(self) -> str:
        line = next(self.handle)
        self.lines.append(line)
        return str(line)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def jsonl_chunks(path: Path, encoding: str, chunk_rows: int,
                 texts: _TextColumns | None = None) -> Iterator[pd.DataFrame]:
    """The file's rows as ``pd.read_json(lines=True)`` reads them, ``chunk_rows`` lines at a
    time; the columns of ``texts`` as text from the values JSON gives (each of the chunk's
    lines parsed again by pandas' own JSON parser for them: the chunk has typed them)."""
    if texts is None or not texts.names:
        with pd.read_json(path, lines=True, encoding=encoding, chunksize=chunk_rows) as reader:
            yield from reader
        return
    from pandas._libs.json import ujson_loads

    missing = object()
    with open(path, encoding=encoding, newline="") as handle:  # as pandas opens it
        recorded = _Recorded(handle)
        with pd.read_json(recorded, lines=True, chunksize=chunk_rows) as reader:  # type: ignore[call-overload]
            for frame in reader:
                lines = recorded.take()
                wanted = [name for name in texts.names if name in frame.columns]
                raw: dict[str, list[Any]] = {name: [] for name in wanted}
                for line in lines:
                    text = line.strip()
                    if text and wanted:  # pandas skips empty lines
                        record = ujson_loads(text)
                        for name in wanted:
                            value = record.get(name, missing)
                            raw[name].append(None if value is missing else value)
                for name in wanted:
                    frame[name] = pd.Series(texts.values(name, raw[name]), index=frame.index,
                                            dtype=object)
                yield frame


def copy_jsonl_dataset(config: RunConfig, dataset_id: str, out_path: str,
                       sample_rows: int = DEFAULT_MAX_ROWS,
                       chunk_rows: int = CHUNK_ROWS,
                       local: LocalFile | None = None,
                       changes: list[str] | None = None) -> DatasetSchema | None:
    """``load_dataset`` for a JSON-lines file of a folder source (or a bucket object
    downloaded to ``local``: ``discovery.object_file``), streamed (see the module); None,
    writing nothing, for any other dataset or a file it cannot copy as pandas reads it
    whole (a WARNING says so). A file that is not UTF-8 is read as latin-1, as
    ``load_dataset`` reads it, and a column that mixes text with numbers or booleans is
    read again as text, as the discover step writes it from the whole read; both are
    appended to ``changes`` (the whole read's ``DATA_CHANGES`` and the step's notes)."""
    from autokfp.catalog.csv_stream import MAX_PASSES, whole_warning
    from autokfp.catalog.discovery import folder_file
    from autokfp.catalog.sources.files import note_latin1

    found = folder_file(config, dataset_id, "jsonl", local)
    if found is None:
        return None
    source, path = found.source, found.path
    notes: list[str] = []
    read: list[int] = []
    texts = _TextColumns()
    encoding = "utf-8"
    try:
        for _ in range(MAX_PASSES):  # each pass finds one column to read as text, or latin-1
            # read: every pass's chunks (one read before a later pass fails: a WARNING)
            texts.new_pass()
            try:
                copied = _copy(_counted(jsonl_chunks(path, encoding, chunk_rows, texts), read),
                               out_path, sample_rows)
                break
            except UnicodeDecodeError:  # pandas reads the whole file as latin-1 then
                if encoding != "utf-8":
                    raise
                encoding = "latin-1"
                note_latin1(found.location, notes)
            except (MixedText, MixedDates) as mixed:
                # text dates pandas parses in some chunks only: a value no chunk parsed is
                # in the whole column, which pandas then keeps as the values JSON gave; so
                # it does with dates in time zones that differ between chunks (ZonesDiffer)
                if mixed.name in texts.names:
                    raise
                texts.names.append(mixed.name)
                if json_date_named(mixed.name):
                    texts.zoned.add(mixed.name)
                log.debug("%s: %s; read it again as text", dataset_id, mixed)
        else:
            raise NotStreamable(f"it needed more than {MAX_PASSES} passes (a pass for each "
                                "column of text and numbers or dates in some chunks)")
    except Exception as exc:  # noqa: BLE001 - load_dataset reads (and reports) it
        _not_streamed(dataset_id, exc, read,
                      lambda reason: whole_warning(dataset_id, path, "jsonl", reason))
        return None
    schema = _finish(config, source, copied, out_path, dataset_id, found.platform,
                     found.location, "jsonl", sample_rows)
    if changes is not None:
        changes.extend(notes + texts.notes(schema.column_names, dataset_id))
    return schema
