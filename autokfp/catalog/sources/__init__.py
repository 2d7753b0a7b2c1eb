"""Data sources: one ``Source`` interface (``base.py``) and one module per kind.

Each kind module registers its class for the ``kind`` of its config model:
``folder.py`` (a local folder), ``gcs.py`` (a gs:// prefix), ``s3.py`` (an s3:// or
minio:// prefix), ``sql.py`` (a SQLAlchemy database). A new kind is one module here that
reads its config model and decorates its class with ``@register_source("<kind>")``, plus an
import below; file-based kinds reuse ``files.py`` for reading and profiling, and its
``FileSource`` / ``ObjectPrefix`` classes (an object-store kind only lists its objects).
"""

from autokfp.catalog.sources import folder, gcs, s3, sql  # noqa: F401 - each registers its kind
from autokfp.catalog.sources.base import (
    SOURCE_KINDS,
    CrawlCache,
    DiscoveredDataset,
    LoadedData,
    Source,
    missing_error,
    open_source,
    register_source,
)

__all__ = ["SOURCE_KINDS", "CrawlCache", "DiscoveredDataset", "LoadedData", "Source",
           "missing_error", "open_source", "register_source"]
