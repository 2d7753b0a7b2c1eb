"""The artifact store: read and write files addressed by URI, locally, on GCS or on S3/MinIO.

Supported URIs:

    /abs/path, rel/path, ~/path   a local file or folder
    file:///abs/path              the same, as a URI
    gs://bucket/key               an object (or a prefix) in Google Cloud Storage
    s3://bucket/key               an object in S3 or an S3-compatible store (MinIO, Ceph)
    minio://bucket/key            the same as s3://, for a store that needs an endpoint

Every function here looks up the store that serves its URI (``stores.store_for``) and calls
the few methods each kind implements (``base.Store``): ``local.py`` (atomic writes through a
temp file and ``os.replace``, ``flock``-ed appends), ``gcs.py`` (google-cloud-storage,
``STORAGE_EMULATOR_HOST`` honoured) and ``s3.py`` (fsspec's s3fs, ``AWS_ENDPOINT_URL`` for
MinIO). What is built on them is written once: whole-file reads and writes (``files.py``),
trees (``trees.py``: a local destination is staged in a temp sibling folder and renamed into
place, so a failed copy never leaves half a model directory behind) and conditional appends
of JSON lines (``logs.py``; object stores share one read-extend-write-if-unchanged loop in
``base.ObjectStore``).

Local writes are atomic, and so is an object written by one upload, so a reader never sees
half a file. GCS stays on google-cloud-storage rather than fsspec (gcsfs is not a dependency):
the conditional appends need its generation preconditions, and its emulator support is what
the tests run against.
"""

from __future__ import annotations

from autokfp.storage import gcs, s3, scratch
from autokfp.storage.files import (
    delete,
    download_file,
    exists,
    list_uris,
    local_copy,
    read_bytes,
    read_text,
    write_bytes,
    write_text,
    write_text_pieces,
)
from autokfp.storage.logs import append_jsonl
from autokfp.storage.s3 import iter_s3_objects, s3_endpoint, s3_objects
from autokfp.storage.trees import download_dir, upload_dir
from autokfp.storage.uris import (
    S3_SCHEMES,
    SUPPORTED_SCHEMES,
    Uri,
    fetchable_uri,
    is_remote,
    join,
)


def reset_client() -> None:
    """Forget the cached GCS and S3 clients (the next call builds new ones from the environment)."""
    gcs.reset_client()
    s3.reset_client()


__all__ = [
    "S3_SCHEMES",
    "SUPPORTED_SCHEMES",
    "Uri",
    "append_jsonl",
    "delete",
    "download_dir",
    "download_file",
    "exists",
    "fetchable_uri",
    "is_remote",
    "iter_s3_objects",
    "join",
    "list_uris",
    "local_copy",
    "read_bytes",
    "read_text",
    "reset_client",
    "s3_endpoint",
    "s3_objects",
    "scratch",
    "upload_dir",
    "write_bytes",
    "write_text",
    "write_text_pieces",
]
