"""Folder sources: the CSV, Parquet and JSON-lines files under a local folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from autokfp.catalog.sources.base import (
    FORMATS,
    CrawlCache,
    DiscoveredDataset,
    LoadedData,
    failed,
    file_format,
    iso_utc,
    missing_error,
    register_source,
    selected,
    signature_of,
)
from autokfp.catalog.sources.files import FileSource, discover_file, read_file
from autokfp.config import FolderSource
from autokfp.errors import DataError

if TYPE_CHECKING:
    from autokfp.catalog.workers import Pending, ReadPool


@register_source("folder")
class Folder(FileSource):
    """A local folder, searched recursively (hidden files and folders skipped)."""

    platform = "file"
    config: FolderSource

    def _location(self, relative: str) -> str:
        return os.path.join(os.path.abspath(self.config.path), relative)

    def list_datasets(self) -> list[str]:
        if not Path(self.config.path).is_dir():
            return []
        return self._files()

    def _files(self) -> list[str]:
        """Relative POSIX paths of the selected files (hidden ones skipped)."""
        root = Path(self.config.path)
        found: list[str] = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel_folder = Path(folder).relative_to(root)
            for name in files:
                if name.startswith("."):
                    continue
                relative = (rel_folder / name).as_posix()
                if selected(relative, self.config.include, self.config.exclude):
                    found.append(relative)
        return sorted(found)

    def discover(self, sample_rows: int, cache: CrawlCache | None,
                 pool: ReadPool | None = None) -> Iterator[DiscoveredDataset | Pending]:
        """Each file profiled and yielded in path order (only the names are listed first);
        with a ``pool``, a file may be read by a worker (a ``Pending`` is yielded then)."""
        root = Path(self.config.path)
        if not root.is_dir():
            yield failed(
                self.name, "file", str(root),
                f"folder '{root}' of source '{self.name}' does not exist; fix the source's path",
            )
            return
        for rel in self._files():
            path = root / rel
            try:
                stat = path.stat()
                signature = signature_of("file", stat.st_size, stat.st_mtime_ns)
                modified = iso_utc(stat.st_mtime)
            except OSError:  # vanished or unreadable: profiling reports it
                signature, modified = None, None
            yield discover_file(lambda p=path: nullcontext(p), str(path), rel, self.name,
                                "file", sample_rows, signature, modified, cache,
                                pool=pool, local_path=path)

    def load(self, dataset_id: str, relative: str) -> LoadedData:
        root = Path(self.config.path).resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise missing_error(dataset_id, self)
        fmt = file_format(relative)
        if fmt is None:
            raise DataError(f"'{path}' has an unsupported format; use {', '.join(sorted(FORMATS))}")
        return LoadedData(read_file(path, fmt, str(path)), "file", str(path), fmt)
