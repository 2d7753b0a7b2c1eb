"""SQL sources: the tables of a database reached through a SQLAlchemy URL.

Passwords (in the URL or in ``${VAR}`` values) never reach a message, log or catalog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from autokfp.catalog.profiling import parse_datetime_text, profile_frame, unparsed_date_notes
from autokfp.catalog.sources.base import (
    CrawlCache,
    DiscoveredDataset,
    LoadedData,
    bottom_k,
    datahub_urn,
    describe,
    empty_error,
    failed,
    missing_error,
    mixed_type_notes,
    register_source,
    signature_of,
)
from autokfp.config import SqlSource, expand_env, whole_env_ref
from autokfp.errors import ConfigError, DataError

if TYPE_CHECKING:
    from autokfp.catalog.workers import Pending, ReadPool

log = logging.getLogger(__name__)


def sql_url(url: str, source: str | None = None) -> Any:
    """The SQLAlchemy URL (``sqlalchemy.engine.URL``) of a source's ``url``, read for its
    platform, host and database: ``${VAR}`` references stay unexpanded (a password), except
    a ``url`` that is wholly one (``${DATABASE_URL}``), which is the variable's value.

    Raises:
        ConfigError: the variable is not set or does not hold a SQLAlchemy URL; it is named
            (with ``source``), its value never shown (it holds the password).
    """
    from sqlalchemy.engine import make_url

    name = whole_env_ref(url)
    if name is None:
        return make_url(url)
    of = f"the url of SQL source '{source}'" if source else "a SQL source's url"
    if name not in os.environ:
        raise ConfigError(
            f"environment variable {name} ({of}) is not set; set it to the database's "
            "SQLAlchemy URL (postgresql://user:password@host:5432/db) where the step runs "
            "(in a cluster, from a Kubernetes Secret)")
    try:
        return make_url(os.environ[name])
    except Exception:
        raise ConfigError(
            f"environment variable {name} ({of}) does not hold a SQLAlchemy URL (its value "
            "is not shown: it holds the password); set it to one such as "
            "postgresql://user:password@host:5432/db or sqlite:////path/to.db") from None


def sql_platform(url: str, source: str | None = None) -> str:
    """The DataHub platform of a SQLAlchemy URL: sqlite, postgres, mysql, mssql... (a URL
    wholly ``${VAR}`` is read from the variable: ``sql_url``, whose ConfigError it raises)."""
    backend = sql_url(url, source).get_backend_name()
    return {"postgresql": "postgres"}.get(backend, backend)


# Platforms whose DataHub source names a table <database>.<schema>.<table> (its postgres and
# mssql sources); the others (its generic sqlalchemy source, sqlite, mysql, mariadb, ...) name
# it <schema>.<table>, where a MySQL schema is the database.
_THREE_TIER = frozenset({"postgres", "mssql", "redshift"})


def datahub_table_name(platform: str, database: str | None, schema: str | None,
                       table: str) -> str:
    """A table's dataset name as DataHub's own source for ``platform`` builds it
    (``get_identifier`` of its SQL sources)."""
    regular = f"{schema}.{table}" if schema else table
    if platform in _THREE_TIER and database:
        return f"{database}.{regular}"
    return regular


def masked_url(url: str) -> str:
    """A SQLAlchemy URL with its password replaced by ``***`` (safe for logs and catalogs)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _engine(source: SqlSource):  # -> sqlalchemy.Engine
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(expand_env(source.url))
    database = url.database
    # SQLite would silently create a missing database file and report no tables.
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not database.startswith("file:") and not Path(database).is_file():
            raise DataError(
                f"SQLite database '{database}' of source '{source.name}' does not exist; "
                "fix the source's url"
            )
    return sa.create_engine(url)


def _sql_location(source: SqlSource) -> str:
    """The source's URL with the password masked (also when an env var is not set)."""
    for expand in (expand_env, str):
        try:
            return masked_url(expand(source.url))
        except Exception:
            continue
    return f"<unparseable URL of source '{source.name}'>"


def _sql_platform_of(source: SqlSource) -> str:
    try:
        return sql_platform(source.url)
    except Exception:
        return "sql"


def _secrets(source: SqlSource) -> list[str]:
    """Values that must never appear in a message: the URL's password and ${VAR} values."""
    values = [os.environ.get(name, "") for name in re.findall(r"\$\{(\w+)\}", source.url)]
    try:
        from sqlalchemy.engine import make_url

        values.append(make_url(expand_env(source.url)).password or "")
    except Exception:
        pass
    return sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)


def _sql_error(source: SqlSource, exc: BaseException) -> str:
    missing = exc if isinstance(exc, ModuleNotFoundError) else None
    if missing is None and isinstance(exc.__cause__, ModuleNotFoundError):
        missing = exc.__cause__
    if missing is not None:
        return (f"the database driver '{missing.name}' for source '{source.name}' is not "
                "installed; pip install it (psycopg2-binary or pg8000 for postgresql, pymysql "
                "for mysql+pymysql) or name an installed driver in the URL")
    text = describe(exc)
    for secret in _secrets(source):
        text = text.replace(secret, "***")
    return text


def _table_names(source: SqlSource, engine) -> list[str]:
    """The configured tables, else every table and then (unless ``include_views`` is false)
    every view of the schema (DataHub's SQL sources ingest views too: ``include_views`` is on
    by default)."""
    import sqlalchemy as sa

    if source.tables:
        return list(source.tables)
    inspector = sa.inspect(engine)
    views = sorted(_view_names(inspector, source)) if source.include_views else []
    return sorted(inspector.get_table_names(schema=source.schema_name)) + views


def _view_names(inspector, source: SqlSource) -> list[str]:
    try:
        return list(inspector.get_view_names(schema=source.schema_name))
    except NotImplementedError:  # a dialect without views
        return []


# A PostgreSQL view's direct dependencies from the system catalog (pg_depend), the query
# DataHub's postgres source falls back on (VIEW_LINEAGE_QUERY) when it cannot parse a view:
# exact, where parsing the definition cannot tell which schema of the search path an
# unqualified name is in
_PG_VIEW_UPSTREAMS = """
SELECT DISTINCT source_ns.nspname AS source_schema, source_table.relname AS source_table
FROM pg_depend
JOIN pg_rewrite ON pg_depend.objid = pg_rewrite.oid
JOIN pg_class AS dependent_view ON pg_rewrite.ev_class = dependent_view.oid
JOIN pg_class AS source_table ON pg_depend.refobjid = source_table.oid
JOIN pg_namespace AS dependent_ns ON dependent_ns.oid = dependent_view.relnamespace
JOIN pg_namespace AS source_ns ON source_ns.oid = source_table.relnamespace
WHERE dependent_ns.nspname = :schema AND dependent_view.relname = :view
  AND NOT (source_ns.nspname = dependent_ns.nspname AND source_table.relname = dependent_view.relname)
  AND source_ns.nspname NOT IN ('information_schema', 'pg_catalog')
"""


# A PostgreSQL view's definition as PostgreSQL prints it with only pg_catalog on the search
# path: every table (and function) of another schema is written schema-qualified. With the
# session's search path ("$user", public) a table of the search path is printed unqualified,
# and a parser taking the view's schema (DataHub's postgres source does) or the session's
# first schema as the default names a table that does not exist. The generated recipes give
# DataHub's postgres source the same search path (catalog/ingest.py), so both print and parse
# the same text.
PG_QUALIFIED_SEARCH_PATH = "pg_catalog"
_PG_VIEW_DEFINITION = """
SELECT pg_get_viewdef(view_class.oid) FROM pg_class AS view_class
JOIN pg_namespace AS view_ns ON view_ns.oid = view_class.relnamespace
WHERE view_ns.nspname = :schema AND view_class.relname = :view
"""


def _pg_view_definition(connection, schema: str | None, view: str) -> str:
    """The view's definition with every name outside pg_catalog schema-qualified (see
    PG_QUALIFIED_SEARCH_PATH): read in a savepoint whose ``SET LOCAL search_path`` is rolled
    back, so the crawl's own session keeps its search path."""
    import sqlalchemy as sa

    savepoint = connection.begin_nested()
    try:
        connection.execute(sa.text(f"SET LOCAL search_path TO {PG_QUALIFIED_SEARCH_PATH}"))
        text = connection.execute(sa.text(_PG_VIEW_DEFINITION),
                                  {"schema": schema, "view": view}).scalar()
    finally:
        savepoint.rollback()
    return str(text) if text else ""


def view_facts(inspector, connection, source: SqlSource, view: str, platform: str,
               database: str | None, schema: str | None) -> tuple[dict, list[str]]:
    """A view's definition, the datasets it reads and its column-level lineage, as DataHub's
    SQL sources record them (``include_views``, ``include_view_lineage``,
    ``include_view_column_lineage``), and notes on what DataHub's SQL parser could not read
    (each also logged as a warning; the crawl report lists them with the view).

    Tables: PostgreSQL's from its system catalog, other databases' by DataHub's own SQL
    parser with the view's database and schema as defaults for unqualified names. Columns:
    DataHub's parser (``sqlglot_lineage``) given the columns of those tables, so ``*``,
    unqualified names and joins resolve. A PostgreSQL definition is read with every name
    schema-qualified (``_pg_view_definition``), the text DataHub's postgres source reads
    with the search path the generated recipes give it.
    """
    import sqlalchemy as sa

    tables: list[tuple[str | None, str]] = []  # (schema, table) of what the view reads
    upstreams: list[str] = []
    notes: list[str] = []
    label = f"{source.name}/{view}"
    if platform == "postgres":
        # every name qualified, so the parse cannot depend on a default schema
        definition = _pg_view_definition(connection, schema, view)
        rows = connection.execute(sa.text(_PG_VIEW_UPSTREAMS),
                                  {"schema": schema, "view": view}).all()
        tables = [(str(s), str(t)) for s, t in rows]
        upstreams = [datahub_urn(platform, datahub_table_name(platform, database, s, t), source)
                     for s, t in tables]
    else:
        try:
            text = inspector.get_view_definition(view, schema=source.schema_name)
        except Exception:  # no text for it (DataHub emits the view without one too)
            text = None
        definition = str(text) if text else ""
        if definition:
            from datahub.sql_parsing.sqlglot_lineage import create_lineage_sql_parsed_result

            # unqualified names default to the view's own schema (and database, where
            # DataHub names tables <database>.<schema>.<table>), so they name the datasets
            # this crawl names
            parsed = create_lineage_sql_parsed_result(
                query=definition, default_db=database if platform in _THREE_TIER else None,
                default_schema=schema, platform=platform,
                platform_instance=source.platform_instance, env=source.env,
                generate_column_lineage=False)
            upstreams = list(parsed.in_tables)
            tables = [_schema_and_table(u, platform, source.platform_instance)
                      for u in upstreams]
            if parsed.debug_info.table_error is not None:
                notes.append(_parser_note(label, "its lineage (tables and columns)",
                                          parsed.debug_info.table_error))
    facts: dict = {"definition": definition, "upstreams": sorted(set(upstreams))}
    if definition and upstreams:
        facts["columns"], error = _column_lineage(
            inspector, source, definition, platform, database, schema,
            dict(zip(upstreams, tables)))
        if error is not None:
            notes.append(_parser_note(label, "its column-level lineage (its table lineage "
                                      "is kept)", error))
    return facts, notes


def _parser_note(label: str, what: str, error: BaseException) -> str:
    """The warning for a view DataHub's SQL parser could not read, logged once."""
    # sqlglot underlines the offending token with terminal escapes
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(error).__name__}: {error}")
    text = " ".join(text.split())
    if len(text) > 300:
        text = text[:297] + "..."
    note = (f"view '{label}': DataHub's SQL parser could not read its definition, so "
            f"{what} is left out ({text})")
    log.warning(note)
    return note


def _schema_and_table(urn: str, platform: str,
                      instance: str | None = None) -> tuple[str | None, str]:
    """(schema, table) of a dataset URN this module names (see datahub_table_name)."""
    from datahub.utilities.urns.dataset_urn import DatasetUrn

    name = DatasetUrn.from_string(urn).name
    if instance and name.startswith(f"{instance}."):  # DataHub puts the instance first
        name = name[len(instance) + 1:]
    parts = name.split(".")
    if platform in _THREE_TIER and len(parts) >= 3:
        parts = parts[1:]
    return (parts[0], ".".join(parts[1:])) if len(parts) >= 2 else (None, parts[0])


def _column_lineage(inspector, source: SqlSource, definition: str, platform: str,
                    database: str | None, default_schema: str | None,
                    tables: dict[str, tuple[str | None, str]]
                    ) -> tuple[list[dict], BaseException | None]:
    """Each view column's upstream columns by DataHub's SQL parser, as
    ``[{"column", "upstreams": [[dataset URN, column], ...], "logic"}]`` (``logic`` as
    DataHub's ``transformOperation``: ``COPY: <expr>`` or ``SQL: <expr>``), and the parser's
    error when it could not resolve them ([] then: the view keeps its table lineage)."""
    from datahub.sql_parsing.schema_resolver import SchemaResolver
    from datahub.sql_parsing.sqlglot_lineage import sqlglot_lineage

    resolver = SchemaResolver(platform=platform, platform_instance=source.platform_instance,
                              env=source.env)
    try:
        for urn, (table_schema, table) in tables.items():
            try:
                columns = inspector.get_columns(table, schema=table_schema)
            except Exception:  # not inspectable (another database): unresolved, not fatal
                continue
            resolver.add_raw_schema_info(urn, {str(c["name"]): str(c["type"]) for c in columns})
        # DataHub's parser returns its error (debug_info) rather than raising it
        parsed = sqlglot_lineage(definition, schema_resolver=resolver,
                                 default_db=database if platform in _THREE_TIER else None,
                                 default_schema=default_schema)
    except Exception as exc:  # anything else on the way (it is the parser's job)
        return [], exc
    finally:
        resolver.close()
    if parsed.debug_info.error is not None:
        return [], parsed.debug_info.error
    out = []
    for info in parsed.column_lineage or []:
        upstreams = sorted({(str(ref.table), ref.column) for ref in info.upstreams
                            if ref.column})
        logic = info.logic
        out.append({"column": info.downstream.column,
                    "upstreams": [list(u) for u in upstreams],
                    "logic": None if logic is None else
                    f"{'COPY' if logic.is_direct_copy else 'SQL'}: {logic.column_logic}"})
    return out, None


def _select_all(source: SqlSource, table_name: str):
    import sqlalchemy as sa

    # table() quotes the identifier, so odd (or hostile) names are data, never SQL.
    table = sa.table(table_name, schema=source.schema_name)
    return table, sa.select(sa.literal_column("*")).select_from(table)


def _count_rows(connection, table_name: str, schema: str | None) -> int:
    """The table's row count.

    The statement is written as driver SQL with the dialect's own identifier quoting
    (quotes inside a name are doubled, so a name is data, never SQL): compiling a
    SQLAlchemy ``select`` anew for every table was most of an unchanged re-crawl.
    """
    preparer = connection.dialect.identifier_preparer
    name = preparer.quote(table_name)
    if schema:
        name = f"{preparer.quote_schema(schema)}.{name}"
    statement = f"SELECT count(*) FROM {name}"
    if connection.dialect.paramstyle in ("format", "pyformat"):
        statement = statement.replace("%", "%%")
    return int(connection.exec_driver_sql(statement).scalar_one())


# tables counted by one statement (SQLite allows 500 terms in a compound SELECT)
_COUNT_BATCH = 200


class _RowCounts:
    """Row counts of a source's tables, asked a batch of tables at a time: one statement of
    ``SELECT i, count(*) FROM t UNION ALL ...`` per ``_COUNT_BATCH`` tables (a round trip
    and a result object per batch instead of per table: a fifth of an unchanged re-crawl
    of SQLite tables). A batch the database refuses (one table it cannot count: a broken
    view, a permission) is counted table by table, so the table that fails is reported as
    before; views are always counted on their own. Batches are asked as the crawl reaches
    them, so a count is at most one batch older than the table's read."""

    def __init__(self, connection, names: list[str], views: set[str], schema: str | None):
        self.connection, self.schema = connection, schema
        self.tables = [n for n in names if n not in views]
        self.position = {name: i for i, name in enumerate(self.tables)}
        self.known: dict[str, int] = {}
        self.asked: set[int] = set()  # the batches asked (by their first table's index)

    def count(self, table_name: str) -> int:
        index = self.position.get(table_name)
        if index is None:
            return _count_rows(self.connection, table_name, self.schema)
        start = index - index % _COUNT_BATCH
        if start not in self.asked:
            self.asked.add(start)
            self._ask(self.tables[start:start + _COUNT_BATCH])
        known = self.known.pop(table_name, None)
        if known is None:  # the batch was refused: this table on its own (its own error)
            return _count_rows(self.connection, table_name, self.schema)
        return known

    def _ask(self, batch: list[str]) -> None:
        preparer = self.connection.dialect.identifier_preparer
        prefix = f"{preparer.quote_schema(self.schema)}." if self.schema else ""
        statement = " UNION ALL ".join(
            f"SELECT {i}, count(*) FROM {prefix}{preparer.quote(name)}"
            for i, name in enumerate(batch))
        if self.connection.dialect.paramstyle in ("format", "pyformat"):
            statement = statement.replace("%", "%%")
        try:
            rows = self.connection.exec_driver_sql(statement).all()
        except Exception:
            self.connection.rollback()  # a failed statement must not poison the next
            return
        for i, total in rows:
            self.known[batch[int(i)]] = int(total)


def _read_table(source: SqlSource, table_name: str) -> pd.DataFrame:
    label = f"table '{table_name}' of source '{source.name}'"
    engine = _engine(source)
    try:
        _, query = _select_all(source, table_name)
        with engine.connect() as connection:
            df = pd.read_sql(query, connection)
    except Exception as exc:
        raise DataError(f"cannot read {label}: {_sql_error(source, exc)}") from None
    finally:
        engine.dispose()
    if len(df) == 0:
        raise empty_error(f"{source.name}/{table_name}")
    from autokfp.catalog.sources.files import DATA_CHANGES

    unparsed: dict[str, list[Any]] = {}
    df = parse_datetime_text(df, unparsed=unparsed)
    # what reading it changed (the discover step reports and audits it)
    df.attrs[DATA_CHANGES] = unparsed_date_notes(unparsed, df.columns,
                                                 f"{source.name}/{table_name}")
    return df


def _declared_columns(inspector, source: SqlSource, table_name: str,
                      known: dict[str, list[list[str]]] | None = None) -> list[list[str]]:
    if known is not None and table_name in known:
        return known[table_name]
    try:
        columns = inspector.get_columns(table_name, schema=source.schema_name)
    except Exception:  # a view or an odd backend: the row count alone must do
        return []
    return [[str(c["name"]), str(c["type"])] for c in columns]


def _all_declared_columns(inspector, source: SqlSource) -> dict[str, list[list[str]]]:
    """Every table's declared columns in one reflection (``get_multi_columns``, or for
    SQLite one query, ``_sqlite_declared_columns``); tables it does not cover are reflected
    one by one."""
    if inspector.dialect.name == "sqlite" and source.schema_name is None:
        try:
            declared = _sqlite_declared_columns(inspector)
        except Exception as error:  # a SQLite that refuses the query: reflect
            log.debug("SQLite's columns in one query refused (%s): reflecting", error)
            declared = None
        if declared is not None:
            return declared
    try:
        multi = inspector.get_multi_columns(schema=source.schema_name)
    except Exception:
        return {}
    return {key[1]: [[str(c["name"]), str(c["type"])] for c in columns]
            for key, columns in multi.items()}


# every table's columns as SQLAlchemy's SQLite dialect reads them (PRAGMA table_xinfo), for
# all tables in one statement
_SQLITE_COLUMNS = """
SELECT m.name, p.name, p.type, p.hidden FROM sqlite_master AS m
JOIN pragma_table_xinfo(m.name) AS p
WHERE m.type = 'table' ORDER BY m.name, p.cid
"""


def _sqlite_declared_columns(inspector) -> dict[str, list[list[str]]] | None:
    """``[[name, type], ...]`` per table of the main SQLite database, as
    ``get_multi_columns`` gives them, from one query instead of a PRAGMA and a type
    compilation per table (a sixth of an unchanged re-crawl of SQLite tables): a declared
    type becomes the SQLAlchemy type the dialect's reflection makes of it
    (``_resolve_type_affinity``), its text taken once per distinct declaration. A table
    with a generated column (whose declared type the dialect rewrites) is left out, to be
    reflected on its own. None before SQLite 3.31, whose reflection reads table_info instead
    (the caller reflects)."""
    dialect = inspector.dialect
    resolve = dialect._resolve_type_affinity  # what its get_columns calls per column
    if dialect.server_version_info < (3, 31):
        return None
    names: dict[str, str] = {}
    out: dict[str, list[list[str]]] = {}
    generated: set[str] = set()
    with inspector.bind.connect() as connection:
        rows = connection.exec_driver_sql(_SQLITE_COLUMNS).all()
    for table, column, declared, hidden in rows:
        if hidden == 1:  # a virtual table's hidden column: the dialect skips it too
            continue
        if hidden:
            generated.add(table)
        text = names.get(declared)
        if text is None:
            text = names[declared] = str(resolve(declared.upper()))
        out.setdefault(table, []).append([str(column), text])
    for table in generated:
        del out[table]
    return out


def _profile_table(source: SqlSource, table_name: str, connection, platform: str,
                   location: str, k: int, total: int,
                   view: Callable[[], tuple[dict, list[str]]] | None = None
                   ) -> tuple[Any, str | None, list[str]]:
    """A table's sample read and profiled (and a view's facts): ``(schema, None, notes)``,
    or ``(None, error, [])`` when it cannot be read (the failed statement rolled back)."""
    dataset_id = f"{source.name}/{table_name}"
    try:
        _, query = _select_all(source, table_name)
        if total <= k:
            sample = pd.read_sql(query, connection)
        else:  # over a server-side cursor: the driver holds k rows, not the table
            streamed = query.execution_options(stream_results=True, max_row_buffer=k)
            sample, total = bottom_k(pd.read_sql(streamed, connection, chunksize=k), k)
        notes = mixed_type_notes(sample, dataset_id)
        schema = profile_frame(
            parse_datetime_text(sample), dataset_id, platform, location, row_count=total,
            max_rows=k,
        )
        if view is not None:
            schema.view, view_notes = view()
            notes += view_notes
    except Exception as exc:
        connection.rollback()  # a failed statement must not poison the next table's
        return None, f"cannot read table '{table_name}': {_sql_error(source, exc)}", []
    return schema, None, notes


def read_table_sample(source: SqlSource, table_name: str, platform: str, location: str,
                      k: int, total: int) -> tuple[Any, str | None, list[str]]:
    """``_profile_table`` over this process's own connection to the source (made once per
    process and source): what a crawl's worker runs (``catalog.workers``)."""
    from autokfp.catalog import workers

    def connect() -> tuple[Any, Callable[[], None]]:
        engine = _engine(source)
        connection = engine.connect()

        def close() -> None:
            connection.close()
            engine.dispose()

        return connection, close

    connection = workers.resource(("sql", source.name, source.url), connect)
    return _profile_table(source, table_name, connection, platform, location, k, total)


def preload_sql(source: SqlSource) -> None:
    """Import what reading the source's tables needs (SQLAlchemy, its dialect, pandas' SQL
    reader) before a crawl forks its workers (``catalog.workers``)."""
    import pandas.io.sql  # noqa: F401 - imported for the workers
    from sqlalchemy.engine import make_url

    dialect = make_url(expand_env(source.url)).get_dialect()
    dialect.import_dbapi()


def _other_connections_see_it(source: SqlSource) -> bool:
    """Whether a new connection to the source sees the tables the crawl's sees (not an
    in-memory SQLite database, which is the connection's own)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(expand_env(source.url))
    except Exception:  # noqa: BLE001 - read in the crawl's own process
        return False
    if url.get_backend_name() != "sqlite":
        return True
    database = url.database or ""
    return bool(database) and database != ":memory:" and "memory" not in str(url.query)


def _discover_table(source: SqlSource, table_name: str, connection, inspector, platform: str,
                    location: str, k: int, cache: CrawlCache | None,
                    declared: dict[str, list[list[str]]] | None = None,
                    view: Callable[[], tuple[dict, list[str]]] | None = None,
                    counts: _RowCounts | None = None, pool: ReadPool | None = None
                    ) -> DiscoveredDataset | Pending:
    dataset_id = f"{source.name}/{table_name}"

    def reader(t: str = table_name) -> pd.DataFrame:
        return _read_table(source, t)

    def finish(schema: Any, error: str | None, notes: list[str]) -> DiscoveredDataset:
        if error is None:
            item = DiscoveredDataset(schema=schema, notes=notes, signature=signature,
                                     _reader=reader)
        else:
            item = failed(dataset_id, platform, location, error, reader=reader)
            item.signature = signature
        if cache is not None:
            cache.store(item)
        return item

    signature = None
    try:
        total = (counts.count(table_name) if counts is not None
                 else _count_rows(connection, table_name, source.schema_name))
        # a view's entry also names how its lineage was found (v2: PostgreSQL definitions
        # read schema-qualified), so entries cached with the old lineage are read again once
        signature = signature_of("sql", total,
                                 _declared_columns(inspector, source, table_name, declared),
                                 *(["view-lineage-v2"] if view is not None else []))
        if cache is not None:
            known = cache.lookup(dataset_id, signature, reader)
            if known is not None:
                return known
        if total == 0:
            raise empty_error(dataset_id)
    except Exception as exc:
        connection.rollback()  # a failed statement must not poison the next table's
        return finish(None, f"cannot read table '{table_name}': {_sql_error(source, exc)}", [])

    def here() -> tuple[Any, str | None, list[str]]:
        return _profile_table(source, table_name, connection, platform, location, k, total,
                              view)

    if pool is not None and view is None and pool.parallel and _other_connections_see_it(source):
        return pool.offload(here, (read_table_sample, (source, table_name, platform, location,
                                                       k, total)), finish, dataset_id)
    return finish(*here())




@dataclass
class DataHubTables:
    """A SQL source's tables as DataHub's source emitted them (its SchemaMetadata and
    ViewProperties, read by ``catalog.ingest._datahub_tables``): what the crawl's second pass
    over DataHub's output reads instead of listing and reflecting the tables itself."""

    names: list[str]  # table names (DatasetProperties.name), in the crawl's order
    declared: dict[str, list[list[str]]]  # table -> [[field path, native type, nullable]]
    views: set[str] = field(default_factory=set)


# source name -> the tables DataHub's source emitted, set by catalog.ingest for one crawl
# (``given_tables``): that crawl's SqlDatabase.discover takes them instead of its own listing
# and reflection
_GIVEN: dict[str, Any] = {}


@contextlib.contextmanager
def given_tables(tables: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, a crawl of the SQL sources named in ``tables`` reads those tables
    and declared columns (DataHub's) instead of listing and reflecting the database: a
    ``DataHubTables``, or a callable giving it (or None: the crawl lists the database as
    without it) when the crawl reaches the source."""
    _GIVEN.update(tables)
    try:
        yield
    finally:
        for name in tables:
            _GIVEN.pop(name, None)


# What a PostgreSQL source's DDL token hashes (``ddl_version``): every relation of the
# schema DataHub's postgres source reads (tables, partitioned and foreign tables, views,
# materialized views) with its comment and a view's definition; every column of them with
# its position, name, type and modifier, NOT NULL, default, identity, generated expression,
# collation and comment; every constraint (primary, foreign and unique keys, checks) as
# PostgreSQL prints it; and the schema's functions and procedures (DataHub's postgres source
# ingests stored procedures) with their arguments as declared (defaults too), language,
# result, body and comment; every name printed in full (read with search_path pg_catalog,
# as DataHub reads them). All of it catalog rows that
# only DDL changes: INSERT, UPDATE, DELETE, TRUNCATE, VACUUM and ANALYZE change none of
# them (reltuples, relpages, the statistics and xmin are not read), so a data change is
# left to the crawl's row counts, as on SQLite. One query; rows in a fixed order.
_PG_DDL = """
WITH rel AS (
  SELECT c.oid, c.relname, c.relkind FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = :schema
    AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
)
SELECT 'relation' AS kind, relname, relkind::text AS a, obj_description(oid, 'pg_class') AS b,
       CASE WHEN relkind IN ('v', 'm') THEN pg_get_viewdef(oid) END AS c
FROM rel
UNION ALL
SELECT 'column', r.relname, lpad(a.attnum::text, 5, '0') || ' ' || a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null'
       ELSE '' END || ' ' || a.attidentity::text || a.attgenerated::text || ' ' || a.attcollation::text,
       concat_ws(' -- ', pg_get_expr(d.adbin, d.adrelid), col_description(r.oid, a.attnum))
FROM rel AS r JOIN pg_attribute AS a ON a.attrelid = r.oid
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', r.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
FROM rel AS r JOIN pg_constraint AS k ON k.conrelid = r.oid
UNION ALL
SELECT 'routine', p.proname, pg_get_function_arguments(p.oid), p.prokind::text || ' ' || l.lanname,
       md5(concat_ws(' -- ', p.prosrc, pg_get_function_result(p.oid), obj_description(p.oid, 'pg_proc')))
FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS l ON l.oid = p.prolang
WHERE n.nspname = :schema
ORDER BY 1, 2, 3, 4
"""


# the platforms ``ddl_version`` has a token for (each tested against its server)
DDL_TOKEN_PLATFORMS = ("sqlite", "postgres")


def ddl_token_platform(source: SqlSource) -> str | None:
    """The platform of ``source`` when ``ddl_version`` can give it a token (SQLite on a
    file, PostgreSQL), else None (another server, an in-memory SQLite database, a URL whose
    ``${VAR}`` is unset). Connects to nothing: what ``catalog.sql_pass: auto`` decides on
    (``catalog.ingest._sql_pass_choices``)."""
    try:
        platform = sql_platform(source.url, source.name)
    except Exception:  # noqa: BLE001 - the crawl reports a URL it cannot read
        return None
    if platform not in DDL_TOKEN_PLATFORMS or not _other_connections_see_it(source):
        return None
    return platform


def _without_password(text: str, source: SqlSource) -> str:
    """``text`` with the source's password (its URL's, ``${VAR}``s expanded) masked, and any
    ``scheme://user:password@`` in it."""
    text = re.sub(r"://([^:/@\s]+):[^@\s]*@", r"://\1:***@", text)
    try:
        from sqlalchemy.engine import make_url

        password = make_url(expand_env(source.url)).password
    except Exception:  # noqa: BLE001 - a URL that cannot be read holds no password to mask
        return text
    return text.replace(str(password), "***") if password else text


def sqlite_without_token(source: SqlSource) -> str:
    """What a SQLite source without a DDL token is, for the reason ``catalog.sql_pass: auto``
    gives: an in-memory database, or a URL that cannot be read (an unset ``${VAR}``)."""
    try:
        expand_env(source.url)
    except Exception:  # noqa: BLE001 - the crawl reports it
        return "sqlite (its URL cannot be read: an unset ${VAR}?)"
    return "in-memory sqlite"


def ddl_version(source: SqlSource) -> tuple[str, set[str]] | None:
    """A token that changes with every DDL statement on what the DataHub source of a SQLite
    or PostgreSQL source reads, and the datasets that source should emit (its tables, and
    views unless ``include_views`` is off, within ``tables`` when given), else None. What a
    second pass's unchanged re-run checks before it would run DataHub's source
    (``catalog.ingest._second_pass``).

    SQLite: the SHA-256 of its ``sqlite_master`` (every table, view, index and trigger with
    its CREATE statement). PostgreSQL: the SHA-256 of the schema's catalog rows that only
    DDL changes (``_PG_DDL``: relations, columns, constraints, comments, view definitions,
    routines), one query; its datasets are the tables (also partitioned ones) and the views
    and materialized views, as DataHub's postgres source lists them. Other servers (MySQL,
    MariaDB, SQL Server, ...) get None, so their second pass runs DataHub's source on every
    run: no server of theirs runs here to prove a token against (information_schema's
    CREATE_TIME is not changed by MySQL 8's instant ALTERs, and an untested token that
    missed a change would leave the catalog stale without a word). A source that cannot be
    read has none either (DataHub's source runs, and says why)."""
    import hashlib
    import json

    try:
        platform = ddl_token_platform(source)  # an unset ${VAR}: no token either
        if platform is None:
            return None
        engine = _engine(source)
        try:
            with engine.connect() as connection:
                if platform == "sqlite":
                    rows = connection.exec_driver_sql(
                        "SELECT type, name, tbl_name, sql FROM sqlite_master "
                        "ORDER BY type, name").all()
                else:
                    import sqlalchemy as sa

                    with connection.begin():
                        schema = source.schema_name or connection.exec_driver_sql(
                            "SELECT current_schema()").scalar()
                        # names in view and constraint definitions printed in full, as
                        # DataHub's postgres source reads them (search_path pg_catalog,
                        # ingest.py): under a user's search_path a table moved between two
                        # schemas on it would print the same
                        connection.exec_driver_sql("SET LOCAL search_path TO pg_catalog")
                        rows = connection.execute(sa.text(_PG_DDL), {"schema": schema}).all()
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - no token: DataHub's source runs
        # the error's type and first line, the whole of it at DEBUG, each with the URL's
        # password masked first (a driver's message may quote the URL)
        said = _without_password(str(exc).strip(), source)
        log.warning("no DDL token for SQL source %s: %s: %s", source.name,
                    type(exc).__name__, (said.splitlines() or [""])[0][:300])
        log.debug("no DDL token for source %s: %s: %s", source.name, type(exc).__name__, said)
        return None
    if platform == "sqlite":
        kinds = {"table", "view"} if source.include_views else {"table"}
        names = {str(name) for kind, name, *_ in rows
                 if kind in kinds and not str(name).startswith("sqlite_")}
    else:
        relkinds = {"r", "p", "v", "m"} if source.include_views else {"r", "p"}
        names = {str(name) for kind, name, relkind, *_ in rows
                 if kind == "relation" and relkind in relkinds}
        scope = set(source.tables or ()) or None
        # with ``tables``, a relation outside them is outside the recipe's table_pattern:
        # its DDL does not change what DataHub's source emits (routines, which the pattern
        # does not filter, stay)
        rows = [row for row in rows if scope is None or row[0] == "routine" or row[1] in scope]
    if source.tables:
        names &= set(source.tables)
    text = json.dumps([list(r) for r in rows], default=str)
    return hashlib.sha256(text.encode()).hexdigest(), names


@register_source("sql")
class SqlDatabase:
    """The tables of one database (all of them, or the configured ``tables``)."""

    def __init__(self, config: SqlSource):
        self.config = config
        self.name = config.name
        self._naming: tuple[str | None, str | None] | None = None  # (database, schema)
        self._platform: str | None = None

    def _learn_naming(self, engine, inspector=None) -> None:
        """The database and schema DataHub's source puts in a table's name: the URL's
        database (as its postgres source takes it) and the configured schema, else the
        connection's default schema (``public``, ``main`` for SQLite, the database for
        MySQL)."""
        import sqlalchemy as sa

        if self._naming is not None:
            return
        schema = self.config.schema_name
        if schema is None:
            schema = (inspector or sa.inspect(engine)).default_schema_name
        database = engine.url.database
        self._naming = (str(database).strip('"') if database else None, schema)

    def naming(self) -> tuple[str | None, str | None]:
        """(database, schema) of this source's tables as DataHub names them: the schema is
        the configured one, else the connection's default (PostgreSQL's current_schema(),
        the user's own schema when one exists, else public). Connects once."""
        if self._naming is None:
            engine = _engine(self.config)
            try:
                self._learn_naming(engine)
            finally:
                engine.dispose()
        return self._naming or (None, None)

    @property
    def known_naming(self) -> tuple[str | None, str | None] | None:
        """``naming()`` when this reader has learned it (a crawl did), else None; never
        connects."""
        return self._naming

    def urn(self, relative: str) -> str:
        database, schema = self.naming()
        if self._platform is None:  # parsing the URL for every table was a twentieth of a re-crawl
            self._platform = _sql_platform_of(self.config)
        platform = self._platform
        return datahub_urn(platform, datahub_table_name(platform, database, schema, relative),
                           self.config)

    def list_datasets(self) -> list[str]:
        engine = _engine(self.config)
        try:
            return _table_names(self.config, engine)
        finally:
            engine.dispose()

    def discover(self, sample_rows: int, cache: CrawlCache | None,
                 pool: ReadPool | None = None) -> Iterator[DiscoveredDataset | Pending]:
        """Each table profiled and yielded in name order (views after tables, unless
        ``tables`` names them); with a ``pool``, a table's sample may be read and profiled
        by a worker over its own connection (a ``Pending`` is yielded then), a view's never
        (its lineage is read over this connection)."""
        import sqlalchemy as sa

        source = self.config
        location = _sql_location(source)
        platform = _sql_platform_of(source)
        try:
            engine = _engine(source)
        except Exception as exc:
            yield failed(source.name, platform, location, _sql_error(source, exc))
            return
        last: DiscoveredDataset | Pending | None = None  # the last table, read
        try:
            given = _GIVEN.get(source.name)
            if callable(given):  # DataHub's source still running (catalog.ingest._SourceApart)
                given = given()
            try:
                # a second pass over DataHub's output (given_tables): its tables, not a
                # listing of ours; the configured ``tables`` are read as configured, so a
                # missing one fails as it does on the other paths
                names = (_table_names(source, engine) if given is None
                         else list(source.tables or given.names))
                inspector = sa.inspect(engine)
                self._learn_naming(engine, inspector)
            except Exception as exc:
                yield failed(source.name, platform, location, _sql_error(source, exc))
                return
            if given is None:
                declared = _all_declared_columns(inspector, source)
                views = set(_view_names(inspector, source))
            else:
                declared, views = given.declared, set(given.views)
            database, schema = self._naming or (None, None)
            with engine.connect() as connection:
                counts = _RowCounts(connection, names, views, source.schema_name)
                for index, table_name in enumerate(names, start=1):
                    view = (partial(view_facts, inspector, connection, source, table_name,
                                    platform, database, schema) if table_name in views else None)
                    item = _discover_table(source, table_name, connection, inspector, platform,
                                           location, sample_rows, cache, declared, view, counts,
                                           pool)
                    if index < len(names):
                        yield item
                    else:
                        last = item  # handed on below, the connection closed
        except Exception as exc:  # the connection itself broke mid-crawl
            if last is not None:
                yield last
            yield failed(source.name, platform, location, _sql_error(source, exc))
            return
        finally:
            engine.dispose()
        # the last table is handed on once the connection is closed (what a dataset needs
        # later, its reader and a worker's result, does not use it): a generator closes it
        # only when asked for more, after the crawl catalogued that table
        if last is not None:
            yield last

    def load(self, dataset_id: str, relative: str) -> LoadedData:
        import sqlalchemy as sa

        source = self.config
        try:
            engine = _engine(source)
            try:
                inspector = sa.inspect(engine)
                self._learn_naming(engine, inspector)
                present = inspector.has_table(relative, schema=source.schema_name)
                if not present:
                    present = relative in inspector.get_view_names(schema=source.schema_name)
            finally:
                engine.dispose()
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"cannot reach source '{source.name}' ({_sql_location(source)}) to load "
                f"'{dataset_id}': {_sql_error(source, exc)}"
            ) from None
        if not present:
            raise missing_error(dataset_id, self)
        df = _read_table(source, relative)
        return LoadedData(df, _sql_platform_of(source), _sql_location(source), None)

    def describe_error(self, exc: BaseException) -> str:
        return _sql_error(self.config, exc)
