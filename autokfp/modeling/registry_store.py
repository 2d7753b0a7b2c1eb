"""The local registry file (``<home>/mlflow.db``): detect damage, and follow a moved home.

MLflow on SQLite treats an empty or missing file as a new registry and writes a fresh schema
over it, so a truncated ``mlflow.db`` would silently lose every registered model and the
next run would crown a new "first" champion. Before MLflow opens the file, ``check_store``
refuses an empty, non-SQLite, damaged or foreign file, and a missing one when the home
holds artifacts of earlier runs, with a message that says what to do.

MLflow stores absolute artifact paths (experiments, runs, model versions). A home that was
moved or copied would read from, and write into, the original. ``relocate_store`` rewrites
those paths when the home is opened at a new place; the home's own path is remembered in
``<home>/.home-path``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from autokfp.errors import RegistryError
from autokfp.settings import Settings
from autokfp.storage.local import fsync_dir

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
HOME_MARKER = ".home-path"
# (table, column) pairs where MLflow keeps artifact locations
PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)
_checked: dict[str, tuple[int, int]] = {}


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file behind a ``sqlite:///`` URI, or None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0])


def _what_to_do(path: Path) -> str:
    return (f"autokfp will not start a new registry over it (that would lose every registered "
            f"model and the champion). Restore {path.name} from a backup, or move it aside "
            f"(mv '{path}' '{path}.damaged') to start an empty registry on purpose.")


def check_store(settings: Settings) -> None:
    """Raise RegistryError when the local registry file is empty, damaged or missing.

    A missing file is fine for a new home; it is an error when the home's MLflow artifact
    folder already holds runs (the registry that listed them was deleted).
    """
    path = sqlite_path(settings.tracking_uri)
    if path is None:
        return
    root = settings.mlflow_artifact_root
    if not path.exists() and root is not None:
        artifacts = Path(root)
        if "://" not in root and artifacts.is_dir() and any(
                p.is_dir() for p in artifacts.iterdir()):
            raise RegistryError(
                f"the MLflow registry {path} is missing, but {artifacts} holds the artifacts of "
                f"earlier runs: the registry was deleted or moved. Restore {path.name} from a "
                f"backup (or point MLFLOW_TRACKING_URI at it); to start an empty registry on "
                f"purpose, move {artifacts} aside first.")
        return
    stat = path.stat()
    key = str(path.resolve())
    if _checked.get(key) == (stat.st_size, stat.st_mtime_ns):
        return
    if stat.st_size == 0:
        raise RegistryError(f"the MLflow registry {path} is empty (0 bytes): it was truncated or "
                            f"overwritten. {_what_to_do(path)}")
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise RegistryError(f"the MLflow registry {path} is not an SQLite database (its first "
                            f"bytes are {header[:16]!r}): it was overwritten or is another kind "
                            f"of file. {_what_to_do(path)}")
    problem = _sqlite_problem(path)
    if problem:
        raise RegistryError(f"the MLflow registry {path} is damaged ({problem}): it was "
                            f"truncated or partly overwritten. {_what_to_do(path)}")
    _checked[key] = (stat.st_size, stat.st_mtime_ns)


def _sqlite_problem(path: Path) -> str | None:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchall()
        if [tuple(row) for row in verdict] != [("ok",)]:
            return "integrity check: " + "; ".join(str(row[0]) for row in verdict[:3])
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if "alembic_version" not in tables or "model_versions" not in tables:
            return "it holds no MLflow schema" if not tables else \
                "it is an SQLite file without MLflow's tables"
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        connection.close()
    return None


def relocate_store(settings: Settings) -> int:
    """Rewrite artifact paths stored under the home's former place; return rows changed.

    Only for a registry that lives in the home with its artifacts (the local default).
    """
    path = sqlite_path(settings.tracking_uri)
    home = settings.home.resolve()
    if path is None or not path.exists() or path.resolve().parent != home:
        return 0
    root = settings.mlflow_artifact_root
    if root is None or "://" in root or Path(root).resolve().parent != home:
        return 0
    artifacts = Path(root)
    marker = home / HOME_MARKER
    former = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    connection = sqlite3.connect(str(path), timeout=60)
    changed = 0
    try:
        if former is None:
            former = _former_home(connection, artifacts.name)
        if former and Path(former) != home:
            changed = _rewrite(connection, former.rstrip("/"), str(home))
            log.warning("the home moved from %s to %s: %d stored artifact paths now point into "
                        "the new place", former, home, changed)
    finally:
        connection.close()
    if former is None or Path(former) != home:
        _write_marker(marker, str(home))
    return changed


def _former_home(connection: sqlite3.Connection, artifacts_name: str) -> str | None:
    """A home without a marker: read the former place off the experiments' locations."""
    try:
        rows = connection.execute("SELECT artifact_location FROM experiments").fetchall()
    except sqlite3.Error:
        return None
    needle = f"/{artifacts_name}/"
    for (location,) in rows:
        text = str(location or "").removeprefix("file://")
        if needle in text:
            return text.split(needle, 1)[0]
    return None


def _rewrite(connection: sqlite3.Connection, old: str, new: str) -> int:
    changed = 0
    with connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in PATH_COLUMNS:
            if table not in tables:
                continue
            for prefix in ("", "file://"):
                before, after = prefix + old + "/", prefix + new + "/"
                cursor = connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608
                    f"WHERE substr({column}, 1, ?) = ?",
                    (after, len(before) + 1, len(before), before))
                changed += cursor.rowcount
    return changed


def _write_marker(marker: Path, home: str) -> None:
    try:
        temp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        temp.write_text(home + "\n", encoding="utf-8")
        os.replace(temp, marker)
    except OSError as exc:  # a read-only home still works; it just cannot be followed
        log.warning("could not record the home's place in %s: %s", marker, exc)


def open_store(settings: Settings) -> None:
    """Check the local registry and follow a moved home; called before MLflow opens it.
    A new home's registry file is made here (``create_store``)."""
    check_store(settings)
    path = sqlite_path(settings.tracking_uri)
    if path is not None and not path.exists():
        create_store(path)
    relocate_store(settings)


# MLflow's schema for a new registry file, as its migrations make it, dumped by sqlite3
# (scripts/dump_mlflow_schema.py: {"mlflow": its version, "statements": [...]})
SCHEMA_FILE = Path(__file__).with_name("mlflow_schema.json")


def shipped_schema() -> list[str] | None:
    """``SCHEMA_FILE``'s statements when it was dumped from the installed MLflow; None
    otherwise (another MLflow, no MLflow, no file: MLflow's migrations make the schema)."""
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        schema = json.loads(SCHEMA_FILE.read_text())
        installed = version("mlflow")
    except (OSError, ValueError, PackageNotFoundError):
        return None
    if not isinstance(schema, dict) or schema.get("mlflow") != installed:
        return None
    statements = schema.get("statements")
    return statements if isinstance(statements, list) else None


def _mlflow_schema(path: Path) -> None:
    """MLflow's own migrations into a new file at ``path``, one disk sync at the end."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")

    @sqlalchemy.event.listens_for(engine, "connect")
    def _unsynced(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA journal_mode=MEMORY")

    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def create_store(path: Path) -> bool:
    """Make a new registry file at ``path`` with MLflow's schema, as MLflow makes it when it
    opens a missing file (its own ``_initialize_tables``: the tables, then every migration),
    but without a disk sync per statement: the schema is written to a file beside ``path``
    with SQLite's ``synchronous=OFF`` and its rollback journal in memory, synced once, then
    linked to ``path`` (never over a file another process made meanwhile: that one is kept).
    MLflow's ~1,000 syncs of a new schema took 5-7 s at load 10 (1,084 fdatasyncs counted).
    The schema comes from ``SCHEMA_FILE`` (what MLflow's migrations made, dumped by sqlite3)
    when it was dumped from the installed MLflow: neither MLflow's import nor its migrations
    run then (3.5 CPU-s of the command's start at load 11). Another MLflow: its migrations.
    Returns whether the file was made here; on any failure MLflow makes it as before."""
    # a name no other attempt has (a killed one's file, under a pid used again, is not reused)
    temp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.new")
    try:
        statements = shipped_schema()
        if statements is not None:
            connection = sqlite3.connect(temp)
            try:
                connection.execute("PRAGMA synchronous=OFF")
                connection.execute("PRAGMA journal_mode=MEMORY")
                connection.executescript("\n".join(statements))
            finally:
                connection.close()
        else:
            _mlflow_schema(temp)
        descriptor = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    except Exception as exc:  # noqa: BLE001 - MLflow makes the schema itself, as before
        log.debug("could not make the registry file %s ahead of MLflow: %s", path, exc)
        return False
    finally:
        temp.unlink(missing_ok=True)
