"""``catalog.sql_pass: second`` (issue 18 item 1): DataHub's SQL source runs first and
autokfp's part of a SQL source is a second pass over what it emitted. The tables and their
declared columns come from DataHub's records (autokfp's own listing and reflection of the
database are made to fail here, so a second pass that still ran them would fail), and the
catalog written is the one the default path (autokfp's crawl beside DataHub's source)
writes: DataHub Lite, the result, the metadata files' records, first run and unchanged
re-run, on SQLite (a PII table and a view) and on PostgreSQL (two schemas, a view)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from autokfp.catalog.ingest import ingest
from tests.engine.catalog.test_ingest import _written, add_contacts_and_a_view


@pytest.fixture
def no_own_listing(monkeypatch):
    """autokfp's own enumeration and reflection of a SQL database, failing when called."""
    from autokfp.catalog.sources import sql

    def refused(*args, **kwargs):
        raise AssertionError("autokfp listed or reflected the database itself")

    def block() -> None:
        for name in ("_table_names", "_all_declared_columns", "_view_names"):
            monkeypatch.setattr(sql, name, refused)

    return block


class _Runs:
    """Each DataHub run of ``ingest.run_recipe`` (its spool: a second pass's, or None), kept
    in a file: a second pass's source runs in a forked child (``ingest._source_apart``),
    whose appends to a list here would stay in the child. Compares as that list; ``pids``:
    the process each ran in."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, path: Path, monkeypatch) -> None:
        import os

        from autokfp.catalog import ingest as ingest_module

        self.path = path
        self.clear()
        real = ingest_module.run_recipe

        def counted(*args, **kwargs):
            with open(path, "a") as out:
                out.write(json.dumps([kwargs.get("spool"), os.getpid()]) + "\n")
            return real(*args, **kwargs)

        monkeypatch.setattr(ingest_module, "run_recipe", counted)

    def _read(self) -> list[list]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    @property
    def pids(self) -> list[int]:
        return [pid for _, pid in self._read()]

    def clear(self) -> None:
        self.path.write_text("")

    def __eq__(self, other: object) -> bool:
        return [spool for spool, _ in self._read()] == other

    def __len__(self) -> int:
        return len(self._read())

    def __getitem__(self, index: int) -> str | None:
        return self._read()[index][0]

    def __repr__(self) -> str:
        return repr(self._read())


def _records(files: list[str]) -> list[str]:
    """The metadata files' records, each as sorted JSON, in a sorted list: the second pass
    materialises glossary terms at the end of the stream, where DataHub's processor puts
    them before its stale-entity removal, so only the order of records may differ."""
    return sorted(json.dumps(record, sort_keys=True)
                  for text in files for record in json.loads(text))


def _chose(result, mode: str):
    """``result`` without its record of the sql_pass choice (``IngestResult.sql_pass``),
    after asserting that every SQL source was catalogued with ``mode``: the one thing two
    modes' results may differ in."""
    from dataclasses import replace

    assert result.sql_pass and all(
        why.startswith(f"{mode}: ") for why in result.sql_pass.values()), result.sql_pass
    return replace(result, sql_pass={})


def _both_paths(config, tmp_path, monkeypatch, no_own_listing) -> dict[str, dict]:
    """The catalog written by ``beside`` and by the default, ``auto``, which takes a second
    pass on SQLite and PostgreSQL (asserted, and autokfp's own listing fails if called)."""
    from autokfp.settings import Settings

    assert config.catalog.sql_pass == "auto"  # the default
    out = {}
    for mode in ("beside", "second"):
        home = tmp_path / mode
        monkeypatch.setenv("AUTOKFP_HOME", str(home))
        settings = Settings.from_env()
        settings.ensure_local_dirs()
        one = config if mode == "second" else config.model_copy(update={
            "catalog": config.catalog.model_copy(update={"sql_pass": mode})})
        if mode == "second":
            no_own_listing()
        first = ingest(one, settings=settings)
        again = ingest(one, settings=settings)
        if mode == "second":  # auto's reason: the platform's DDL token
            assert all("auto" in why and "has a DDL token" in why
                       for why in first.sql_pass.values()), first.sql_pass
        first, again = _chose(first, mode), _chose(again, mode)
        assert again.skipped and not again.lite_written, mode  # unchanged: nothing new
        written = _written(first, settings.catalog_dir, home)
        out[mode] = {"lite": written["lite"], "result": written["result"],
                     "records": _records(written["files"]),
                     "again": _written(again, settings.catalog_dir, home)["result"]}
    return out


def test_a_sqlite_second_pass_writes_what_the_crawl_beside_datahub_writes(
        churn_sources, catalog_home, tmp_path, monkeypatch, no_own_listing) -> None:
    config, _folder, db, _frame = churn_sources
    # the SQL source alone: files are the crawl's on both paths (see ingest.py)
    config = config.model_copy(update={"sources": [
        s for s in config.sources if s.name == "warehouse"]})
    add_contacts_and_a_view(db)
    out = _both_paths(config, tmp_path, monkeypatch, no_own_listing)
    assert len(out["beside"]["lite"]) > 50
    # the PII column's glossary term (DataHub's classification, in the replay) is there
    assert any("Email_Address" in row for row in out["second"]["lite"])
    _same(out)
    from autokfp.settings import Settings

    monkeypatch.setenv("AUTOKFP_HOME", str(tmp_path / "second"))
    second = config.model_copy(update={"catalog": config.catalog.model_copy(
        update={"sql_pass": "second"})})
    runs = _Runs(tmp_path / "runs.jsonl", monkeypatch)
    # the DDL is that of the last second pass (auto's, above: ``second`` set keeps its
    # record): DataHub's source is not run again
    assert ingest(second, settings=Settings.from_env()).skipped and runs == []
    # ... unless the tables recorded then are not every one the database has (a table
    # DataHub's source left out, a record edited since): the second pass runs again and
    # records them all
    from autokfp.catalog.store import CatalogStore

    store = CatalogStore(Settings.from_env())
    state = tmp_path / "second"
    [kept] = [path for path in state.rglob("*.tables.json")]
    name = "ingestion-state/" + kept.name
    record = store.read_json(name, None)
    assert "contacts" in record["names"], record
    store.write_json(name, {**record, "names": [n for n in record["names"] if n != "contacts"]})
    assert ingest(second, settings=Settings.from_env()).skipped
    assert len(runs) == 1 and runs[0] is not None  # a second pass, DataHub's source run
    # in a child of its own (its memory ends with it), not in the discover step's process
    assert runs.pids[0] != os.getpid(), runs
    assert "contacts" in store.read_json(name, None)["names"]
    runs.clear()
    assert ingest(second, settings=Settings.from_env()).skipped and runs == []
    # rows added, no DDL: the crawl (DataHub's tables of the last run) sees the change and
    # the whole recipe runs after it, as on the default path
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO contacts VALUES (50, 'x@mail.example.org')")
    changed = ingest(second, settings=Settings.from_env())
    assert runs == [None] and not changed.skipped
    contacts = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.contacts,PROD)"
    assert contacts in changed.datasets
    # a dropped table (DDL): a second pass again; DataHub's stateful ingestion soft-deletes
    # the table and the replay passes the removal on
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE contacts")
    dropped = ingest(second, settings=Settings.from_env())
    assert len(runs) == 2 and runs[1] is not None
    assert dropped.removed == [contacts] and not dropped.skipped


def _same(out: dict) -> None:
    for key in ("lite", "records"):
        only_second = sorted(set(out["second"][key]) - set(out["beside"][key]))
        only_beside = sorted(set(out["beside"][key]) - set(out["second"][key]))
        assert not only_second and not only_beside, (key, only_second[:6], only_beside[:6])
    assert out["second"] == out["beside"]


def test_a_postgres_second_pass_writes_what_the_crawl_beside_datahub_writes(
        postgres_server, catalog_home, tmp_path, monkeypatch, no_own_listing) -> None:
    from autokfp.config import parse_config

    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS second", "CREATE DATABASE second")
    server.run("second", "CREATE SCHEMA sales",
               "CREATE TABLE sales.customers (id integer NOT NULL, email text, amount double "
               "precision, segment text)",
               "INSERT INTO sales.customers SELECT i, 'user' || i || '@mail.example.org', "
               "i * 1.5, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END "
               "FROM generate_series(1, 60) AS i",
               "CREATE TABLE sales.orders (order_id bigint, customer_id integer, total "
               "numeric(10, 2))",
               "INSERT INTO sales.orders SELECT i, i % 60 + 1, i * 0.5 "
               "FROM generate_series(1, 80) AS i",
               "CREATE VIEW sales.big AS SELECT id, email FROM sales.customers "
               "WHERE amount > 20")
    config = parse_config({
        "name": "second-pg",
        "sources": [{"name": "crm", "kind": "sql", "schema": "sales",
                     "url": server.url("second")}],
        "training": {"dataset": "crm/customers", "target": "segment"}})
    from autokfp.catalog.sources import sql
    from autokfp.settings import Settings

    own = {name: getattr(sql, name) for name in ("_table_names", "_all_declared_columns",
                                                 "_view_names")}
    out = _both_paths(config, tmp_path, monkeypatch, no_own_listing)
    assert any("sales.big" in row for row in out["beside"]["lite"])
    assert any("Email_Address" in row for row in out["second"]["lite"])
    _same(out)
    # re-runs: an unchanged one skips DataHub's source (the schema's DDL token and the
    # recipe are those of the last second pass); after DDL, a second pass runs and catalogs
    # what a run of the default path writes
    runs = _Runs(tmp_path / "runs.jsonl", monkeypatch)

    def run(mode: str):
        home = tmp_path / mode
        monkeypatch.setenv("AUTOKFP_HOME", str(home))
        for name, function in own.items():  # the default path lists the database itself
            monkeypatch.setattr(sql, name, function)
        if mode == "second":
            no_own_listing()
        one = config.model_copy(update={"catalog": config.catalog.model_copy(
            update={"sql_pass": mode})})
        result = _chose(ingest(one, settings=Settings.from_env()), mode)
        written = _written(result, Settings.from_env().catalog_dir, home)
        return result, {"lite": written["lite"], "result": written["result"],
                        "records": _records(written["files"])}

    assert run("second")[0].skipped and runs == []
    for statements, changed in [
            (["ALTER TABLE sales.orders ALTER COLUMN total TYPE double precision",
              "CREATE OR REPLACE VIEW sales.big AS SELECT id, email, segment "
              "FROM sales.customers WHERE amount > 20"], "sales.orders"),
            (["ALTER TABLE sales.orders RENAME TO purchases", "DROP VIEW sales.big"],
             "sales.purchases")]:
        server.run("second", *statements)
        runs.clear()
        beside = run("beside")
        assert runs == [None] and not beside[0].skipped, statements
        second = run("second")
        assert len(runs) == 2 and runs[1] is not None, statements  # a second pass
        assert any(changed in urn for urn in second[0].datasets), statements
        _same({"beside": beside[1], "second": second[1]})
    removed = second[0].removed
    assert any("sales.orders" in urn for urn in removed), removed
    assert any("sales.big" in urn for urn in removed), removed
    runs.clear()
    assert run("second")[0].skipped and runs == []
    # rows added, no DDL: the token is the same, the crawl (the recorded tables) sees the
    # new count and the whole recipe runs after it, as on the default path and on SQLite
    server.run("second", "INSERT INTO sales.customers VALUES (61, 'n@mail.example.org', "
               "3.0, 'a')")
    added = run("second")[0]
    assert runs == [None] and not added.skipped
    assert any("sales.customers" in urn for urn in added.datasets)


def test_the_second_pass_reads_the_tables_datahub_emitted(churn_sources, catalog_home,
                                                         tmp_path) -> None:
    """What the crawl of a second pass is given: DataHub's table names, field paths, native
    types and nullability, and which datasets are views."""
    from autokfp.catalog import ingest as ingest_module

    config, _folder, db, _frame = churn_sources
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE tiny (id INTEGER NOT NULL, label TEXT)")
        connection.execute("INSERT INTO tiny VALUES (1, 'a')")
        connection.execute("CREATE VIEW tiny_view AS SELECT label FROM tiny")
    work = tmp_path / "work"
    work.mkdir()
    from autokfp.catalog.store import CatalogStore
    from autokfp.settings import Settings

    passed, given, _records = ingest_module._second_pass(config, {"warehouse"}, str(work),
                                               CatalogStore(Settings.from_env()))
    # DataHub's source runs in a child of its own from here; its tables once it is done
    # (the crawl asks for them when it reaches the source: given_tables)
    assert isinstance(given["warehouse"], ingest_module._SourceApart)
    assert not passed  # filled when the source is done
    tables = ingest_module._settled(given)["warehouse"]
    assert tables.names == ["customers", "tiny", "tiny_view"]
    assert tables.views == {"tiny_view"}
    assert tables.declared["tiny"] == [["id", "INTEGER", "False"], ["label", "TEXT", "True"]]
    assert Path(passed["warehouse"].spool).exists()


def test_a_second_pass_source_that_stalls_in_its_child_runs_here(
        churn_sources, catalog_home, tmp_path, monkeypatch, caplog) -> None:
    """DataHub's source of a second pass runs in a forked child (``_source_apart``); a child
    that makes no progress is stopped and the source runs in this process: the same tables,
    a WARNING naming the stall, no child left, and this process's garbage collector not
    frozen by it."""
    import functools
    import gc
    import logging
    import multiprocessing
    import time

    from autokfp import lifeline
    from autokfp.catalog import ingest as ingest_module
    from autokfp.catalog.store import CatalogStore
    from autokfp.settings import Settings

    config, _folder, _db, _frame = churn_sources
    store = CatalogStore(Settings.from_env())

    def tables(name: str) -> tuple:
        work = tmp_path / name
        work.mkdir()
        _passed, given, _kept = ingest_module._second_pass(config, {"warehouse"}, str(work),
                                                           store)
        got = ingest_module._settled(given)["warehouse"]
        return got.names, got.views, got.declared

    expected = tables("apart")
    parent, real = os.getpid(), ingest_module.run_recipe

    def hangs_in_the_child(*args, **kwargs):
        if os.getpid() != parent:
            time.sleep(600)  # no output, no CPU: a stall
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "run_recipe", hangs_in_the_child)
    monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "1.5")
    monkeypatch.setattr(lifeline, "STALL_CPU_SECS", 0.05)
    # the child's stacks waited for as long as it takes under load (the product waits 2 s;
    # the read ends as soon as the dump is written whole)
    monkeypatch.setattr(lifeline, "stacks_of", functools.partial(lifeline.stacks_of, wait=60))
    frozen = gc.get_freeze_count()
    with caplog.at_level(logging.WARNING, logger=ingest_module.log.name):
        assert tables("stalled") == expected
    # the source run here left this process's collector as it was (only children freeze)
    assert gc.get_freeze_count() == frozen
    # the stopped child's stacks (``_Watched.stalled``), then what is done instead
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and r.name == ingest_module.log.name]
    assert len(warnings) == 2, warnings
    assert "hangs_in_the_child" in warnings[0], warnings  # where it waited
    assert "source warehouse: the process running DataHub's SQL source before the second " \
           "pass made no progress for 1.5 s" in warnings[1], warnings
    assert warnings[1].endswith("DataHub's source runs in the discover step's own process "
                                "instead (same output, only later)"), warnings
    assert not multiprocessing.active_children()


def test_a_second_pass_that_fails_partway_stops_the_children_it_started(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """Each source's child starts as ``_second_pass`` reaches it; when a later source raises
    there (its DDL query here), the children already started are stopped as the ingestion's
    stack unwinds, not left running DataHub's source to its end (the first source's child
    is kept busy here, so it is surely running when the later source raises)."""
    import contextlib
    import time

    from autokfp.catalog import ingest as ingest_module
    from autokfp.catalog.sources import sql
    from autokfp.catalog.store import CatalogStore
    from autokfp.errors import ConfigError
    from autokfp.settings import Settings

    config, _folder, _db, _frame = churn_sources
    second = config.sources[[s.name for s in config.sources].index("warehouse")]
    later = second.model_copy(update={"name": "warehouse_b"})
    config = config.model_copy(update={"sources": [*config.sources, later]})
    parent, real_ddl = os.getpid(), sql.ddl_version

    def busy_in_the_child(*args, **kwargs):
        if os.getpid() != parent:
            time.sleep(600)

    made: list = []

    class Recorded(ingest_module._SourceApart):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    def fails_for_the_later_source(source):
        if source.name == "warehouse_b":
            assert [apart.process.is_alive() for apart in made] == [True]
            raise ConfigError("environment variable DB_URL (referenced in a source URL) is "
                              "not set")
        return real_ddl(source)

    monkeypatch.setattr(ingest_module, "run_recipe", busy_in_the_child)
    monkeypatch.setattr(ingest_module, "_SourceApart", Recorded)
    monkeypatch.setattr(sql, "ddl_version", fails_for_the_later_source)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ConfigError, match="DB_URL"), contextlib.ExitStack() as stack:
        ingest_module._second_pass(config, {"warehouse", "warehouse_b"}, str(work),
                                   CatalogStore(Settings.from_env()), stack)
    assert [apart.name for apart in made] == ["warehouse"]
    assert not made[0].process.is_alive()


def test_sql_pass_second_where_it_cannot_apply_says_so(churn_sources, monkeypatch,
                                                       caplog) -> None:
    """``catalog.sql_pass: second`` set where it does not apply (a user's recipe, a GMS)
    is not silent: a WARNING names the reason and the SQL sources catalogued as by default;
    none without the flag's conflict."""
    import logging

    from autokfp.catalog import ingest as ingest_module

    config, _folder, _db, _frame = churn_sources
    second = config.model_copy(update={"catalog": config.catalog.model_copy(
        update={"sql_pass": "second"})})
    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger=ingest_module.log.name):
        ingest_module._say_where_no_second_pass(second, False, {})
        assert not caplog.records  # it applies: nothing to say
        ingest_module._say_where_no_second_pass(second, True, {})
        monkeypatch.setenv("DATAHUB_GMS_URL", "http://gms.example:8080")
        ingest_module._say_where_no_second_pass(second, False, {})
        monkeypatch.delenv("DATAHUB_GMS_URL")
        ingest_module._say_where_no_second_pass(second, False, {"warehouse": "its reason"})
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 3, said
    assert "a recipe was given" in said[0] and "'warehouse'" in said[0]
    assert "GMS is configured" in said[1] and "'warehouse'" in said[1]
    assert "'warehouse'" in said[2] and "its reason" in said[2]


def test_a_token_that_cannot_be_read_is_said_with_what_it_costs(
        churn_sources, catalog_home, tmp_path, monkeypatch, caplog) -> None:
    """A SQLite file (or PostgreSQL) gets the second pass for its DDL token; when the token
    then cannot be read (no right on the catalog tables, a server that only looks like
    PostgreSQL), every re-run would run DataHub's source again: a WARNING says so, names
    the source and what to do (review of 65e848e), where it was a DEBUG line before."""
    import contextlib
    import logging

    from autokfp.catalog import ingest as ingest_module
    from autokfp.catalog.sources import sql
    from autokfp.catalog.store import CatalogStore
    from autokfp.settings import Settings

    config, _folder, _db, _frame = churn_sources
    started: list[str] = []

    class NotStarted:
        def __init__(self, half, spool, name, done) -> None:
            started.append(name)

        def stop(self) -> None:
            pass

    def unreadable(source):
        raise RuntimeError("permission denied for table sqlite_master")

    monkeypatch.setattr(ingest_module, "_SourceApart", NotStarted)
    monkeypatch.setattr(sql, "_engine", lambda source: unreadable(source))
    work = tmp_path / "work"
    work.mkdir()
    with caplog.at_level(logging.WARNING), contextlib.ExitStack() as stack:
        ingest_module._second_pass(config, {"warehouse"}, str(work),
                                   CatalogStore(Settings.from_env()), stack)
    assert started == ["warehouse"]  # its second pass still runs, DataHub's source first
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no DDL token for SQL source warehouse: RuntimeError: permission denied"
               in w for w in warned), warned
    assert any("source warehouse: its DDL token could not be read" in w
               and "every re-run" in w and "catalog.sql_pass: beside" in w
               for w in warned), warned


def test_a_token_error_that_quotes_the_password_is_logged_masked(
        tmp_path, monkeypatch, caplog) -> None:
    """``ddl_version``'s WARNING and DEBUG lines carry the driver's message; one that quotes
    the URL, or the password alone past the line's 300 characters, shows it masked
    (review of d9a0c52); an unset ``${VAR}`` in a SQLite URL is not called in-memory."""
    import logging

    from autokfp.catalog.ingest import _sql_pass_choices
    from autokfp.catalog.sources import sql
    from autokfp.config import parse_config

    secret = "s3cretPassw0rd-xyz"
    monkeypatch.setenv("AUTOKFP_TEST_PG_PASSWORD", secret)
    monkeypatch.delenv("AUTOKFP_TEST_UNSET_DIR", raising=False)
    config = parse_config({
        "name": "masked",
        "sources": [{"name": "pg", "kind": "sql",
                     "url": "postgresql://u:${AUTOKFP_TEST_PG_PASSWORD}@db.example/shop"},
                    {"name": "unset", "kind": "sql",
                     "url": "sqlite:///${AUTOKFP_TEST_UNSET_DIR}/x.db"}],
        "training": {"dataset": "pg/t", "target": "y"}})
    source = config.sources[0]
    for text in (f"cannot connect to postgresql://u:{secret}@db.example/shop",
                 "x" * 291 + f" {secret} at the end"):
        def fails(source, text=text):
            raise RuntimeError(text)

        monkeypatch.setattr(sql, "_engine", fails)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=sql.log.name):
            assert sql.ddl_version(source) is None
        said = [r.getMessage() for r in caplog.records if "no DDL token" in r.getMessage()]
        assert len(said) == 2 and all(secret[:6] not in line for line in said), said
        assert all("***" in line for line in said), said
    why = _sql_pass_choices(config, False, {})
    assert why["unset"][0] == "beside" and "in-memory" not in why["unset"][1], why
    assert "cannot be read" in why["unset"][1], why


def test_sql_pass_auto_takes_a_second_pass_where_a_ddl_token_exists(
        tmp_path, monkeypatch, caplog) -> None:
    """``catalog.sql_pass: auto`` (the default): ``second`` for SQLite on a file and
    PostgreSQL (their DDL token keeps the unchanged re-run's skip), ``beside`` for MySQL,
    SQL Server and an in-memory SQLite (no token), and ``beside`` without a warning where a
    second pass cannot apply (a user's recipe, a GMS, a source the crawl reads alone); the
    reason is in each choice. ``second`` set on a server without a token warns what its
    re-runs will cost; ``beside`` set is honoured everywhere."""
    import logging

    from autokfp.catalog import ingest as ingest_module
    from autokfp.config import parse_config

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    config = parse_config({
        "name": "choices",
        "sources": [
            {"name": "lite", "kind": "sql", "url": f"sqlite:///{tmp_path / 'a.db'}"},
            {"name": "memory", "kind": "sql", "url": "sqlite://"},
            {"name": "pg", "kind": "sql", "url": "postgresql://u@db.example:5432/shop"},
            {"name": "my", "kind": "sql", "url": "mysql+pymysql://u@db.example/shop"},
            {"name": "ms", "kind": "sql", "url": "mssql+pytds://u@db.example/shop"},
            {"name": "files", "kind": "folder", "path": str(tmp_path)}],
        "training": {"dataset": "lite/t", "target": "y"}})
    assert config.catalog.sql_pass == "auto"

    def chosen(setting: str, user_recipe: bool = False, fallback=None) -> dict[str, str]:
        one = config.model_copy(update={"catalog": config.catalog.model_copy(
            update={"sql_pass": setting})})
        got = ingest_module._sql_pass_choices(one, user_recipe, fallback or {})
        return {name: mode for name, (mode, _why) in got.items()}, got

    with caplog.at_level(logging.INFO, logger=ingest_module.log.name):
        modes, why = chosen("auto")
        assert modes == {"lite": "second", "memory": "beside", "pg": "second",
                         "my": "beside", "ms": "beside"}, why
        assert "sqlite has a DDL token" in why["lite"][1]
        assert "postgres has a DDL token" in why["pg"][1]
        assert "mysql has no DDL token" in why["my"][1]
        assert "in-memory sqlite has no DDL token" in why["memory"][1]
        assert "mssql has no DDL token" in why["ms"][1]
        # where a second pass cannot apply: beside, the reason kept, nothing to warn about
        assert set(chosen("auto", user_recipe=True)[0].values()) == {"beside"}
        assert "recipe was given" in chosen("auto", user_recipe=True)[1]["pg"][1]
        modes, why = chosen("auto", fallback={"lite": "its reason"})
        assert modes["lite"] == "beside" and "its reason" in why["lite"][1]
        monkeypatch.setenv("DATAHUB_GMS_URL", "http://gms.example:8080")
        modes, why = chosen("auto")
        assert set(modes.values()) == {"beside"} and "GMS" in why["pg"][1]
        monkeypatch.delenv("DATAHUB_GMS_URL")
        assert set(chosen("beside")[0].values()) == {"beside"}
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not warned, warned  # auto and beside: nothing was asked that cannot be done
        infos = [r.getMessage() for r in caplog.records if "catalog.sql_pass:" in
                 r.getMessage()]
        assert len(infos) == 6 and "source 'my' beside" in infos[0], infos  # once a run
        caplog.clear()
        # second set: honoured; a server without a token is warned about, by name
        assert set(chosen("second")[0].values()) == {"second"}
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 3, warned  # my, ms and the in-memory SQLite
    assert any("'my' (mysql) has no DDL token" in w for w in warned), warned
    assert any("'ms' (mssql) has no DDL token" in w for w in warned), warned
    assert all("every re-run" in w and "5.2x" in w for w in warned), warned


def test_the_postgres_ddl_token_changes_with_each_kind_of_ddl_and_no_data_write(
        postgres_server, caplog) -> None:
    """``sql.ddl_version`` on PostgreSQL: every kind of DDL on what the recipe reads (the
    schema, within ``tables`` when given) makes a new token; data writes, VACUUM and
    ANALYZE do not (row counts are the crawl's to see, as on SQLite); DDL in another schema
    does not. The datasets are the tables, views and materialized views."""
    import logging

    from autokfp.catalog.sources.sql import ddl_version
    from autokfp.config import SqlSource

    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS ddltoken", "CREATE DATABASE ddltoken")
    server.run("ddltoken", "CREATE SCHEMA s", "CREATE SCHEMA other",
               "CREATE TABLE s.t (id integer PRIMARY KEY, label text, amount numeric(8, 2))",
               "INSERT INTO s.t SELECT i, 'x' || i, i FROM generate_series(1, 20) AS i",
               "CREATE TABLE s.u (id integer, t_id integer)",
               "CREATE VIEW s.v AS SELECT id, label FROM s.t",
               "CREATE MATERIALIZED VIEW s.mv AS SELECT id FROM s.t",
               "CREATE TABLE other.o (id integer)",
               # a view on a table of another schema, both on the users' search_path
               "CREATE SCHEMA app", "CREATE TABLE public.c (id integer)",
               "CREATE VIEW s.vc AS SELECT id FROM public.c",
               "ALTER DATABASE ddltoken SET search_path = public, app")
    source = SqlSource(name="db", kind="sql", url=server.url("ddltoken"), schema="s")
    only_t = source.model_copy(update={"tables": ["t"]})
    no_views = source.model_copy(update={"include_views": False})

    def token(of: SqlSource = source) -> str:
        state = ddl_version(of)
        assert state is not None
        return state[0]

    assert ddl_version(source)[1] == {"t", "u", "v", "mv", "vc"}
    assert ddl_version(no_views)[1] == {"t", "u"}
    assert ddl_version(only_t)[1] == {"t"}
    # each statement is DDL on what the recipe reads: a new token after each one (a DROP
    # undoing the CREATE before it gives the token of before the CREATE: the same schema)
    ddl = ["ALTER TABLE s.t ALTER COLUMN amount TYPE numeric(10, 2)",
           "ALTER TABLE s.t ALTER COLUMN amount TYPE double precision",
           "ALTER TABLE s.t ALTER COLUMN label SET NOT NULL",
           "ALTER TABLE s.t ALTER COLUMN label SET DEFAULT 'none'",
           "ALTER TABLE s.t ADD COLUMN note text",
           "ALTER TABLE s.t RENAME COLUMN note TO remark",
           "ALTER TABLE s.t DROP COLUMN remark",
           "COMMENT ON COLUMN s.t.label IS 'the label'",
           "COMMENT ON TABLE s.t IS 'the table'",
           "ALTER TABLE s.u ADD CONSTRAINT u_t FOREIGN KEY (t_id) REFERENCES s.t (id)",
           "CREATE OR REPLACE VIEW s.v AS SELECT id, label FROM s.t WHERE id > 1",
           "CREATE OR REPLACE VIEW s.v AS SELECT id, label, amount FROM s.t WHERE id > 1",
           "ALTER TABLE s.u RENAME TO w",
           "CREATE TABLE s.added (id integer)",
           "DROP TABLE s.added",
           "DROP MATERIALIZED VIEW s.mv",
           "CREATE FUNCTION s.f(x integer) RETURNS integer AS 'SELECT x + 1' LANGUAGE sql",
           "CREATE OR REPLACE FUNCTION s.f(x integer) RETURNS integer AS 'SELECT x + 2' "
           "LANGUAGE sql",
           # what DataHub's postgres source emits of a routine: its comment, its arguments
           # as declared (a default too) and language (the review of c3b41e3)
           "COMMENT ON FUNCTION s.f(integer) IS 'adds two'",
           "CREATE PROCEDURE s.p(a integer DEFAULT 1) LANGUAGE sql AS 'SELECT 1'",
           "CREATE OR REPLACE PROCEDURE s.p(a integer DEFAULT 2) LANGUAGE sql AS 'SELECT 1'",
           "CREATE OR REPLACE PROCEDURE s.p(a integer DEFAULT 2) LANGUAGE sql AS 'SELECT 2'",
           "COMMENT ON PROCEDURE s.p(integer) IS 'a procedure'",
           # the view's table moved between two schemas of the search_path: s.vc's lineage
           # moves with it (names printed in full, as DataHub reads them)
           "ALTER TABLE public.c SET SCHEMA app"]
    last = token()
    for statement in ddl:
        server.run("ddltoken", statement)
        now = token()
        assert now != last, statement
        last = now
    assert ddl_version(source)[1] == {"t", "w", "v", "vc"}
    # data writes and maintenance change no token (nor DDL in another schema)
    before, before_t = token(), token(only_t)
    server.run("ddltoken", "INSERT INTO s.t SELECT i, 'y', i FROM generate_series(21, 90) AS i",
               "UPDATE s.t SET label = 'z' WHERE id < 5", "DELETE FROM s.t WHERE id > 80",
               "INSERT INTO s.w VALUES (1, 1)", "TRUNCATE s.w", "VACUUM s.t",
               "VACUUM FULL s.t", "ANALYZE s.t", "ALTER TABLE other.o ADD COLUMN x text",
               "CREATE TABLE other.p (id integer)")
    assert token() == before
    # with ``tables``, DDL on a table outside them does not change the token
    server.run("ddltoken", "ALTER TABLE s.w ADD COLUMN y text")
    assert token(only_t) == before_t and token() != before
    # a source that cannot be read has no token (DataHub's source runs), and the WARNING
    # saying why never shows the password
    wrong = "wr0ng-pa55word-x"
    with caplog.at_level(logging.WARNING):
        assert ddl_version(source.model_copy(update={"url": server.url("ddltoken", wrong)})) \
            is None
    said = [r.getMessage() for r in caplog.records if "no DDL token" in r.getMessage()]
    assert said and all(wrong not in line for line in said), said
