"""A folder of Parquet parts (how Spark, Hive, Dask or a partitioned export write a table),
read as one dataset with ``pyarrow.dataset``'s semantics and streamed in chunks.

``pyarrow.dataset`` only names the parts' hive partition values and types (from their
paths; nothing is scanned through it). Each part is read on its own, synchronously, with
``autokfp.catalog.batches.ParquetFileScan`` (``pyarrow.parquet.ParquetFile``): a dataset
scan's Arrow I/O thread can release its generator while the interpreter exits and abort the
process in ``std::terminate`` after the work was done (see ``ParquetFileScan``).

- The folder is a local directory, or a ``gs://`` / ``s3://`` / ``minio://`` prefix.
- Files and folders whose name starts with ``_`` or ``.`` are skipped at any depth, as
  ``pyarrow.dataset`` (``ignore_prefixes``) and Spark skip them: ``_SUCCESS``,
  ``_temporary/`` (a writer's attempt still running or killed), ``.part-0.parquet.crc``.
- Hive partition folders (``day=2/part-0.parquet``) give a column (``day``) whose type is
  inferred as ``pyarrow.dataset`` infers it (``partitioning="hive"``); a part outside any
  partition folder gets a missing value.
- Parts are read in the sorted order of their paths, so a rerun reads the same rows in the
  same order; ``chunks`` yields frames of ``chunk_rows`` rows from Arrow record batches, so
  memory follows the chunk, not the folder.
- The fingerprint (what makes a rerun the same batch) comes from each part's path, size and
  content: the store's checksum of the object (S3's ETag, GCS's CRC32C and MD5) or, for a
  local file, a SHA-256 of its bytes read in blocks. Nothing is decoded for it.
- A part replaced or rewritten after the folder was listed is an error when it is read,
  never other rows scored under the listed fingerprint. On S3 its ETag, on GCS its
  generation (which its reads are pinned to) is checked before and after it is read. A
  local part up to ``VERIFY_BYTES`` is read once into memory and those bytes checked
  against the SHA-256 the listing took before they are parsed: whatever changed (same size,
  within the filesystem's timestamp granularity, timestamps set back), the rows scored are
  the bytes fingerprinted, or it is an error. A larger local part is checked before and
  after it is read by its size, inode, device, ``st_mtime_ns`` and ``st_ctime_ns`` (the
  kernel sets ctime on every write, and a user cannot set it back: ``utime`` sets it to
  now). What a larger part's check cannot see: a rewrite to the same size whose ctime is
  the one the listing saw, i.e. one within the same tick of the kernel's file clock (a few
  milliseconds; a second or more on filesystems with coarse timestamps, FAT or some NFS
  servers) as the listing's look at that part, or on a filesystem that keeps no ctime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp import storage
from autokfp.catalog.batches import ParquetFileScan
from autokfp.errors import DataError, StorageError

log = logging.getLogger(__name__)

IGNORED_PREFIXES = ("_", ".")  # pyarrow.dataset's default ignore_prefixes, and Spark's
PLATFORMS = {"gs": "gcs", "s3": "s3", "minio": "s3"}
_BATCH_ROWS = 65_536  # the most rows one Arrow record batch holds while chunks are cut
_GCS_READ_BYTES = 8 << 20  # what one ranged read of a GCS part asks for (and buffers)
# a local part up to this size is read once into memory and checked against its listed
# SHA-256 before it is parsed (memory: one such part at a time, beside the chunk)
VERIFY_BYTES = 32 << 20


@dataclass(frozen=True)
class _Part:
    relative: str  # the path under the folder, "/"-separated
    size: int
    checksum: str
    # what says the object is still the one listed: a local file's ``_file_stamp``, an S3
    # object's ETag, a GCS object's generation (which its reads are pinned to)
    stamp: Any = None


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a part that changed or vanished raises: Arrow's and the OS's errors, and
    google-cloud-storage's for a GCS part (read through its client)."""
    import pyarrow as pa
    from google.api_core.exceptions import GoogleAPIError
    from requests.exceptions import RequestException

    return (OSError, pa.ArrowException, GoogleAPIError, RequestException, StorageError)


def is_ignored(relative: str) -> bool:
    """Whether a path under the folder is skipped: any of its parts (a folder or the file)
    starts with ``_`` or ``.``."""
    return any(name.startswith(IGNORED_PREFIXES) for name in relative.split("/") if name)


@dataclass(frozen=True)
class _PartFile:
    scan: Any  # autokfp.catalog.batches.ParquetFileScan of the part
    partition: dict[str, Any]  # its hive partition values (none outside a partition folder)
    same: Any = None  # () -> None; raises StorageError when the part is not the one listed
    # () -> bytes: the whole part, checked to be the bytes listed (a small local part)
    read_once: Any = None


@dataclass(frozen=True)
class PartsDataset:
    """The Parquet parts under ``folder``, ready to stream. Build with ``open_parts``."""

    folder: str
    platform: str
    parts: tuple[str, ...]  # URIs, in reading order
    rows: int
    fingerprint: str
    partition_columns: tuple[str, ...]
    schema: Any  # pyarrow.Schema: the parts' columns (types brought to one), then partitions
    filesystem: Any  # the pyarrow.fs filesystem the parts are read from
    files: tuple[_PartFile, ...]

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The rows in order, as frames of ``chunk_rows`` rows (the last may be shorter)."""
        import pyarrow as pa

        schema = self.schema
        pending: list[Any] = []
        held = 0
        for batch in self._batches(min(chunk_rows, _BATCH_ROWS)):
            while batch.num_rows:
                take = min(chunk_rows - held, batch.num_rows)
                pending.append(batch.slice(0, take))
                held += take
                batch = batch.slice(take)
                if held == chunk_rows:
                    yield pa.Table.from_batches(pending, schema=schema).to_pandas()
                    pending, held = [], 0
        if held:
            yield pa.Table.from_batches(pending, schema=schema).to_pandas()

    def _batches(self, batch_rows: int) -> Iterator[Any]:
        """The record batches in order, part by part, each with the dataset's schema (the
        part's columns cast to the common types, its partition columns filled in, as
        ``pyarrow.dataset`` fills them); a part that vanished or changed since
        ``open_parts`` is a DataError naming the folder.

        Part by part without read-ahead: with a string column the dataset's own scanner's
        peak grew with the rows read (chunks read alone: 198 MB at 2M rows, 391 MB at 12M;
        read-ahead of one batch per part: 199 and 394 MB), part by part 96 and 129 MB
        (scoring included: scripts/benchmark_parts_scoring.py)."""

        batches = (self._typed(batch, part) for part in self.files
                   for batch in self._part_batches(part, batch_rows))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except _read_errors() as exc:
                raise DataError(
                    f"dataset folder {self.folder}: reading a part failed during the run "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); a part "
                    "changed or vanished after scoring started: rerun once the folder is "
                    "stable") from None
            yield batch

    @staticmethod
    def _part_batches(part: _PartFile, batch_rows: int) -> Iterator[Any]:
        """One part's batches, checked to be the part listed by ``open_parts`` before its
        first batch and after its last: a part rewritten in place, or replaced by another
        file of the same name and columns, is an error, not other rows read silently. (A
        local part replaced by a rename mid-read is still read whole from the file
        opened.) A small local part is read once and checked by its content instead."""
        if part.read_once is not None:  # the very bytes listed, whatever the file is now
            import pyarrow as pa

            # its content is the check (a chmod or a touch alone changes no row)
            data = part.read_once()
            scan = ParquetFileScan(part.scan.path, open_file=lambda: pa.BufferReader(data))
            yield from scan.to_batches(batch_size=batch_rows)
            return
        if part.same is not None:
            part.same()
        yield from part.scan.to_batches(batch_size=batch_rows)
        if part.same is not None:
            part.same()

    def _typed(self, batch: Any, part: _PartFile) -> Any:
        """``batch`` of ``part`` in the dataset's schema."""
        import pyarrow as pa

        columns = []
        for field in self.schema:
            if field.name in batch.schema.names:
                column = batch.column(field.name)
                columns.append(column if column.type == field.type else column.cast(field.type))
            else:  # a partition column: the part's value, or missing outside a partition
                value = pa.scalar(part.partition.get(field.name), field.type)
                columns.append(pa.repeat(value, batch.num_rows))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def open_parts(folder: str) -> PartsDataset:
    """The Parquet parts under ``folder`` (no trailing ``/``) as one dataset.

    Raises DataError, before anything is read but the parts' footers, when the folder holds
    no Parquet part, holds another kind of file (named), or parts whose columns differ
    (named) or whose types cannot be brought to one.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    scheme = folder.split("://", 1)[0].lower() if "://" in folder else "file"
    listed = sorted(_listing(folder, scheme), key=lambda part: part.relative)
    kept = [part for part in listed if not is_ignored(part.relative)]
    others = [part.relative for part in kept if not part.relative.lower().endswith(".parquet")]
    if others:
        raise DataError(f"dataset folder {folder}: only Parquet parts can be scored from a "
                        f"folder, and it also holds {', '.join(others[:3])}"
                        + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                        + "; give one file, or a folder of .parquet files (names starting "
                        "with '_' or '.' are skipped)")
    if not kept:
        raise DataError(f"dataset folder {folder} holds no Parquet part (*.parquet; names "
                        "starting with '_' or '.' are skipped): give a folder of Parquet "
                        "files, or one Parquet/CSV file")
    filesystem, base = _arrow_filesystem(folder, scheme)
    paths = [f"{base}/{part.relative}" for part in kept]
    try:
        # the dataset only types the partition values of the paths; nothing is scanned by it
        dataset = ds.dataset(paths, filesystem=filesystem, format="parquet",
                             partitioning="hive", partition_base_dir=base)
        partitions = {fragment.path: ds.get_partition_keys(fragment.partition_expression)
                      for fragment in dataset.get_fragments()}
        scans = [_part_scan(folder, scheme, filesystem, path, part)
                 for path, part in zip(paths, kept)]
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"dataset folder {folder}: a part cannot be read as Parquet "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    physical = [scan.schema for scan in scans]
    first = set(physical[0].names)
    for part, schema in zip(kept, physical):
        if set(schema.names) != first:
            raise DataError(f"dataset folder {folder}: the parts do not share one set of "
                            f"columns ({part.relative} has {', '.join(schema.names)}; "
                            f"{kept[0].relative} has {', '.join(physical[0].names)})")
    try:
        unified = pa.unify_schemas(physical, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"dataset folder {folder}: the parts' column types cannot be brought "
                        f"to one ({str(exc).splitlines()[0][:300]})") from None
    partition = [field for field in dataset.schema if field.name not in unified.names]
    schema = pa.schema(list(unified) + partition, metadata=unified.metadata)
    fingerprint = hashlib.sha256(json.dumps(
        [[p.relative, p.size, p.checksum] for p in kept]).encode()).hexdigest()
    log.info("dataset folder %s: %d Parquet parts, partition columns %s", folder, len(kept),
             [field.name for field in partition] or "none")
    return PartsDataset(folder=folder, platform=PLATFORMS.get(scheme, "file"),
                        parts=tuple(storage.join(folder, p.relative) for p in kept),
                        rows=sum(scan.count_rows() for scan in scans), fingerprint=fingerprint,
                        partition_columns=tuple(field.name for field in partition),
                        schema=schema, filesystem=filesystem,
                        files=tuple(_PartFile(scan, partitions.get(scan.path, {}),
                                              _same_check(folder, scheme, part),
                                              _read_once(folder, scheme, part))
                                    for scan, part in zip(scans, kept)))


def _part_scan(folder: str, scheme: str, filesystem: Any, path: str,
               part: _Part) -> ParquetFileScan:
    """One part, read synchronously. A GCS object is read through autokfp's GCS client
    (google-cloud-storage, which honours STORAGE_EMULATOR_HOST), in ranges of
    ``_GCS_READ_BYTES``, at the generation listed (a replaced object is NotFound, never
    other bytes); Arrow's own GCS client holds the GIL while it opens a file, which
    never returns when the server answering it runs in the same process (a test's
    emulator)."""
    if scheme != "gs":
        return ParquetFileScan(path, filesystem=filesystem)
    bucket, key = storage.gcs.split_uri(storage.join(folder, part.relative))
    generation = part.stamp

    def open_blob() -> Any:
        blob = storage.gcs.client().bucket(bucket).blob(key, generation=generation)
        return blob.open("rb", chunk_size=_GCS_READ_BYTES)

    return ParquetFileScan(path, open_file=open_blob)


def _same_check(folder: str, scheme: str, part: _Part) -> Any:
    """A function raising StorageError when ``part`` is no longer the object listed. (A GCS
    part's reads are also pinned to its listed generation, so on GCS a replacement in the
    middle of a read is NotFound; the check says so before reading and after, and covers
    an emulator that ignores a read's generation.)"""
    uri = storage.join(folder, part.relative)

    def changed(now: Any) -> StorageError:
        return StorageError(f"part {part.relative} changed since the folder was listed "
                            f"(was {part.stamp}, now {now})")

    if scheme in ("s3", "minio"):
        def same_object() -> None:
            info = storage.s3.filesystem(uri).info(storage.s3.object_path(uri), refresh=True)
            etag = str(info.get("ETag", "")).strip('"')
            if etag != part.stamp:
                raise changed(etag)
        return same_object
    if scheme == "gs":
        bucket, key = storage.gcs.split_uri(uri)

        def same_blob() -> None:
            blob = storage.gcs.client().bucket(bucket).get_blob(key)
            generation = None if blob is None else blob.generation
            if generation != part.stamp:
                raise changed(generation)
        return same_blob
    path = _local_path(uri)

    def same_file() -> None:
        now = _file_stamp(path)
        if now != part.stamp:
            raise changed(now)
    return same_file


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


def _read_once(folder: str, scheme: str, part: _Part) -> Any:
    """For a local part of at most ``VERIFY_BYTES``: a function giving its whole content,
    raising StorageError when those bytes are not the ones the listing hashed; else None."""
    if scheme not in ("file", "") or part.size > VERIFY_BYTES \
            or not part.checksum.startswith("sha256:"):
        return None
    path = _local_path(storage.join(folder, part.relative))

    def read() -> bytes:
        data = path.read_bytes()
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if digest != part.checksum:
            raise StorageError(f"part {part.relative} changed since the folder was listed "
                               f"(its content: was {part.checksum}, now {digest})")
        return data
    return read


def _file_stamp(path: Path) -> tuple[int, int, int, int, int]:
    """What a local part's check compares: size, mtime and ctime (in ns), inode, device."""
    status = path.stat()
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino,
            status.st_dev)


def _listing(folder: str, scheme: str) -> list[_Part]:
    """Every file under ``folder`` with its size and a content checksum."""
    if scheme in ("s3", "minio"):
        return [_Part(o["relative"], int(o["size"] or 0), f"etag:{o['etag']}", o["etag"])
                for o in storage.s3_objects(folder)]
    if scheme == "gs":
        return [_Part(relative, int(b.size or 0), f"crc32c:{b.crc32c},md5:{b.md5_hash}",
                      b.generation)
                for relative, b in storage.gcs.iter_blobs(folder)]
    root = Path(folder[len("file://"):] if folder.startswith("file://") else folder)
    out = []
    for directory, folders, files in os.walk(root):
        folders[:] = [f for f in folders if not f.startswith(IGNORED_PREFIXES)]  # not read
        for name in files:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            stamp = _file_stamp(path)  # before the hash: a write during it shows later
            checksum = "" if is_ignored(relative) else f"sha256:{_sha256(path)}"
            out.append(_Part(relative, stamp[0], checksum, stamp))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _arrow_filesystem(folder: str, scheme: str) -> tuple[Any, str]:
    """A pyarrow filesystem that reads ``folder``, and the folder's path in it. S3 goes
    through autokfp's own s3fs filesystem (its endpoint and credentials); GCS through
    Arrow's client with Google's default credentials, or the emulator of
    ``STORAGE_EMULATOR_HOST``."""
    import pyarrow.fs as pafs

    if scheme in ("s3", "minio"):
        return (pafs.PyFileSystem(pafs.FSSpecHandler(storage.s3.filesystem(folder))),
                storage.s3.s3_path(folder).rstrip("/"))
    if scheme == "gs":
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            protocol, _, host = emulator.rpartition("://")
            filesystem = pafs.GcsFileSystem(anonymous=True, scheme=protocol or "http",
                                            endpoint_override=host.rstrip("/"))
        else:
            filesystem = pafs.GcsFileSystem()
        return filesystem, folder[len("gs://"):].rstrip("/")
    path = folder[len("file://"):] if folder.startswith("file://") else folder
    return pafs.LocalFileSystem(), path.rstrip("/") or "/"
