"""Reading data files (CSV, Parquet, JSON lines) wherever they are: what the folder and
object-store sources (gcs, s3) share. A file is profiled on a streamed random sample and
loaded in full on demand."""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from autokfp import storage
from autokfp.catalog.profiling import profile_frame
from autokfp.catalog.sources.base import (
    _SEED,
    FORMATS,
    CrawlCache,
    DiscoveredDataset,
    LoadedData,
    bottom_k,
    datahub_urn,
    describe,
    empty_error,
    failed,
    file_format,
    log,
    missing_error,
    mixed_type_notes,
    object_name,
    selected,
)
from autokfp.errors import DataError

if TYPE_CHECKING:
    from autokfp.catalog.workers import Pending, ReadPool


def _restore_index(df: pd.DataFrame) -> pd.DataFrame:
    # A named index saved by DataFrame.to_parquet is data the writer meant to keep.
    if any(name is not None for name in df.index.names):
        return df.reset_index()
    return df


# a frame's attrs key: what reading it changed (the discover step reports and audits it)
DATA_CHANGES = "autokfp.data_changes"
CSV_DELIMITERS = (",", ";", "\t", "|")


def csv_layout(path: Path, encoding: str, label: str) -> tuple[str, list[str]]:
    """The delimiter of a CSV file and notes on what reading it will change.

    A header without commas but with a delimiter that every sampled line repeats as often
    (``;`` from a spreadsheet set to a European locale, tabs, pipes) is read with that
    delimiter. Column names the header repeats are kept as pandas renames them
    (``x1``, ``x1.1``), and each rename is noted: both columns stay, under told names.
    """
    import csv

    with open(path, encoding=encoding, newline="") as handle:
        head = handle.read(256 * 1024)
    lines = [line for line in head.splitlines()[:21] if line.strip()]
    if len(head) == 256 * 1024 and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut
    notes: list[str] = []
    if not lines:
        return ",", notes
    sep = ","
    counts = {d: lines[0].count(d) for d in CSV_DELIMITERS}
    if counts[","] == 0:
        steady = [d for d in CSV_DELIMITERS[1:] if counts[d] > 0 and all(
            line.count(d) == counts[d] for line in lines[1:])]
        if steady:
            sep = max(steady, key=lambda d: counts[d])
            shown = "tab" if sep == "\t" else f"'{sep}'"
            notes.append(f"'{label}' is delimited by {shown}, not commas (detected from its "
                         f"header and first {len(lines)} lines); read it so")
    header = next(csv.reader([lines[0]], delimiter=sep), [])
    seen: dict[str, int] = {}
    renamed = []
    for name in header:
        if name in seen:
            seen[name] += 1
            renamed.append(f"'{name}' -> '{name}.{seen[name]}'")
        else:
            seen[name] = 0
    if renamed:
        notes.append(f"the header of '{label}' repeats column names; the repeats were renamed "
                     f"({', '.join(renamed[:20])}{' ...' if len(renamed) > 20 else ''}) so no "
                     "column is lost; rename them in the file if they mean different things, or "
                     "drop one")
    return sep, notes


def _read_chunks(path: Path, fmt: str, encoding: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if fmt == "csv":
        sep, _ = csv_layout(path, encoding, str(path))
        with pd.read_csv(path, encoding=encoding, chunksize=chunk_rows, sep=sep) as reader:
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


def note_latin1(label: str, notes: list[str]) -> None:
    """Record (in ``notes``, the frame's ``DATA_CHANGES``) and log that the file ``label``
    is not UTF-8 and was read as latin-1: what every reader of a text file says then."""
    note = f"'{label}' is not UTF-8; read it as latin-1"
    log.warning(note)
    notes.append(note)


def mixed_text_note(name: str, dataset: str, shown: str) -> str:
    """The data change of a column that mixes text (``shown``: the first text value) with
    numbers or booleans, written as text (the discover step's whole read and the streamed
    JSON-lines copy say the same)."""
    return (f"column '{name}' of '{dataset}' mixes text (e.g. '{shown[:40]}') with numbers or "
            "booleans, which one Parquet column cannot hold; it was written as text. Fix the "
            "values in the file if it is a number column")


def note_index_fields(label: str, fields: int, notes: list[str]) -> None:
    """Record (in ``notes``, the frame's ``DATA_CHANGES``) and log that the rows of the CSV
    file ``label`` have ``fields`` more fields than its header: pandas reads the first
    ``fields`` of each row as the frame's index, which is not a column, so the training
    data has no column for them (what ``pd.read_csv`` does; the streamed copy does the
    same and says so)."""
    note = (f"the rows of '{label}' have {fields} more field{'s' if fields > 1 else ''} than "
            f"its header; pandas reads the first {fields} of each row as the row index, not a "
            "column, so they are not in the training data. Name them in the header to keep "
            "them")
    log.warning(note)
    notes.append(note)


def note_short_rows(label: str, count: int, first: tuple[int, str], notes: list[str]) -> None:
    """Record (in ``notes``, the frame's ``DATA_CHANGES``) and log that ``count`` rows of the
    CSV file ``label`` have fewer fields than its header (``first``: the first one's data
    row and text): pandas fills the missing fields with missing values (the whole read and
    the streamed copy alike). The row's text is not shown: a whole row of the training data
    (names, e-mails) has no place in a log or the audit trail; its number finds it."""
    row, _ = first
    note = (f"{count} row{'s' if count > 1 else ''} of '{label}' "
            f"{'have' if count > 1 else 'has'} fewer fields than its header (the first: data "
            f"row {row}); the missing fields were read as missing values. Fill them in the "
            "file if they are known")
    log.warning(note)
    notes.append(note)


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
            note_latin1(label, notes)
        except EmptyDataError:
            raise empty_error(label) from None
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"cannot read '{label}' as {fmt}: {describe(exc)}; fix or re-export the file"
            ) from exc
    raise AssertionError("unreachable")


def parquet_sample(path: Path, k: int, max_groups: int = 8) -> tuple[pd.DataFrame, int]:
    """A bounded sample of a Parquet file and its exact row count, from its footer.

    The row count comes from the footer (no data is read for it). A file of at most ``k``
    rows is read whole. A larger one is sampled from at most ``max_groups`` row groups
    picked at random (seeded) across the file, each read on its own and sampled uniformly
    in proportion to its size, so memory stays bounded by one row group plus ``k`` rows and
    a file of many row groups is not read whole (a file of one row group is).
    """
    import numpy as np
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    meta = handle.metadata
    total = int(meta.num_rows)
    if total <= k:
        return _restore_index(handle.read().to_pandas()), total
    rng = np.random.default_rng(_SEED)
    groups = sorted(int(g) for g in rng.permutation(handle.num_row_groups)[:max_groups])
    sizes = [meta.row_group(g).num_rows for g in groups]
    parts = []
    for group, size in zip(groups, sizes):
        quota = min(size, int(np.ceil(k * size / max(sum(sizes), 1))))
        frame = _restore_index(handle.read_row_group(group).to_pandas())
        parts.append(frame.iloc[np.sort(rng.choice(len(frame), quota, replace=False))])
    sample = pd.concat(parts, ignore_index=True)
    if len(sample) > k:
        sample = sample.iloc[np.sort(rng.choice(len(sample), k, replace=False))]
    return sample.reset_index(drop=True), total


def _sample_file(
    path: Path, fmt: str, label: str, k: int, notes: list[str]
) -> tuple[pd.DataFrame, int, str]:
    if fmt == "parquet":
        encoding, result = _with_encoding(label, fmt, lambda _: parquet_sample(path, k), notes)
    else:
        encoding, result = _with_encoding(
            label, fmt, lambda enc: bottom_k(_read_chunks(path, fmt, enc, k), k), notes
        )
    sample, total = result  # type: ignore[misc]
    if total == 0:
        raise empty_error(label)
    if fmt == "csv":
        notes += csv_layout(path, encoding, label)[1]
    return sample, total, encoding


def read_file(path: Path, fmt: str, label: str) -> pd.DataFrame:
    """Read a whole local file; DataError names the file and the parser's complaint."""

    layout: list[str] = []

    def work(encoding: str) -> pd.DataFrame:
        if fmt == "csv":
            sep, found = csv_layout(path, encoding, label)
            layout[:] = found
            return pd.read_csv(path, encoding=encoding, low_memory=False, sep=sep)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, encoding=encoding)
        return _restore_index(pd.read_parquet(path))

    notes: list[str] = []
    encoding, df = _with_encoding(label, fmt, work, notes)
    assert isinstance(df, pd.DataFrame)
    if len(df) == 0:
        raise empty_error(label)
    if fmt == "csv" and not isinstance(df.index, pd.RangeIndex):  # more fields than names
        note_index_fields(label, df.index.nlevels, layout)
    elif fmt == "csv" and len(df.columns) > 1 and df.iloc[:, -1].isna().any():
        # a row with fewer fields than the header has its last column missing: count them
        _note_short_rows(path, encoding, label, [str(c) for c in df.columns], layout)
    df.attrs[DATA_CHANGES] = notes + layout
    return df


def _note_short_rows(path: Path, encoding: str, label: str, names: list[str],
                     notes: list[str]) -> None:
    """Note the rows of a CSV file that pandas filled with missing values (fewer fields than
    the header), counted by Arrow's parser as the streamed copy counts them."""
    from autokfp.catalog.csv_stream import short_rows

    sep, _ = csv_layout(path, encoding, label)
    try:
        count, first = short_rows(path, sep, encoding, names)
    except Exception as exc:  # noqa: BLE001 - pandas read it: say what cannot be counted
        note = (f"'{label}' may have rows with fewer fields than its header, read as missing "
                f"values; they could not be counted ({describe(exc)})")
        log.warning(note)
        notes.append(note)
        return
    if first is not None:
        note_short_rows(label, count, first, notes)


def nested_json_fields(sample: pd.DataFrame) -> list[list[Any]]:
    """The paths inside the nested objects of a JSON-lines sample (``address.city``,
    ``items.sku`` for a list of objects), found by DataHub's own JSON schema inference
    (``construct_schema`` with '.'), so the schema's field paths are the ones DataHub's
    s3/gcs/file source gives the file. Top-level paths are left out: they are the columns.

    DataHub infers from the first 100 records; autokfp from its random sample (the same
    records for a file of at most ``sample_rows`` rows).
    """
    from datahub.ingestion.source.schema_inference.object import construct_schema

    nested = [c for c in sample.columns if sample[c].dtype == object
              and sample[c].map(lambda v: isinstance(v, (dict, list))).any()]
    if not nested:
        return []
    records = [{str(c): v for c, v in zip(nested, row) if isinstance(v, (dict, list))}
               for row in sample[nested].itertuples(index=False, name=None)]
    out = []
    for path, found in construct_schema(records, delimiter=".").items():
        if len(path) > 1:
            kind = found["type"]
            out.append([found["delimited_name"],
                        kind.__name__ if isinstance(kind, type) else str(kind),
                        bool(found["nullable"])])
    return out


def _read_and_profile(open_path: Callable[[], AbstractContextManager[Path]], fmt: str,
                      label: str, dataset_id: str, platform: str, k: int,
                      modified_at: str | None) -> tuple[Any, str | None, list[str]]:
    """A file's sample read and profiled: ``(schema, None, notes)``, or ``(None, error,
    notes)`` when it cannot be read (what ``discover_file`` makes a dataset of)."""
    notes: list[str] = []
    try:
        with open_path() as path:
            sample, total, _ = _sample_file(path, fmt, label, k, notes)
        notes += mixed_type_notes(sample, label)
        schema = profile_frame(
            sample, dataset_id, platform, label, fmt=fmt, row_count=total, max_rows=k
        )
        schema.modified_at = modified_at
        if fmt == "jsonl":
            schema.nested_fields = nested_json_fields(sample)
    except Exception as exc:
        return None, describe(exc), notes
    return schema, None, notes


def read_local_file(path: Path, fmt: str, label: str, dataset_id: str, platform: str, k: int,
                    modified_at: str | None) -> tuple[Any, str | None, list[str]]:
    """``_read_and_profile`` of a local file: what a crawl's worker runs
    (``catalog.workers``)."""
    return _read_and_profile(partial(nullcontext, path), fmt, label, dataset_id, platform, k,
                             modified_at)


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
    first_open: Callable[[], AbstractContextManager[Path]] | None = None,
    pool: ReadPool | None = None,
    local_path: Path | None = None,
) -> DiscoveredDataset | Pending:
    """One file profiled on a sample (or its schema from ``cache`` when its ``signature`` is
    unchanged). ``open_local`` gives a local path of the file whenever it is read (the
    dataset's ``load``); ``first_open``, if given, gives it for the profiling read (a copy
    downloaded ahead by the crawl). With a ``pool``, a file at ``local_path`` (a folder's)
    may be read and profiled by a worker: a ``Pending`` is returned then."""
    dataset_id = f"{source_name}/{relative}"
    fmt = file_format(relative)
    if fmt is None:
        return failed(
            dataset_id,
            platform,
            label,
            f"'{label}' has an unsupported format; use {', '.join(sorted(FORMATS))}",
        )

    def reader() -> pd.DataFrame:
        with open_local() as path:
            return read_file(path, fmt, label)

    if cache is not None:
        known = cache.lookup(dataset_id, signature, reader)
        if known is not None:
            return known

    def finish(schema: Any, error: str | None, notes: list[str]) -> DiscoveredDataset:
        if error is None:
            item = DiscoveredDataset(schema=schema, notes=notes, signature=signature,
                                     _reader=reader)
        else:
            item = failed(dataset_id, platform, label, error, fmt, reader, notes)
            item.schema.modified_at = modified_at
            item.signature = signature
        if cache is not None:
            cache.store(item)
        return item

    def here() -> tuple[Any, str | None, list[str]]:
        return _read_and_profile(first_open or open_local, fmt, label, dataset_id, platform,
                                 k, modified_at)

    if pool is not None and local_path is not None and first_open is None:
        return pool.offload(here, (read_local_file, (local_path, fmt, label, dataset_id,
                                                     platform, k, modified_at)),
                            finish, dataset_id)
    return finish(*here())



# --------------------------------------------------------------------------- file sources


class FileSource:
    """What the folder, gcs and s3 sources share: a config with a name and include/exclude
    patterns, hidden path parts skipped, errors described without secrets."""

    platform: str

    def __init__(self, config: Any):
        self.config = config
        self.name = config.name

    def _wanted(self, relative: str) -> bool:
        hidden = any(part.startswith(".") for part in relative.split("/"))
        return bool(relative) and not hidden and selected(
            relative, self.config.include, self.config.exclude)

    def describe_error(self, exc: BaseException) -> str:
        return describe(exc)

    def _location(self, relative: str) -> str:
        """The file's path or URI (what DataHub's file/s3/gcs source names it by)."""
        raise NotImplementedError

    def urn(self, relative: str) -> str:
        return datahub_urn(self.platform, object_name(self._location(relative)), self.config)


# objects of a bucket downloaded ahead (by as many threads) while an earlier one is profiled:
# a crawl of small objects waits on the store's answers far more than it computes
READ_AHEAD = 8
# ... while those downloading hold fewer bytes than this: a bucket of large objects is read
# one object at a time, as before read-ahead (eight 5 GB Parquet parts at once would need
# 40 GB of a pod's ephemeral storage, which evicts it)
READ_AHEAD_BYTES = 256 * 2**20
# the temporary folders of a crawl (its ledger, the objects it reads ahead): a crawl removes
# those a killed crawl left (storage.scratch)
CRAWL_SCRATCH = "autokfp-crawl-"


def _read_object(uri: str, relative: str) -> pd.DataFrame:
    """A whole object of a bucket (``DiscoveredDataset.load``)."""
    with storage.local_copy(uri) as path:
        return read_file(path, file_format(relative) or "", uri)


def _download(uri: str, target: Path) -> Path:
    try:
        storage.download_file(uri, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


class _ReadAhead:
    """Downloads of the objects a crawl is about to profile, by ``depth`` threads into one
    scratch folder (made on the first download, removed at the end with what is left in
    it); each file is deleted once profiled, so at most ``depth`` objects are on disk."""

    def __init__(self, depth: int):
        self.depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._folder: str | None = None
        self._count = 0

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def room(self, pending: Collection[tuple[Any, ...]]) -> bool:
        """Another object may be taken: fewer than ``depth`` pending, and those downloading
        hold fewer than ``READ_AHEAD_BYTES`` (each pending entry ends with its bytes to
        download, 0 when not downloaded)."""
        return (len(pending) < self.depth
                and sum(entry[-1] for entry in pending) < READ_AHEAD_BYTES)

    def fetch(self, uri: str, relative: str) -> Future[Path] | None:
        """Start downloading ``uri`` (None for a file of no supported format: not read)."""
        if file_format(relative) is None:
            return None
        if self._pool is None:
            storage.scratch.remove_stale(CRAWL_SCRATCH)
            self._folder = storage.scratch.scratch_folder(CRAWL_SCRATCH)
            self._pool = ThreadPoolExecutor(self.depth, thread_name_prefix="autokfp-read-ahead")
        self._count += 1
        assert self._folder is not None
        target = Path(self._folder) / f"{self._count:09d}-{relative.rsplit('/', 1)[-1]}"
        return self._pool.submit(_download, uri, target)

    @contextmanager
    def opened(self, download: Future[Path]) -> Iterator[Path]:
        """The downloaded file (the download's error, if it failed), deleted after use."""
        path = download.result()
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)


class ObjectPrefix(FileSource):
    """The objects under an object-store prefix (``config.uri``): listed with what identifies
    their version, so an unchanged object is never downloaded again; read through a local
    copy. A kind says only how to list its objects (``_objects``)."""

    def _objects(self) -> Iterator[tuple[str, str, str, str | None]]:
        """(uri, relative path, signature, modified) of the selected objects, in name order,
        yielded as the store's listing pages arrive (never the whole listing at once)."""
        for uri, relative, signature, modified, _ in self._listed():
            yield uri, relative, signature, modified

    def _listed(self) -> Iterator[tuple[str, str, str, str | None, int]]:
        """``_objects``, each with its size in bytes."""
        raise NotImplementedError

    def list_datasets(self) -> list[str]:
        return [relative for _, relative, _, _ in self._objects()]

    def _location(self, relative: str) -> str:
        return storage.join(self.config.uri, relative)

    def discover(self, sample_rows: int, cache: CrawlCache | None,
                 pool: ReadPool | None = None) -> Iterator[DiscoveredDataset]:
        """Each object profiled as the listing reaches it, and yielded at once (nothing of
        it is kept here); the next ``READ_AHEAD`` objects that must be read are downloading
        meanwhile (an object the cache knows is not downloaded). Read in this process
        whatever ``pool`` (its downloads are this process's threads' files). A listing that fails, at once (a bucket that does not exist,
        access denied) or part-way, has yielded the objects already profiled and ends with
        the source's failure, naming the source and what to check, so the crawl marks none
        of its other datasets missing. An existing bucket with nothing under the prefix is
        listed as empty."""
        with _ReadAhead(READ_AHEAD) as ahead:
            listing = self._listed()
            # (uri, relative, signature, modified, cached item or download, bytes downloaded)
            pending: deque[tuple[str, str, str, str | None, Any, int]] = deque()
            failure: BaseException | None = None
            listed = False
            while True:
                # keep READ_AHEAD objects that must be read downloading while one is profiled
                while not listed and failure is None and ahead.room(pending):
                    try:
                        uri, rel, signature, modified, size = next(listing)
                    except StopIteration:
                        listed = True
                        break
                    except Exception as exc:  # the listing failed (at once or part-way)
                        failure = exc
                        break
                    known = None
                    if cache is not None and file_format(rel) is not None:
                        known = cache.lookup(f"{self.name}/{rel}", signature,
                                             lambda u=uri, r=rel: _read_object(u, r))
                    got = known or ahead.fetch(uri, rel)
                    pending.append((uri, rel, signature, modified, got,
                                    size if isinstance(got, Future) else 0))
                if not pending:
                    break
                uri, rel, signature, modified, got, _ = pending.popleft()
                if isinstance(got, DiscoveredDataset):
                    yield got
                    continue
                item = discover_file(lambda u=uri: storage.local_copy(u), uri, rel, self.name,
                                     self.platform, sample_rows, signature, modified, None,
                                     first_open=lambda g=got: ahead.opened(g))
                assert isinstance(item, DiscoveredDataset)  # no pool: read here
                if cache is not None:
                    cache.store(item)
                yield item
        if failure is not None:
            reason = describe(failure).rstrip(".")
            yield failed(self.name, self.platform, self.config.uri, (
                f"source '{self.name}' could not be listed at '{self.config.uri}', so its "
                f"catalogued datasets were left as they were: {reason}. Fix the source's uri "
                "or the store's credentials and crawl again"))

    def load(self, dataset_id: str, relative: str) -> LoadedData:
        uri = storage.join(self.config.uri, relative)
        fmt = file_format(relative)
        if not storage.exists(uri) or fmt is None:
            raise missing_error(dataset_id, self)
        with storage.local_copy(uri) as path:
            return LoadedData(read_file(path, fmt, uri), self.platform, uri, fmt)
