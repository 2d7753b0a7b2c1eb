"""GCS sources: the CSV, Parquet and JSON-lines objects under a ``gs://bucket/prefix``."""

from __future__ import annotations

from autokfp import storage
from autokfp.catalog.sources.base import (
    CrawlCache,
    DiscoveredDataset,
    LoadedData,
    describe,
    failed,
    file_format,
    iso_utc,
    missing_error,
    register_source,
    selected,
    signature_of,
)
from autokfp.catalog.sources.files import discover_file, read_file
from autokfp.config import GcsSource


@register_source("gcs")
class GcsPrefix:
    """The objects under a gs:// prefix (hidden path parts skipped)."""

    def __init__(self, config: GcsSource):
        self.config = config
        self.name = config.name

    def list_datasets(self) -> list[str]:
        prefix = self.config.uri.rstrip("/")
        out = []
        for uri in storage.list_uris(prefix, recursive=True):
            relative = uri[len(prefix) :].lstrip("/")
            if self._wanted(relative):
                out.append(relative)
        return out

    def _wanted(self, relative: str) -> bool:
        hidden = any(part.startswith(".") for part in relative.split("/"))
        return bool(relative) and not hidden and selected(
            relative, self.config.include, self.config.exclude)

    def _objects(self) -> list[tuple[str, str, str, str | None]]:
        """(uri, relative path, signature, modified) of the selected objects.

        Lists the blobs themselves (not just names) so generation and size, which change
        with every upload, identify the version of each object without downloading it.
        """
        # storage keeps one configured client (emulator, credentials) and turns GCS failures
        # into StorageError naming the URI; listing with metadata needs the client itself.
        prefix_uri = self.config.uri.rstrip("/")
        bucket, key = storage.gcs.split_uri(prefix_uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        out = []
        with storage.gcs.errors(prefix_uri):
            blobs = list(storage.gcs.client().list_blobs(bucket, prefix=prefix or None))
        for blob in blobs:
            relative = blob.name[len(prefix):]
            if not relative or blob.name.endswith("/") or not self._wanted(relative):
                continue
            signature = signature_of("gcs", blob.generation, blob.size, blob.md5_hash)
            out.append((storage.join(prefix_uri, relative), relative, signature,
                        iso_utc(blob.updated)))
        return sorted(out)

    def discover(self, sample_rows: int, cache: CrawlCache | None) -> list[DiscoveredDataset]:
        try:
            objects = self._objects()
        except Exception as exc:
            return [failed(self.name, "gcs", self.config.uri, describe(exc))]
        return [
            discover_file(lambda u=uri: storage.local_copy(u), uri, rel, self.name, "gcs",
                          sample_rows, signature, modified, cache)
            for uri, rel, signature, modified in objects
        ]

    def load(self, dataset_id: str, relative: str) -> LoadedData:
        uri = storage.join(self.config.uri, relative)
        fmt = file_format(relative)
        if not storage.exists(uri) or fmt is None:
            raise missing_error(dataset_id, self)
        with storage.local_copy(uri) as path:
            return LoadedData(read_file(path, fmt, uri), "gcs", uri, fmt)

    def describe_error(self, exc: BaseException) -> str:
        return describe(exc)
