"""S3 sources: the CSV, Parquet and JSON-lines objects under an ``s3://bucket/prefix``
(or ``minio://bucket/prefix`` for MinIO and other S3-compatible stores)."""

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
from autokfp.config import S3Source


@register_source("s3")
class S3Prefix:
    """The objects under an s3:// prefix (hidden path parts skipped)."""

    platform = "s3"

    def __init__(self, config: S3Source):
        self.config = config
        self.name = config.name

    def _wanted(self, relative: str) -> bool:
        hidden = any(part.startswith(".") for part in relative.split("/"))
        return bool(relative) and not hidden and selected(
            relative, self.config.include, self.config.exclude)

    def _objects(self) -> list[tuple[str, str, str, str | None]]:
        """(uri, relative path, signature, modified) of the selected objects; the ETag and
        size, which change with every upload, identify the version without a download."""
        out = []
        for obj in storage.s3_objects(self.config.uri):
            if self._wanted(obj["relative"]):
                signature = signature_of("s3", obj["etag"], obj["size"])
                out.append((obj["uri"], obj["relative"], signature, iso_utc(obj["modified"])))
        return out

    def list_datasets(self) -> list[str]:
        return [relative for _, relative, _, _ in self._objects()]

    def discover(self, sample_rows: int, cache: CrawlCache | None) -> list[DiscoveredDataset]:
        try:
            objects = self._objects()
        except Exception as exc:
            return [failed(self.name, self.platform, self.config.uri, describe(exc))]
        return [
            discover_file(lambda u=uri: storage.local_copy(u), uri, rel, self.name,
                          self.platform, sample_rows, signature, modified, cache)
            for uri, rel, signature, modified in objects
        ]

    def load(self, dataset_id: str, relative: str) -> LoadedData:
        uri = storage.join(self.config.uri, relative)
        fmt = file_format(relative)
        if not storage.exists(uri) or fmt is None:
            raise missing_error(dataset_id, self)
        with storage.local_copy(uri) as path:
            return LoadedData(read_file(path, fmt, uri), self.platform, uri, fmt)

    def describe_error(self, exc: BaseException) -> str:
        return describe(exc)
