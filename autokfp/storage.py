"""The artifact store: read and write files addressed by URI, locally, on GCS or on S3/MinIO.

Supported URIs:

    /abs/path, rel/path, ~/path   a local file or folder
    file:///abs/path              the same, as a URI
    gs://bucket/key               an object (or a prefix) in Google Cloud Storage
    s3://bucket/key               an object in S3 or an S3-compatible store (MinIO, Ceph)
    minio://bucket/key            the same as s3://, for a store that needs an endpoint

Local writes are atomic (a temp file in the same folder, fsync, ``os.replace``), so a
reader never sees half a file; a GCS object is written by one upload, which is atomic too.
Copying a tree into a local folder goes through a temp sibling folder that is renamed
into place, so a failed download never leaves half a model directory behind.

The GCS client is created on first use and cached per process. It honours
``STORAGE_EMULATOR_HOST`` like google-cloud-storage itself does; with the emulator set,
no credentials are needed (the project comes from ``GOOGLE_CLOUD_PROJECT``, default
``autokfp``).

S3 goes through fsspec's ``s3fs`` (botocore underneath), with the usual AWS settings:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or an IAM role) and, for MinIO or any
other S3-compatible store, ``AWS_ENDPOINT_URL`` (``AWS_ENDPOINT_URL_S3`` and MLflow's
``MLFLOW_S3_ENDPOINT_URL`` are honoured too). The same variables serve MLflow's S3 artifact
repository and KServe's storage initializer, so one setting reaches all three.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from autokfp.errors import StorageError

logger = logging.getLogger(__name__)

Uri = str | os.PathLike

SUPPORTED_SCHEMES = "local paths, file://, gs://, s3:// and minio://"
S3_SCHEMES = ("s3", "minio")

# Temp files and folders share this prefix so listings can skip work in progress.
_TMP_PREFIX = ".autokfp-tmp-"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_APPEND_ATTEMPTS = 8

_client_lock = threading.Lock()
_client_key: tuple[Any, ...] | None = None
_client_obj: Any = None


# --------------------------------------------------------------------------- URIs


def _scheme(uri: str) -> str:
    match = _SCHEME_RE.match(uri)
    if not match:
        return ""
    scheme = match.group(1).lower()
    if scheme not in ("gs", "file", *S3_SCHEMES):
        raise StorageError(
            f"Unsupported URI scheme '{scheme}://' in '{uri}'. Supported: {SUPPORTED_SCHEMES}; "
            "copy the data to one of them or point the setting at a supported location."
        )
    return scheme


def _as_str(uri: Uri) -> str:
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
    return _scheme(_as_str(uri)) in ("gs", *S3_SCHEMES)


def _is_gcs(uri: str) -> bool:
    return _scheme(uri) == "gs"


def _is_s3(uri: str) -> bool:
    return _scheme(uri) in S3_SCHEMES


def fetchable_uri(uri: Uri) -> str:
    """``uri`` as the tools outside autokfp name it: ``minio://`` becomes ``s3://``.

    KServe's storage initializer and MLflow know ``s3://`` (with ``AWS_ENDPOINT_URL`` for
    MinIO) but not ``minio://``.
    """
    text = _as_str(uri)
    if _scheme(text) == "minio":
        return "s3://" + text.split("://", 1)[1]
    return text


def join(base_uri: Uri, *parts: str) -> str:
    """Join path segments onto a local path or ``gs://`` URI with single slashes.

    Empty segments and stray slashes are dropped, so ``join("gs://b/", "/x//", "y")`` is
    ``"gs://b/x/y"``. A segment starting with ``/`` does not restart from the root.
    """
    base = _as_str(base_uri)
    _scheme(base)
    segments = [seg for part in parts for seg in os.fspath(part).split("/") if seg]
    if not segments:
        return base
    if base.endswith("://"):  # "gs://" or "file://": keep the scheme's own slashes
        return base + "/".join(segments)
    return base.rstrip("/") + "/" + "/".join(segments)


def _split_gs(uri: str) -> tuple[str, str]:
    rest = uri[len("gs://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"'{uri}' names no bucket: write gs://<bucket>/<path>.")
    return bucket, key


def _object_key(uri: str) -> tuple[str, str]:
    """Bucket and key of a gs:// URI that must name one object (not a bucket or folder)."""
    bucket, key = _split_gs(uri)
    if not key or key.endswith("/"):
        raise StorageError(f"'{uri}' names a bucket or folder, not an object: add a file name.")
    return bucket, key


def _local_path(uri: str) -> Path:
    if _scheme(uri) == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(
                f"'{uri}' names host '{parsed.netloc}'; file:// URIs must be local "
                "(file:///absolute/path)."
            )
        return Path(unquote(parsed.path))
    return Path(uri).expanduser()


def _gs_uri(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


# --------------------------------------------------------------------------- GCS client


def _gcs_client() -> Any:
    """The process-wide GCS client, rebuilt when the emulator setting or process changes."""
    global _client_key, _client_obj
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    key = (os.getpid(), emulator, os.environ.get("GOOGLE_CLOUD_PROJECT"))
    with _client_lock:
        if _client_obj is None or _client_key != key:
            from google.cloud import storage as gcs

            # Callers run this inside _gcs_errors(uri), so credential errors name their URI.
            if emulator:
                _client_obj = gcs.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "autokfp"))
            else:
                _client_obj = gcs.Client()
            _client_key = key
        return _client_obj


def reset_client() -> None:
    """Forget the cached GCS and S3 clients (the next call builds new ones from the environment)."""
    global _client_key, _client_obj, _s3_key, _s3_obj
    with _client_lock:
        _client_key = None
        _client_obj = None
    with _s3_lock:
        _s3_key = None
        _s3_obj = None


# --------------------------------------------------------------------------- S3 (fsspec)

_s3_lock = threading.Lock()
_s3_key: tuple[Any, ...] | None = None
_s3_obj: Any = None


def s3_endpoint() -> str | None:
    """The S3 endpoint for MinIO and other S3-compatible stores, or None for AWS itself."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if value := os.environ.get(name):
            return value
    return None


def _s3_fs(uri: str) -> Any:
    """The process-wide s3fs filesystem, rebuilt when the endpoint or process changes."""
    global _s3_key, _s3_obj
    endpoint = s3_endpoint()
    if endpoint is None and _scheme(uri) == "minio":
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


def _s3_path(uri: str) -> str:
    """``bucket/key`` for s3fs, from an s3:// or minio:// URI."""
    rest = uri.split("://", 1)[1]
    if not rest.split("/", 1)[0]:
        raise StorageError(f"'{uri}' names no bucket: write s3://<bucket>/<path>.")
    return rest


def _s3_object(uri: str) -> str:
    path = _s3_path(uri)
    if "/" not in path.rstrip("/") or path.endswith("/"):
        raise StorageError(f"'{uri}' names a bucket or folder, not an object: add a file name.")
    return path


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{exc!r} {exc.__cause__!r}"
    return "PreconditionFailed" in text or "412" in text or "ConditionalRequestConflict" in text


@contextlib.contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
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


def _s3_names(uri: str, recursive: bool) -> list[str]:
    """Object names under the folder-like prefix of ``uri`` (relative to it)."""
    fs = _s3_fs(uri)
    prefix = _s3_path(uri).rstrip("/")
    try:
        if recursive:
            found = fs.find(prefix, detail=True)
            paths = [p for p, info in found.items() if info.get("type") == "file"]
        else:
            paths = [e["name"] for e in fs.ls(prefix, detail=True) if e.get("type") == "file"]
    except FileNotFoundError:
        return []
    start = len(prefix) + 1
    # find() on an object's own name returns the object: it is not under the prefix.
    return [p[start:] for p in paths if p.startswith(prefix + "/") and not p.endswith("/")]


@contextlib.contextmanager
def _gcs_errors(uri: str) -> Iterator[None]:
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


@contextlib.contextmanager
def _local_errors(uri: str) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as exc:
        raise StorageError(
            f"'{uri}' does not exist: check the path (relative paths start at "
            f"{os.getcwd()}) and that an earlier step wrote it."
        ) from exc
    except IsADirectoryError as exc:
        raise StorageError(f"'{uri}' is a folder, not a file: name a file inside it.") from exc
    except PermissionError as exc:
        raise StorageError(
            f"Permission denied for '{uri}': check the owner and mode of the file and its folder."
        ) from exc
    except OSError as exc:
        raise StorageError(f"Could not access '{uri}': {exc}") from exc


def _content_type(name: str, default: str = "application/octet-stream") -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or default


# --------------------------------------------------------------------------- files


def read_bytes(uri: Uri) -> bytes:
    """Read a whole file or object.

    Raises:
        StorageError: the file/object does not exist or cannot be read (message names it).
    """
    text = _as_str(uri)
    if _is_s3(text):
        with _s3_errors(text):
            return bytes(_s3_fs(text).cat_file(_s3_object(text)))
    if is_remote(text):
        bucket, key = _object_key(text)
        with _gcs_errors(text):
            return _gcs_client().bucket(bucket).blob(key).download_as_bytes()
    with _local_errors(text):
        return _local_path(text).read_bytes()


def read_text(uri: Uri, encoding: str = "utf-8") -> str:
    """Read a whole file or object as text.

    Raises:
        StorageError: missing or unreadable, or not valid text in ``encoding``.
    """
    text = _as_str(uri)
    data = read_bytes(text)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageError(
            f"'{text}' is not {encoding} text ({exc.reason} at byte {exc.start}); "
            "read it with read_bytes or pass the right encoding."
        ) from exc


def _atomic_write_local(path: Path, write: Any) -> None:
    """Write through a temp file in ``path``'s folder, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644  # mkstemp makes 0600 files; use the usual mode for a new file
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(uri: Uri, data: bytes) -> None:
    """Write ``data`` as the whole content of a file or object, replacing any old content.

    Local files are written atomically (parents are created); a failed write leaves the
    previous content in place. A GCS object is written with one upload.

    Raises:
        StorageError: the location cannot be written (message names it).
    """
    text = _as_str(uri)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StorageError(
            f"write_bytes('{text}') needs bytes, got {type(data).__name__}; "
            "use write_text for strings."
        )
    if _is_s3(text):
        with _s3_errors(text):
            _s3_fs(text).pipe_file(_s3_object(text), bytes(data),
                                   ContentType=_content_type(text))
        return
    if is_remote(text):
        bucket, key = _object_key(text)
        with _gcs_errors(text):
            _gcs_client().bucket(bucket).blob(key).upload_from_string(
                bytes(data), content_type=_content_type(key)
            )
        return
    with _local_errors(text):
        _atomic_write_local(_local_path(text), lambda handle: handle.write(data))


def write_text(uri: Uri, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` as the whole content of a file or object (see ``write_bytes``)."""
    if not isinstance(text, str):
        raise StorageError(
            f"write_text('{_as_str(uri)}') needs a str, got {type(text).__name__}; "
            "use write_bytes for binary data."
        )
    write_bytes(uri, text.encode(encoding))


def exists(uri: Uri) -> bool:
    """Whether a file/object exists at ``uri``, or a folder/prefix with something in it.

    A bare ``gs://bucket`` exists when the bucket does. Never raises for a missing
    location; raises StorageError for unsupported schemes or unreachable stores.
    """
    text = _as_str(uri)
    if _is_s3(text):
        path = _s3_path(text)
        with _s3_errors(text):
            fs = _s3_fs(text)
            if "/" not in path.rstrip("/"):
                return bool(fs.exists(path.rstrip("/")))
            if not path.endswith("/") and fs.isfile(path):
                return True
            return bool(_s3_names(text, recursive=True))
    if is_remote(text):
        bucket_name, key = _split_gs(text)
        with _gcs_errors(text):
            bucket = _gcs_client().bucket(bucket_name)
            if not key:
                return bool(bucket.exists())
            if not key.endswith("/") and bucket.blob(key).exists():
                return True
            prefix = key.rstrip("/") + "/"
            return any(True for _ in bucket.list_blobs(prefix=prefix, max_results=1))
    with _local_errors(text):
        return _local_path(text).exists()


def delete(uri: Uri) -> None:
    """Delete one file or object (used for tests and cleanup).

    Raises:
        StorageError: nothing exists at ``uri``, or it cannot be deleted.
    """
    text = _as_str(uri)
    if _is_s3(text):
        with _s3_errors(text):
            fs = _s3_fs(text)
            path = _s3_object(text)
            if not fs.isfile(path):  # S3 deletes of missing keys succeed silently
                raise FileNotFoundError(path)
            fs.rm_file(path)
        return
    if is_remote(text):
        bucket, key = _object_key(text)
        with _gcs_errors(text):
            _gcs_client().bucket(bucket).blob(key).delete()
        return
    with _local_errors(text):
        _local_path(text).unlink()


# --------------------------------------------------------------------------- trees


def _local_files(folder: Path, recursive: bool) -> list[str]:
    """Relative POSIX names of the files under ``folder``, skipping temp files."""
    if not folder.is_dir():
        return []
    names: list[str] = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(_TMP_PREFIX)]
            rel_root = Path(root).relative_to(folder)
            for name in files:
                if not name.startswith(_TMP_PREFIX):
                    names.append((rel_root / name).as_posix())
    else:
        names = [
            entry.name
            for entry in os.scandir(folder)
            if entry.is_file() and not entry.name.startswith(_TMP_PREFIX)
        ]
    return names


def _gcs_names(bucket: str, key: str, recursive: bool) -> list[str]:
    """Object names under the folder-like prefix ``key`` (relative to it)."""
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    blobs = _gcs_client().list_blobs(
        bucket, prefix=prefix or None, delimiter=None if recursive else "/"
    )
    # Zero-byte "folder" placeholders (names ending in "/") are not files.
    return [blob.name[len(prefix) :] for blob in blobs if not blob.name.endswith("/")]


def s3_objects(prefix_uri: Uri) -> list[dict[str, Any]]:
    """Every object under an ``s3://`` / ``minio://`` prefix with what identifies its version:
    ``{"uri", "relative", "etag", "size", "modified"}`` (modified: a datetime or None).

    Raises:
        StorageError: the URI is not an S3 URI, or the store cannot be listed.
    """
    text = _as_str(prefix_uri)
    if not _is_s3(text):
        raise StorageError(f"s3_objects lists s3:// or minio:// prefixes, got '{text}'.")
    prefix = _s3_path(text).rstrip("/")
    with _s3_errors(text):
        try:
            found = _s3_fs(text).find(prefix, detail=True)
        except FileNotFoundError:
            found = {}
    out = []
    for path, info in sorted(found.items()):
        if info.get("type") != "file" or not path.startswith(prefix + "/"):
            continue
        relative = path[len(prefix) + 1 :]
        out.append({"uri": join(text, relative), "relative": relative,
                    "etag": str(info.get("ETag", "")).strip('"'), "size": info.get("size"),
                    "modified": info.get("LastModified")})
    return out


def list_uris(prefix_uri: Uri, recursive: bool = True) -> list[str]:
    """Sorted URIs of the files (not folders) under a local folder or ``gs://`` prefix.

    The prefix is treated as a folder: ``gs://b/data`` lists ``gs://b/data/...``, not
    ``gs://b/database.csv``. Results keep the prefix's form (relative, absolute, file://).
    A missing folder or empty prefix gives an empty list. With ``recursive=False`` only
    the files directly inside are listed.
    """
    text = _as_str(prefix_uri)
    if _is_s3(text):
        with _s3_errors(text):
            names = _s3_names(text, recursive)
    elif is_remote(text):
        bucket, key = _split_gs(text)
        with _gcs_errors(text):
            names = _gcs_names(bucket, key, recursive)
    else:
        with _local_errors(text):
            names = _local_files(_local_path(text), recursive)
    return sorted(join(text, name) for name in names)


def _safe_target(root: Path, relative: str, source: str) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise StorageError(
            f"'{source}' holds object '{relative}', which would land outside the target "
            "folder; rename or remove that object."
        )
    return target


@contextlib.contextmanager
def _staged_dir(local_dir: Path, overwrite: bool, source: str) -> Iterator[Path]:
    """Yield a temp sibling of ``local_dir`` to fill; rename it into place on success."""
    local_dir = Path(os.path.abspath(local_dir))
    if local_dir.exists() and not local_dir.is_dir():
        raise StorageError(f"'{local_dir}' is a file; name a folder to copy '{source}' into.")
    if local_dir.is_dir() and any(local_dir.iterdir()) and not overwrite:
        raise StorageError(
            f"'{local_dir}' already exists and is not empty; choose a new folder, delete it, "
            "or pass overwrite=True to replace it."
        )
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=_TMP_PREFIX + local_dir.name + ".", dir=local_dir.parent)
    )
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes 0700 folders
        if local_dir.exists():
            # A folder cannot be renamed over a non-empty one: move the old tree aside first.
            old = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + "old.", dir=local_dir.parent))
            try:
                os.replace(local_dir, old / "tree")
                try:
                    os.replace(staging, local_dir)
                except BaseException:
                    os.replace(old / "tree", local_dir)
                    raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, local_dir)
        _fsync_dir(local_dir.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _copy_local_tree(src: Path, dest: Path, overwrite: bool, source: str) -> list[str]:
    """Copy ``src``'s files into ``dest`` through a staged folder; return relative names."""
    names = sorted(_local_files(src, recursive=True))
    with _staged_dir(dest, overwrite, source) as staging:
        for name in names:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, target)
    return names


def upload_dir(local_dir: Uri, uri: Uri, *, overwrite: bool = False) -> list[str]:
    """Copy every file under the local folder ``local_dir`` to ``uri`` (a folder or prefix).

    To a local destination the tree is copied into a temp sibling and renamed into place,
    so it appears whole or not at all. To ``gs://`` each file is one upload; if that fails
    midway some objects exist, so upload to a fresh prefix and publish its name afterwards.

    The destination must be empty unless ``overwrite=True``, which replaces it: a local
    folder as a whole, and on GCS objects not in ``local_dir`` are deleted after the upload.

    Returns:
        The sorted URIs written.

    Raises:
        StorageError: ``local_dir`` is not a folder, the destination is not empty (and
        ``overwrite`` is false), or a write fails.
    """
    src_text = _as_str(local_dir)
    if is_remote(src_text):
        raise StorageError(
            f"upload_dir copies from a local folder, got '{src_text}'; use download_dir to "
            "fetch a gs:// prefix."
        )
    src = _local_path(src_text)
    if not src.is_dir():
        raise StorageError(f"'{src_text}' is not a folder: pass the folder to upload.")
    dest = _as_str(uri)
    if not is_remote(dest):
        with _local_errors(dest):
            written = _copy_local_tree(src, _local_path(dest), overwrite, src_text)
        return sorted(join(dest, name) for name in written)

    with _local_errors(src_text):
        names = sorted(_local_files(src, recursive=True))
    if _is_s3(dest):
        return _upload_dir_s3(src, names, dest, overwrite)

    from google.api_core import exceptions as gexc

    bucket_name, key = _split_gs(dest)
    with _gcs_errors(dest):
        existing = set(_gcs_names(bucket_name, key, recursive=True))
        if existing and not overwrite:
            raise StorageError(
                f"'{dest}' already holds {len(existing)} object(s); upload to a new prefix, "
                "or pass overwrite=True to replace them."
            )
        bucket = _gcs_client().bucket(bucket_name)
        base = key.rstrip("/")
        for name in names:
            object_name = f"{base}/{name}" if base else name
            with _gcs_errors(_gs_uri(bucket_name, object_name)):
                bucket.blob(object_name).upload_from_filename(
                    str(src / name), content_type=_content_type(name)
                )
        for stale in sorted(existing - set(names)):
            object_name = f"{base}/{stale}" if base else stale
            with contextlib.suppress(gexc.NotFound):  # someone else removed it: fine
                bucket.blob(object_name).delete()
    return [join(dest, name) for name in names]


def download_dir(uri: Uri, local_dir: Uri, *, overwrite: bool = False) -> list[str]:
    """Copy every file under ``uri`` (a ``gs://`` prefix or local folder) into ``local_dir``.

    Files land in a temp sibling folder that is renamed to ``local_dir`` once all of them
    arrived, so a failure never leaves a half-written tree. ``local_dir`` must be absent
    or empty unless ``overwrite=True``, which replaces it as a whole.

    Returns:
        The sorted local paths of the files written.

    Raises:
        StorageError: nothing exists under ``uri``, ``local_dir`` is not empty, or a
        read/write fails (message names the location).
    """
    src = _as_str(uri)
    dest_text = _as_str(local_dir)
    if is_remote(dest_text):
        raise StorageError(
            f"download_dir writes to a local folder, got '{dest_text}'; use upload_dir to "
            "copy into gs://."
        )
    dest = _local_path(dest_text)
    if not is_remote(src):
        src_path = _local_path(src)
        if not src_path.is_dir() or not _local_files(src_path, recursive=True):
            raise StorageError(
                f"'{src}' is not a folder with files in it: check the path and that an "
                "earlier step wrote it."
            )
        with _local_errors(dest_text):
            names = _copy_local_tree(src_path, dest, overwrite, src)
        return [str(dest / name) for name in names]

    if _is_s3(src):
        with _s3_errors(src):
            names = sorted(_s3_names(src, recursive=True))
    else:
        bucket_name, key = _split_gs(src)
        with _gcs_errors(src):
            names = sorted(_gcs_names(bucket_name, key, recursive=True))
    if not names:
        raise StorageError(
            f"Nothing found under '{src}': check the bucket and prefix, and that an earlier "
            "step uploaded it."
        )
    if _is_s3(src):
        prefix = _s3_path(src).rstrip("/")
        with _local_errors(dest_text), _staged_dir(dest, overwrite, src) as staging:
            fs = _s3_fs(src)
            for name in names:
                target = _safe_target(staging, name, src)
                target.parent.mkdir(parents=True, exist_ok=True)
                with _s3_errors(join(src, name)):
                    fs.get_file(f"{prefix}/{name}", str(target))
        return sorted(str(dest / name) for name in names)
    with _gcs_errors(src):
        bucket = _gcs_client().bucket(bucket_name)
    base = key.rstrip("/")
    with _local_errors(dest_text), _staged_dir(dest, overwrite, src) as staging:
        for name in names:
            target = _safe_target(staging, name, src)
            target.parent.mkdir(parents=True, exist_ok=True)
            object_name = f"{base}/{name}" if base else name
            with _gcs_errors(_gs_uri(bucket_name, object_name)):
                bucket.blob(object_name).download_to_filename(str(target))
    return sorted(str(dest / name) for name in names)


@contextlib.contextmanager
def local_copy(uri: Uri) -> Iterator[Path]:
    """Yield a local path holding the file at ``uri``.

    For a local file this is the file itself (do not delete it). For ``gs://`` the object
    is downloaded to a temp folder that is removed when the block exits.

    Raises:
        StorageError: the file/object does not exist or cannot be read.
    """
    text = _as_str(uri)
    if not is_remote(text):
        path = _local_path(text)
        if path.is_dir():
            raise StorageError(f"'{text}' is a folder, not a file: name a file inside it.")
        if not path.is_file():
            raise StorageError(
                f"'{text}' does not exist: check the path and that an earlier step wrote it."
            )
        yield path
        return
    if _is_s3(text):
        key = _s3_object(text)
        with tempfile.TemporaryDirectory(prefix="autokfp-") as tmp:
            target = Path(tmp) / key.rsplit("/", 1)[-1]
            with _s3_errors(text):
                _s3_fs(text).get_file(key, str(target))
            yield target
        return
    bucket, key = _object_key(text)
    name = key.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="autokfp-") as tmp:
        target = Path(tmp) / name
        with _gcs_errors(text):
            _gcs_client().bucket(bucket).blob(key).download_to_filename(str(target))
        yield target


# --------------------------------------------------------------------------- logs


def _json_line(uri: str, record: dict) -> bytes:
    if not isinstance(record, dict):
        raise StorageError(
            f"append_jsonl('{uri}') needs a dict record, got {type(record).__name__}."
        )
    try:
        line = json.dumps(record, ensure_ascii=False, default=str, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"Record for '{uri}' is not JSON-serialisable: {exc}") from exc
    return (line + "\n").encode("utf-8")


def append_jsonl(uri: Uri, record: dict | Callable[[bytes], dict]) -> None:
    """Append ``record`` as one JSON line to a file or object, creating it if needed.

    ``record`` may be a function of the current content (bytes) returning the record: it
    is called under the same exclusion that protects the append, so the new line can depend
    on the last one (the audit trail's hash chain does).

    Locally the line is written with one ``O_APPEND`` write under an exclusive ``flock``,
    then flushed and fsynced, so concurrent writers do not interleave. On GCS (whose objects
    cannot be appended to) the object is read, extended and written back only if its
    generation is unchanged; a concurrent writer makes the write retry, a few times with
    backoff. Values that JSON cannot hold (dates, paths) are written as strings; NaN is
    refused.

    Raises:
        StorageError: the record is not JSON-serialisable, the write fails, or GCS kept
        refusing the write because others wrote concurrently.
    """
    text = _as_str(uri)
    if not callable(record):
        checked = _json_line(text, record)  # refuse a bad record before touching the file
        make = lambda _content: record  # noqa: E731
    else:
        checked, make = None, record
    if not is_remote(text):
        import fcntl

        path = _local_path(text)
        with _local_errors(text):
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                content = b""
                if callable(record):
                    with open(path, "rb") as existing:
                        content = existing.read()
                try:
                    line = checked or _json_line(text, make(content))
                except BaseException:
                    if not existed and path.stat().st_size == 0:
                        path.unlink(missing_ok=True)
                    raise
                prefix = b"\n" if content and not content.endswith(b"\n") else b""
                payload = prefix + line
                written = os.write(fd, payload)
                if written != len(payload):
                    os.write(fd, payload[written:])
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
        return
    if _is_s3(text):
        _append_s3(text, make)
        return

    from google.api_core import exceptions as gexc

    bucket_name, key = _object_key(text)
    with _gcs_errors(text):
        bucket = _gcs_client().bucket(bucket_name)
    for attempt in range(_APPEND_ATTEMPTS):
        try:
            with _gcs_errors(text):
                current = bucket.get_blob(key)
                if current is None:
                    content, generation = b"", 0  # 0: only create if still absent
                else:
                    generation = current.generation
                    content = current.download_as_bytes(if_generation_match=generation)
                    if content and not content.endswith(b"\n"):
                        content += b"\n"
                line = _json_line(text, make(content))
                bucket.blob(key).upload_from_string(
                    content + line,
                    content_type="application/x-ndjson",
                    if_generation_match=generation,
                )
            return
        except StorageError as exc:
            if not isinstance(exc.__cause__, gexc.PreconditionFailed):
                raise
            delay = min(2.0, 0.05 * 2**attempt)
            logger.debug("append to %s raced another writer; retrying in %.2fs", text, delay)
            time.sleep(delay)
    raise StorageError(
        f"Could not append to '{text}': it kept changing under {_APPEND_ATTEMPTS} attempts. "
        "Too many writers share this log; give each writer its own file."
    )


def _upload_dir_s3(src: Path, names: list[str], dest: str, overwrite: bool) -> list[str]:
    """upload_dir to s3:// (see upload_dir): one PUT per file, then stale objects removed."""
    prefix = _s3_path(dest).rstrip("/")
    with _s3_errors(dest):
        fs = _s3_fs(dest)
        existing = set(_s3_names(dest, recursive=True))
        if existing and not overwrite:
            raise StorageError(
                f"'{dest}' already holds {len(existing)} object(s); upload to a new prefix, "
                "or pass overwrite=True to replace them."
            )
    for name in names:
        with _s3_errors(join(dest, name)):
            fs.put_file(str(src / name), f"{prefix}/{name}", ContentType=_content_type(name))
    for stale in sorted(existing - set(names)):
        with contextlib.suppress(FileNotFoundError), _s3_errors(join(dest, stale)):
            fs.rm_file(f"{prefix}/{stale}")
    return [join(dest, name) for name in names]


def _append_s3(uri: str, make: Callable[[bytes], dict]) -> None:
    """append_jsonl on S3: read, extend and write back only if the ETag is unchanged.

    The ETag is read before the content, so a writer that lands in between changes the
    ETag and makes our conditional PUT fail (and retry) instead of losing its line.
    """
    path = _s3_object(uri)
    for attempt in range(_APPEND_ATTEMPTS):
        with _s3_errors(uri):
            fs = _s3_fs(uri)
            try:
                etag = fs.info(path)["ETag"]
                content = bytes(fs.cat_file(path))
            except FileNotFoundError:
                etag, content = None, b""
            if content and not content.endswith(b"\n"):
                content += b"\n"
            line = _json_line(uri, make(content))
            condition = {"IfMatch": etag} if etag else {"mode": "create"}
            try:
                fs.pipe_file(path, content + line, ContentType="application/x-ndjson",
                             **condition)
                return
            except Exception as exc:  # noqa: BLE001 - botocore wraps 412 in several types
                if not _precondition_failed(exc):
                    raise
        delay = min(2.0, 0.05 * 2**attempt)
        logger.debug("append to %s raced another writer; retrying in %.2fs", uri, delay)
        time.sleep(delay)
    raise StorageError(
        f"Could not append to '{uri}': it kept changing under {_APPEND_ATTEMPTS} attempts. "
        "Too many writers share this log; give each writer its own file."
    )


__all__ = [
    "SUPPORTED_SCHEMES",
    "append_jsonl",
    "delete",
    "download_dir",
    "exists",
    "fetchable_uri",
    "is_remote",
    "join",
    "list_uris",
    "local_copy",
    "read_bytes",
    "read_text",
    "reset_client",
    "s3_objects",
    "upload_dir",
    "write_bytes",
    "write_text",
]
