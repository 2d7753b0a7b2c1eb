"""GCS sources: the CSV, Parquet and JSON-lines objects under a ``gs://bucket/prefix``."""

from __future__ import annotations

from collections.abc import Iterator

from autokfp import storage
from autokfp.catalog.sources.base import iso_utc, register_source, signature_of
from autokfp.catalog.sources.files import ObjectPrefix
from autokfp.config import GcsSource


@register_source("gcs")
class GcsPrefix(ObjectPrefix):
    """The objects under a gs:// prefix (hidden path parts skipped)."""

    platform = "gcs"
    config: GcsSource

    def _listed(self) -> Iterator[tuple[str, str, str, str | None, int]]:
        """(uri, relative path, signature, modified, size) of the selected objects, in name order,
        listed page by page (the client's iterator fetches the next page when the last one
        is used up), so a prefix of any size is listed in the memory of one page.

        Lists the blobs themselves (not just names) so generation and size, which change
        with every upload, identify the version of each object without downloading it.
        """
        prefix_uri = self.config.uri.rstrip("/")
        for relative, blob in storage.gcs.iter_blobs(prefix_uri):
            if self._wanted(relative):
                signature = signature_of("gcs", blob.generation, blob.size, blob.md5_hash)
                yield (storage.join(prefix_uri, relative), relative, signature,
                       iso_utc(blob.updated), int(blob.size or 0))
