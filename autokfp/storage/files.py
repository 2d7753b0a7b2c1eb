"""Whole files: read, write, test, delete, list, and a local copy of one."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from autokfp.errors import StorageError
from autokfp.storage.stores import object_store_for, store_for
from autokfp.storage.uris import Uri, as_str, join, local_path


def read_bytes(uri: Uri) -> bytes:
    """Read a whole file or object.

    Raises:
        StorageError: the file/object does not exist or cannot be read (message names it).
    """
    text = as_str(uri)
    store = store_for(text)
    with store.errors(text):
        return store.read(text)


def read_text(uri: Uri, encoding: str = "utf-8") -> str:
    """Read a whole file or object as text.

    Raises:
        StorageError: missing or unreadable, or not valid text in ``encoding``.
    """
    text = as_str(uri)
    data = read_bytes(text)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageError(
            f"'{text}' is not {encoding} text ({exc.reason} at byte {exc.start}); "
            "read it with read_bytes or pass the right encoding."
        ) from exc


def write_bytes(uri: Uri, data: bytes) -> None:
    """Write ``data`` as the whole content of a file or object, replacing any old content.

    Local files are written atomically (parents are created); a failed write leaves the
    previous content in place. An object is written with one upload.

    Raises:
        StorageError: the location cannot be written (message names it).
    """
    text = as_str(uri)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StorageError(
            f"write_bytes('{text}') needs bytes, got {type(data).__name__}; "
            "use write_text for strings."
        )
    store = store_for(text)
    with store.errors(text):
        store.write(text, bytes(data))


def write_text(uri: Uri, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` as the whole content of a file or object (see ``write_bytes``)."""
    if not isinstance(text, str):
        raise StorageError(
            f"write_text('{as_str(uri)}') needs a str, got {type(text).__name__}; "
            "use write_bytes for binary data."
        )
    write_bytes(uri, text.encode(encoding))


def write_text_pieces(uri: Uri, pieces: Iterable[str], encoding: str = "utf-8") -> None:
    """Write the concatenated ``pieces`` as the whole content of a file or object, taking
    one piece at a time, so a file larger than memory can be written from a generator.

    A local file is written atomically as ``write_bytes`` writes it; an object through a
    local temporary file, uploaded once it is complete.

    Raises:
        StorageError: the location cannot be written (message names it).
    """
    text = as_str(uri)
    remote = object_store_for(text)
    encoded = (piece.encode(encoding) for piece in pieces)
    if remote is None:
        from autokfp.storage.local import atomic_write_pieces

        with store_for(text).errors(text):
            atomic_write_pieces(local_path(text), encoded)
        return
    with tempfile.TemporaryDirectory(prefix="autokfp-upload-") as folder:
        staged = Path(folder) / "upload"
        with staged.open("wb") as handle:
            for piece in encoded:
                handle.write(piece)
        with remote.errors(text):
            remote.put_file(staged, text)


def exists(uri: Uri) -> bool:
    """Whether a file/object exists at ``uri``, or a folder/prefix with something in it.

    A bare ``gs://bucket`` exists when the bucket does. Never raises for a missing
    location; raises StorageError for unsupported schemes or unreachable stores.
    """
    text = as_str(uri)
    store = store_for(text)
    with store.errors(text):
        return store.exists(text)


def delete(uri: Uri) -> None:
    """Delete one file or object (used for tests and cleanup).

    Raises:
        StorageError: nothing exists at ``uri``, or it cannot be deleted.
    """
    text = as_str(uri)
    store = store_for(text)
    with store.errors(text):
        store.delete(text)


def list_uris(prefix_uri: Uri, recursive: bool = True) -> list[str]:
    """Sorted URIs of the files (not folders) under a local folder or ``gs://`` prefix.

    The prefix is treated as a folder: ``gs://b/data`` lists ``gs://b/data/...``, not
    ``gs://b/database.csv``. Results keep the prefix's form (relative, absolute, file://).
    A missing folder or empty prefix gives an empty list. With ``recursive=False`` only
    the files directly inside are listed.

    Raises:
        StorageError: the prefix's bucket does not exist (on GCS and S3 alike: a typo in a
            bucket name is not an empty prefix), or the store refuses or cannot be reached.
    """
    text = as_str(prefix_uri)
    store = store_for(text)
    with store.errors(text):
        names = store.names(text, recursive)
    return sorted(join(text, name) for name in names)


@contextlib.contextmanager
def local_copy(uri: Uri) -> Iterator[Path]:
    """Yield a local path holding the file at ``uri``.

    For a local file this is the file itself (do not delete it). For a remote object it is
    downloaded to a temp folder that is removed when the block exits.

    Raises:
        StorageError: the file/object does not exist or cannot be read.
    """
    text = as_str(uri)
    store = object_store_for(text)
    if store is None:
        path = local_path(text)
        if path.is_dir():
            raise StorageError(f"'{text}' is a folder, not a file: name a file inside it.")
        if not path.is_file():
            raise StorageError(
                f"'{text}' does not exist: check the path and that an earlier step wrote it."
            )
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="autokfp-") as tmp:
        target = Path(tmp) / text.rstrip("/").rsplit("/", 1)[-1]
        download_file(text, target)
        yield target


def download_file(uri: Uri, local: Path) -> None:
    """Download the object at ``uri`` to the local file ``local`` (written as it arrives,
    never whole in memory); the caller owns the file.

    Raises:
        StorageError: ``uri`` is not an object store's URI, or the object does not exist or
            cannot be read.
    """
    text = as_str(uri)
    store = object_store_for(text)
    if store is None:
        raise StorageError(f"download_file reads gs://, s3:// or minio:// objects, got '{text}'.")
    with store.errors(text):
        store.get_file(text, local)
