"""Which store serves a URI: one instance per kind, looked up by scheme."""

from __future__ import annotations

from autokfp.storage.base import ObjectStore, Store
from autokfp.storage.gcs import GcsStore
from autokfp.storage.local import LocalStore
from autokfp.storage.s3 import S3Store
from autokfp.storage.uris import scheme

LOCAL = LocalStore()
_BY_SCHEME: dict[str, Store] = {"": LOCAL, "file": LOCAL, "gs": GcsStore(), "s3": S3Store()}
_BY_SCHEME["minio"] = _BY_SCHEME["s3"]


def store_for(uri: str) -> Store:
    """The store of ``uri``'s scheme.

    Raises:
        StorageError: a scheme autokfp does not support.
    """
    return _BY_SCHEME[scheme(uri)]


def object_store_for(uri: str) -> ObjectStore | None:
    """The remote object store of ``uri``, or None for a local path."""
    store = store_for(uri)
    return store if isinstance(store, ObjectStore) else None
