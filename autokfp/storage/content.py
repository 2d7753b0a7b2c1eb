"""Content-addressed folders: a folder whose URI names the digest of the files in it.

The same files always land at the same URI, and a URI always holds the same files. Kubeflow
Pipelines keys its task cache on the values of a task's parameters (and on the ids of its
input artifacts, which are new in every run): a task that receives such a URI as a
parameter has the same cache key in every run on the same content, and another key as soon
as one byte changes (docs/kubeflow-ui.md, item 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from autokfp.errors import StorageError
from autokfp.storage.base import ObjectStore
from autokfp.storage.files import exists, read_text, write_text
from autokfp.storage.local import atomic_write_pieces
from autokfp.storage.stores import store_for
from autokfp.storage.uris import child, local_path

DIGEST_PREFIX = "sha256-"
MANIFEST = "manifest.json"
"""Written last: a folder without it is incomplete (a writer was stopped) and is rewritten."""
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of one local file, read in 1 MiB pieces (a table may not fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(_CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def content_digest(files: Mapping[str, str | os.PathLike[str]]) -> str:
    """The digest of named local files: SHA-256 over each name and its file's SHA-256, in
    name order, so that renaming a file changes it as much as changing its bytes."""
    return _digest_of({name: file_digest(path) for name, path in files.items()})


def _digest_of(file_digests: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(file_digests):
        digest.update(f"{name}\0{file_digests[name]}\n".encode())
    return digest.hexdigest()


def put_content_addressed(root: str, files: Mapping[str, str | os.PathLike[str]]) -> str:
    """Store the local ``files`` (name -> path) under ``root``/sha256-<digest>/ and return
    that folder's URI. A folder that is already complete (its manifest written) is left as
    it is: it holds these very files.

    Raises:
        StorageError: ``root`` cannot be written (the message names it).
    """
    _check_names(files)
    file_digests = {name: file_digest(path) for name, path in files.items()}  # read once
    digest = _digest_of(file_digests)
    folder = child(root, DIGEST_PREFIX + digest)
    manifest = child(folder, MANIFEST)
    if exists(manifest):
        return folder
    store = store_for(folder)
    for name, path in files.items():
        target = child(folder, name)
        with store.errors(target):
            if isinstance(store, ObjectStore):
                store.put_file(Path(path), target)
            else:
                _copy_atomically(Path(path), local_path(target))
    write_text(manifest, json.dumps({"digest": digest, "files": dict(sorted(
        file_digests.items()))}, indent=1))
    return folder


def get_content_addressed(folder: str, files: Mapping[str, str | os.PathLike[str]]) -> str:
    """Copy each named file of the content-addressed ``folder`` to its local path in
    ``files`` (name -> path) and check that together they still have the folder's digest.
    Returns the digest.

    Raises:
        StorageError: ``folder`` is not a content-addressed folder, is incomplete, lacks one
            of the files, or holds other content than its name says.
    """
    _check_names(files)
    name = folder.rstrip("/").rsplit("/", 1)[-1]
    if not name.startswith(DIGEST_PREFIX):
        raise StorageError(f"'{folder}' is not a content-addressed folder (its name must be "
                           f"{DIGEST_PREFIX}<digest>): pass the URI engineer_features returned "
                           "as training_data")
    expected = name[len(DIGEST_PREFIX):]
    manifest = child(folder, MANIFEST)
    if not exists(manifest):
        raise StorageError(f"'{folder}' has no {MANIFEST}: it was never completely written, or "
                           "it was deleted from the artifact store; run engineer_features again")
    try:
        listed = json.loads(read_text(manifest)).get("files")
    except (ValueError, AttributeError):
        listed = None
    if not isinstance(listed, dict):
        raise StorageError(f"'{manifest}' is not a manifest autokfp wrote (not a JSON object "
                           "with 'files'): it was edited or damaged; delete the folder and run "
                           "engineer_features again")
    missing = sorted(set(files) - set(listed))
    if missing:
        raise StorageError(f"'{folder}' holds {sorted(listed)}, not {missing}")
    store = store_for(folder)
    for file_name, path in files.items():
        source = child(folder, file_name)
        if not exists(source):
            raise StorageError(f"'{source}' is missing from the content-addressed folder "
                               f"'{folder}'; run engineer_features again")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with store.errors(source):
            if isinstance(store, ObjectStore):
                store.get_file(source, Path(path))
            else:
                shutil.copyfile(local_path(source), path)
    if set(files) == set(listed):
        actual = content_digest(files)
        if actual != expected:
            raise StorageError(f"'{folder}' holds other content than its name says (digest "
                               f"{actual}): it was changed in the artifact store; delete the "
                               "folder and run engineer_features again")
    else:  # a subset: each file against the manifest
        for file_name, path in files.items():
            if file_digest(path) != listed[file_name]:
                raise StorageError(f"'{child(folder, file_name)}' holds other content than "
                                   f"{folder}/{MANIFEST} says; delete the folder and run "
                                   "engineer_features again")
    return expected


def _check_names(files: Mapping[str, object]) -> None:
    bad = [name for name in files if not name or "/" in name or name == MANIFEST]
    if bad or not files:
        raise StorageError(f"content-addressed files need plain file names other than "
                           f"{MANIFEST}, got {sorted(files) or 'none'}")


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy through a temp file next to ``target`` (fsynced, then renamed: a reader never
    sees half of it), read in 1 MiB pieces."""
    def pieces() -> Iterator[bytes]:
        with open(source, "rb") as handle:
            while piece := handle.read(_CHUNK):
                yield piece

    atomic_write_pieces(target, pieces())
