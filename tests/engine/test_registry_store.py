"""The local registry file: damage is named and never written over; a home can move."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autokfp.edge.cli import app
from autokfp.errors import RegistryError
from autokfp.modeling import registry
from autokfp.modeling.registry_store import check_store
from autokfp.settings import Settings

AUTOKFP_BIN = Path(sys.executable).with_name("autokfp")
runner = CliRunner()
NAME = "store-test"


def _package(folder: Path, label: str) -> Path:
    """A minimal MLflow model folder (registration only needs the files, not a loadable model)."""
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(f"flavors: {{}}\nlabel: {label}\n")
    (folder / "weights.txt").write_text(f"weights of {label}\n")
    return folder


def _register(settings: Settings, folder: Path, label: str) -> registry.RegisteredVersion:
    return registry.register_model(_package(folder / label, label), NAME, {"test_auc": 0.8},
                                   {"engine": "test"}, {"engine": "test"}, promote=True,
                                   decision="first model", compared_champion=None,
                                   settings=settings)


@pytest.fixture
def restore_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _fresh_settings(home: Path) -> Settings:
    """Settings of ``home`` alone (MLflow exports its tracking URI into os.environ)."""
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "AUTOKFP_"))]:
        del os.environ[name]
    return Settings.from_env(home)


@pytest.fixture(scope="module")
def template_home(tmp_path_factory) -> Path:
    """One home with one registered version (a new MLflow schema takes ~15 s here)."""
    saved = dict(os.environ)
    try:
        root = tmp_path_factory.mktemp("registry-store")
        settings = _fresh_settings(root / "home")
        _register(settings, root / "packages", "one")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return settings.home


@pytest.fixture
def registered_home(template_home, tmp_path, restore_environ) -> Settings:
    """A copy of the template home (opened at its new place, so it is relocated first)."""
    home = tmp_path / "autokfp-home"
    shutil.copytree(template_home, home)
    return _fresh_settings(home)


def _damage(db: Path, how: str) -> None:
    if how == "empty":
        db.write_bytes(b"")
    elif how == "half":
        size = db.stat().st_size
        with open(db, "r+b") as handle:
            handle.truncate(size // 2)
    elif how == "garbage":
        db.write_bytes(os.urandom(50_000))
    elif how == "foreign":
        db.unlink()
        with sqlite3.connect(db) as connection:
            connection.execute("CREATE TABLE notes (text)")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["empty", "half", "garbage", "foreign"])
def test_damaged_registry_is_named_and_left_untouched(registered_home, how):
    db = registered_home.home / "mlflow.db"
    _damage(db, how)
    before = db.read_bytes()

    listed = runner.invoke(app, ["models", "--home", str(registered_home.home)])

    assert listed.exit_code == 2, listed.output
    assert not isinstance(listed.exception, Exception) or isinstance(listed.exception, SystemExit)
    assert "Traceback" not in listed.output
    assert str(db) in listed.output.replace("\n", "")
    assert "Restore mlflow.db from a backup" in listed.output.replace("\n", " ")
    assert "No registered models" not in listed.output
    assert db.read_bytes() == before  # no fresh schema written over it
    # the engine refuses too (a run's steps go through registry.configure)
    with pytest.raises(RegistryError, match="mlflow.db"):
        registry.configure(registered_home)
    assert db.read_bytes() == before


def test_truncated_registry_through_the_installed_command(registered_home):
    db = registered_home.home / "mlflow.db"
    _damage(db, "empty")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AUTOKFP_"))}
    done = subprocess.run([str(AUTOKFP_BIN), "models", "--home", str(registered_home.home)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is empty (0 bytes)" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert db.stat().st_size == 0


def test_deleted_registry_with_earlier_artifacts_is_refused(registered_home):
    (registered_home.home / "mlflow.db").unlink()
    with pytest.raises(RegistryError, match="is missing, but .* holds the artifacts"):
        check_store(registered_home)
    assert not (registered_home.home / "mlflow.db").exists()


def test_a_new_home_is_not_refused(tmp_path, restore_environ):
    settings = _fresh_settings(tmp_path / "new-home")
    settings.ensure_local_dirs()  # empty folders, no mlflow.db yet
    check_store(settings)


def _versions(home: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AUTOKFP_"))}
    done = subprocess.run([str(AUTOKFP_BIN), "models", "--json", "--home", str(home)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]["versions"]


def test_a_moved_home_reads_its_own_artifacts(registered_home, tmp_path):
    moved = tmp_path / "elsewhere" / "home"
    moved.parent.mkdir()
    shutil.move(str(registered_home.home), moved)

    (version,) = _versions(moved)

    assert version["source"].startswith(str(moved) + "/"), version["source"]
    assert (Path(version["source"]) / "weights.txt").read_text() == "weights of one\n"


def test_a_copied_home_writes_into_the_copy_only(registered_home, tmp_path):
    original = registered_home.home
    copy = tmp_path / "copy-of-home"
    shutil.copytree(original, copy)
    files_before = sorted(str(p.relative_to(original)) for p in original.rglob("*"))

    settings = _fresh_settings(copy)
    _register(settings, tmp_path / "packages", "two")
    versions = _versions(copy)

    assert [v["version"] for v in versions] == ["2", "1"]
    for version in versions:
        assert version["source"].startswith(str(copy) + "/"), version["source"]
        assert Path(version["source"]).is_dir()
    # the original home did not gain a run, an artifact or a version
    assert sorted(str(p.relative_to(original)) for p in original.rglob("*")) == files_before
    with sqlite3.connect(original / "mlflow.db") as connection:
        assert connection.execute("SELECT version FROM model_versions").fetchall() == [(1,)]


def _schema(path: Path) -> dict:
    """The file's tables, indexes and MLflow schema version; each statement's lines sorted
    (MLflow's own migrations write a table's CHECK constraints in a different order from one
    process to the next)."""
    connection = sqlite3.connect(path)
    try:
        objects = {(kind, name): sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())
                   for kind, name, sql in connection.execute(
                       "SELECT type, name, sql FROM sqlite_master")}
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        connection.close()
    return {"objects": objects, "version": version}


def test_a_new_homes_registry_has_the_schema_mlflow_makes(tmp_path, restore_environ,
                                                          monkeypatch):
    """configure makes a new home's mlflow.db (create_store: one disk sync, not one per
    statement) with the tables, indexes and migrations MLflow writes into a file it opens
    itself; MLflow then uses it (the Default experiment, a registered version)."""
    from mlflow import MlflowClient

    from autokfp.modeling import registry_store

    made: list[bool] = []  # create_store falls back to MLflow quietly: it must not here
    real = registry_store.create_store
    monkeypatch.setattr(registry_store, "create_store", lambda path: made.append(real(path))
                        or made[-1])

    by_mlflow = tmp_path / "by-mlflow.db"
    uri = f"sqlite:///{by_mlflow}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    settings = _fresh_settings(tmp_path / "home")
    client = registry.configure(settings)
    database = settings.home / "mlflow.db"
    assert made == [True]
    assert _schema(database) == _schema(by_mlflow)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert _register(settings, tmp_path, "v1").version == "1"
    assert sorted(p.name for p in settings.home.iterdir() if p.name.startswith("mlflow.db")) == \
        ["mlflow.db"]  # nothing left beside it


def _rows(path: Path) -> dict:
    """Every table's rows (a new registry's: MLflow's schema version, its default workspace)."""
    connection = sqlite3.connect(path)
    try:
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: sorted(connection.execute(f'SELECT * FROM "{table}"').fetchall())
                for table in tables}
    finally:
        connection.close()


def test_a_new_registry_is_written_from_the_shipped_schema_without_mlflow(tmp_path):
    """create_store writes the schema dumped from the installed MLflow (SCHEMA_FILE) without
    importing MLflow or running its migrations: the same tables, indexes, schema version and
    rows as a file MLflow's own migrations made, which MLflow then opens as it is."""
    from mlflow import MlflowClient

    from autokfp.modeling.registry_store import shipped_schema

    assert shipped_schema(), "re-run scripts/dump_mlflow_schema.py for the installed MLflow"
    path = tmp_path / "mlflow.db"
    made = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from autokfp.modeling.registry_store import create_store; "
         f"assert create_store(Path({str(path)!r})); "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'alembic')))"],
        capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "[]"  # neither MLflow nor its migrations ran
    by_mlflow = tmp_path / "by-mlflow.db"
    from autokfp.modeling.registry_store import _mlflow_schema

    _mlflow_schema(by_mlflow)
    assert _schema(path) == _schema(by_mlflow) and _rows(path) == _rows(by_mlflow)
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert _schema(path) == _schema(by_mlflow)  # MLflow found nothing to migrate


def test_another_mlflow_gets_its_own_migrations(tmp_path, monkeypatch):
    """A schema dumped from another MLflow version is not used: MLflow's migrations make
    the new registry file."""
    from autokfp.modeling import registry_store

    other = tmp_path / "schema.json"
    schema = json.loads(registry_store.SCHEMA_FILE.read_text())
    other.write_text(json.dumps({**schema, "mlflow": "0.0.1",
                                 "statements": ["CREATE TABLE wrong (x);"]}))
    monkeypatch.setattr(registry_store, "SCHEMA_FILE", other)
    assert registry_store.shipped_schema() is None
    path = tmp_path / "mlflow.db"
    assert registry_store.create_store(path)
    assert ("table", "wrong") not in _schema(path)["objects"]
    assert ("table", "registered_models") in _schema(path)["objects"]


def test_a_registry_file_made_meanwhile_is_never_replaced(tmp_path):
    """create_store links its file only where none is: one another process made while this
    one wrote its schema is kept as it is."""
    from autokfp.modeling.registry_store import create_store

    path = tmp_path / "mlflow.db"
    assert create_store(path) and _schema(path)["version"]
    made = tmp_path / "made-meanwhile.db"
    made.write_bytes(b"another process's registry")
    os.replace(made, path)
    assert create_store(path) is False
    assert path.read_bytes() == b"another process's registry"
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
