"""A crawl: discover every source, compare each dataset with its last catalogued version,
record new schema versions, and publish the catalog (artifact store, DataHub Lite, GMS).

    report = crawl_sources(config.sources, training=config.training)
    check_training_schema(report, config.training.dataset)   # SchemaError if breaking

Schema versions: a dataset gets version 1 when first seen, and a new version only when its
fingerprint (column names and physical types) changes. Each version is compared with the
*accepted* version (the baseline training runs against): a compatible change is accepted
automatically, a breaking one is not, and training on the dataset stops until the source
is fixed or someone runs ``autokfp catalog accept DATASET``.

A re-crawl reuses what is known (see ``CrawlCache``): unchanged inputs are not read, and
only datasets that were re-profiled or changed status are published again.
"""

from __future__ import annotations

import contextlib
import gc
import html
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from autokfp import storage
from autokfp.catalog.datahub import (
    PublishResult,
    column_tags,
    dataset_urn,
    metadata_proposals,
    publish,
    removal_proposals,
)
from autokfp.catalog.discovery import CrawlCache, DiscoveredDataset, Source, iter_discover
from autokfp.catalog.evolution import SchemaChange, compare_schemas
from autokfp.catalog.ledger import CrawlLedger
from autokfp.catalog.lineage import LineageGraph, load_lineage
from autokfp.catalog.profiling import DEFAULT_MAX_ROWS
from autokfp.catalog.schema import DatasetSchema, to_plain
from autokfp.catalog.store import CatalogStore, now_iso
from autokfp.catalog.workers import resolve_workers
from autokfp.config import RunConfig, TrainingSpec
from autokfp.errors import SchemaError
from autokfp.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DatasetOutcome:
    """What one crawl learnt about one dataset."""

    dataset_id: str
    source: str
    status: str  # new | unchanged | changed | failed | missing
    urn: str | None = None
    platform: str | None = None
    location: str | None = None
    version: int | None = None  # latest schema version
    accepted_version: int | None = None
    verdict: str | None = None  # latest vs accepted: unchanged | compatible | breaking
    breaking_columns: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    change: dict[str, Any] | None = None  # vs the previous version, when one was recorded now
    reused: bool = False
    rows: int | None = None
    columns: int | None = None
    sample_rows: int | None = None
    pii_columns: list[str] = field(default_factory=list)
    sensitive_columns: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def breaking(self) -> bool:
        return self.verdict == "breaking"

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


@dataclass
class CrawlReport:
    """The outcome of one crawl, per dataset and per source.

    ``datasets`` and ``found`` are sequences: a crawl's are read from its ledger on disk a
    row at a time (``catalog.ledger``), so iterate them rather than copying them whole. A
    dataset of ``found`` carries its schema, error and notes, not a reader (load the data
    with ``discovery.load_dataset``).
    """

    started: str
    seconds: float
    datasets: Sequence[DatasetOutcome]
    source_errors: dict[str, str]
    cache_hits: int
    cache_misses: int
    catalog: str
    published: dict[str, Any] = field(default_factory=dict)
    found: Sequence[DiscoveredDataset] = field(default_factory=list, repr=False)
    # {SQL source name: (database, schema)} as the crawl learned them from the connection
    naming: dict[str, tuple[str | None, str | None]] = field(default_factory=dict, repr=False)

    def outcome(self, dataset_id: str) -> DatasetOutcome | None:
        lookup = getattr(self.datasets, "where_id", None)
        if lookup is not None:
            found: DatasetOutcome | None = lookup(dataset_id)
            return found
        return next((d for d in self.datasets if d.dataset_id == dataset_id), None)

    def counts(self) -> dict[str, int]:
        statuses = ("new", "unchanged", "changed", "failed", "missing")
        tally = getattr(self.datasets, "tally", None)
        if tally is not None:
            known: dict[str, int] = tally()
            out = {s: known.get(s, 0) for s in statuses}
            out["breaking"], out["reused"] = known["breaking"], known["reused"]
        else:
            out = {s: sum(d.status == s for d in self.datasets) for s in statuses}
            out["breaking"] = sum(d.breaking for d in self.datasets)
            out["reused"] = sum(d.reused for d in self.datasets)
        out["sources_failed"] = len(self.source_errors)
        out["catalogued"] = out["new"] + out["unchanged"] + out["changed"]
        return out

    def _head(self) -> dict[str, Any]:
        return {"started": self.started, "seconds": round(self.seconds, 3),
                "counts": self.counts(), "catalog": self.catalog,
                "cache": {"hits": self.cache_hits, "misses": self.cache_misses},
                "source_errors": self.source_errors, "published": self.published}

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(), "datasets": [d.to_dict() for d in self.datasets]}

    def json_pieces(self) -> Iterator[str]:
        """``to_dict`` as JSON text, a dataset at a time (for a report of any size)."""
        yield '{"datasets": ['
        separator = "\n"
        # a crawl's outcomes are in its ledger as this very JSON: taken as they are
        raw = getattr(self.datasets, "raw_values", None)
        texts = raw() if raw is not None else (
            json.dumps(outcome.to_dict(), sort_keys=True, default=str)
            for outcome in self.datasets)
        for text in texts:
            yield separator + text
            separator = ",\n"
        head = json.dumps(self._head(), indent=1, sort_keys=True, default=str)
        yield "\n],\n" + head[1:].lstrip("\n")


def _dataset_tags(schema: DatasetSchema, breaking: bool) -> list[str]:
    tags = sorted({t for c in schema.columns for t in column_tags(c)
                   if t == "pii" or t.startswith("pii:") or t == "sensitive"})
    return tags + (["schema:breaking"] if breaking else [])


def _version_record(dataset_id: str, version: int, schema: DatasetSchema,
                    change: SchemaChange | None) -> dict[str, Any]:
    return {"dataset_id": dataset_id, "version": version, "fingerprint": schema.fingerprint,
            "recorded_at": now_iso(), "schema": schema.to_dict(),
            "change": change.to_dict() if change else None,
            "verdict": change.verdict if change else "new"}


def _evolve(store: CatalogStore, entry: dict[str, Any] | None, schema: DatasetSchema,
            used: set[str] | None) -> tuple[dict[str, Any], str, SchemaChange | None]:
    """Update one index entry with a freshly crawled schema; write a version if it changed.

    Returns the new entry, the crawl status (new, unchanged, changed) and the change
    against the previous version (when a version was recorded now).
    """
    dataset_id = schema.dataset_id
    fingerprint = schema.fingerprint
    stamp = now_iso()
    entry = dict(entry or {})
    latest = int(entry.get("latest_version") or 0)
    change: SchemaChange | None = None
    if latest == 0:
        store.write_version(dataset_id, _version_record(dataset_id, 1, schema, None))
        entry.update(first_seen=entry.get("first_seen") or stamp, latest_version=1,
                     accepted_version=1, accepted_fingerprint=fingerprint, last_changed=stamp,
                     verdict="unchanged", breaking_columns=[], changes=[])
        status = "new"
    else:
        status = "unchanged"
        if fingerprint != entry.get("fingerprint"):
            previous = store.version_schema(dataset_id, latest)
            change = compare_schemas(previous, schema, used)
            latest += 1
            store.write_version(dataset_id, _version_record(dataset_id, latest, schema, change))
            entry.update(latest_version=latest, last_changed=stamp)
            status = "changed"
            log.info("%s: schema v%d recorded (%s)", dataset_id, latest, change.summary())
        accepted = int(entry.get("accepted_version") or latest)
        if fingerprint == entry.get("accepted_fingerprint"):
            verdict, against = None, None
        elif change is not None and accepted == latest - 1:
            verdict, against = change.verdict, change
        elif accepted != latest or status == "unchanged":
            against = compare_schemas(store.version_schema(dataset_id, accepted), schema, used)
            verdict = against.verdict
        else:
            verdict, against = None, None
        if against is None or verdict != "breaking":
            # unchanged or compatible with what training accepted: this becomes the baseline
            entry.update(accepted_version=latest, accepted_fingerprint=fingerprint,
                         verdict="unchanged" if against is None else "compatible",
                         breaking_columns=[],
                         changes=[] if against is None else against.reasons())
        else:
            entry.update(verdict="breaking", breaking_columns=against.breaking_columns,
                         changes=against.reasons())
    entry.update(
        dataset_id=dataset_id, urn=dataset_urn(schema), source=dataset_id.split("/", 1)[0],
        platform=schema.platform, location=schema.location, format=schema.format,
        fingerprint=fingerprint, previous_row_count=entry.get("row_count"),
        row_count=schema.row_count, sample_rows=schema.sample_rows,
        columns=len(schema.columns), modified_at=schema.modified_at,
        pii_columns=[c.name for c in schema.columns if c.is_pii],
        sensitive_columns=[c.name for c in schema.columns if c.is_sensitive],
        tags=_dataset_tags(schema, entry.get("verdict") == "breaking"),
        last_crawled=stamp, last_error=None, status=status, missing_since=None,
    )
    return entry, status, change


def catalog_facts(entry: dict[str, Any]) -> dict[str, Any]:
    """What later steps and DataHub learn from an index entry (``DatasetSchema.catalog``)."""
    return {"schema_version": entry.get("latest_version"),
            "accepted_version": entry.get("accepted_version"),
            "verdict": entry.get("verdict"),
            "breaking_columns": list(entry.get("breaking_columns") or []),
            "changes": list(entry.get("changes") or []),
            "previous_row_count": entry.get("previous_row_count"),
            "last_crawled": entry.get("last_crawled")}


def _outcome(item: DiscoveredDataset, entry: dict[str, Any], status: str,
             change: SchemaChange | None) -> DatasetOutcome:
    schema = item.schema
    return DatasetOutcome(
        dataset_id=item.dataset_id, source=item.source_name, status=status, urn=entry["urn"],
        platform=schema.platform, location=schema.location,
        version=entry["latest_version"], accepted_version=entry["accepted_version"],
        verdict=entry["verdict"], breaking_columns=list(entry["breaking_columns"]),
        reasons=list(entry["changes"]), change=change.to_dict() if change else None,
        reused=item.reused, rows=schema.row_count, columns=len(schema.columns),
        sample_rows=schema.sample_rows, pii_columns=entry["pii_columns"],
        sensitive_columns=entry["sensitive_columns"], tags=entry["tags"], notes=item.notes)


def _tag_target(item: DiscoveredDataset, training: TrainingSpec | None) -> None:
    if training is None or not item.ok or item.dataset_id != training.dataset:
        return
    if training.target in item.schema.column_names:
        column = item.schema.column(training.target)
        if "target" not in column.tags:
            column.tags.append("target")
            item.cached_schema = None  # the schema differs from the cached one now


# --------------------------------------------------------------------------- crawl


def _sources_of(config_or_sources: RunConfig | Iterable[Source]) -> list[Source]:
    if isinstance(config_or_sources, RunConfig):
        return list(config_or_sources.sources)
    return list(config_or_sources)


def crawl_sources(
    sources: RunConfig | Iterable[Source],
    *,
    training: TrainingSpec | None = None,
    settings: Settings | None = None,
    sample_rows: int = DEFAULT_MAX_ROWS,
    refresh: bool = False,
    publish_metadata: bool = True,
    publish_sources: Iterable[str] = (),
    workers: int | str | None = None,
    on_found: Callable[[DiscoveredDataset], None] | None = None,
) -> CrawlReport:
    """Crawl sources into the catalog: schemas, schema versions, DataHub metadata.

    The crawl streams: each dataset is catalogued (schema version, index entry, crawl-cache
    entry, outcome) as its source yields it, its proposals go to the publisher, which sends
    them a batch at a time, and nothing of it is kept in memory; what the crawl must
    remember is in a ``CrawlLedger`` on disk. So memory does not grow with the number of
    datasets. Datasets that went missing are marked (and soft-deleted in DataHub) only
    once every source has been listed; a crawl that raises part-way marks none, and writes
    neither the index nor the cache (the next crawl redoes its work).

    Args:
        sources: the run config (its sources) or the sources themselves.
        training: the training spec; its target column is tagged ``target``.
        settings: state locations (default from the environment).
        sample_rows: profile at most this many rows per dataset.
        refresh: ignore the crawl cache and read every input again.
        publish_metadata: send changed datasets to the metadata file, DataHub Lite and GMS.
        publish_sources: with ``publish_metadata`` false, still send those of these sources
            (the sources DataHub ingestion leaves to the crawl: see ``catalog.ingest``).
        workers: processes that read and profile the datasets (``catalog.workers``: a
            number, or ``auto`` for the CPUs this process may use); default the run
            config's ``catalog.workers`` (``auto``). The catalog is the same whatever the
            count (``catalog.workers.ReadPool``).
        on_found: called with each dataset as the crawl records it in the report's
            ``found``, in that order and as it is read back from there (its catalog facts
            set): what needs each dataset once takes it here, without decoding the report
            again (``catalog.ingest``'s fingerprints of an unchanged re-run).

    Returns:
        The report; bad files, tables and sources are in it (``status == "failed"``,
        ``source_errors``), never raised. Its ``datasets`` and ``found`` are sequences read
        from the ledger's file a row at a time.

    Raises:
        StorageError: the artifact store holding the catalog cannot be read or written.
    """
    if training is None and isinstance(sources, RunConfig):
        training = sources.training
    if workers is None:
        workers = sources.catalog.workers if isinstance(sources, RunConfig) else "auto"
    source_list = _sources_of(sources)
    settings = settings or Settings.from_env()
    store = CatalogStore(settings)
    started_at, started = now_iso(), time.monotonic()
    ledger = CrawlLedger()
    source_errors: dict[str, str] = {}
    report = CrawlReport(started=started_at, seconds=0.0,
                         datasets=ledger.outcomes(_outcome_from_dict),
                         source_errors=source_errors, cache_hits=0, cache_misses=0,
                         catalog=store.root, found=ledger.found, naming={})
    graph = load_lineage(store)
    only = None if publish_metadata else set(publish_sources)
    with store.lock():
        ledger.index.load(store.iter_index(raw=True))
        if not refresh:
            ledger.cache.load(store.iter_cache(raw=True))
        cache = CrawlCache(ledger.cache)
        crawl = _Crawl(store, ledger, cache, graph, source_list, training, report, only,
                       resolve_workers(workers), on_found)
        with store.synced_together():  # the versions are durable before the index names them
            proposals = crawl.proposals(sample_rows)
            if only is None or only:
                published = _publish_schemas(proposals, store, settings)
                if published.proposals:
                    report.published = published.to_dict()
            else:
                for _ in proposals:  # nothing to publish: the crawl still runs
                    pass
        store.save_index(ledger.index.raw_items())
        listed = _crawled_sources(source_list, source_errors)
        stale = next(ledger.unseen("cache", listed), None)
        if cache.misses or stale is not None:  # a re-crawl that read nothing has nothing
            for dataset_id in ledger.unseen("cache", listed):  # new to remember
                del ledger.cache[dataset_id]
            store.save_cache(ledger.cache.raw_items())
    ledger.commit()
    report.cache_hits, report.cache_misses = cache.hits, cache.misses
    report.seconds = time.monotonic() - started
    storage.write_text_pieces(store.uri("last-crawl.json"), report.json_pieces())
    _log_report(report)
    return report


# datasets between full garbage collections: reading and profiling an object leaves
# reference cycles (pandas, the S3 client's requests) that only a full collection frees, and
# a process holding the libraries' many objects runs one rarely, so without this what a
# crawl leaves behind would grow with the object count until then (~1.5 KB per object)
COLLECT_EVERY = 500


_frozen_depth = 0
_was_frozen = False  # the outermost crawl found objects frozen already: it unfreezes none


@contextlib.contextmanager
def _libraries_frozen() -> Iterator[None]:
    """Leave what the process held before the crawl out of the crawl's collections.

    A full collection walks every tracked object, and a process that imported pandas,
    SQLAlchemy and DataHub's metadata classes holds millions: each of ``COLLECT_EVERY``'s
    collections took 0.3-0.6 CPU-s that way, a tenth of an unchanged re-crawl of 2,000
    datasets. ``gc.freeze`` moves the objects alive now out of the collector's view until
    the crawl ends (``gc.unfreeze``); the cycles the crawl itself leaves are collected as
    before. Nested crawls (the ingestion path's) unfreeze once, at the outermost end. A
    process that had frozen objects itself (a local task forked from the warm worker,
    ``autokfp.edge.taskfork``, which froze what it imported so that a task's collections
    do not copy those pages) is not unfrozen at all: ``gc.unfreeze`` cannot tell its
    objects from the crawl's, and what was alive at the crawl's start stays frozen there.
    """
    global _frozen_depth, _was_frozen
    if _frozen_depth == 0:
        _was_frozen = gc.get_freeze_count() > 0
        gc.freeze()
    _frozen_depth += 1
    try:
        yield
    finally:
        _frozen_depth -= 1
        if _frozen_depth == 0 and not _was_frozen:
            gc.unfreeze()


class _Crawl:
    """One crawl as a stream: ``proposals`` drives it (see ``crawl_sources``)."""

    def __init__(self, store: CatalogStore, ledger: CrawlLedger, cache: CrawlCache,
                 graph: LineageGraph, sources: list[Source], training: TrainingSpec | None,
                 report: CrawlReport, only: set[str] | None, workers: int = 1,
                 on_found: Callable[[DiscoveredDataset], None] | None = None):
        self.store, self.ledger, self.cache, self.graph = store, ledger, cache, graph
        self.sources, self.training, self.report, self.only = sources, training, report, only
        self.workers = workers
        self.on_found = on_found

    def proposals(self, sample_rows: int) -> Iterator[Any]:
        """Crawl, cataloguing each dataset as it comes and yielding the DataHub proposals of
        those to publish; after the last source, mark the missing and yield their soft
        deletes."""
        report = self.report
        nonempty: set[str] = set()  # the sources that yielded anything
        # the workers are forked inside: what the libraries hold is frozen, so the workers'
        # collections leave those pages shared (and closing stops them on every way out)
        with _libraries_frozen(), contextlib.closing(iter_discover(
                self.sources, sample_rows, self.cache, report.naming,
                self.workers)) as found:
            for count, item in enumerate(found, start=1):
                if count % COLLECT_EVERY == 0:
                    gc.collect()
                nonempty.add(item.source_name)
                _tag_target(item, self.training)
                schema = self._catalogue(item)
                self.ledger.add_found(item)
                if self.on_found is not None:
                    self.on_found(item)
                if schema is not None and self._published(item.source_name):
                    yield from metadata_proposals(schema)
        listed = _crawled_sources(self.sources, report.source_errors)
        for urn in self._mark_missing(listed, nonempty):
            yield from removal_proposals([urn])

    def _published(self, source: str) -> bool:
        return self.only is None or source in self.only

    def _catalogue(self, item: DiscoveredDataset) -> DatasetSchema | None:
        """Enter one dataset into the index (a new schema version, verdict, or failure) and
        record its outcome; return its schema when it is to be published: new, changed, or
        its verdict, accepted version or error changed. A failed source goes into the
        report's ``source_errors``."""
        if item.source_failed:
            self.report.source_errors[item.source_name] = item.error or "failed"
            return None
        self.ledger.mark_seen(item.dataset_id)
        index = self.ledger.index
        entry = index.get(item.dataset_id)
        if item.error:
            index[item.dataset_id] = _failed_entry(entry, item)
            self._record(DatasetOutcome(
                dataset_id=item.dataset_id, source=item.source_name, status="failed",
                platform=item.schema.platform, location=item.schema.location,
                version=(entry or {}).get("latest_version") or None,
                accepted_version=(entry or {}).get("accepted_version") or None,
                reused=item.reused, error=item.error, notes=item.notes))
            return None
        used = _used_columns(self.graph, item.schema)
        previous = dict(entry or {})
        entry, status, change = _evolve(self.store, entry, item.schema, used)
        index[item.dataset_id] = entry
        item.schema.catalog = catalog_facts(entry)
        self._record(_outcome(item, entry, status, change))
        republish = (not item.reused or status != "unchanged"
                     or previous.get("verdict") != entry["verdict"]
                     or previous.get("accepted_version") != entry["accepted_version"]
                     or bool(previous.get("last_error")))
        return item.schema if republish else None

    def _record(self, outcome: DatasetOutcome) -> None:
        self.ledger.add_outcome(outcome.dataset_id, outcome.status, outcome.breaking,
                                outcome.reused, outcome.to_dict())

    def _mark_missing(self, listed: set[str], nonempty: set[str]) -> Iterator[str]:
        """Datasets of a listed source that are gone keep their history, marked missing.

        Yields the URN of each one that went missing in this crawl, of a source whose
        proposals are published (to be soft-deleted in DataHub once; a later crawl that
        still misses it sends nothing). A source that failed (a folder or bucket that does
        not exist, access denied) marks nothing missing; one that was listed and found
        empty (an existing folder, or bucket and prefix, with nothing in it) marks all its
        datasets missing, with a warning naming it: a dataset found again later is live
        again, in the catalog and in DataHub.
        """
        index = self.ledger.index
        emptied: dict[str, int] = {}
        for dataset_id in self.ledger.unseen("idx", listed):
            entry = index[dataset_id]
            newly = entry.get("status") != "missing"
            if newly:
                entry.update(status="missing", missing_since=now_iso())
                index[dataset_id] = entry
                if entry["source"] not in nonempty:
                    emptied[entry["source"]] = emptied.get(entry["source"], 0) + 1
            self._record(DatasetOutcome(
                dataset_id=dataset_id, source=entry["source"], status="missing",
                urn=entry.get("urn"), version=entry.get("latest_version") or None,
                accepted_version=entry.get("accepted_version") or None,
                error=f"no longer found in source '{entry['source']}' "
                      f"(since {entry['missing_since']})"))
            if newly and entry.get("urn") and self._published(entry["source"]):
                yield entry["urn"]
        for source, count in emptied.items():
            log.warning("source '%s' was listed and holds no dataset now: its %d catalogued "
                        "dataset(s) are marked missing (soft-deleted in DataHub). If its path "
                        "or uri is wrong, fix it and crawl again: datasets found again are "
                        "live again", source, count)


def _outcome_from_dict(value: dict[str, Any]) -> DatasetOutcome:
    return DatasetOutcome(**value)


def _publish_schemas(proposals: Iterable[Any], store: CatalogStore,
                     settings: Settings) -> PublishResult:
    """One metadata file of the crawl's proposals (its schemas', then the soft deletes of
    datasets that went missing), sent on to DataHub Lite and GMS a batch at a time as the
    crawl yields them."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"crawl-{stamp}-{uuid.uuid4().hex[:6]}.json"
    return publish(proposals, store.uri("metadata", name), settings.catalog_dir)


def _log_report(report: CrawlReport) -> None:
    for source, error in report.source_errors.items():
        log.warning("source '%s' could not be crawled: %s", source, error)
    counts = report.counts()
    log.info("crawl: %d catalogued (%d new, %d changed, %d breaking, %d reused), %d failed, "
             "%d source(s) failed in %.1fs", counts["catalogued"], counts["new"],
             counts["changed"], counts["breaking"], counts["reused"], counts["failed"],
             counts["sources_failed"], report.seconds)


def _used_columns(graph: LineageGraph, schema: DatasetSchema) -> set[str] | None:
    return graph.columns_used(dataset_urn(schema))


def _failed_entry(entry: dict[str, Any] | None, item: DiscoveredDataset) -> dict[str, Any]:
    """A dataset that could not be read keeps its last good version; the error is noted."""
    entry = dict(entry or {})
    entry.setdefault("latest_version", 0)
    entry.setdefault("accepted_version", 0)
    entry.setdefault("first_seen", now_iso())
    entry.update(dataset_id=item.dataset_id, source=item.source_name,
                 platform=entry.get("platform") or item.schema.platform,
                 location=item.schema.location, last_error=item.error,
                 last_crawled=now_iso(), status="failed")
    return entry


def _crawled_sources(sources: list[Source], source_errors: dict[str, str]) -> set[str]:
    return {s.name for s in sources if s.name not in source_errors}


# --------------------------------------------------------------------------- training


def check_training_schema(report: CrawlReport, dataset_id: str) -> None:
    """Stop training on a dataset whose schema changed in a breaking way.

    Raises:
        SchemaError: the crawled schema of ``dataset_id`` breaks the accepted version; the
            message names the columns and the command that accepts the change.
    """
    outcome = report.outcome(dataset_id)
    if outcome is None or not outcome.breaking:
        return
    columns = ", ".join(f"'{c}'" for c in outcome.breaking_columns)
    reasons = "\n  - ".join(outcome.reasons)
    raise SchemaError(
        f"the schema of training dataset '{dataset_id}' changed in a breaking way: "
        f"version v{outcome.version} breaks accepted version v{outcome.accepted_version} "
        f"in column(s) {columns}:\n  - {reasons}\n"
        "Training is stopped so no model is built on columns it does not understand. Fix "
        f"the source, or if the new schema is intended run 'autokfp catalog accept "
        f"{dataset_id}' and train again."
    )


def accept_schema(dataset_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Accept the latest schema version of a dataset as the baseline training runs against.

    Returns:
        ``{"dataset_id", "accepted_version", "previous_accepted_version", "changed"}``.

    Raises:
        DataError: the dataset is not in the catalog (the message lists those that are),
            or it has no readable version yet.
    """
    from autokfp.errors import DataError

    settings = settings or Settings.from_env()
    store = CatalogStore(settings)
    with store.lock():
        index = store.load_index()
        entry = store.entry(dataset_id) if dataset_id not in index else index[dataset_id]
        latest = int(entry.get("latest_version") or 0)
        if latest == 0:
            raise DataError(f"dataset '{dataset_id}' has never been read successfully "
                            f"({entry.get('last_error')}); there is no schema to accept")
        before = int(entry.get("accepted_version") or 0)
        entry.update(accepted_version=latest, accepted_fingerprint=entry["fingerprint"],
                     verdict="unchanged", breaking_columns=[], changes=[],
                     accepted_at=now_iso(), accepted_by="autokfp catalog accept")
        entry["tags"] = [t for t in entry.get("tags", []) if t != "schema:breaking"]
        index[dataset_id] = entry
        store.save_index(index)
    schema = store.version_schema(dataset_id, latest)
    schema.catalog = catalog_facts(entry)
    publish(metadata_proposals(schema),
            store.uri("metadata", f"accept-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-"
                                  f"{uuid.uuid4().hex[:6]}.json"),
            settings.catalog_dir)
    return {"dataset_id": dataset_id, "accepted_version": latest,
            "previous_accepted_version": before, "changed": before != latest}


# --------------------------------------------------------------------------- reports


def catalog_proposals(report: CrawlReport,
                      replace: dict[str, DatasetSchema] | None = None) -> Iterator[Any]:
    """DataHub proposals for every dataset the crawl read (``replace`` swaps in schemas),
    made one dataset at a time as they are used (``write_metadata`` writes them so)."""
    replace = replace or {}
    for item in report.found:
        if item.ok and not item.source_failed:
            yield from metadata_proposals(replace.get(item.dataset_id, item.schema))


_STATUS_COLOURS = {"new": "#0969da", "unchanged": "#57606a", "changed": "#9a6700",
                   "failed": "#cf222e", "missing": "#8250df"}


def render_crawl_html(report: CrawlReport) -> str:
    """The crawl report as one self-contained HTML page (for the Kubeflow UI)."""

    def e(value: Any) -> str:
        return html.escape("" if value is None else str(value))

    counts = report.counts()
    rows = []
    for d in sorted(report.datasets, key=lambda d: (not d.breaking, d.status != "failed",
                                                    d.dataset_id)):
        verdict = "BREAKING" if d.breaking else (d.verdict or "")
        detail = d.error or "; ".join(d.reasons + d.notes)
        colour = "#cf222e" if d.breaking else _STATUS_COLOURS.get(d.status, "#1f2328")
        schema = f"v{d.version}" if d.version else "-"
        if d.version and d.accepted_version and d.accepted_version != d.version:
            schema += f" (accepted v{d.accepted_version})"
        rows.append(
            f"<tr><td>{e(d.dataset_id)}</td><td style='color:{colour};font-weight:600'>"
            f"{e(d.status)}</td><td>{e(schema)}</td><td>{e(verdict)}</td>"
            f"<td>{e(d.rows)}</td><td>{e(d.columns)}</td><td>{e(', '.join(d.tags))}</td>"
            f"<td>{e(detail)}</td></tr>")
    errors = "".join(f"<li><b>{e(s)}</b>: {e(m)}</li>" for s, m in report.source_errors.items())
    notes = "".join(f"<li><b>{e(d.dataset_id)}</b>: {e(n)}</li>"
                    for d in report.datasets for n in d.notes)
    summary = (f"{counts['catalogued']} dataset(s) catalogued ({counts['new']} new, "
               f"{counts['changed']} changed, {counts['breaking']} breaking, {counts['reused']} "
               f"reused from the last crawl), {counts['failed']} failed, "
               f"{counts['sources_failed']} source(s) failed, in {report.seconds:.1f}s")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Data discovery"
        "</title><style>body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328}"
        "table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid "
        "#d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}th{background:#f6f8fa}"
        "</style></head><body><h1>Data discovery</h1>"
        f"<p>{e(summary)}. Catalog: <code>{e(report.catalog)}</code></p>"
        + (f"<h2>Sources that failed</h2><ul>{errors}</ul>" if errors else "")
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "<h2>Datasets</h2><table><thead><tr><th>Dataset</th><th>Status</th><th>Schema</th>"
        "<th>Verdict</th><th>Rows</th><th>Columns</th><th>Tags</th><th>Details</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></body></html>"
    )
