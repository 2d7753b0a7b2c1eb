"""The catalog's own state in the artifact store: what outlives a run.

Under ``<artifact root>/catalog/`` (a folder locally, ``gs://bucket/prefix/catalog`` in a
cluster)::

    index.json                       one entry per dataset: latest and accepted schema
                                     version, verdict, row count, tags, last error
    datasets/<key>/v<N>.json         schema version N: the schema, its fingerprint and
                                     what changed against version N-1 (immutable once the
                                     index names it)
    crawl-cache.json                 input signatures and schemas of the last crawl
    lineage.json                     dataset -> feature set -> model version -> deployment
    last-crawl.json                  the report of the latest crawl
    metadata/*.json                  the DataHub metadata files that were published

Every file is written whole (temp file + rename locally, one upload on GCS), so a reader
never sees half of one. ``index.json`` and ``crawl-cache.json`` hold one dataset's entry
per line, so a crawl reads and writes them a line at a time (``iter_index``, ``save_index``
with pairs); any JSON reader still reads them whole. Read-modify-write sections hold ``lock()``: an exclusive file lock
for a local store. On ``gs://`` there is no lock: two crawls finishing at the same moment
can lose one's index update (the next crawl redoes it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autokfp import storage
from autokfp.catalog.schema import DatasetSchema
from autokfp.errors import DataError, StorageError
from autokfp.settings import Settings
from autokfp.storage.uris import local_path

log = logging.getLogger(__name__)

INDEX_LAYOUT = 1
# version files written between syncs inside ``synced_together``
_SYNC_EVERY = 2000


class RawJson(str):
    """An entry's value kept as the JSON text it was read or will be written as: a crawl
    moves index and cache entries between these files and its ledger without parsing and
    serialising each one again (``_iter_members(raw=True)``, ``_write_members``)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def dataset_key(dataset_id: str) -> str:
    """A file-name-safe, collision-free folder name for a dataset id (any characters)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset_id).strip("._")[:60] or "dataset"
    digest = hashlib.sha256(dataset_id.encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


class CatalogStore:
    """Read and write the catalog files under ``<artifact root>/catalog``."""

    def __init__(self, settings: Settings | None = None, root: str | None = None):
        self.settings = settings or Settings.from_env()
        self.root = root or storage.join(self.settings.artifact_root, "catalog")
        self._unsynced: list[Path] | None = None  # version files awaiting one sync

    @contextlib.contextmanager
    def synced_together(self) -> Iterator[None]:
        """Version files written inside are made durable together when the block ends.

        Each one is still written whole (temp file + rename), but the fsync that made every
        file durable on its own (two per dataset: 11% of a first crawl of 2,000 datasets)
        becomes one ``syncfs`` of the catalog's file system at the end, before the index
        that names the versions is written. Where ``syncfs`` is missing, every file and
        folder is fsynced at the end instead. Remote stores write each object at once.
        """
        if storage.is_remote(self.root) or self._unsynced is not None:
            yield
            return
        self._unsynced = []
        try:
            yield
        finally:
            written, self._unsynced = self._unsynced, None
            if written:
                _sync_files(local_path(self.root), written)

    # ------------------------------------------------------------------ paths

    def uri(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def version_uri(self, dataset_id: str, version: int) -> str:
        return self.uri("datasets", dataset_key(dataset_id), f"v{version}.json")

    # ------------------------------------------------------------------ JSON

    def read_json(self, name: str, default: Any) -> Any:
        """A catalog file as JSON, or ``default`` when it does not exist yet."""
        uri = self.uri(name)
        if not storage.exists(uri):
            return default
        text = storage.read_text(uri)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"catalog file '{uri}' is not valid JSON ({exc}); restore it from a backup or "
                "delete it (the next crawl rebuilds the index and cache, lineage is lost)"
            ) from None

    def write_json(self, name: str, data: Any) -> str:
        uri = self.uri(name)
        storage.write_text(uri, json.dumps(data, indent=1, sort_keys=True, default=str,
                                           allow_nan=False))
        return uri

    # ------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def lock(self, timeout: float = 120.0) -> Iterator[None]:
        """Serialise read-modify-write of the catalog files between processes (local only)."""
        if storage.is_remote(self.root):
            yield
            return
        import fcntl

        folder = Path(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StorageError(
                            f"the catalog at '{self.root}' stayed locked for {timeout:.0f}s by "
                            "another autokfp process; wait for it to finish and retry"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(handle)  # closing releases the lock

    # ------------------------------------------------------------------ index

    def load_index(self) -> dict[str, dict[str, Any]]:
        return dict(self.iter_index())

    def iter_index(self, raw: bool = False) -> Iterator[tuple[str, Any]]:
        """The index's entries, read a line at a time (see ``_iter_members``; ``raw``: each
        value as its ``RawJson`` text)."""
        return self._iter_members("index.json", "datasets", raw)

    def save_index(self, datasets: dict[str, dict[str, Any]]
                   | Iterable[tuple[str, Any]]) -> None:
        """Write the index whole: a dict, or (dataset id, entry) pairs in id order."""
        pairs = sorted(datasets.items()) if isinstance(datasets, dict) else datasets
        self._write_members("index.json", "datasets", pairs,
                            {"layout": INDEX_LAYOUT, "updated": now_iso()})

    # ------------------------------------------------------------------ entry files

    def _write_members(self, name: str, member: str, pairs: Iterable[tuple[str, Any]],
                       extra: dict[str, Any]) -> str:
        """Write ``{member: {key: value, ...}, **extra}`` as JSON with one key and its value
        per line, a piece at a time: a file of 100,000 datasets is never one string, and
        ``_iter_members`` reads it back a line at a time. Any JSON reader reads it whole.
        A ``RawJson`` value is written as it is (it is that text already)."""

        def pieces() -> Iterator[str]:
            yield "{" + json.dumps(member) + ": {\n"
            separator = ""
            for key, value in pairs:
                text = value if type(value) is RawJson else json.dumps(
                    value, sort_keys=True, default=str, allow_nan=False)
                yield separator + json.dumps(str(key)) + ": " + text
                separator = ",\n"
            tail = json.dumps(extra, sort_keys=True, default=str, allow_nan=False)[1:]
            yield "\n}" + (", " + tail if tail != "}" else "}") + "\n"

        uri = self.uri(name)
        storage.write_text_pieces(uri, pieces())
        return uri

    def _iter_members(self, name: str, member: str,
                      raw: bool = False) -> Iterator[tuple[str, Any]]:
        """The (key, value) pairs of ``member`` in a catalog file, read a line at a time
        when ``_write_members`` wrote it; a file of an older layout is read whole.

        ``raw``: each value as its JSON text (``RawJson``), not parsed: only its key is read
        (whoever parses the text later, the crawl's ledger, says when it is not JSON)."""
        uri = self.uri(name)
        if not storage.exists(uri):
            return
        header = "{" + json.dumps(member) + ": {"
        with storage.local_copy(uri) as path, open(path, encoding="utf-8") as handle:
            if handle.readline().rstrip("\n") == header:
                for number, line in enumerate(handle, start=2):
                    line = line.rstrip("\n")
                    if line.startswith("}"):
                        return
                    if not line:
                        continue
                    if raw:
                        pair = _raw_pair(line)
                        if pair is not None:
                            yield pair
                            continue
                    try:
                        pair = json.loads("{" + line.removesuffix(",") + "}")
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"catalog file '{uri}' is not valid JSON at line {number} "
                            f"({exc}); restore it from a backup or delete it (the next crawl "
                            "rebuilds the index and cache, lineage is lost)") from None
                    yield from pair.items()
                return
        data = self.read_json(name, {})
        for key, value in dict(data.get(member) or {}).items():
            yield key, (RawJson(json.dumps(value, sort_keys=True, default=str,
                                           allow_nan=False)) if raw else value)

    def entry(self, dataset_id: str) -> dict[str, Any]:
        """The index entry of one dataset; DataError lists the known ones when absent."""
        index = self.load_index()
        if dataset_id in index:
            return index[dataset_id]
        known = sorted(index)
        shown = ", ".join(known[:20]) + (f", ... and {len(known) - 20} more"
                                         if len(known) > 20 else "")
        raise DataError(
            f"dataset '{dataset_id}' is not in the catalog at '{self.root}'; "
            + (f"catalogued datasets: {shown}" if known else
               "nothing is catalogued yet: run 'autokfp discover CONFIG' first")
        )

    # ------------------------------------------------------------------ versions

    def write_version(self, dataset_id: str, record: dict[str, Any]) -> str:
        uri = self.version_uri(dataset_id, int(record["version"]))
        text = json.dumps(record, indent=1, default=str, allow_nan=False)
        if self._unsynced is None:
            storage.write_text(uri, text)
        else:
            self._unsynced.append(_write_unsynced(local_path(uri), text.encode()))
            if len(self._unsynced) >= _SYNC_EVERY:  # durable sooner is still durable; the
                written, self._unsynced = self._unsynced, []  # list stays small
                _sync_files(local_path(self.root), written)
        return uri

    def read_version(self, dataset_id: str, version: int) -> dict[str, Any]:
        uri = self.version_uri(dataset_id, version)
        try:
            return json.loads(storage.read_text(uri))
        except json.JSONDecodeError as exc:
            raise DataError(f"schema version file '{uri}' is not valid JSON ({exc})") from None

    def version_schema(self, dataset_id: str, version: int) -> DatasetSchema:
        return DatasetSchema.from_dict(self.read_version(dataset_id, version)["schema"])

    def versions(self, dataset_id: str) -> list[dict[str, Any]]:
        """Every recorded version of a dataset, oldest first."""
        latest = int(self.entry(dataset_id).get("latest_version", 0))
        out = []
        for number in range(1, latest + 1):
            try:
                out.append(self.read_version(dataset_id, number))
            except StorageError:
                log.warning("schema version v%d of %s is missing from the catalog", number,
                            dataset_id)
        return out

    # ------------------------------------------------------------------ cache

    def load_cache(self) -> dict[str, dict[str, Any]]:
        return dict(self.iter_cache())

    def iter_cache(self, raw: bool = False) -> Iterator[tuple[str, Any]]:
        """The crawl cache's entries, read a line at a time (``raw``: see ``iter_index``)."""
        return self._iter_members("crawl-cache.json", "entries", raw)

    def save_cache(self, entries: dict[str, dict[str, Any]]
                   | Iterable[tuple[str, Any]]) -> None:
        """Write the crawl cache whole: a dict, or (dataset id, entry) pairs in id order."""
        pairs = sorted(entries.items()) if isinstance(entries, dict) else entries
        self._write_members("crawl-cache.json", "entries", pairs, {"updated": now_iso()})


_DECODER = json.JSONDecoder()


def _raw_pair(line: str) -> tuple[str, RawJson] | None:
    """``"key": <value>`` (one line of ``_write_members``) as the key and the value's text;
    None when the line is not of that shape (it is then parsed as a whole)."""
    if not line.startswith('"'):
        return None
    try:
        key, end = _DECODER.raw_decode(line)
    except ValueError:
        return None
    if not isinstance(key, str) or line[end:end + 2] != ": ":
        return None
    return key, RawJson(line[end + 2:].removesuffix(","))


def _write_unsynced(path: Path, data: bytes) -> Path:
    """Write a file whole (temp file + rename) and leave the fsync to ``_sync_files``."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _syncfs(folder: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``folder``; False where it is missing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(folder, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def _sync_files(root: Path, paths: list[Path]) -> None:
    """Make written files (and their renames) durable: one syncfs, else one fsync each."""
    with contextlib.suppress(OSError):
        if _syncfs(root):
            return
    for path in [*paths, *{p.parent for p in paths}]:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
