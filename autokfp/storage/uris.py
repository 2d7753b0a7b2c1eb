"""URIs of the artifact store: which scheme, which store, and how to join them."""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from autokfp.errors import StorageError

Uri = str | os.PathLike

SUPPORTED_SCHEMES = "local paths, file://, gs://, s3:// and minio://"
S3_SCHEMES = ("s3", "minio")

# Temp files and folders share this prefix so listings can skip work in progress.
TMP_PREFIX = ".autokfp-tmp-"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def scheme(uri: str) -> str:
    """The lower-case scheme of ``uri`` ("" for a plain path).

    Raises:
        StorageError: a scheme autokfp does not support (e.g. ``hdfs://``).
    """
    match = _SCHEME_RE.match(uri)
    if not match:
        return ""
    found = match.group(1).lower()
    if found not in ("gs", "file", *S3_SCHEMES):
        raise StorageError(
            f"Unsupported URI scheme '{found}://' in '{uri}'. Supported: {SUPPORTED_SCHEMES}; "
            "copy the data to one of them or point the setting at a supported location."
        )
    return found


def as_str(uri: Uri) -> str:
    """``uri`` as a non-empty string (paths and path-likes accepted)."""
    try:
        text = os.fspath(uri)
    except TypeError:
        raise StorageError(
            f"Expected a path or URI string, got {type(uri).__name__}: {uri!r}"
        ) from None
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text:
        raise StorageError("Empty URI: pass a local path, file:// or gs:// URI.")
    return text


def is_remote(uri: Uri) -> bool:
    """Whether ``uri`` names a remote object store (``gs://``, ``s3://``, ``minio://``).

    Raises:
        StorageError: the URI uses a scheme autokfp does not support (e.g. ``hdfs://``).
    """
    return scheme(as_str(uri)) in ("gs", *S3_SCHEMES)


def fetchable_uri(uri: Uri) -> str:
    """``uri`` as the tools outside autokfp name it: ``minio://`` becomes ``s3://``.

    KServe's storage initializer and MLflow know ``s3://`` (with ``AWS_ENDPOINT_URL`` for
    MinIO) but not ``minio://``.
    """
    text = as_str(uri)
    if scheme(text) == "minio":
        return "s3://" + text.split("://", 1)[1]
    return text


def join(base_uri: Uri, *parts: str) -> str:
    """Join path segments onto a local path or ``gs://`` URI with single slashes.

    Empty segments and stray slashes are dropped, so ``join("gs://b/", "/x//", "y")`` is
    ``"gs://b/x/y"``. A segment starting with ``/`` does not restart from the root.
    """
    base = as_str(base_uri)
    scheme(base)
    segments = [seg for part in parts for seg in os.fspath(part).split("/") if seg]
    if not segments:
        return base
    if base.endswith("://"):  # "gs://" or "file://": keep the scheme's own slashes
        return base + "/".join(segments)
    return base.rstrip("/") + "/" + "/".join(segments)


def child(prefix_uri: str, name: str) -> str:
    """The object ``name`` (relative, as a listing gives it) under ``prefix_uri``, kept
    letter for letter (``join`` would fold a ``//`` inside an object's name)."""
    return prefix_uri.rstrip("/") + "/" + name


def local_path(uri: str) -> Path:
    """The local path a plain path or ``file://`` URI names (``~`` expanded)."""
    if scheme(uri) == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(
                f"'{uri}' names host '{parsed.netloc}'; file:// URIs must be local "
                "(file:///absolute/path)."
            )
        return Path(unquote(parsed.path))
    return Path(uri).expanduser()


def content_type(name: str, default: str = "application/octet-stream") -> str:
    """The MIME type an object called ``name`` is uploaded with (by its extension)."""
    guessed, _ = mimetypes.guess_type(name)
    return guessed or default
