"""Folder trees: upload a local folder to any store, download a folder or prefix locally.

A tree copied into a local folder goes through a temp sibling folder that is renamed into
place, so a failed copy never leaves half a model directory behind.
"""

from __future__ import annotations

from autokfp.errors import StorageError
from autokfp.storage.local import (
    copy_tree,
    local_errors,
    local_files,
    safe_target,
    staged_dir,
)
from autokfp.storage.stores import object_store_for
from autokfp.storage.uris import Uri, as_str, child, is_remote, join, local_path


def upload_dir(local_dir: Uri, uri: Uri, *, overwrite: bool = False) -> list[str]:
    """Copy every file under the local folder ``local_dir`` to ``uri`` (a folder or prefix).

    To a local destination the tree is copied into a temp sibling and renamed into place,
    so it appears whole or not at all. To an object store each file is one upload; if that
    fails midway some objects exist, so upload to a fresh prefix and publish its name
    afterwards.

    The destination must be empty unless ``overwrite=True``, which replaces it: a local
    folder as a whole, and in an object store objects not in ``local_dir`` are deleted after
    the upload.

    Returns:
        The sorted URIs written.

    Raises:
        StorageError: ``local_dir`` is not a folder, the destination is not empty (and
        ``overwrite`` is false), or a write fails.
    """
    src_text = as_str(local_dir)
    if is_remote(src_text):
        raise StorageError(
            f"upload_dir copies from a local folder, got '{src_text}'; use download_dir to "
            "fetch a gs:// prefix."
        )
    src = local_path(src_text)
    if not src.is_dir():
        raise StorageError(f"'{src_text}' is not a folder: pass the folder to upload.")
    dest = as_str(uri)
    store = object_store_for(dest)
    if store is None:
        with local_errors(dest):
            written = copy_tree(src, local_path(dest), overwrite, src_text)
        return sorted(join(dest, name) for name in written)

    with local_errors(src_text):
        names = sorted(local_files(src, recursive=True))
    with store.errors(dest):
        existing = set(store.names(dest, recursive=True))
    if existing and not overwrite:
        raise StorageError(
            f"'{dest}' already holds {len(existing)} object(s); upload to a new prefix, "
            "or pass overwrite=True to replace them."
        )
    for name in names:
        with store.errors(join(dest, name)):
            store.put_file(src / name, child(dest, name))
    for stale in sorted(existing - set(names)):
        with store.errors(join(dest, stale)):
            store.discard(child(dest, stale))
    return [join(dest, name) for name in names]


def download_dir(uri: Uri, local_dir: Uri, *, overwrite: bool = False) -> list[str]:
    """Copy every file under ``uri`` (a ``gs://``/``s3://`` prefix or local folder) into
    ``local_dir``.

    Files land in a temp sibling folder that is renamed to ``local_dir`` once all of them
    arrived, so a failure never leaves a half-written tree. ``local_dir`` must be absent
    or empty unless ``overwrite=True``, which replaces it as a whole.

    Returns:
        The sorted local paths of the files written.

    Raises:
        StorageError: nothing exists under ``uri``, ``local_dir`` is not empty, or a
        read/write fails (message names the location).
    """
    src = as_str(uri)
    dest_text = as_str(local_dir)
    if is_remote(dest_text):
        raise StorageError(
            f"download_dir writes to a local folder, got '{dest_text}'; use upload_dir to "
            "copy into gs://."
        )
    dest = local_path(dest_text)
    store = object_store_for(src)
    if store is None:
        src_path = local_path(src)
        if not src_path.is_dir() or not local_files(src_path, recursive=True):
            raise StorageError(
                f"'{src}' is not a folder with files in it: check the path and that an "
                "earlier step wrote it."
            )
        with local_errors(dest_text):
            written = copy_tree(src_path, dest, overwrite, src)
        return [str(dest / name) for name in written]

    with store.errors(src):
        names = sorted(store.names(src, recursive=True))
    if not names:
        raise StorageError(
            f"Nothing found under '{src}': check the bucket and prefix, and that an earlier "
            "step uploaded it."
        )
    with local_errors(dest_text), staged_dir(dest, overwrite, src) as staging:
        for name in names:
            target = safe_target(staging, name, src)
            target.parent.mkdir(parents=True, exist_ok=True)
            with store.errors(join(src, name)):
                store.get_file(child(src, name), target)
    return sorted(str(dest / name) for name in names)
