"""Local files and folders (plain paths and ``file://`` URIs).

Writes are atomic: a temp file in the same folder, fsync, ``os.replace``. Trees are copied
into a temp sibling folder that is renamed into place. Appends are one ``O_APPEND`` write
under an exclusive ``flock``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from autokfp.errors import StorageError
from autokfp.storage.base import Store
from autokfp.storage.uris import TMP_PREFIX, local_path


@contextlib.contextmanager
def local_errors(uri: str) -> Iterator[None]:
    """Turn OS failures into StorageError naming ``uri`` and what to check."""
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


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temp file in ``path``'s folder, fsync it, then rename it over ``path``."""
    atomic_write_pieces(path, [data])


def atomic_write_pieces(path: Path, pieces: Iterable[bytes]) -> None:
    """``atomic_write`` of the concatenated ``pieces``, taken one at a time (a file larger
    than memory can be written from a generator)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for piece in pieces:
                handle.write(piece)
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
    fsync_dir(path.parent)


def local_files(folder: Path, recursive: bool) -> list[str]:
    """Relative POSIX names of the files under ``folder``, skipping temp files."""
    if not folder.is_dir():
        return []
    names: list[str] = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
            rel_root = Path(root).relative_to(folder)
            for name in files:
                if not name.startswith(TMP_PREFIX):
                    names.append((rel_root / name).as_posix())
    else:
        names = [
            entry.name
            for entry in os.scandir(folder)
            if entry.is_file() and not entry.name.startswith(TMP_PREFIX)
        ]
    return names


def safe_target(root: Path, relative: str, source: str) -> Path:
    """``root / relative``, refused when an object's name would climb out of ``root``."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise StorageError(
            f"'{source}' holds object '{relative}', which would land outside the target "
            "folder; rename or remove that object."
        )
    return target


@contextlib.contextmanager
def staged_dir(local_dir: Path, overwrite: bool, source: str) -> Iterator[Path]:
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
        tempfile.mkdtemp(prefix=TMP_PREFIX + local_dir.name + ".", dir=local_dir.parent)
    )
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes 0700 folders
        replace_dir(staging, local_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_dir(staging: Path, target: Path) -> None:
    """Rename the filled folder ``staging`` onto ``target`` (a folder or file there is
    replaced). At every moment ``target`` is the whole old tree, absent, or the whole new
    one, never part of either, also when the process is killed (``kill -9``) half-way.

    A folder cannot be renamed over a non-empty one, so the old tree is first moved aside
    to ``.autokfp-tmp-old.<name>`` (left there by a kill, removed by the next call).
    """
    target = Path(os.path.abspath(target))
    old = target.parent / f"{TMP_PREFIX}old.{target.name}"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists() or target.is_symlink():
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)


def copy_tree(src: Path, dest: Path, overwrite: bool, source: str) -> list[str]:
    """Copy ``src``'s files into ``dest`` through a staged folder; return relative names."""
    names = sorted(local_files(src, recursive=True))
    with staged_dir(dest, overwrite, source) as staging:
        for name in names:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, target)
    return names


class LocalStore(Store):
    """Plain paths and ``file://`` URIs."""

    remote = False

    def errors(self, uri: str) -> contextlib.AbstractContextManager[None]:
        return local_errors(uri)

    def read(self, uri: str) -> bytes:
        return local_path(uri).read_bytes()

    def write(self, uri: str, data: bytes) -> None:
        atomic_write(local_path(uri), data)

    def exists(self, uri: str) -> bool:
        return local_path(uri).exists()

    def delete(self, uri: str) -> None:
        local_path(uri).unlink()

    def names(self, uri: str, recursive: bool) -> list[str]:
        return local_files(local_path(uri), recursive)

    def append(self, uri: str, line: bytes | Callable[[bytes], bytes]) -> None:
        import fcntl

        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            existed = path.exists()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            # the file locked must still be the one at the path: a first append whose
            # record could not be made removes the empty file it created (below), and a
            # writer that opened it meanwhile would append to a removed file
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                opened, now = os.fstat(fd), os.stat(path)
                if (opened.st_ino, opened.st_dev) == (now.st_ino, now.st_dev):
                    break
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            # a fixed line needs only the last byte of what is there: after a torn last
            # line (a writer killed mid-write, a full disk) it starts a line of its own
            size = os.fstat(fd).st_size
            content = os.pread(fd, 1, size - 1) if size else b""
            if callable(line):
                with open(path, "rb") as existing:
                    content = existing.read()
                try:
                    line = line(content)
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
