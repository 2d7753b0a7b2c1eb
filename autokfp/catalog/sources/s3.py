"""S3 sources: the CSV, Parquet and JSON-lines objects under an ``s3://bucket/prefix``
(or ``minio://bucket/prefix`` for MinIO and other S3-compatible stores)."""

from __future__ import annotations

from collections.abc import Iterator

from autokfp import storage
from autokfp.catalog.sources.base import iso_utc, register_source, signature_of
from autokfp.catalog.sources.files import ObjectPrefix
from autokfp.config import S3Source


@register_source("s3")
class S3Prefix(ObjectPrefix):
    """The objects under an s3:// prefix (hidden path parts skipped)."""

    platform = "s3"
    config: S3Source

    def _listed(self) -> Iterator[tuple[str, str, str, str | None, int]]:
        """(uri, relative path, signature, modified, size) of the selected objects, in key order,
        listed a page at a time (``storage.iter_s3_objects``); the ETag and size, which
        change with every upload, identify the version without a download."""
        for obj in storage.iter_s3_objects(self.config.uri):
            if self._wanted(obj["relative"]):
                signature = signature_of("s3", obj["etag"], obj["size"])
                yield (obj["uri"], obj["relative"], signature, iso_utc(obj["modified"]),
                       int(obj["size"] or 0))
