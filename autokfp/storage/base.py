"""What every kind of store offers (``Store``), and what object stores share (``ObjectStore``).

The public functions of ``autokfp.storage`` look up the store that serves a URI
(``stores.store_for``) and call it; they never branch on the scheme. A local folder, GCS and
S3 differ only in the few methods below; everything built on them (whole-file writes, trees,
conditional appends) is written once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autokfp.errors import StorageError

logger = logging.getLogger(__name__)

APPEND_ATTEMPTS = 8
# appended logs hold JSON lines
APPEND_CONTENT_TYPE = "application/x-ndjson"


class Raced(StorageError):
    """Another writer changed an object between our read and our conditional write."""


class Store(ABC):
    """One kind of storage, addressed by URI strings of its scheme."""

    remote: bool

    @abstractmethod
    def errors(self, uri: str) -> contextlib.AbstractContextManager[None]:
        """A block that turns this store's failures into StorageError naming ``uri``."""

    @abstractmethod
    def read(self, uri: str) -> bytes:
        """The whole content of one file or object."""

    @abstractmethod
    def write(self, uri: str, data: bytes) -> None:
        """Replace the whole content of one file or object, atomically: a reader sees the old
        content or the new, never half of it."""

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """A file/object at ``uri``, or a folder/prefix with something in it."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Delete one file or object; a missing one raises."""

    @abstractmethod
    def names(self, uri: str, recursive: bool) -> list[str]:
        """Names of the files under the folder-like ``uri``, relative to it."""

    @abstractmethod
    def append(self, uri: str, line: bytes | Callable[[bytes], bytes]) -> None:
        """Append ``line`` (or ``line(current content)``) to a file or object, creating it if
        needed, so that concurrent appenders neither interleave nor lose a line."""


class ObjectStore(Store):
    """A remote store of whole objects (GCS, S3): no rename, no append, but conditional
    writes. Appends read, extend and write back only if the object is unchanged."""

    remote = True

    @abstractmethod
    def put_file(self, local: Path, uri: str) -> None:
        """Upload the local file ``local`` as the object ``uri`` (one upload)."""

    @abstractmethod
    def get_file(self, uri: str, local: Path) -> None:
        """Download the object ``uri`` into the local file ``local``."""

    @abstractmethod
    def discard(self, uri: str) -> None:
        """Delete the object ``uri`` if it is still there (someone else may have)."""

    @abstractmethod
    def read_versioned(self, uri: str) -> tuple[bytes, Any]:
        """The content of ``uri`` (``b""`` when absent) and what identifies its version.

        Raises:
            Raced: the object changed while it was read.
        """

    @abstractmethod
    def write_if_unchanged(self, uri: str, data: bytes, version: Any) -> None:
        """Write ``data`` as ``uri`` only if it is still at ``version`` (absent, for the
        version ``read_versioned`` gives an absent object).

        Raises:
            Raced: the object changed since ``version``.
        """

    def append(self, uri: str, line: bytes | Callable[[bytes], bytes]) -> None:
        for attempt in range(APPEND_ATTEMPTS):
            try:
                with self.errors(uri):
                    content, version = self.read_versioned(uri)
                    if content and not content.endswith(b"\n"):
                        content += b"\n"
                    new = line(content) if callable(line) else line
                    self.write_if_unchanged(uri, content + new, version)
                return
            except Raced:
                delay = min(2.0, 0.05 * 2**attempt)
                logger.debug("append to %s raced another writer; retrying in %.2fs", uri, delay)
                time.sleep(delay)
        raise StorageError(
            f"Could not append to '{uri}': it kept changing under {APPEND_ATTEMPTS} attempts. "
            "Too many writers share this log; give each writer its own file."
        )
