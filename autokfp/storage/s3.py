"""S3 and S3-compatible stores (``s3://bucket/key``, ``minio://bucket/key``) through fsspec's
``s3fs`` (botocore underneath).

The usual AWS settings apply: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or an IAM
role) and, for MinIO or any other S3-compatible store, ``AWS_ENDPOINT_URL``
(``AWS_ENDPOINT_URL_S3`` and MLflow's ``MLFLOW_S3_ENDPOINT_URL`` are honoured too). The same
variables serve MLflow's S3 artifact repository and KServe's storage initializer, so one
setting reaches all three. An object is written by one PUT; appends are conditional on the
object's ETag.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autokfp.errors import StorageError
from autokfp.storage.base import APPEND_CONTENT_TYPE, ObjectStore, Raced
from autokfp.storage.uris import Uri, as_str, content_type, join, scheme

_s3_lock = threading.Lock()
_s3_key: tuple[Any, ...] | None = None
_s3_obj: Any = None


def s3_endpoint() -> str | None:
    """The S3 endpoint for MinIO and other S3-compatible stores, or None for AWS itself."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if value := os.environ.get(name):
            return value
    return None


def filesystem(uri: str) -> Any:
    """The process-wide s3fs filesystem, rebuilt when the endpoint or process changes."""
    global _s3_key, _s3_obj
    endpoint = s3_endpoint()
    if endpoint is None and scheme(uri) == "minio":
        raise StorageError(
            f"'{uri}' is a minio:// URI but no endpoint is set: set AWS_ENDPOINT_URL to the "
            "MinIO address (e.g. http://minio-service.kubeflow:9000)."
        )
    key = (os.getpid(), endpoint, os.environ.get("AWS_ACCESS_KEY_ID"))
    with _s3_lock:
        if _s3_obj is None or _s3_key != key:
            import s3fs

            # No listing cache and no fsspec instance cache: other processes write the same
            # prefixes, and a cached listing would hide their objects.
            _s3_obj = s3fs.S3FileSystem(
                endpoint_url=endpoint, use_listings_cache=False, skip_instance_cache=True
            )
            _s3_key = key
        return _s3_obj


def reset_client() -> None:
    """Forget the cached filesystem (the next call builds a new one from the environment)."""
    global _s3_key, _s3_obj
    with _s3_lock:
        _s3_key = None
        _s3_obj = None


def s3_path(uri: str) -> str:
    """``bucket/key`` for s3fs, from an s3:// or minio:// URI."""
    rest = uri.split("://", 1)[1]
    if not rest.split("/", 1)[0]:
        raise StorageError(f"'{uri}' names no bucket: write s3://<bucket>/<path>.")
    return rest


def object_path(uri: str) -> str:
    """``bucket/key`` of a URI that must name one object (not a bucket or folder)."""
    path = s3_path(uri)
    if "/" not in path.rstrip("/") or path.endswith("/"):
        raise StorageError(f"'{uri}' names a bucket or folder, not an object: add a file name.")
    return path


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{exc!r} {exc.__cause__!r}"
    return "PreconditionFailed" in text or "412" in text or "ConditionalRequestConflict" in text


@contextlib.contextmanager
def errors(uri: str) -> Iterator[None]:
    """Turn s3fs/botocore failures into StorageError naming ``uri`` and what to check."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as exc:
        raise StorageError(
            f"'{uri}' does not exist: check the bucket and object name (and that "
            "AUTOKFP_ARTIFACT_ROOT points where the data was written)."
        ) from exc
    except PermissionError as exc:
        raise StorageError(
            f"Permission denied for '{uri}': check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            f"(or the pod's IAM role) and the bucket policy. ({exc})"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - botocore, aiohttp and OSError variants
        name = type(exc).__name__
        if "Credentials" in name:
            raise StorageError(
                f"No S3 credentials for '{uri}': set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (the autokfp-credentials Secret) or give the pod an "
                "IAM role."
            ) from exc
        if "Endpoint" in name or "Connect" in name or "Connection" in name:
            raise StorageError(
                f"Could not reach S3 for '{uri}' at {s3_endpoint() or 'AWS'}: {exc}. Check "
                "the network and AWS_ENDPOINT_URL (MinIO's address)."
            ) from exc
        raise StorageError(f"S3 refused an operation on '{uri}': {exc}") from exc


def missing_bucket(uri: str, bucket: str) -> StorageError:
    """The error for a listing of ``uri`` whose bucket does not exist."""
    return StorageError(
        f"bucket '{bucket}' does not exist at {s3_endpoint() or 'AWS'} (listing '{uri}'): "
        "check the bucket name in the URI, and AWS_ENDPOINT_URL if the bucket is on MinIO or "
        "another S3-compatible store.")


def _files(uri: str, recursive: bool) -> dict[str, dict[str, Any]]:
    """The files under the folder-like prefix of ``uri``: full s3fs path -> its details."""
    fs = filesystem(uri)
    prefix = s3_path(uri).rstrip("/")
    try:
        if recursive:
            found = fs.find(prefix, detail=True)
        else:
            found = {e["name"]: e for e in fs.ls(prefix, detail=True)}
    except FileNotFoundError:
        return {}
    # find() on an object's own name returns the object: it is not under the prefix.
    return {path: info for path, info in found.items() if info.get("type") == "file"
            and path.startswith(prefix + "/") and not path.endswith("/")}


# keys per ListObjectsV2 page (S3's own maximum): a listing holds one page at a time
LIST_PAGE = 1000


def iter_s3_objects(prefix_uri: Uri, page_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Every object under an ``s3://`` / ``minio://`` prefix with what identifies its version:
    ``{"uri", "relative", "etag", "size", "modified"}`` (modified: a datetime or None), in
    key order, listed one page (``ListObjectsV2``, at most ``page_size`` keys, default
    ``LIST_PAGE``) at a time, so a prefix of any size is listed in the memory of one page.

    Why not ``s3fs.find``: it gathers every object's details into one dict before returning
    (about 1.8 MB per 1,000 objects, measured by ``scripts/benchmark_bucket_crawl.py``).

    Raises:
        StorageError: the URI is not an S3 URI, the bucket does not exist (never listed as
            empty: a bucket name's typo must not read as "every object was deleted"), or the
            store cannot be listed (raised while iterating, possibly after some objects were
            yielded).
    """
    text = as_str(prefix_uri)
    if scheme(text) not in ("s3", "minio"):
        raise StorageError(f"s3_objects lists s3:// or minio:// prefixes, got '{text}'.")
    bucket, _, key = s3_path(text).partition("/")
    prefix = key.strip("/") + "/" if key.strip("/") else ""
    fs = filesystem(text)
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix,
                                  "MaxKeys": page_size or LIST_PAGE,
                                  **getattr(fs, "req_kw", {})}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            with errors(text):
                page = fs.call_s3("list_objects_v2", **kwargs)
        except StorageError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):  # ListObjectsV2's only 404
                raise missing_bucket(text, bucket) from exc.__cause__
            raise
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):]
            if not relative or relative.endswith("/"):
                continue  # the prefix itself or a folder marker
            yield {"uri": join(text, relative), "relative": relative,
                   "etag": str(item.get("ETag", "")).strip('"'), "size": item.get("Size"),
                   "modified": item.get("LastModified")}
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def s3_objects(prefix_uri: Uri) -> list[dict[str, Any]]:
    """``iter_s3_objects`` as a list (for prefixes known to be small: a model's parts).

    Raises:
        StorageError: the URI is not an S3 URI, its bucket does not exist, or the store
            cannot be listed.
    """
    return list(iter_s3_objects(prefix_uri))


class S3Store(ObjectStore):
    """``s3://`` and ``minio://`` objects."""

    def errors(self, uri: str) -> contextlib.AbstractContextManager[None]:
        return errors(uri)

    def read(self, uri: str) -> bytes:
        return bytes(filesystem(uri).cat_file(object_path(uri)))

    def write(self, uri: str, data: bytes) -> None:
        filesystem(uri).pipe_file(object_path(uri), data, ContentType=content_type(uri))

    def exists(self, uri: str) -> bool:
        path = s3_path(uri)
        fs = filesystem(uri)
        if "/" not in path.rstrip("/"):
            return bool(fs.exists(path.rstrip("/")))
        if not path.endswith("/") and fs.isfile(path):
            return True
        return bool(_files(uri, recursive=True))

    def delete(self, uri: str) -> None:
        fs = filesystem(uri)
        path = object_path(uri)
        if not fs.isfile(path):  # S3 deletes of missing keys succeed silently
            raise FileNotFoundError(path)
        fs.rm_file(path)

    def names(self, uri: str, recursive: bool) -> list[str]:
        start = len(s3_path(uri).rstrip("/")) + 1
        found = [path[start:] for path in _files(uri, recursive)]
        if not found:
            # s3fs lists a bucket that does not exist as empty: one page of the same listing
            # tells (NoSuchBucket: missing_bucket, as GCS says), with the permission the
            # listing needs; s3fs's exists(bucket) HEADs it and says False for a refused probe
            next(iter_s3_objects(uri, page_size=1), None)
        return found

    def put_file(self, local: Path, uri: str) -> None:
        filesystem(uri).put_file(str(local), object_path(uri), ContentType=content_type(uri))

    def get_file(self, uri: str, local: Path) -> None:
        filesystem(uri).get_file(object_path(uri), str(local))

    def discard(self, uri: str) -> None:
        filesystem(uri).rm_file(object_path(uri))  # a missing key is no error on S3

    def read_versioned(self, uri: str) -> tuple[bytes, Any]:
        fs = filesystem(uri)
        path = object_path(uri)
        try:
            # The ETag is read before the content, so a writer that lands in between changes
            # the ETag and makes our conditional PUT fail (and retry) instead of losing its line.
            etag = fs.info(path)["ETag"]
            return bytes(fs.cat_file(path)), etag
        except FileNotFoundError:
            return b"", None

    def write_if_unchanged(self, uri: str, data: bytes, version: Any) -> None:
        condition = {"IfMatch": version} if version else {"mode": "create"}
        try:
            filesystem(uri).pipe_file(object_path(uri), data, ContentType=APPEND_CONTENT_TYPE,
                                      **condition)
        except Exception as exc:  # noqa: BLE001 - botocore wraps 412 in several types
            if _precondition_failed(exc):
                raise Raced(f"'{uri}' changed since it was read") from exc
            raise
