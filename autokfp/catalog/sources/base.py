"""What every kind of data source shares: the ``Source`` interface, the registry of kinds,
and the result of discovering one file or table (``DiscoveredDataset``, ``CrawlCache``).

A kind of source (folder, gcs, sql, ...) is one module in this package holding one class
that satisfies ``Source`` and registers itself with ``@register_source("<kind>")``, where
``<kind>`` is the ``kind`` of its config model in ``autokfp.config``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import numpy as np
import pandas as pd

from autokfp.catalog.schema import DatasetSchema
from autokfp.errors import AutokfpError, ConfigError, DataError

if TYPE_CHECKING:
    from autokfp.catalog.workers import Pending, ReadPool

log = logging.getLogger("autokfp.catalog.discovery")

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
    # a reused dataset's schema as the crawl cache held it (plain JSON): the crawl's ledger
    # records it without walking ``schema`` again (``ledger._found_schema``); whoever
    # changes ``schema`` beyond its URN and catalog facts sets this to None
    cached_schema: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # the crawl cache's entries ``cached_schema`` was read from (the crawl's ledger records a
    # reused dataset by a copy of that entry: ``CrawlLedger.add_found``)
    cached_in: Any = field(default=None, repr=False, compare=False)

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
        if self._reader is None and self.error is None:  # read back from a crawl's report
            raise DataError(f"dataset '{self.dataset_id}' comes from a crawl's report, which "
                            "keeps its schema, not a way to read it; load it with "
                            f"catalog.discovery.load_dataset(config, '{self.dataset_id}')")
        if self._reader is None:
            raise DataError(f"dataset '{self.dataset_id}' cannot be loaded: {self.error}")
        return self._reader()


class CrawlCache:
    """What earlier crawls learnt: per dataset, the input's signature and its schema or error.

    ``entries`` is plain JSON (``{dataset_id: {"signature", "schema", "error", "notes"}}``)
    so the catalog can keep it in the artifact store between runs.
    """

    def __init__(self, entries: MutableMapping[str, dict[str, Any]] | None = None):
        # a dict is copied; another mapping (the crawl's on-disk ledger) is used as it is
        self.entries: MutableMapping[str, dict[str, Any]] = (
            dict(entries or {}) if entries is None or isinstance(entries, dict) else entries)
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
                                 reused=True, _reader=reader, cached_schema=entry["schema"],
                                 cached_in=self.entries)

    def store(self, item: DiscoveredDataset) -> None:
        if item.signature:
            self.entries[item.dataset_id] = {
                "signature": item.signature, "schema": item.schema.to_dict(),
                "error": item.error, "notes": list(item.notes)}


def signature_of(*parts: Any) -> str:
    text = json.dumps(parts, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def iso_utc(stamp: float | datetime | None) -> str | None:
    if stamp is None:
        return None
    if isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    else:
        moment = datetime.fromtimestamp(stamp, tz=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")



class LoadedData(NamedTuple):
    """One dataset read in full, and where it came from."""

    frame: pd.DataFrame
    platform: str
    location: str
    format: str | None


class Source(Protocol):
    """One configured data source of some kind: it lists, profiles and loads its datasets.

    A dataset id is ``<source name>/<relative path or table>``; ``relative`` below is the
    part after the first ``/``.
    """

    kind: ClassVar[str]
    name: str

    def discover(self, sample_rows: int, cache: CrawlCache | None,
                 pool: ReadPool | None = None) -> Iterable[DiscoveredDataset | Pending]:
        """Profile every selected dataset; failures are reported per dataset, never raised.
        Each one is yielded as it is profiled (the crawl keeps none). With a ``pool``
        (``catalog.workers``), a dataset whose reading needs nothing of this process may be
        handed to a worker: a ``Pending`` is yielded for it, resolved in order by
        ``discovery.iter_discover``."""
        ...

    def list_datasets(self) -> list[str]:
        """The relative names of the datasets the source holds, without reading data."""
        ...

    def load(self, dataset_id: str, relative: str) -> LoadedData:
        """Read one dataset in full; DataError (see ``missing_error``) when it is not there."""
        ...

    def describe_error(self, exc: BaseException) -> str:
        """A message for a failure of this source, with no secret in it."""
        ...

    def urn(self, relative: str) -> str:
        """The DataHub URN of one dataset, as DataHub's own source for the platform names it."""
        ...


SOURCE_KINDS: dict[str, Callable[[Any], Source]] = {}


def register_source(kind: str) -> Callable[[type], type]:
    """Class decorator: the class reads sources whose config ``kind`` is ``kind``."""

    def register(cls: type) -> type:
        cls.kind = kind  # type: ignore[attr-defined]
        SOURCE_KINDS[kind] = cls
        return cls

    return register


def open_source(config: Any) -> Source:
    """The ``Source`` for one source config model (``FolderSource``, ``SqlSource``, ...)."""
    kind = getattr(config, "kind", None)
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"unknown source kind: {type(config).__name__}; "
                          f"known kinds: {', '.join(sorted(SOURCE_KINDS))}")
    return SOURCE_KINDS[kind](config)


def missing_error(dataset_id: str, source: Source) -> DataError:
    """The error for a dataset that is not in ``source``, listing the ones that are."""
    try:
        existing = [f"{source.name}/{rel}" for rel in source.list_datasets()]
    except Exception as exc:  # the source itself is broken: say that instead
        return DataError(
            f"dataset '{dataset_id}' not found; source '{source.name}' cannot be listed: "
            f"{source.describe_error(exc)}"
        )
    return DataError(
        f"dataset '{dataset_id}' does not exist; source '{source.name}' has: "
        f"{_listing(existing)}. Set training.dataset to one of them"
    )


# --------------------------------------------------------------------------- helpers


def datahub_urn(platform: str, name: str, config: Any) -> str:
    """A dataset URN as DataHub's sources make it: platform, the source's
    ``platform_instance`` (if any), ``name`` and the source's ``env``.

    DataHub's builder parses and validates the platform and env again for every dataset (a
    tenth of an unchanged re-crawl); a name it would keep as it is (no character it encodes,
    not lower-cased) goes between the parts DataHub built for the same platform and env,
    the same text. Any other name is built by DataHub itself.
    """
    from datahub.emitter import mce_builder
    from datahub.utilities.urn_encoder import UrnEncoder

    instance = getattr(config, "platform_instance", None)
    env = getattr(config, "env", None) or "PROD"
    full = f"{instance}.{name}" if instance else name
    if full and not mce_builder.DATASET_URN_TO_LOWER and not UrnEncoder.contains_reserved_char(full):
        parts = _URN_PARTS.get((platform, env))
        if parts is None:
            parts = _URN_PARTS[(platform, env)] = _urn_parts(platform, env)
        if parts:
            return parts[0] + full + parts[1]
    return mce_builder.make_dataset_urn_with_platform_instance(platform, name, instance, env)


_URN_PARTS: dict[tuple[str, str], tuple[str, str] | tuple[()]] = {}


def _urn_parts(platform: str, env: str) -> tuple[str, str] | tuple[()]:
    """What DataHub puts before and after a plain dataset name for this platform and env;
    () when its URN of a probe name is not of that form (the builder is then always used)."""
    from datahub.emitter.mce_builder import make_dataset_urn_with_platform_instance

    probe = "autokfp_probe"
    try:
        urn = make_dataset_urn_with_platform_instance(platform, probe, None, env)
    except Exception:  # an invalid platform or env: the builder raises its own error
        return ()
    at = urn.find(f",{probe},")
    if at < 0 or urn.count(probe) != 1:
        return ()
    return urn[:at + 1], urn[at + 1 + len(probe):]


def object_name(uri: str) -> str:
    """DataHub's dataset name of a file or object: the path without its scheme and without
    leading or trailing slashes (``s3://b/k.csv`` -> ``b/k.csv``, ``/data/x.csv`` ->
    ``data/x.csv``), as its s3/gcs/file source strips it."""
    _, sep, rest = uri.partition("://")
    return (rest if sep else uri).strip("/")


def file_format(path: str) -> str | None:
    """``csv``, ``parquet`` or ``jsonl`` from a file name's extension; None if unsupported."""
    return FORMATS.get(os.path.splitext(path.lower())[1])


def selected(relative: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    rel = relative.lower()
    base = rel.rsplit("/", 1)[-1]

    def matches(pattern: str) -> bool:
        pattern = pattern.lower()
        return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(base, pattern)

    return any(matches(p) for p in include) and not any(matches(p) for p in exclude)


def empty_error(label: str) -> DataError:
    return DataError(f"'{label}' has 0 rows; check the export that writes it")


def failed(
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


def describe(exc: BaseException) -> str:
    if isinstance(exc, AutokfpError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}"


def bottom_k(chunks: Iterable[pd.DataFrame], k: int) -> tuple[pd.DataFrame, int]:
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
        array = column.to_numpy()
        values: Any = array[~pd.isna(array)]  # dropna's own test, without a new Series
        if len(values) > 1000:
            values = column.dropna().sample(1000, random_state=_SEED)
        kinds = {type(v).__name__ for v in values}
        if {"int", "float"} >= kinds or len(kinds) < 2:
            continue
        note = (f"column '{name}' of '{label}' mixes {', '.join(sorted(kinds))} values; "
                "it is catalogued as text")
        log.warning(note)
        notes.append(note)
    return notes


