"""Google Cloud Storage (``gs://bucket/key``) through google-cloud-storage.

The client is created on first use and cached per process. It honours
``STORAGE_EMULATOR_HOST`` like google-cloud-storage itself does; with the emulator set, no
credentials are needed (the project comes from ``GOOGLE_CLOUD_PROJECT``, default
``autokfp``). An object is written by one upload, which is atomic; appends are conditional
on the object's generation.
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
from autokfp.storage.uris import content_type

_client_lock = threading.Lock()
_client_key: tuple[Any, ...] | None = None
_client_obj: Any = None


# objects per listing page (GCS's own maximum for objects.list): a listing holds one page
LIST_PAGE = 1000


def split_uri(uri: str) -> tuple[str, str]:
    """Bucket and key (possibly empty) of a gs:// URI."""
    rest = uri[len("gs://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"'{uri}' names no bucket: write gs://<bucket>/<path>.")
    return bucket, key


def object_key(uri: str) -> tuple[str, str]:
    """Bucket and key of a gs:// URI that must name one object (not a bucket or folder)."""
    bucket, key = split_uri(uri)
    if not key or key.endswith("/"):
        raise StorageError(f"'{uri}' names a bucket or folder, not an object: add a file name.")
    return bucket, key


def client() -> Any:
    """The process-wide GCS client, rebuilt when the emulator setting or process changes."""
    global _client_key, _client_obj
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    key = (os.getpid(), emulator, os.environ.get("GOOGLE_CLOUD_PROJECT"))
    with _client_lock:
        if _client_obj is None or _client_key != key:
            from google.cloud import storage as gcs

            # Callers run this inside errors(uri), so credential errors name their URI.
            if emulator:
                _client_obj = gcs.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "autokfp"))
            else:
                _client_obj = gcs.Client()
            _client_key = key
        return _client_obj


def reset_client() -> None:
    """Forget the cached client (the next call builds a new one from the environment)."""
    global _client_key, _client_obj
    with _client_lock:
        _client_key = None
        _client_obj = None


@contextlib.contextmanager
def errors(uri: str) -> Iterator[None]:
    """Turn google-cloud-storage and network failures into StorageError naming ``uri``."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from requests.exceptions import RequestException

    try:
        yield
    except StorageError:
        raise
    except gexc.NotFound as exc:
        raise StorageError(
            f"'{uri}' does not exist: check the bucket and object name (and that "
            f"AUTOKFP_ARTIFACT_ROOT points where the data was written). ({exc.message})"
        ) from exc
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise StorageError(
            f"Permission denied for '{uri}': check that the service account "
            "(GOOGLE_APPLICATION_CREDENTIALS or workload identity) may read/write objects "
            f"in this bucket. ({exc.message})"
        ) from exc
    except auth_exc.DefaultCredentialsError as exc:
        raise StorageError(
            f"No Google Cloud credentials for '{uri}': set GOOGLE_APPLICATION_CREDENTIALS, "
            "run 'gcloud auth application-default login', or set STORAGE_EMULATOR_HOST "
            "for a local emulator."
        ) from exc
    except gexc.GoogleAPICallError as exc:
        raise StorageError(f"GCS refused an operation on '{uri}': {exc}") from exc
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, RequestException) as exc:
        raise StorageError(
            f"Could not reach GCS for '{uri}': {exc}. Check the network, and "
            "STORAGE_EMULATOR_HOST if you meant to use an emulator."
        ) from exc


def missing_bucket(uri: str, bucket: str) -> StorageError:
    """The error for a listing of ``uri`` whose bucket does not exist."""
    where = os.environ.get("STORAGE_EMULATOR_HOST") or "GCS"
    return StorageError(
        f"bucket '{bucket}' does not exist at {where} (listing '{uri}'): check the bucket "
        "name in the URI, and the project it belongs to.")


def names(bucket: str, key: str, recursive: bool) -> list[str]:
    """Object names under the folder-like prefix ``key`` (relative to it).

    Raises:
        StorageError: the bucket does not exist.
    """
    from google.api_core import exceptions as gexc

    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    blobs = client().list_blobs(
        bucket, prefix=prefix or None, delimiter=None if recursive else "/",
        page_size=LIST_PAGE)
    try:
        # Zero-byte "folder" placeholders (names ending in "/") are not files.
        return [blob.name[len(prefix) :] for blob in blobs if not blob.name.endswith("/")]
    except gexc.NotFound as exc:  # a listing's only 404
        raise missing_bucket(f"gs://{bucket}/{key}", bucket) from exc


def iter_blobs(prefix_uri: str, page_size: int | None = None) -> Iterator[tuple[str, Any]]:
    """``(relative name, blob)`` of every object under the folder-like gs:// prefix (folder
    placeholders skipped), in name order, listed one page (at most ``page_size`` objects,
    default ``LIST_PAGE``) at a time: the client's iterator asks for the next page when the
    last one is used up, so a prefix of any size is listed in the memory of one page. The
    blobs carry generation, size and checksums.

    Why the page size is always sent: GCS itself answers at most 1,000 objects a page
    without one, but a server that honours ``maxResults`` and otherwise answers everything
    at once (fake-gcs-server does) hands the whole prefix over in one page, which the
    client holds whole: +4.4 MB per 1,000 objects measured (``scripts/
    benchmark_bucket_crawl.py --store fake-gcs``, docs/scale.md).

    Raises:
        StorageError: the bucket does not exist (never listed as empty: a bucket name's typo
            must not read as "every object was deleted"), access is denied, or GCS cannot be
            reached (raised while iterating, possibly after some blobs were yielded).
    """
    from google.api_core import exceptions as gexc

    bucket, key = split_uri(prefix_uri)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    with errors(prefix_uri):
        try:
            for blob in client().list_blobs(bucket, prefix=prefix or None,
                                            page_size=page_size or LIST_PAGE):
                relative = blob.name[len(prefix):]
                if relative and not blob.name.endswith("/"):
                    yield relative, blob
        except gexc.NotFound as exc:  # a listing's only 404
            raise missing_bucket(prefix_uri, bucket) from exc


def _blob(uri: str) -> Any:
    bucket, key = object_key(uri)
    return client().bucket(bucket).blob(key)


class GcsStore(ObjectStore):
    """``gs://bucket/key`` objects."""

    def errors(self, uri: str) -> contextlib.AbstractContextManager[None]:
        return errors(uri)

    def read(self, uri: str) -> bytes:
        return _blob(uri).download_as_bytes()

    def write(self, uri: str, data: bytes) -> None:
        _blob(uri).upload_from_string(data, content_type=content_type(uri))

    def exists(self, uri: str) -> bool:
        bucket_name, key = split_uri(uri)
        bucket = client().bucket(bucket_name)
        if not key:
            return bool(bucket.exists())
        if not key.endswith("/") and bucket.blob(key).exists():
            return True
        from google.api_core import exceptions as gexc

        prefix = key.rstrip("/") + "/"
        try:
            return any(True for _ in bucket.list_blobs(prefix=prefix, max_results=1))
        except gexc.NotFound:  # the bucket does not exist: nothing is there, as on S3
            return False

    def delete(self, uri: str) -> None:
        _blob(uri).delete()

    def names(self, uri: str, recursive: bool) -> list[str]:
        return names(*split_uri(uri), recursive)

    def put_file(self, local: Path, uri: str) -> None:
        _blob(uri).upload_from_filename(str(local), content_type=content_type(uri))

    def get_file(self, uri: str, local: Path) -> None:
        _blob(uri).download_to_filename(str(local))

    def discard(self, uri: str) -> None:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.NotFound):  # someone else removed it: fine
            _blob(uri).delete()

    def read_versioned(self, uri: str) -> tuple[bytes, Any]:
        from google.api_core import exceptions as gexc

        bucket, key = object_key(uri)
        current = client().bucket(bucket).get_blob(key)
        if current is None:
            return b"", 0  # generation 0: only create if still absent
        generation = current.generation  # read first: a download resets the blob's fields
        try:
            return current.download_as_bytes(if_generation_match=generation), generation
        except gexc.PreconditionFailed as exc:
            raise Raced(f"'{uri}' changed while it was read") from exc

    def write_if_unchanged(self, uri: str, data: bytes, version: Any) -> None:
        from google.api_core import exceptions as gexc

        try:
            _blob(uri).upload_from_string(data, content_type=APPEND_CONTENT_TYPE,
                                          if_generation_match=version)
        except gexc.PreconditionFailed as exc:
            raise Raced(f"'{uri}' changed since it was read") from exc
