"""A CSV file of a folder source copied to Parquet in Arrow batches, never whole in memory.

``copy_csv_dataset`` is ``load_dataset`` for a CSV training file, streamed: the file is
parsed block by block (``pyarrow.csv.open_csv``) straight into a Parquet file, which is then
profiled on a uniform sample drawn batch by batch. Arrow is held to what ``pd.read_csv``
makes of the whole file:
- the same missing-value spellings and booleans, no dates parsed (pandas keeps them text);
- the column names pandas gives (read by ``pd.read_csv(nrows=0)``: a repeated name renamed
  ``x.1``, an empty one ``Unnamed: 3``), the rename noted as ``load_dataset`` notes it;
- a column whose later block has a value the type Arrow inferred from the first block cannot
  take is read again as pandas types the whole column: an integer column with a fraction as
  float64, a boolean or number column with other text as text, a column without a value in
  the first block as float64 (pandas' type for an empty column), as booleans or as text.
  The copy starts over with that column's type fixed (each column widens at most three
  times; the rows already written are discarded);
- text that is not UTF-8 is read as latin-1, as ``load_dataset`` falls back to it, and noted;
- rows with more fields than the header: pandas reads the first fields (as many as the first
  row has more) as the frame's index, which the discover step does not write; the copy skips
  them too, and both say so (``note_index_fields``);
- rows with fewer fields than the header, which pandas fills with missing values (and rows of
  only spaces or tabs, which it skips): Arrow refuses such a row, so the copy starts over
  reading the file serially, each such row handed to ``_ShortRows`` (Arrow numbers the rows
  then), padded with empty fields, parsed with the batch's types and put back in its place;
  both the whole read and the copy note it (``note_short_rows``).
- whole numbers past int64: pandas makes the column uint64 when every value is a whole
  number from 0 to 2**64 - 1 and none is missing; the copy reads it as uint64 then (Arrow
  reads such numbers in the first block as float64, which rounds them: a float64 column
  with one of 2**63 or more and no fraction is read again as uint64, ``_PastInt64``).
- a quoted value spanning lines (a note with a line break) is one value, wherever it falls
  (Arrow's ``newlines_in_values``: its blocks end outside quoted values); a CRLF line break
  in a value too: Arrow is handed the file by ``_Unsplit``, whose reads never end on a
  carriage return (a block ending between the CR and the LF of a quoted CRLF lost the LF).
Anything else Arrow cannot read as pandas does (whole numbers past uint64 or beside a missing
or negative value, which pandas keeps as the text read, a column Arrow types otherwise)
writes nothing and returns None: the caller loads the file whole, and a WARNING names the
file, the reason and the memory pandas may take (``whole_warning``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autokfp.catalog.profiling import DEFAULT_MAX_ROWS, profile_frame
from autokfp.catalog.schema import DatasetSchema
from autokfp.config import RunConfig

if TYPE_CHECKING:
    from autokfp.catalog.discovery import LocalFile

log = logging.getLogger(__name__)

# passes over a file before it is read whole instead: each finds one column whose later
# blocks have a value its type cannot take (a test file with three such columns takes 4-6)
MAX_PASSES = 8
BLOCK_BYTES = 4 << 20  # Arrow reads ahead: ~40 MB held with 1 MB blocks, ~130 MB with 4 MB
# pandas' default missing-value spellings (pandas.io.parsers: STR_NA_VALUES)
PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
PANDAS_TRUE = ["True", "TRUE", "true"]
PANDAS_FALSE = ["False", "FALSE", "false"]


# the memory pandas takes to read a file whole, per byte of the file (measured: a 38 MB CSV
# grew the peak by 170 MB, a 16 MB JSON-lines file by 213 MB; tests/engine/catalog)
WHOLE_FACTOR = {"csv": 5, "jsonl": 13}
_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to \w+: "
                         r"invalid value '(.*)'", re.S)  # rows are numbered when read serially
_SHORT = re.compile(r"Expected (\d+) columns, got (\d+)")


def whole_warning(dataset_id: str, path: Path, fmt: str, reason: str) -> None:
    """The WARNING that a training file is loaded whole: which file, why, and how much memory
    pandas may take for it."""
    size = path.stat().st_size if path.exists() else 0
    log.warning("%s (%s) is loaded whole, not streamed: %s; pandas may hold about %.2f GB "
                "for its %.0f MB (~%dx the file's size)", dataset_id, path, reason,
                size * WHOLE_FACTOR[fmt] / 1e9, size / 1e6, WHOLE_FACTOR[fmt])


def is_utf8(path: Path, chunk_bytes: int = 1 << 20) -> bool:
    """Whether the whole file decodes as UTF-8 (read a MB at a time), as pandas reads it."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _index_names(fields: int) -> list[str]:
    """Names for the leading fields pandas makes the index (never a header's name: a NUL)."""
    return [f"\0index{k}" for k in range(fields)]


def _convert_options(column_types: dict[str, Any] | None = None,
                     include_columns: list[str] | None = None) -> Any:
    """Arrow's conversion held to pandas' (missing-value spellings, booleans, no dates)."""
    import pyarrow.csv as pcsv

    return pcsv.ConvertOptions(
        null_values=PANDAS_NA, true_values=PANDAS_TRUE, false_values=PANDAS_FALSE,
        strings_can_be_null=True, quoted_strings_can_be_null=True, timestamp_parsers=[],
        column_types=column_types or {}, include_columns=include_columns or [])


def _options(sep: str, block_bytes: int, encoding: str = "utf8",
             names: list[str] | None = None,
             column_types: dict[str, Any] | None = None, index_fields: int = 0,
             short: _ShortRows | None = None) -> Any:
    """Arrow's options for the file; ``index_fields`` leading fields of each row (those
    pandas makes the index) are named apart and not read into the batches. With ``short``,
    rows with fewer fields go to it, read serially (Arrow numbers the rows only then)."""
    import pyarrow.csv as pcsv

    every = _index_names(index_fields) + names if names else None
    return dict(
        # the file is handed over as UTF-8 (``_Unsplit`` transcodes latin-1 itself)
        encoding=encoding,
        read_options=pcsv.ReadOptions(block_size=block_bytes, encoding="utf8",
                                      column_names=every, skip_rows=1 if names else 0,
                                      use_threads=short is None),
        # a quoted value may span lines, as pandas reads it: Arrow's blocks then end where
        # no quoted value is open (without it a block boundary inside one was an error)
        parse_options=pcsv.ParseOptions(
            delimiter=sep, newlines_in_values=True,
            invalid_row_handler=short.handle if short is not None else None),
        convert_options=_convert_options(column_types,
                                         names if index_fields and names else None))


class _Unsplit:
    """A binary file handed to Arrow's CSV reader (``read(size)`` alone), as UTF-8, whose
    reads never end on a carriage return: a trailing CR is held back for the next read.
    pyarrow 23, with ``newlines_in_values``, drops the LF of a quoted CRLF line break
    ("c\\r\\nd" read as "c\\rd") when one of its blocks ends between the CR and the LF,
    where pandas keeps both (a block begins where a read ends: ``scripts/check_csv_cr.py``
    found Arrow's text differ from pandas' in 136 of 800 random files read straight in
    blocks of 200-3,000 bytes, and in none read through this). A latin-1 file is transcoded here, a
    read of at most ``size`` bytes from at most ``size // 2`` of the file (one latin-1 byte
    is at most two in UTF-8), as Arrow's own transcoding would end its blocks anywhere.
    Thread-safe (Arrow reads ahead on another thread); after ``close`` a read is the end."""

    def __init__(self, raw: Any, encoding: str = "utf-8") -> None:
        import threading

        spelled = encoding.lower().replace("-", "").replace("_", "")
        if spelled not in ("utf8", "latin1"):
            raise ValueError(f"_Unsplit reads UTF-8 or latin-1, not {encoding!r}")
        self.raw = raw
        self.latin1 = spelled == "latin1"
        self.held = b""
        self.lock = threading.Lock()
        self.closed = False

    @classmethod
    def of(cls, path: Path, encoding: str) -> _Unsplit:
        return cls(open(path, "rb", buffering=0), encoding)  # noqa: SIM115 - closed by close

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with self.lock:
            if self.closed:
                return b""
            if size is None or size < 0:
                data, self.held = self.held + self.raw.read(), b""
            else:
                want = max(size // 2, 1) if self.latin1 else size
                data = self.held + self.raw.read(max(want - len(self.held), 0))
                self.held = b""
                if len(data) > 1 and data.endswith(b"\r"):
                    self.held, data = b"\r", data[:-1]
        return data.decode("latin-1").encode() if self.latin1 else bytes(data)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.raw.close()

    def __enter__(self) -> _Unsplit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_csv(path: Path, options: dict[str, Any]) -> Any:
    """Arrow's streaming reader of the CSV file through ``_Unsplit``."""
    import pyarrow.csv as pcsv

    given = dict(options)
    source = _Unsplit.of(path, given.pop("encoding", "utf-8"))
    try:
        return pcsv.open_csv(source, **given), source
    except BaseException:
        source.close()
        raise


class _ShortRows:
    """The rows with fewer fields than the header of one pass over a file, as Arrow's
    serial reader hands them over (``handle``), put back in their places in the batches
    (``merge``): padded with empty fields (missing values, as pandas fills them) and parsed
    with the batch's types. A row of only spaces or tabs is skipped, as pandas skips it.
    A row with more fields is left to Arrow's error (pandas refuses it too)."""

    def __init__(self, sep: str, names: list[str]) -> None:
        from collections import deque

        self.sep, self.names = sep, names
        # (the row's place among the data rows, the padded text or None: skip it)
        self.pending: deque[tuple[int, str | None]] = deque()
        self.place = 0  # the next data row's place
        self.count = 0
        self.first: tuple[int, str] | None = None  # (data row, its text)

    def handle(self, row: Any) -> str:
        if row.number is None or row.actual_columns > row.expected_columns:
            return "error"
        place = row.number - 2  # Arrow counts the header as row 1
        if not row.text.strip(" \t") and self.sep not in row.text:
            self.pending.append((place, None))
            return "skip"
        self.count += 1
        if self.first is None:
            self.first = (place + 1, row.text)
        self.pending.append((place, row.text + self.sep * (row.expected_columns
                                                           - row.actual_columns)))
        return "skip"

    def merge(self, batch: Any) -> Any:
        """``batch`` (the rows Arrow read) with the short rows of its places put back: a
        table (as many rows as the batch has when none falls in it). _Widen when a short
        row has a value the batch's type of its column cannot take."""
        import numpy as np
        import pyarrow as pa

        if not self.pending:
            self.place += batch.num_rows
            return pa.Table.from_batches([batch])
        texts: list[str] = []
        order: list[int] = []  # places in batch + the parsed short rows
        taken = 0
        while taken < batch.num_rows or (self.pending and self.pending[0][0] == self.place):
            if self.pending and self.pending[0][0] == self.place:
                text = self.pending.popleft()[1]
                if text is not None:
                    order.append(batch.num_rows + len(texts))
                    texts.append(text)
            else:
                if self.pending and self.pending[0][0] < self.place:
                    raise _Unreadable("Arrow handed over a short row out of order")
                order.append(taken)
                taken += 1
            self.place += 1
        table = pa.Table.from_batches([batch])
        if not texts:
            return table
        parsed = self._parse(texts, batch.schema)
        return pa.concat_tables([table, parsed]).take(np.asarray(order, dtype=np.int64))

    def finish(self, schema: Any) -> Any:
        """The short rows after the last batch, parsed with ``schema`` (a table), or None."""
        places = [place for place, _ in self.pending]
        if places != list(range(self.place, self.place + len(places))):
            raise _Unreadable("Arrow handed over a short row out of order")
        texts = [text for _, text in self.pending if text is not None]
        self.pending.clear()
        return self._parse(texts, schema) if texts else None

    def _parse(self, texts: list[str], schema: Any) -> Any:
        import io

        import pyarrow as pa
        import pyarrow.csv as pcsv

        try:
            return pcsv.read_csv(
                _Unsplit(io.BytesIO(("\n".join(texts) + "\n").encode())),
                read_options=pcsv.ReadOptions(column_names=self.names, use_threads=False),
                parse_options=pcsv.ParseOptions(delimiter=self.sep, newlines_in_values=True),
                convert_options=_convert_options({f.name: f.type for f in schema}))
        except pa.ArrowInvalid as exc:
            found = _CONVERSION.search(str(exc))
            if found is None:
                raise
            field = schema.field(self.names[int(found[1])])
            raise _Widen(field.name, field.type, found[2]) from None


class _Widen(Exception):
    """A later block has ``value`` in column ``name``, which its type ``kind`` cannot take."""

    def __init__(self, name: str, kind: Any, value: str) -> None:
        super().__init__(name, kind, value)
        self.name, self.kind, self.value = name, kind, value


class _Unreadable(Exception):
    """The file cannot be streamed as pandas reads it (the message says why)."""


class _PastInt64(Exception):
    """Column ``name``, read as float64, has whole numbers past int64 and no fraction:
    pandas makes it uint64 (every value a whole number from 0 to 2**64 - 1, none missing)
    or keeps it as text; read it again as uint64 (which refuses anything else)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _first_block_types(schema: Any, types: dict[str, Any], from_null: set[str]) -> bool:
    """Add to ``types`` what makes Arrow read the first block as pandas does: dates and times
    as text, a column without a value as float64 (``from_null``: pandas' type for an empty
    column, widened by a later value); whether it added any. _Unreadable for a type pandas
    would not give."""
    import pyarrow as pa

    known = len(types)
    for field in schema:
        kind = field.type
        if field.name in types:
            continue
        if pa.types.is_temporal(kind):
            types[field.name] = pa.string()
        elif pa.types.is_null(kind):
            types[field.name] = pa.float64()
            from_null.add(field.name)
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                  or pa.types.is_boolean(kind) or pa.types.is_string(kind)
                  or pa.types.is_large_string(kind)):
            raise _Unreadable(f"Arrow reads column '{field.name}' as {kind}")
    return len(types) > known


def _wider(kind: Any, value: str, was_null: bool) -> Any:
    """The type pandas gives a column Arrow read as ``kind`` once a later block has ``value``
    it cannot take: an integer column with a fraction is float64, a column empty in the first
    block with a boolean is booleans (with missing values), anything else is text. When that
    type cannot take the value either, the next attempt widens it again."""
    import pyarrow as pa

    if pa.types.is_unsigned_integer(kind):  # see below: pandas' other answers are quirks
        raise _Unreadable(f"column of whole numbers past int64 has {value[:80]!r} too")
    if pa.types.is_integer(kind):
        try:
            number = int(value)
        except ValueError:
            pass
        else:  # a whole number past int64: pandas makes the column uint64 when every value
            # is a whole number from 0 to 2**64 - 1 and none is missing (``_write_blocks``
            # checks), else keeps every value as the text read, a missing one as '' or 'NA'
            # (pandas 2.3), and float64 would round it (18446744073709551615 -> 1.8e19)
            if 0 <= number < 2**64:
                return pa.uint64()
            raise _Unreadable(f"a whole number past uint64 in a later block: {value[:80]!r}")
        try:
            float(value)
            return pa.float64()
        except ValueError:
            return pa.string()
    if was_null and pa.types.is_floating(kind) and value in PANDAS_TRUE + PANDAS_FALSE:
        return pa.bool_()
    return pa.string()


def _a_float(value: str) -> bool:
    """Whether ``value`` is a number that is not a whole-number literal (1e20, 2.5, inf)."""
    try:
        int(value)
    except ValueError:
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _no_missing_past_int64(table: Any, big: set[str], floats: set[str]) -> None:
    """_Unreadable when a column of whole numbers past int64 (uint64, ``_wider``) has a
    missing value: pandas then keeps the column as the text read ('' or 'NA', not NaN).
    Adds to ``big`` the float64 columns with a finite number of 2**63 or more (Arrow reads
    a first block's whole numbers past int64 as float64, which rounds them:
    ``_past_int64``), except ``floats``: columns that have a number written as a float
    (1e20), which pandas reads as float64 whatever else they hold."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for field, column in zip(table.schema, table.columns):
        if pa.types.is_unsigned_integer(field.type) and column.null_count:
            raise _Unreadable(f"column '{field.name}' has whole numbers past int64 and a "
                              "missing value")
        if pa.types.is_floating(field.type) and field.name not in big | floats:
            if _largest(column) >= 2**63:
                # infinities are float64 in pandas whatever else the column holds: only a
                # finite number of 2**63 or more may be a whole number pandas reads as such
                finite = pc.filter(column, pc.is_finite(column))
                if len(finite) and _largest(finite) >= 2**63:
                    big.add(field.name)


def _largest(column: Any) -> float:
    """The largest absolute value of a float column (0 when it has no value)."""
    import pyarrow.compute as pc

    extremes = pc.min_max(column)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    return 0.0 if low is None else max(abs(low), abs(high))


def _past_int64(temp: Path, big: set[str]) -> None:
    """_Unreadable when a float64 column of the file written (``temp``) with a number of
    2**63 or more has no fraction: pandas reads such whole numbers as uint64 or text, which
    float64 would round (a column with a fraction is float64 in pandas too)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(temp)
    for name in sorted(big):
        fraction = False
        for group in range(handle.num_row_groups):
            column = handle.read_row_group(group, columns=[name]).column(0)
            finite = pc.filter(column, pc.is_finite(column))
            if len(finite) and not pc.all(pc.equal(finite, pc.floor(finite))).as_py():
                fraction = True
                break
        if not fraction:
            raise _PastInt64(name)


def _write_blocks(path: Path, temp: Path, options: dict[str, Any], types: dict[str, Any],
                  from_null: set[str], short: _ShortRows | None = None,
                  floats: set[str] | None = None) -> int | None:
    """The file written to ``temp`` block by block: the rows; None when the first block
    needs ``types`` it did not have (``_first_block_types``: read it again). _Widen names a
    column a later block (or a short row: ``short``, which ``options`` hand them to) has a
    value for that its type cannot take.

    The reader is dropped when this returns: closing it does not stop its read-ahead, whose
    blocks (~30 of them) stay allocated while it is referenced."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    big: set[str] = set()  # float64 columns with a number of 2**63 or more
    try:
        opened, source = _open_csv(path, options)  # reads the first block
    except pa.ArrowInvalid as exc:  # a column given a type (uint64) the first block refuses
        found = _CONVERSION.search(str(exc))
        every = options["read_options"].column_names
        if (found is None or not every or every[int(found[1])] not in types
                or not pa.types.is_unsigned_integer(types[every[int(found[1])]])):
            raise
        name = every[int(found[1])]
        raise _Widen(name, types[name], found[2]) from None
    with source, opened as reader:  # the source ends the read-ahead's reads when closed
        if _first_block_types(reader.schema, types, from_null):
            return None
        with pq.ParquetWriter(str(temp), reader.schema) as writer:
            try:
                for batch in reader:
                    if short is None:
                        writer.write_batch(batch)
                        rows += batch.num_rows
                        _no_missing_past_int64(batch, big, floats or set())
                    else:
                        table = short.merge(batch)
                        writer.write_table(table, row_group_size=max(table.num_rows, 1))
                        rows += table.num_rows
                        _no_missing_past_int64(table, big, floats or set())
                if short is not None and (rest := short.finish(reader.schema)) is not None:
                    writer.write_table(rest)
                    rows += rest.num_rows
                    _no_missing_past_int64(rest, big, floats or set())
            except pa.ArrowInvalid as exc:
                found = _CONVERSION.search(str(exc))
                if found is None:
                    raise
                # Arrow numbers the file's fields, the index fields (not read) too
                every = options["read_options"].column_names or reader.schema.names
                field = reader.schema.field(every[int(found[1])])
                raise _Widen(field.name, field.type, found[2]) from None
    if big:
        _past_int64(temp, big)
    return rows


def short_rows(path: Path, sep: str, encoding: str,
               names: list[str]) -> tuple[int, tuple[int, str] | None]:
    """How many rows of the CSV file have fewer fields than its header (``names``), and the
    first (its data row and text): what ``pd.read_csv`` filled with missing values without a
    word (the whole read notes it: ``files.read_file``). One serial pass of Arrow's parser,
    converting only the first column."""
    import pyarrow as pa

    short = _ShortRows(sep, names)
    options = _options(sep, BLOCK_BYTES, encoding, names, short=short)
    options["convert_options"] = _convert_options({names[0]: pa.string()}, names[:1])
    opened, source = _open_csv(path, options)
    with source, opened as reader:
        for _ in reader:
            pass
    return short.count, short.first


def _stream_file(path: Path, temp: Path, label: str, block_bytes: int) -> tuple[int, list[str]]:
    """Write the CSV file to ``temp`` as ``pd.read_csv`` reads it whole (see the module): the
    rows and what reading it changed. _Unreadable (or Arrow's error) when it cannot."""
    import pandas as pd
    import pyarrow as pa

    from autokfp.catalog.sources.files import (
        csv_layout,
        note_index_fields,
        note_latin1,
        note_short_rows,
    )

    def header(encoding: str) -> tuple[str, list[str], list[str], int]:
        """The delimiter, notes on the layout, the column names and how many leading fields
        pandas makes the index, as ``pd.read_csv`` reads the header and first row. The
        index fields are noted once, when the copy is written: a late latin-1 fallback reads
        the header again, and a copy that fails leaves the note to the whole read."""
        sep, layout = csv_layout(path, encoding, label)
        frame = pd.read_csv(path, nrows=1, sep=sep, encoding=encoding)
        index_fields = 0 if isinstance(frame.index, pd.RangeIndex) else frame.index.nlevels
        return sep, layout, [str(name) for name in frame.columns], index_fields

    notes: list[str] = []
    encoding = "utf-8"
    try:
        sep, layout, names, index_fields = header(encoding)
    except UnicodeDecodeError:
        encoding = "latin-1"
        sep, layout, names, index_fields = header(encoding)
        note_latin1(label, notes)
    types: dict[str, Any] = {}
    from_null: set[str] = set()
    floats: set[str] = set()  # columns read again as uint64 that have a float (1e20) too
    padded = False  # rows with fewer fields than the header: read serially, each padded
    for _ in range(MAX_PASSES):  # each pass over the file finds one column to widen (or
        # the first block's dates and empty columns, or the encoding); past MAX_PASSES
        # (columns empty until far into the file, one after another) read it whole rather
        # than pass over it again
        short = _ShortRows(sep, names) if padded else None
        try:
            rows = _write_blocks(path, temp, _options(sep, block_bytes, encoding, names, types,
                                                      index_fields, short),
                                 types, from_null, short, floats)
            if rows is not None:
                if index_fields:  # never with short rows (``padded`` needs none)
                    note_index_fields(label, index_fields, layout)
                if short is not None and short.first is not None:
                    note_short_rows(label, short.count, short.first, layout)
                return rows, notes + layout
        except _PastInt64 as big:
            if big.name in types and pa.types.is_unsigned_integer(types[big.name]):
                raise _Unreadable(f"column '{big.name}' has whole numbers past int64") from None
            types[big.name] = pa.uint64()
            log.debug("%s: column '%s' has whole numbers past int64; read it again as uint64",
                      label, big.name)
        except _Widen as late:
            if pa.types.is_string(late.kind):
                raise _Unreadable(f"column '{late.name}' has a value Arrow cannot read as "
                                  f"text: {late.value[:80]!r}") from None
            if pa.types.is_unsigned_integer(late.kind) and _a_float(late.value):
                # a uint64 read (``_PastInt64``) refused a number written as a float: pandas
                # reads the column as float64 then (rounding its whole numbers past int64,
                # as it does): so does the copy, and it is not asked about again
                floats.add(late.name)
                types[late.name] = pa.float64()
                continue
            types[late.name] = _wider(late.kind, late.value, late.name in from_null)
            log.debug("%s: column '%s' has %r in a later block; read it again as %s", label,
                      late.name, late.value[:80], types[late.name])
        except (pa.ArrowInvalid, _Unreadable) as exc:
            fields = _SHORT.search(str(exc))
            if (not padded and not index_fields and fields is not None
                    and int(fields[2]) < int(fields[1])):
                padded = True  # read again with the short rows handed over
                log.debug("%s: a row has fewer fields than the header; read it again "
                          "serially, padding such rows", label)
                continue
            if encoding != "utf-8" or is_utf8(path):
                raise
            encoding = "latin-1"  # the whole file, header too, as pandas then reads it
            note_latin1(label, notes)
            before, fields_before = names, index_fields
            sep, layout, names, index_fields = header(encoding)
            if len(names) != len(before) or index_fields != fields_before:
                raise
            renamed = dict(zip(before, names))
            types = {renamed[name]: kind for name, kind in types.items()}
            from_null = {renamed[name] for name in from_null}
    raise _Unreadable(f"its columns changed type on {MAX_PASSES} passes over the file (each "
                      "column empty or of one type in the first blocks and not later costs a "
                      "pass)")


def copy_csv_dataset(config: RunConfig, dataset_id: str, out_path: str,
                     sample_rows: int = DEFAULT_MAX_ROWS, block_bytes: int = BLOCK_BYTES,
                     changes: list[str] | None = None,
                     local: LocalFile | None = None) -> DatasetSchema | None:
    """``load_dataset`` for a CSV file of a folder source (or a bucket object downloaded to
    ``local``: ``discovery.object_file``), without reading it whole (see the module); None,
    writing nothing, for any other dataset or a file it cannot promise to read as
    ``pd.read_csv`` does (a WARNING says so). What reading it changed (the delimiter found,
    repeated names renamed, latin-1) is appended to ``changes``, as ``load_dataset`` records
    it in the frame's ``DATA_CHANGES``."""
    import pyarrow.parquet as pq

    from autokfp.catalog.batches import RowSampler
    from autokfp.catalog.discovery import finish_schema, folder_file, open_source

    found = folder_file(config, dataset_id, "csv", local)
    if found is None:
        return None
    source, path = found.source, found.path
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    try:
        try:
            rows, notes = _stream_file(path, temp, found.location, block_bytes)
        except Exception as exc:  # noqa: BLE001 - load_dataset reads (and reports) it
            whole_warning(dataset_id, path, "csv", f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        if rows == 0:
            return None  # load_dataset names an empty file
        # from here on an error is not a way of reading the file (the rows are copied as
        # pandas reads them): the profile and the schema's record fail as they would for
        # the whole frame, so they end the step rather than read the file a second time
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
    finally:
        temp.unlink(missing_ok=True)
    log.info("copied %s in batches: %d rows x %d columns", dataset_id, schema.row_count,
             len(schema.columns))
    return schema
