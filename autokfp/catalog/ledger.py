"""What a crawl remembers while it runs, kept on disk so its memory does not grow with the
number of datasets (issue 16: a bucket of 100,000 objects).

A crawl needs, for every dataset it meets, the catalog's index entry and crawl-cache entry
(read, then rewritten), whether the listing saw it (to tell which datasets went missing),
its outcome and what was found (the report). Held as Python objects these grew by about
11 KB per dataset (a 3-column CSV) until the crawl ended. A ``CrawlLedger`` holds them in a
SQLite file in a temporary folder instead: a dataset is read from it when the crawl reaches
it and written back at once, so the process holds SQLite's page cache (a few MB) whatever
the count. The folder is removed when the ledger (and every report reading it) is gone,
and, if its process was killed, by the next crawl (``storage.scratch.remove_stale``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import Any, Generic, TypeVar, overload

from autokfp import storage
from autokfp.catalog.schema import ColumnSchema, DatasetSchema, to_plain
from autokfp.catalog.sources.base import DiscoveredDataset
from autokfp.catalog.sources.files import CRAWL_SCRATCH
from autokfp.catalog.store import RawJson
from autokfp.errors import DataError

T = TypeVar("T")

# SQLite's page cache per ledger, in KiB (negative: a size, not a page count)
_CACHE_KIB = 4096
# rows written between commits (a commit is cheap: journal and fsync are off)
_COMMIT_EVERY = 1000
# rows read back at a time (what iterating a table holds: ~100 index or cache entries)
READ_CHUNK = 100


def _source_of(dataset_id: str) -> str:
    return dataset_id.split("/", 1)[0]


def _dumps(value: Any) -> str:
    """A value as the ledger keeps it: a ``RawJson`` is that text already (the catalog
    files write their entries with the same settings, so what they hold goes in as is)."""
    if type(value) is RawJson:
        return value
    return json.dumps(value, sort_keys=True, default=str, allow_nan=False)


def _loads(text: str, table: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # an entry of a catalog file, taken in unparsed
        what = "index.json" if table == "idx" else "crawl-cache.json"
        raise DataError(
            f"the entry of '{key}' in the catalog's {what} is not valid JSON ({exc}); restore "
            "the file from a backup or delete it (the next crawl rebuilds the index and "
            "cache, lineage is lost)") from None


# what ``DatasetSchema.to_dict`` gives: a cached schema of exactly these keys is taken as
# it was read (see ``_found_schema``)
_SCHEMA_KEYS = frozenset(DatasetSchema.__dataclass_fields__) | {"fingerprint"}
_COLUMN_KEYS = frozenset(ColumnSchema.__dataclass_fields__)


def _as_cached(item: DiscoveredDataset) -> bool:
    """Whether ``item.schema.to_dict()`` is its crawl-cache entry's schema as read
    (``DiscoveredDataset.cached_schema``) plus the DataHub URN and the catalog facts set
    since: the schema the source gave a reused dataset (anything else changed drops
    ``cached_schema``; its fingerprint too is the one the cache recorded for these very
    columns)."""
    plain, schema = item.cached_schema, item.schema
    return not (plain is None or plain.keys() != _SCHEMA_KEYS
                or len(plain["columns"]) != len(schema.columns)
                or any(c.keys() != _COLUMN_KEYS for c in plain["columns"]))


def _found_schema(item: DiscoveredDataset) -> dict[str, Any]:
    """``item.schema.to_dict()``, built from the cache entry's schema when ``_as_cached``
    (not walking the schema again). The same JSON either way (``test_crawl.py`` compares
    them)."""
    if not _as_cached(item):
        return item.schema.to_dict()
    assert item.cached_schema is not None
    return {**item.cached_schema, "urn": item.schema.urn,
            "catalog": to_plain(item.schema.catalog)}


def _close(db: sqlite3.Connection, folder: str) -> None:
    try:
        db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class CrawlLedger:
    """A crawl's per-dataset state in one temporary SQLite file (see the module docstring).

    ``index`` and ``cache`` are mappings of dataset id to JSON entries, ``outcomes`` and
    ``found`` append-only sequences; ``mark_seen`` records what the listing reached.
    Nothing here is durable: the crawl writes the catalog's files from it when it ends.
    """

    def __init__(self) -> None:
        # a crawl killed with kill -9 leaves its folder: the next crawl removes it
        storage.scratch.remove_stale(CRAWL_SCRATCH)
        self._folder = storage.scratch.scratch_folder(CRAWL_SCRATCH)
        # no journal, no fsync: a crawl that dies loses its ledger, never the catalog
        self.db = sqlite3.connect(os.path.join(self._folder, "ledger.sqlite"),
                                  check_same_thread=False)
        self.lock = threading.RLock()
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{_CACHE_KIB}",
                       "temp_store=FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(
            "CREATE TABLE idx (id TEXT PRIMARY KEY, source TEXT, value TEXT);"
            "CREATE TABLE cache (id TEXT PRIMARY KEY, source TEXT, value TEXT);"
            "CREATE TABLE seen (id TEXT PRIMARY KEY);"
            "CREATE TABLE outcomes (seq INTEGER PRIMARY KEY, id TEXT, status TEXT,"
            " breaking INTEGER, reused INTEGER, value TEXT);"
            "CREATE INDEX outcomes_id ON outcomes (id);"
            "CREATE TABLE found (seq INTEGER PRIMARY KEY, value TEXT, cached TEXT);"
            "CREATE TABLE gone (seq INTEGER PRIMARY KEY, id TEXT);")
        self._writes = 0
        self._finalizer = weakref.finalize(self, _close, self.db, self._folder)
        self.index = LedgerMapping(self, "idx")
        self.cache = LedgerMapping(self, "cache")
        self.found: LedgerSequence[DiscoveredDataset] = _FoundSequence(
            self, "found", _found_from_dict)

    def close(self) -> None:
        """Remove the ledger's file now (else when it is garbage collected)."""
        self._finalizer()

    def wrote(self, rows: int = 1) -> None:
        self._writes += rows
        if self._writes >= _COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        with self.lock:
            self.db.commit()
            self._writes = 0

    # ------------------------------------------------------------------ listing

    def mark_seen(self, dataset_id: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", (dataset_id,))
        self.wrote()

    def unseen(self, table: str, sources: Iterable[str]) -> Iterator[str]:
        """Ids in ``table`` (``idx`` or ``cache``) of ``sources`` that the listing did not
        reach, in id order, read in chunks (the table may be changed between chunks)."""
        names = sorted(set(sources))
        if not names:
            return
        marks = ",".join("?" * len(names))
        with self.lock:
            self.db.execute("DELETE FROM gone")
            self.db.execute(
                f"INSERT INTO gone (id) SELECT id FROM {table} WHERE source IN ({marks}) "
                "AND id NOT IN (SELECT id FROM seen) ORDER BY id", names)
            self.commit()
        last = 0
        while True:
            with self.lock:
                rows = self.db.execute("SELECT seq, id FROM gone WHERE seq > ? ORDER BY seq "
                                       "LIMIT ?", (last, READ_CHUNK)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, dataset_id in rows:
                yield dataset_id

    def outcomes(self, decode: Callable[[dict[str, Any]], T]) -> LedgerSequence[T]:
        return LedgerSequence(self, "outcomes", decode)

    def add_outcome(self, dataset_id: str, status: str, breaking: bool, reused: bool,
                    value: dict[str, Any]) -> None:
        with self.lock:
            self.db.execute("INSERT INTO outcomes (id, status, breaking, reused, value) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (dataset_id, status, int(breaking), int(reused), _dumps(value)))
        self.wrote()

    def add_found(self, item: DiscoveredDataset) -> None:
        """Record what the crawl found. A dataset reused from this ledger's crawl cache
        (``_as_cached``) is recorded as its URN and catalog facts beside a copy of its cache
        entry's text, made by SQLite (``_FoundSequence`` puts them together when read): its
        schema is not encoded again (a sixth of an unchanged re-crawl)."""
        value: dict[str, Any] = {"error": item.error, "notes": item.notes,
                                 "signature": item.signature, "reused": item.reused}
        if item.cached_in is self.cache and _as_cached(item):
            value.update(urn=item.schema.urn, catalog=to_plain(item.schema.catalog))
            with self.lock:  # the entry the crawl cache read it from a moment ago
                copied = self.db.execute(
                    "INSERT INTO found (value, cached) SELECT ?, value FROM cache WHERE id = ?",
                    (_dumps(value), item.dataset_id)).rowcount
            if copied == 1:
                self.wrote()
                return
            del value["urn"], value["catalog"]
        value["schema"] = _found_schema(item)
        with self.lock:
            self.db.execute("INSERT INTO found (value) VALUES (?)", (_dumps(value),))
        self.wrote()


def _found_from_dict(value: dict[str, Any]) -> DiscoveredDataset:
    return DiscoveredDataset(schema=DatasetSchema.from_dict(value["schema"]),
                             error=value.get("error"), notes=list(value.get("notes") or []),
                             signature=value.get("signature"), reused=bool(value.get("reused")))


class LedgerMapping(MutableMapping[str, dict[str, Any]]):
    """A table of the ledger as a mapping of dataset id to a JSON entry (each read or
    written when used; a value read is a fresh copy, so change it and assign it back)."""

    def __init__(self, ledger: CrawlLedger, table: str):
        self._ledger = ledger
        self._table = table

    def load(self, pairs: Iterable[tuple[str, dict[str, Any] | RawJson]]) -> None:
        """Add many entries (a catalog file read a line at a time; a ``RawJson`` value goes
        in as the text it is, parsed only when the entry is read)."""
        rows = ((key, _source_of(key), _dumps(value)) for key, value in pairs)
        while True:
            chunk = [row for _, row in zip(range(_COMMIT_EVERY), rows, strict=False)]
            if not chunk:
                return
            with self._ledger.lock:
                self._ledger.db.executemany(
                    f"INSERT OR REPLACE INTO {self._table} (id, source, value) "
                    "VALUES (?, ?, ?)", chunk)
            self._ledger.wrote(len(chunk))

    def __getitem__(self, key: str) -> dict[str, Any]:
        with self._ledger.lock:
            row = self._ledger.db.execute(f"SELECT value FROM {self._table} WHERE id = ?",
                                          (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return dict(_loads(row[0], self._table, key))

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        with self._ledger.lock:
            self._ledger.db.execute(
                f"INSERT OR REPLACE INTO {self._table} (id, source, value) VALUES (?, ?, ?)",
                (key, _source_of(key), _dumps(value)))
        self._ledger.wrote()

    def __delitem__(self, key: str) -> None:
        with self._ledger.lock:
            gone = self._ledger.db.execute(f"DELETE FROM {self._table} WHERE id = ?", (key,))
        if gone.rowcount == 0:
            raise KeyError(key)
        self._ledger.wrote()

    def __contains__(self, key: object) -> bool:
        with self._ledger.lock:
            return self._ledger.db.execute(f"SELECT 1 FROM {self._table} WHERE id = ?",
                                           (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._ledger.lock:
            return int(self._ledger.db.execute(f"SELECT COUNT(*) FROM {self._table}")
                       .fetchone()[0])

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self.items())  # type: ignore[misc]

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:  # type: ignore[override]
        """Every entry in id order, read in chunks (never the whole table at once)."""
        for key, value in self.raw_items():
            yield key, _loads(value, self._table, key)

    def raw_items(self) -> Iterator[tuple[str, RawJson]]:
        """``items`` with each value as its JSON text (what the catalog's files take as it
        is: ``CatalogStore.save_index``)."""
        last = None
        while True:
            with self._ledger.lock:
                self._ledger.commit()
                if last is None:
                    rows = self._ledger.db.execute(
                        f"SELECT id, value FROM {self._table} ORDER BY id LIMIT ?",
                        (READ_CHUNK,)).fetchall()
                else:
                    rows = self._ledger.db.execute(
                        f"SELECT id, value FROM {self._table} WHERE id > ? ORDER BY id "
                        "LIMIT ?", (last, READ_CHUNK)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for key, value in rows:
                yield key, RawJson(value)


class LedgerSequence(Sequence[T], Generic[T]):
    """An append-only table of the ledger read back as a sequence, in the order written,
    one row at a time (so a report of 100,000 datasets is not held whole)."""

    def __init__(self, ledger: CrawlLedger, table: str, decode: Callable[[dict[str, Any]], T]):
        self._ledger = ledger  # keeps the ledger's file while the sequence is in use
        self._table = table
        self._decode = decode

    def __len__(self) -> int:
        with self._ledger.lock:
            return int(self._ledger.db.execute(f"SELECT COUNT(*) FROM {self._table}")
                       .fetchone()[0])

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(index)
        with self._ledger.lock:
            row = self._ledger.db.execute(
                f"SELECT {self._columns} FROM {self._table} ORDER BY seq LIMIT 1 OFFSET ?",
                (position,)).fetchone()
        return self._decode(self._row_value(row))

    def __iter__(self) -> Iterator[T]:
        for row in self._rows():
            yield self._decode(self._row_value(row))

    def raw_values(self) -> Iterator[str]:
        """Each row's JSON text, in the order written (a report written as JSON takes them
        as they are: ``CrawlReport.json_pieces``)."""
        for row in self._rows():
            yield self._row_text(row)

    # the columns a row is read from, and how they become the row's value and JSON text
    # (``_FoundSequence`` adds the cache entry a reused dataset's row points at)
    _columns = "value"

    def _row_value(self, row: tuple[Any, ...]) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(row[0])
        return value

    def _row_text(self, row: tuple[Any, ...]) -> str:
        return str(row[0])

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        """The rows' ``_columns``, in the order written, ``READ_CHUNK`` at a time."""
        last = 0
        while True:
            with self._ledger.lock:
                self._ledger.commit()
                rows = self._ledger.db.execute(
                    f"SELECT seq, {self._columns} FROM {self._table} WHERE seq > ? "
                    "ORDER BY seq LIMIT ?", (last, READ_CHUNK)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for row in rows:
                yield tuple(row[1:])

    def where_id(self, dataset_id: str) -> T | None:
        """The first row of ``dataset_id`` (outcomes only)."""
        with self._ledger.lock:
            row = self._ledger.db.execute(
                f"SELECT value FROM {self._table} WHERE id = ? ORDER BY seq LIMIT 1",
                (dataset_id,)).fetchone()
        return None if row is None else self._decode(json.loads(row[0]))

    def tally(self) -> dict[str, int]:
        """Outcomes per status, and how many are breaking and reused (outcomes only)."""
        with self._ledger.lock:
            rows = self._ledger.db.execute(
                f"SELECT status, COUNT(*), SUM(breaking), SUM(reused) FROM {self._table} "
                "GROUP BY status").fetchall()
        out: dict[str, int] = {"breaking": 0, "reused": 0}
        for status, count, breaking, reused in rows:
            out[status] = int(count)
            out["breaking"] += int(breaking or 0)
            out["reused"] += int(reused or 0)
        return out


class _FoundSequence(LedgerSequence[DiscoveredDataset]):
    """``found``: a row with a copy of a cache entry (``add_found``) is read back as the
    entry's schema with the row's URN and catalog facts: what ``_found_schema`` gives."""

    _columns = "value, cached"

    def _row_value(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return _found_value(*row)

    def _row_text(self, row: tuple[Any, ...]) -> str:
        value, cached = row
        return str(value) if cached is None else _dumps(_found_value(value, cached))


def _found_value(value: str, cached: str | None) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(value)
    if cached is not None:
        schema = _loads(cached, "cache", "found")["schema"]
        out["schema"] = {**schema, "urn": out.pop("urn"), "catalog": out.pop("catalog")}
    return out
