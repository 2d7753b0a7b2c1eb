"""DataHub ingestion done DataHub's way: recipes run through DataHub's own source plugins.

    result = ingest(config)                     # recipes generated from the run config
    result = ingest(config, recipe="x.yml")     # or a recipe the user wrote (YAML)

Each source of the run config becomes a recipe for DataHub's own source of that platform
(``postgres``, ``mysql``, ``sqlalchemy`` for SQLite and the rest, ``s3`` for folders and
s3:// prefixes, ``gcs`` for gs://). Secrets stay ``${VAR}`` references in the recipe (also in
the copy written next to the metadata) and are resolved from the environment only when the
recipe runs. The sink is DataHub's REST sink when ``DATAHUB_GMS_URL`` is set, else its file
sink, whose file is then loaded into the local DataHub Lite.

autokfp's own value goes on top through one transformer (``AutokfpAspects``, named in each
recipe's ``transformers``): semantic types and PII/sensitive/target tags on the fields,
schema-version facts and the dataset tags (pii, schema:breaking), and autokfp's bounded-sample
profile. Those come from autokfp's crawl of the same sources, which names datasets exactly as
DataHub's sources do (``test_urn_parity.py``), so both land on the same entities.

What stays custom, and why (the narrowest pieces):
- path specs for folders and prefixes: DataHub's path_spec refuses ``**``, so a recursive
  folder needs one include per depth; they are generated from what is there.
- profiles: DataHub's file profiling needs Spark (pydeequ) and its SQL profiling Great
  Expectations at scale; autokfp's streamed bounded sample is added instead.
- semantic types, PII tags and schema-evolution verdicts: no DataHub source infers them.
- the schema of files and objects: generated s3/gcs recipes turn DataHub's schema inference
  off (its setting for "another pipeline owns the schema") and the transformer adds the
  crawl's; the crawl reads every file anyway, and the inference read it again (18% of a
  first run). Same field paths (test_urn_parity.py).
- a gs:// source without HMAC keys: DataHub's gcs source reads GCS only through its S3 API
  with HMAC keys, so autokfp's crawl catalogs and publishes it (``crawl_only``).
- the tables a SQLite view reads: DataHub's sqlalchemy source misnames them in the view's
  lineage; the transformer renames them (``sqlalchemy_names``).
- SQL sources with a DDL token (SQLite on a file, PostgreSQL) under ``catalog.sql_pass:
  auto``, the default since session 23, and every SQL source with ``second``: autokfp's
  part is a second pass over what DataHub's source emitted (``_second_pass``): DataHub's source runs first, in a child of
  its own (into a spool; ``_SourceApart``), while the crawl reads the sources before it, the
  tables and their declared columns are taken from its SchemaMetadata (autokfp's own
  listing and reflection of the database do not run), autokfp samples each table for the
  profile, semantic types, PII/quality tags and schema-version verdicts, and DataHub's
  classification runs on the replayed schemas with autokfp's verdicts. The same catalog as
  the default (tested on SQLite and PostgreSQL). An unchanged re-run skips DataHub's
  source for SQLite and PostgreSQL (a token of their DDL, ``sql.ddl_version``); on other
  servers DataHub's source runs on every re-run (docs/catalog.md, "Issue 18, session 20",
  "session 21" and "session 22").
- files and objects stay autokfp's crawl's (the narrowest custom piece that is left): a
  folder's recipe needs its path specs per depth, made from a listing of the folder
  (``_path_specs``: DataHub's path_spec refuses ``**``), and DataHub's s3/gcs sources
  compute a file's schema only by inferring it from the whole file (its schema inference,
  18% of a first run as a second read of every file) and no profile, semantic type or
  row count at all, so a second pass over their output would read every file after
  DataHub's source read it; the crawl reads each file once, and its schema is the one
  added (same field paths as DataHub's, test_urn_parity.py).
- for the other SQL servers (MySQL, MariaDB, SQL Server, ...: no DDL token, so a second
  pass would run DataHub's source on every re-run; ``_sql_pass_choices``) and with
  ``catalog.sql_pass: beside``, autokfp's crawl runs before DataHub's sources, not as a
  second pass over what they emit.
  Why: an unchanged source's recipe is not run at all (``_unchanged_fingerprint``), and that
  needs every input's version (a file's size and mtime, an object's generation, a table's
  row count and declared columns) before DataHub's source would read it: DataHub's sources
  re-read every input on every run (their stateful ingestion only removes stale entities),
  so without the skip an unchanged re-run would cost DataHub's whole part of a first run.
  The transformer also tags each SchemaMetadata as it passes, so a second pass inside the
  stream would have to read and profile the dataset right then, from inside DataHub's
  pipeline, through an incremental form of the crawl (versions, ledger, index) that
  ``crawl_sources`` does not have. What the crawl reads per dataset is the bounded sample
  the profile, semantic types and PII tags need; its listing and a SQL table's declared
  columns are what it does beside DataHub's source (docs/catalog.md, session 13).
- on a first run of a folder or SQL source, DataHub's source runs beside the crawl, in a
  forked process (``_staged_sources``): its records wait in a spool and pass through the
  transformer and the sink once the crawl is done (``_replay``), as DataHub's pipeline would
  have passed them (the same output, tested); the machine's second core does DataHub's part.

Memory: nothing here holds a run's records or every dataset's aspects. The file sink streams
(``LinearFileSink``: written and loaded into Lite in batches), the transformer keeps the
URNs it passed on (``Emitted``), and autokfp's aspects are built per dataset when asked,
from the crawl's schemas spooled on disk (``ExtrasSpool``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from datahub.ingestion.api.sink import Sink, SinkReport
from datahub.ingestion.api.transform import Transformer
from datahub.ingestion.sink.file import FileSink, FileSinkConfig

from autokfp import lifeline, storage
from autokfp.catalog.datahub import (
    column_tags,
    dataset_facts,
    dataset_profile,
    dataset_urn,
    gms_settings,
    lite_path,
    load_into_lite,
    metadata_proposals,
    schema_metadata_aspect,
)
from autokfp.config import FolderSource, GcsSource, RunConfig, S3Source, SqlSource
from autokfp.errors import ConfigError, DataError
from autokfp.settings import Settings

log = logging.getLogger(__name__)

TRANSFORMER = "autokfp.catalog.ingest.AutokfpAspects"
FILE_SINK = "autokfp.catalog.ingest.LinearFileSink"
_MAX_DEPTH = 12


# --------------------------------------------------------------------------- recipes


def _sql_recipe(source: SqlSource,
                naming: tuple[str | None, str | None] | None = None) -> dict[str, Any]:
    from autokfp.catalog.sources.sql import PG_QUALIFIED_SEARCH_PATH, sql_platform, sql_url
    from autokfp.config import whole_env_ref

    # unexpanded: ${VAR} stays a reference; a url wholly ${VAR} is read for its platform,
    # host and database, and the recipe connects through the reference (sqlalchemy_uri)
    url = sql_url(source.url, source.name)
    platform = sql_platform(source.url, source.name)
    common: dict[str, Any] = {"env": source.env, "include_views": source.include_views,
                              "classification": _CLASSIFICATION}
    if source.platform_instance:
        common["platform_instance"] = source.platform_instance
    if platform in ("postgres", "mysql", "mariadb", "mssql"):
        config = {**common, "host_port": f"{url.host or 'localhost'}:{url.port or _PORTS[platform]}",
                  "database": url.database}
        if whole_env_ref(source.url) is not None:
            # DataHub's SQL sources connect through sqlalchemy_uri over the other fields;
            # host_port and database still name the datasets. The user and password stay
            # in the variable, resolved when the recipe runs
            config["sqlalchemy_uri"] = source.url
        else:
            config["username"] = url.username
            if url.password is not None:
                config["password"] = str(url.password)
        kind = platform
    else:
        config = {**common, "platform": platform, "connect_uri": source.url}
        kind = "sqlalchemy"
    schema = source.schema_name
    if platform == "postgres":
        # a source without a schema is the connection's default schema, as autokfp's crawl
        # takes it: PostgreSQL's current_schema(), the user's own schema ("$user", first on
        # the search path) when it exists, else public
        schema = schema or _default_schema(source, naming)
        config["schema_pattern"] = {"allow": [f"^{_escape(schema)}$"]}
        # Why: PostgreSQL prints a view's definition for the reading session, leaving the
        # tables of its search path ("$user", public) unqualified, and DataHub's postgres
        # source parses it with the view's own schema as the default: a view in `sales`
        # reading public.customers got lineage to crm.sales.customers, a dataset that does
        # not exist (and its query entity named it too). With only pg_catalog on the search
        # path every other name is printed schema-qualified, so DataHub's own parser names
        # the real tables; autokfp's crawl reads definitions the same way (sources/sql.py).
        search_path = f"-c search_path={PG_QUALIFIED_SEARCH_PATH}"
        if "sqlalchemy_uri" in config and url.get_driver_name() == "pg8000":
            # the user's driver connects (their URL): pg8000 takes the server's startup
            # parameters apart (libpq's 'options' is psycopg2's, DataHub's default driver)
            config["options"] = {"connect_args": {"startup_params": {"options": search_path}}}
        else:
            config["options"] = {"connect_args": {"options": search_path}}
    elif schema:
        config["schema_pattern"] = {"allow": [f"^{_escape(schema)}$"]}
    if source.tables:
        config["table_pattern"] = {"allow": [f"(^|\\.){_escape(t)}$" for t in source.tables]}
    return {"type": kind, "config": config}


# DataHub's classification framework with autokfp's classifier (see catalog/classify.py for
# why not datahub-classify); one worker: DataHub would spawn a process pool per table
_CLASSIFIER = "autokfp.catalog.classify.AutokfpClassifier"
_CLASSIFICATION = {"enabled": True, "max_workers": 1, "classifiers": [
    {"type": _CLASSIFIER, "config": {}}]}

_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def _default_schema(source: SqlSource,
                    naming: tuple[str | None, str | None] | None = None) -> str:
    """The schema a PostgreSQL source without one reads (see ``SqlDatabase.naming``): the
    one autokfp's crawl learned from the connection (``naming``, as ``ingest`` passes it),
    else asked of the database (one connection).

    Raises:
        DataError: the database could not be asked (the reason, secrets masked) or names no
            current schema. A recipe for ``public`` instead would read another schema than
            the crawl, or nothing, without a word (reviewer's note on 7a85894).
    """
    from autokfp.catalog.sources.sql import SqlDatabase, _sql_error

    if naming is None:
        try:
            naming = SqlDatabase(source).naming()
        except Exception as exc:
            raise DataError(
                f"cannot tell which schema SQL source '{source.name}' reads: it names none, "
                f"and asking the database for its default schema failed "
                f"({_sql_error(source, exc)}); set 'schema:' on the source") from None
    if not naming[1]:
        raise DataError(
            f"SQL source '{source.name}' names no schema and the database reports no current "
            "schema (no schema on its search_path exists); set 'schema:' on the source")
    return naming[1]


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def _depths(relatives: Iterable[str]) -> list[int]:
    return sorted({min(r.count("/"), _MAX_DEPTH) for r in relatives})


def _path_specs(root: str, includes: list[str], relatives: Iterable[str],
                excludes: list[str]) -> list[dict[str, Any]]:
    """One path spec per include pattern and folder depth present under ``root``.

    Why custom: DataHub's path_spec refuses ``**``, while an autokfp folder source is
    recursive; the depths that hold files are listed instead.

    Every spec sets ``include_hidden_folders``: without it DataHub drops every path with a
    part that starts with ``.`` or ``_`` anywhere, the root's own included, so a source
    under ``~/.cache/...`` or ``/mnt/_shared/...`` was cataloged as nothing (no error) and
    a ``_staging/`` folder below the root lost its files, which autokfp's crawl reads. The
    include's ``*`` (wcmatch, no DOTGLOB) matches no ``.`` part below the root anyway: with
    the flag DataHub takes exactly what the crawl takes (hidden ``.`` parts skipped).
    """
    specs = []
    for depth in _depths(relatives) or [0]:
        middle = "*/" * depth
        for pattern in includes:
            spec: dict[str, Any] = {"include": f"{root.rstrip('/')}/{middle}{pattern}",
                                    "include_hidden_folders": True}
            if excludes:
                spec["exclude"] = [f"**/{p}" for p in excludes]
            specs.append(spec)
    return specs


def _file_recipe(source: FolderSource | S3Source | GcsSource,
                 relatives: Iterable[str] | None = None) -> dict[str, Any]:
    if relatives is None:  # else what the crawl listed: no second listing of a bucket
        from autokfp.catalog.sources import open_source

        relatives = open_source(source).list_datasets()
    # Why not DataHub's schema inference: autokfp's crawl reads every file anyway (its
    # profile, semantic types and PII tags need the values) and its schema has the same field
    # paths (test_urn_parity.py); DataHub's inference read each file a second time and cast
    # every value to every tableschema type, 18% of a profiled first run and the largest
    # single cost of DataHub's part. ``enable_schema_inference: false`` is the s3/gcs
    # sources' setting for "another pipeline owns the schema": they still list, name and
    # describe every file (properties, containers, browse paths, stale-entity removal), and
    # autokfp's transformer adds the crawl's SchemaMetadata (``extras_for``).
    common: dict[str, Any] = {"env": source.env, "enable_schema_inference": False}
    if source.platform_instance:
        common["platform_instance"] = source.platform_instance
    if isinstance(source, FolderSource):
        root = os.path.abspath(source.path)
        return {"type": "s3", "config": {**common, "path_specs": _path_specs(
            root, source.include, relatives, source.exclude)}}
    if isinstance(source, S3Source):
        root = "s3://" + source.uri.split("://", 1)[1]
        aws: dict[str, Any] = {"aws_region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        if os.environ.get("AWS_ENDPOINT_URL"):
            aws["aws_endpoint_url"] = "${AWS_ENDPOINT_URL}"
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            aws.update(aws_access_key_id="${AWS_ACCESS_KEY_ID}",
                       aws_secret_access_key="${AWS_SECRET_ACCESS_KEY}")
        return {"type": "s3", "config": {**common, "aws_config": aws, "path_specs": _path_specs(
            root, source.include, relatives, source.exclude)}}
    # DataHub's gcs source reads through GCS's S3-compatible API with HMAC keys
    return {"type": "gcs", "config": {**common, "credential": {
        "hmac_access_id": "${GCS_HMAC_ACCESS_ID}",
        "hmac_access_secret": "${GCS_HMAC_ACCESS_SECRET}"},
        "path_specs": _path_specs(source.uri, source.include, relatives, source.exclude)}}


def crawl_only(source: Any) -> str | None:
    """Why DataHub's source plugin cannot catalog ``source`` here (autokfp's crawl catalogs
    and publishes it instead, ``IngestResult.crawled``), or None when it can.

    The narrow fallback, and why: DataHub's ``gcs`` source reads GCS only through its
    S3-compatible XML API with HMAC keys; a pod with workload identity, or a user with
    application-default credentials, has none, while autokfp's crawl reads the bucket with
    the GCS client's own credentials. Without the keys the recipe cannot even be resolved
    (its ``${GCS_HMAC_ACCESS_ID}`` is unbound), so one gs:// source failed the whole run.
    """
    if isinstance(source, GcsSource) and not (os.environ.get("GCS_HMAC_ACCESS_ID")
                                              and os.environ.get("GCS_HMAC_ACCESS_SECRET")):
        return ("DataHub's gcs source reads GCS only through its S3-compatible API with HMAC "
                "keys (GCS_HMAC_ACCESS_ID, GCS_HMAC_ACCESS_SECRET), which are not set: "
                "autokfp's crawl catalogued it with the GCS client's own credentials")
    return None


def recipe_source(source: Any, report: Any = None,
                  relatives: Iterable[str] | None = None) -> dict[str, Any]:
    """The ``source`` section of DataHub's stock recipe for one autokfp source.

    With ``report`` (autokfp's crawl of the source), what the crawl learned is used: a SQL
    source's default schema and a folder's or bucket's files, so nothing is asked twice.

    Raises:
        DataError: a PostgreSQL source without a schema whose default schema cannot be told
            (see ``_default_schema``).
    """
    if isinstance(source, SqlSource):
        return _sql_recipe(source, report.naming.get(source.name) if report else None)
    if isinstance(source, (FolderSource, S3Source, GcsSource)):
        if relatives is None and report is not None:
            relatives = (d.dataset_id.split("/", 1)[1] for d in report.found
                         if d.source_name == source.name and not d.source_failed)
        return _file_recipe(source, relatives)
    raise ConfigError(f"no DataHub recipe for source kind {type(source).__name__}")


def recipe_sink(metadata_path: str) -> dict[str, Any]:
    """DataHub's REST sink when a GMS is configured, else its file sink at ``metadata_path``."""
    if gms_settings() is not None:
        return {"type": "datahub-rest", "config": {"server": "${DATAHUB_GMS_URL}",
                                                   "token": "${DATAHUB_GMS_TOKEN}"}}
    return {"type": "file", "config": {"filename": metadata_path}}


def stateful_ingestion(state_file: str | None) -> dict[str, Any]:
    """DataHub's stateful ingestion for a generated recipe: entities a run no longer sees
    are soft-deleted (``Status(removed=True)``) by DataHub's own stale-metadata removal.

    With a GMS, DataHub keeps the checkpoint there (its ``datahub`` state provider); without
    one, in ``state_file`` (its ``file`` state provider), which ``ingest`` keeps in the
    catalog next to the metadata files.
    """
    config: dict[str, Any] = {"enabled": True, "remove_stale_metadata": True}
    if state_file is not None:
        config["state_provider"] = {"type": "file", "config": {"filename": state_file}}
    return config


def recipes_for(config: RunConfig, metadata_dir: str,
                report: Any = None) -> list[dict[str, Any]]:
    """One recipe per source of ``config`` (sink, stateful ingestion and, when run by
    ``ingest``, autokfp's transformer included); ``report``: see ``recipe_source``."""
    return [recipe_for(config, source, metadata_dir, report) for source in config.sources]


def recipe_for(config: RunConfig, source: Any, metadata_dir: str,
               report: Any = None, relatives: Iterable[str] | None = None) -> dict[str, Any]:
    """The generated recipe of one source of ``config`` (see ``recipes_for``); ``relatives``:
    the files the crawl found in a folder or bucket, else taken from ``report``."""
    recipe: dict[str, Any] = {
        "pipeline_name": f"autokfp-{config.name}-{source.name}",
        "source": recipe_source(source, report, relatives),
        "sink": recipe_sink(os.path.join(metadata_dir, f"{source.name}.json"))}
    local_state = gms_settings() is None
    state = os.path.join(metadata_dir, f"{source.name}.state.json") if local_state else None
    recipe["source"]["config"]["stateful_ingestion"] = stateful_ingestion(state)
    return recipe


def _state_file(recipe: dict[str, Any]) -> str | None:
    """The local checkpoint file of a recipe's ``file`` state provider, if it has one."""
    state = recipe.get("source", {}).get("config", {}).get("stateful_ingestion") or {}
    provider = state.get("state_provider") or {}
    if not state.get("enabled") or provider.get("type") != "file":
        return None
    return (provider.get("config") or {}).get("filename")


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """A user's recipe (YAML); ``${VAR}`` references are kept until it runs.

    Raises:
        ConfigError: the file is missing, not YAML, or has no ``source``.
    """
    import yaml

    from autokfp import storage
    from autokfp.errors import StorageError

    try:
        recipe = yaml.safe_load(storage.read_text(os.fspath(path)))
    except (StorageError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read DataHub recipe '{path}': {exc}") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("source"), dict):
        raise ConfigError(f"DataHub recipe '{path}' needs a 'source:' section with a type "
                          "and config (see DataHub's ingestion recipes)")
    return recipe


# --------------------------------------------------------------------------- transformer


def extras_for(schemas: Iterable[Any], reused: Iterable[str] = (),
               with_schema: Iterable[str] = (),
               stamp: int | None = None) -> dict[str, dict[str, Any]]:
    """What autokfp adds per dataset URN: field tags, dataset tags, properties, profile, and
    for the datasets in ``with_schema`` (dataset ids of files and objects, whose generated
    recipe runs DataHub's source without its schema inference, see ``_file_recipe``) the
    crawl's SchemaMetadata.

    Datasets in ``reused`` (dataset ids the crawl did not read again: unchanged) get no new
    profile, so an unchanged re-run adds no profile to the catalog. The profile and the
    schema are functions that build their aspect (the transformer adds them at the end of
    the stream, once). The profile, the schema and a view's lineage are DataHub aspect objects, handed to the transformer in the same process: a
    round trip through JSON (``to_obj`` here, ``from_obj`` in the transformer) was 10% of a
    profiled first run. ``extras_json`` makes the JSON file a recipe of one's own can name.
    """
    unchanged, schemas_too = set(reused), set(with_schema)
    out: dict[str, dict[str, Any]] = {}
    stamp = int(time.time() * 1000) if stamp is None else stamp
    for schema in schemas:
        # the aspects metadata_proposals would make, only those used
        properties, tags = dataset_facts(schema)
        out[dataset_urn(schema)] = {
            "fields": {c.name: column_tags(c) for c in schema.columns},
            "descriptions": {c.name: f"{c.semantic_type} column" for c in schema.columns},
            "properties": properties,
            **_closing(schema, tags, schema.dataset_id in unchanged,
                       schema.dataset_id in schemas_too, stamp),
        }
    return out


def _closing(schema: Any, tags: list[str], reused: bool, with_schema: bool,
             stamp: int) -> dict[str, Any]:
    """The part of ``extras_for``'s aspects of a dataset that the transformer adds at the end
    of the stream: its tags, profile, schema and a view's lineage."""
    lineage = None
    if schema.view:  # a view's lineage, added only where DataHub's source emitted none
        lineage = next((p.aspect for p in metadata_proposals(schema, timestamp_millis=stamp)
                        if p.aspectName == "upstreamLineage"), None)
    return {
        "tags": tags,
        # built when the transformer adds it, at the end of the stream: built here, it was
        # built again there for every dataset gone from ExtrasSpool's recent ones
        "profile": None if reused else partial(dataset_profile, schema, stamp),
        "lineage": lineage,
        # built when the transformer needs it: an unchanged re-run skips the recipe
        "schema": partial(schema_metadata_aspect, schema) if with_schema else None,
    }


class ExtrasSpool(Mapping[str, dict[str, Any]]):
    """``extras_for``'s result for every dataset of a crawl, built when the transformer asks
    for a dataset, from the dataset's schema spooled on disk: its memory is a few hundred
    datasets' aspects whatever the count (``extras_for`` of all of them held every
    profile at once, and ``ingest`` every schema of the crawl in a list).

    Why on disk and not the crawl's ledger: the ledger's ``found`` is read in order, and the
    transformer asks by URN in the order DataHub's source emits. A dataset's aspects are
    built again if asked after leaving the recent ones (cheaper than keeping them: a
    pickled profile reads back slower than it is built).
    """

    RECENT = 512

    def __init__(self, folder: str, stamp: int | None = None):
        import sqlite3

        self._db = sqlite3.connect(os.path.join(folder, "extras.db"), check_same_thread=False)
        self._db.execute("CREATE TABLE spool (urn TEXT PRIMARY KEY, value BLOB)")
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._stamp = int(time.time() * 1000) if stamp is None else stamp
        self.renames: dict[str, str] = {}  # see sqlalchemy_names: wrong URN -> the dataset's
        self._names: dict[str, list[str]] = {}
        # the dataset tags of every dataset built (a few URNs, most often none), for closing
        self._tags: dict[str, tuple[str, ...]] = {}

    def add(self, schema: Any, reused: bool = False, with_schema: bool = False) -> None:
        """Spool one dataset's schema (see ``extras_for`` for ``reused``, ``with_schema``)."""
        import pickle

        self._db.execute("INSERT OR REPLACE INTO spool VALUES (?, ?)", (
            dataset_urn(schema), pickle.dumps((schema, reused, with_schema), protocol=5)))

    def name(self, schema: Any) -> None:
        """Only the dataset's URN (``in`` holds; its aspects are spooled by ``add`` before
        they are asked for: see ``_source_passes``'s deferred sources)."""
        self._db.execute("INSERT OR IGNORE INTO spool VALUES (?, NULL)", (dataset_urn(schema),))

    def rename(self, wrong: str, urn: str) -> None:
        """DataHub's source names dataset ``urn`` ``wrong`` (see ``sqlalchemy_names``)."""
        self.renames[wrong] = urn
        self._names[urn] = [wrong]
        if urn in self._recent:
            self._recent[urn]["datahub_names"] = [wrong]

    def _spooled(self, urn: str) -> tuple[Any, bool, bool]:
        import pickle

        row = self._db.execute("SELECT value FROM spool WHERE urn = ?", (urn,)).fetchone()
        if row is None:
            raise KeyError(urn)
        spooled: tuple[Any, bool, bool] = pickle.loads(row[0])
        return spooled

    def __getitem__(self, urn: str) -> dict[str, Any]:
        extra = self._recent.get(urn)
        if extra is not None:
            self._recent.move_to_end(urn)
            return extra
        schema, reused, with_schema = self._spooled(urn)
        ids = [schema.dataset_id]
        extra = extras_for([schema], ids if reused else (), ids if with_schema else (),
                           self._stamp)[urn]
        if urn in self._names:
            extra["datahub_names"] = self._names[urn]
        self._tags[urn] = tuple(extra["tags"])
        self._recent[urn] = extra
        if len(self._recent) > self.RECENT:
            self._recent.popitem(last=False)
        return extra

    def closing(self, urn: str) -> dict[str, Any]:
        """What the transformer adds for ``urn`` at the end of the stream (``_closing``'s
        part of its aspects: tags, profile, schema, a view's lineage), the same as
        ``self[urn]``'s.

        Why: the transformer asks for every dataset it saw again at the end, in URN order;
        the recent ones are then the last 512 of the stream, so every dataset of a recipe of
        more than 512 had all its aspects built again (its properties, field tags and
        descriptions, a third of the transformer's time in a profiled 2,000-dataset first
        run), where only these are used. A dataset built before keeps its tags here."""
        extra = self._recent.get(urn)
        tags = self._tags.get(urn)
        if extra is not None or tags is None:
            return extra if extra is not None else self[urn]
        schema, reused, with_schema = self._spooled(urn)
        return _closing(schema, list(tags), reused, with_schema, self._stamp)

    def __contains__(self, urn: object) -> bool:
        return urn in self._recent or self._db.execute(
            "SELECT 1 FROM spool WHERE urn = ?", (urn,)).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._db.execute("SELECT urn FROM spool ORDER BY rowid"))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def sqlalchemy_names(source: SqlSource, items: Iterable[Any],
                     naming: tuple[str | None, str | None] | None) -> dict[str, str]:
    """{the URN DataHub's ``sqlalchemy`` source gives a table in a view's lineage: the URN
    the table has} for the tables of ``source`` autokfp's crawl read.

    Why: that source (SQLite, and the platforms without a source of their own) cannot split
    a view's two-part name (``main.v``: "Failed to get default db and schema names for
    view"), so its SQL parser has no default schema and names an unqualified ``customers``
    as the dataset ``customers`` (``edge.customers`` with a platform instance), which does
    not exist: the table is ``main.customers``. No recipe option changes it; the transformer
    renames them in the view's lineage and its query's subjects.
    """
    from datahub.emitter.mce_builder import make_dataset_urn_with_platform_instance

    from autokfp.catalog.sources.sql import sql_platform

    platform = sql_platform(source.url, source.name)
    if platform in _PORTS or naming is None or not naming[1]:
        return {}  # DataHub's own source for the platform names them right (tested)
    out = {}
    for d in items:
        if not d.ok or d.source_failed:
            continue
        table = d.dataset_id.split("/", 1)[1]
        wrong = make_dataset_urn_with_platform_instance(
            platform, table, source.platform_instance, source.env)
        if wrong != dataset_urn(d.schema):
            out[wrong] = dataset_urn(d.schema)
    return out


def extras_json(extras: Mapping[str, dict[str, Any]]) -> str:
    """``extras_for``'s result as the JSON file ``AutokfpAspects``'s ``config.extras`` names."""
    return json.dumps({urn: _jsonable(extra) for urn, extra in extras.items()})


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in extra.items():
        if callable(value):  # an aspect built on demand (the schema, see extras_for)
            value = value()
        out[key] = value.to_obj() if hasattr(value, "to_obj") else value
    return out


@dataclass
class Emitted:
    """The datasets a recipe's run passed on to its sink, in order (URNs only: a run of
    100,000 datasets holds their names, not their records), and those it soft-deleted."""

    datasets: dict[str, None] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    def add(self, record: Any) -> None:
        from datahub.emitter.mcp import MetadataChangeProposalWrapper
        from datahub.metadata.schema_classes import MetadataChangeEventClass, StatusClass

        aspects: list[Any]
        if isinstance(record, MetadataChangeEventClass):
            urn, aspects = record.proposedSnapshot.urn, list(record.proposedSnapshot.aspects)
        elif isinstance(record, MetadataChangeProposalWrapper) and record.entityUrn:
            if record.entityType != "dataset":
                return
            urn, aspects = record.entityUrn, [record.aspect]
        else:  # a PATCH proposal (the s3 source's lastModified) names no new dataset
            return
        if not urn.startswith("urn:li:dataset:"):
            return
        self.datasets[urn] = None
        if any(isinstance(a, StatusClass) and a.removed for a in aspects):
            self.removed.add(urn)

    def live(self) -> list[str]:
        return [u for u in self.datasets if u not in self.removed]


class AutokfpAspects(Transformer):
    """A DataHub transformer adding autokfp's aspects to what DataHub's source emits.

    Recipe: ``transformers: [{type: autokfp.catalog.ingest.AutokfpAspects, config: {extras:
    <JSON file of extras_json>}}]``; ``ingest`` names its run instead (``config.run``: the
    extras it prepared in this process, no file). It tags schema fields (semantic:<type>, pii, pii:<kind>,
    sensitive, target) and fills empty field descriptions, merges autokfp's custom
    properties (schema version, verdict, fingerprint, ...) into DatasetProperties, and at the
    end of the stream adds GlobalTags and autokfp's DatasetProfile for every dataset it has
    extras for, and a view's UpstreamLineage (PostgreSQL's pg_depend) where DataHub's source
    emitted none. Datasets without extras pass through untouched.

    With ``config.terms`` (a JSON file kept between runs), a field's glossary terms that
    are the same as in the last run keep that run's audit time: DataHub's classification
    stamps them with the time of each run, which made every unchanged re-run a new
    SchemaMetadata version.
    """

    # config.collect -> the datasets this run passed on (read by ingest instead of holding
    # every record, or parsing the file sink's output back)
    emitted: dict[str, Emitted] = {}
    # config.run -> the extras ingest prepared for it (aspects as objects, see extras_for)
    prepared: dict[str, Mapping[str, dict[str, Any]]] = {}

    def __init__(self, extras: Mapping[str, dict[str, Any]], terms_path: str | None = None,
                 collect: str | None = None):
        self.extras = extras
        self.seen: set[str] = set()
        # DataHub's pipeline calls transform once per work unit, then once with EndOfStream:
        # what the stream held is kept here, not in transform's locals
        self.tagged: set[str] = set()  # datasets whose GlobalTags DataHub's source emitted
        self.lineaged: set[str] = set()  # datasets DataHub's source gave an UpstreamLineage
        self.schemaed: set[str] = set()  # datasets DataHub's source gave a SchemaMetadata
        self.terms_path = terms_path
        self.terms: dict[str, dict[str, list[Any]]] = {}
        if terms_path and Path(terms_path).exists():
            self.terms = json.loads(Path(terms_path).read_text())
        self.passed: Emitted | None = None
        if collect:
            self.passed = AutokfpAspects.emitted.setdefault(collect, Emitted())
        # the names DataHub's source gave datasets that are these (see sqlalchemy_names)
        self.renames = extras.renames if isinstance(extras, ExtrasSpool) else {
            wrong: urn for urn, extra in extras.items() for wrong in extra.get("datahub_names")
            or ()}

    @classmethod
    def create(cls, config_dict: dict, ctx: Any) -> AutokfpAspects:
        run = config_dict.get("run")
        if run is not None:
            if run not in cls.prepared:
                raise ConfigError(f"the autokfp transformer's run '{run}' is not one of this "
                                  "process's ingest() runs; give config.extras (a JSON file)")
            return cls(cls.prepared[run], config_dict.get("terms"), run)
        path = config_dict.get("extras")
        if not path:
            raise ConfigError("the autokfp transformer needs config.extras (a JSON file)")
        return cls(json.loads(Path(path).read_text()), config_dict.get("terms"),
                   config_dict.get("collect"))

    def _pass_on(self, envelope: Any) -> Any:
        """The envelope with its proposal as autokfp's ``Proposal``: the sink's serialisation
        (and DataHub Lite's, of the same object) then runs once and without avrogen's
        validation pass, a third of their cost, with the same output (tested)."""
        from datahub.emitter.mcp import MetadataChangeProposalWrapper

        if isinstance(envelope.record, MetadataChangeProposalWrapper):
            envelope.record = _cached(envelope.record)
        if self.passed is not None:
            self.passed.add(envelope.record)
        return envelope

    def _steady_terms(self, urn: str, aspect: Any) -> None:
        """Keep the last run's audit time on glossary terms that did not change."""
        known = self.terms.setdefault(urn, {})
        for schema_field in aspect.fields:
            terms = schema_field.glossaryTerms
            if terms is None or terms.auditStamp is None:
                known.pop(schema_field.fieldPath, None)
                continue
            names = sorted(t.urn for t in terms.terms)
            before = known.get(schema_field.fieldPath)
            if before is not None and before[0] == names:
                terms.auditStamp.time = int(before[1])
            known[schema_field.fieldPath] = [names, terms.auditStamp.time]

    def _renamed(self, urn: str) -> str:
        """``urn`` (a dataset or a field of one) with the dataset DataHub's source misnamed
        renamed to the dataset it is."""
        if urn in self.renames:
            return self.renames[urn]
        if urn.startswith("urn:li:schemaField:(") and self.renames:
            from datahub.metadata.urns import SchemaFieldUrn

            try:
                parsed = SchemaFieldUrn.from_string(urn)
            except Exception:  # noqa: BLE001 - not ours to judge: kept as DataHub wrote it
                return urn
            parent = self.renames.get(str(parsed.parent))
            if parent is not None:
                return str(SchemaFieldUrn(parent, parsed.field_path))
        return urn

    def _rename_lineage(self, urn: str, aspect: Any) -> None:
        """Correct the datasets a view's lineage (and its query's subjects) names, where
        DataHub's source named tables that do not exist (see ``sqlalchemy_names``).

        Its column lineage is then taken from autokfp's crawl where that has one: DataHub's
        parser looked the tables' columns up under the wrong names, so an unqualified column
        (``total`` of ``orders o JOIN customers c``) was left out; the crawl ran the same
        parser (``sqlglot_lineage``) with the tables' real names and columns."""
        from datahub.metadata.schema_classes import QuerySubjectsClass, UpstreamLineageClass

        if not self.renames:
            return
        if isinstance(aspect, UpstreamLineageClass):
            before = [u.dataset for u in aspect.upstreams]
            for upstream in aspect.upstreams:
                upstream.dataset = self._renamed(upstream.dataset)
            for fine in aspect.fineGrainedLineages or []:
                fine.upstreams = [self._renamed(u) for u in fine.upstreams or []] or None
                fine.downstreams = [self._renamed(d) for d in fine.downstreams or []] or None
            ours = (self.extras.get(urn) or {}).get("lineage")
            if isinstance(ours, dict):
                ours = UpstreamLineageClass.from_obj(ours)
            if before != [u.dataset for u in aspect.upstreams] and ours is not None \
                    and ours.fineGrainedLineages:
                aspect.fineGrainedLineages = ours.fineGrainedLineages
        elif isinstance(aspect, QuerySubjectsClass):
            for subject in aspect.subjects:
                subject.entity = self._renamed(subject.entity)

    def _aspect(self, urn: str, aspect: Any) -> None:
        from datahub.metadata.schema_classes import (
            DatasetPropertiesClass,
            GlobalTagsClass,
            SchemaMetadataClass,
            TagAssociationClass,
        )

        if isinstance(aspect, SchemaMetadataClass):
            self._steady_terms(urn, aspect)
            self.schemaed.add(urn)
        extra = self.extras.get(urn)
        if extra is None:
            return
        self.seen.add(urn)
        if isinstance(aspect, SchemaMetadataClass):
            for schema_field in aspect.fields:
                tags = extra["fields"].get(schema_field.fieldPath)
                if tags is None:
                    continue
                have = list(schema_field.globalTags.tags) if schema_field.globalTags else []
                names = {t.tag for t in have}
                from datahub.emitter.mce_builder import make_tag_urn

                have += [TagAssociationClass(tag=make_tag_urn(t)) for t in tags
                         if make_tag_urn(t) not in names]
                schema_field.globalTags = GlobalTagsClass(tags=have)
                if not schema_field.description:
                    schema_field.description = extra["descriptions"].get(schema_field.fieldPath)
        elif isinstance(aspect, DatasetPropertiesClass):
            aspect.customProperties = {**extra["properties"], **(aspect.customProperties or {})}

    def transform(self, record_envelopes: Iterable[Any]) -> Iterable[Any]:
        from datahub.emitter.mcp import MetadataChangeProposalWrapper
        from datahub.ingestion.api.common import EndOfStream, RecordEnvelope
        from datahub.metadata.schema_classes import (
            DatasetProfileClass,
            GlobalTagsClass,
            MetadataChangeEventClass,
            SchemaMetadataClass,
            TagAssociationClass,
            UpstreamLineageClass,
        )

        tagged, lineaged = self.tagged, self.lineaged
        for envelope in record_envelopes:
            record = envelope.record
            if isinstance(record, MetadataChangeEventClass):
                snapshot = record.proposedSnapshot
                for aspect in snapshot.aspects:
                    self._aspect(snapshot.urn, aspect)
            elif isinstance(record, MetadataChangeProposalWrapper) and record.entityUrn:
                self._rename_lineage(record.entityUrn, record.aspect)
                self._aspect(record.entityUrn, record.aspect)
                if isinstance(record.aspect, UpstreamLineageClass):
                    lineaged.add(record.entityUrn)
                if isinstance(record.aspect, GlobalTagsClass) and record.entityUrn in self.extras:
                    have = {t.tag for t in record.aspect.tags}
                    record.aspect.tags += [TagAssociationClass(tag=t) for t in
                                           self.extras[record.entityUrn]["tags"] if t not in have]
                    tagged.add(record.entityUrn)
            if isinstance(record, EndOfStream):
                if self.terms_path:
                    Path(self.terms_path).write_text(json.dumps(self.terms))
                closing = getattr(self.extras, "closing", self.extras.__getitem__)
                for urn in sorted(self.seen):
                    extra = closing(urn)
                    extra_aspects: list[Any] = []
                    # the crawl's schema of a file whose recipe ran DataHub's source without
                    # its schema inference (see _file_recipe)
                    schema = extra.get("schema")
                    if callable(schema):  # built on demand (see extras_for)
                        schema = schema()
                    if isinstance(schema, dict):  # from a JSON file (config.extras)
                        schema = SchemaMetadataClass.from_obj(schema)
                    if schema is not None and urn not in self.schemaed:
                        extra_aspects.append(schema)
                    profile = extra.get("profile")
                    if callable(profile):  # built on demand (see extras_for)
                        profile = profile()
                    if isinstance(profile, dict):  # from a JSON file (config.extras)
                        profile = DatasetProfileClass.from_obj(profile)
                    if profile is not None:
                        extra_aspects.append(profile)
                    if urn not in tagged and extra["tags"]:
                        extra_aspects.append(GlobalTagsClass(
                            tags=[TagAssociationClass(tag=t) for t in extra["tags"]]))
                    # Why: DataHub's postgres source emits no lineage at all for a view its
                    # SQL parser cannot read (its pg_depend fallback is never reached in
                    # acryl-datahub 1.7); autokfp's crawl has PostgreSQL's own record of
                    # the tables it reads (pg_depend)
                    lineage = extra.get("lineage")
                    if isinstance(lineage, dict):
                        lineage = UpstreamLineageClass.from_obj(lineage)
                    if urn not in lineaged and lineage is not None:
                        extra_aspects.append(lineage)
                    for aspect in extra_aspects:
                        proposal = MetadataChangeProposalWrapper(entityUrn=urn, aspect=aspect)
                        yield self._pass_on(RecordEnvelope(proposal, metadata={
                            "workunit_id": f"autokfp-{urn}-{proposal.aspectName}"}))
                yield envelope
                continue
            yield self._pass_on(envelope)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- running


@dataclass
class IngestResult:
    """What one ingestion run did."""

    recipes: list[dict[str, Any]] = field(default_factory=list)  # as run, ${VAR}s unresolved
    datasets: list[str] = field(default_factory=list)  # dataset URNs DataHub's sources emitted
    # dataset URNs DataHub's stateful ingestion soft-deleted (no longer seen in the source)
    removed: list[str] = field(default_factory=list)
    # pipelines not run again: nothing in their source changed since their last good run
    skipped: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)  # of those, the ones autokfp added to
    # sources whose recipe was not run: autokfp's crawl could not read them (source -> error),
    # so DataHub's source would fail on them too; the run goes on with the others, as a crawl
    failed: dict[str, str] = field(default_factory=dict)
    # sources DataHub's plugin cannot read here, catalogued and published by autokfp's crawl
    # instead (source -> why: see crawl_only)
    crawled: dict[str, str] = field(default_factory=dict)
    # recipes whose DataHub source emitted fewer datasets than autokfp's crawl read in that
    # source (pipeline -> what is missing and what to do)
    missed: dict[str, str] = field(default_factory=dict)
    # sources whose DataHub source ran beside the crawl in a child that made no progress
    # (source -> what happened): the child was stopped and the recipe ran in this process
    fallbacks: dict[str, str] = field(default_factory=dict)
    # how each SQL source was catalogued (``catalog.sql_pass``; source -> "second: why" or
    # "beside: why"): ``auto`` decides per source (``_sql_pass_choices``)
    sql_pass: dict[str, str] = field(default_factory=dict)
    metadata_files: list[str] = field(default_factory=list)
    lite_written: int = 0
    gms_url: str | None = None
    report: Any = field(default=None, repr=False)  # autokfp's crawl (schemas, versions)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, report=None))  # not a deep copy of the whole crawl
        out.pop("report", None)
        return out


def _as_run(recipe: dict[str, Any], extras: str | Mapping[str, Any] | None,
            terms_path: str | None) -> dict[str, Any]:
    """A copy of ``recipe`` naming autokfp's transformer when ``extras`` is given (what
    ``run_recipe`` runs and returns, ``${VAR}``s unresolved)."""
    recipe = json.loads(json.dumps(recipe))
    if extras is not None:
        recipe.setdefault("transformers", [])
        transformer: dict[str, Any] = {}
        if isinstance(extras, str):
            transformer["extras"] = extras
        if terms_path:
            transformer["terms"] = terms_path
        recipe["transformers"].append({"type": TRANSFORMER, "config": transformer})
    return recipe


def _linear_sink(sink: dict[str, Any], lite_dir: str | None,
                 collect: str | None) -> dict[str, Any]:
    """A resolved ``file`` sink as ``LinearFileSink`` runs it (see ``run_recipe``)."""
    config = dict(sink.get("config") or {})
    if lite_dir is not None:  # not in the recipe kept: this process's catalog and run
        config.update(lite=lite_dir, run=collect)
    return {**sink, "type": FILE_SINK, "config": config}


def run_recipe(recipe: dict[str, Any], extras: str | Mapping[str, Any] | None = None,
               terms_path: str | None = None, collect: str | None = None,
               verdicts_path: str | None = None, lite_dir: str | None = None,
               spool: str | None = None) -> dict[str, Any]:
    """Run one recipe through DataHub's pipeline (``Pipeline.create``), autokfp's transformer
    added when ``extras`` is given (``extras_for``'s result, or a JSON file of it); ``${VAR}``
    references are resolved from the environment here and nowhere else. The datasets the
    transformer passed on are in ``AutokfpAspects.emitted[collect]`` when ``collect`` names
    the run. ``verdicts_path`` goes to autokfp's classifier in the recipe's classification,
    if it has one (see ``AutokfpClassifier``). With ``lite_dir``, a ``file`` sink also loads
    what it writes into the DataHub Lite of that catalog folder as it goes (``LinearFileSink``;
    its counts in ``LinearFileSink.outcomes[collect]``). With ``spool`` (a file), DataHub's
    source, its work-unit processors and its stateful ingestion run and every record goes
    to that file (``SpoolSink``) for ``_replay`` to pass through the transformer and the
    sink in another process.

    Raises:
        DataError: the source or sink failed (DataHub's report, secrets removed).
    """
    import uuid

    from datahub.configuration.config_loader import EnvResolver
    from datahub.ingestion.run.pipeline import Pipeline

    from autokfp.catalog.classify import verdicts_before_samples

    recipe = _as_run(recipe, extras, terms_path)
    run = None
    secrets = [v for v in os.environ.values() if len(v) >= 6 and _referenced(recipe, v)]
    resolved = EnvResolver(environ=os.environ).resolve(recipe)
    if extras is not None and (collect or not isinstance(extras, str)):
        # not in the recipe returned (and kept): it names this run of this process
        run = collect or uuid.uuid4().hex
        resolved["transformers"][-1]["config"]["collect" if isinstance(extras, str)
                                               else "run"] = run
        if not isinstance(extras, str):  # handed over in this process: no file
            AutokfpAspects.prepared[run] = extras
    classification = (resolved.get("source", {}).get("config") or {}).get("classification")
    for classifier in (classification or {}).get("classifiers") or []:
        if verdicts_path and classifier.get("type") == _CLASSIFIER:  # nor this
            classifier["config"] = {**(classifier.get("config") or {}),
                                    "verdicts": verdicts_path}
    if spool is not None:  # the source's half of a run (see _staged_sources): no sink yet
        resolved["sink"] = {"type": SPOOL_SINK, "config": {"filename": spool}}
    elif (resolved.get("sink") or {}).get("type") == "file":  # same records, streamed
        resolved["sink"] = _linear_sink(resolved["sink"], lite_dir, collect)
    try:
        with _strptime_cache(), _disposing_engines(), verdicts_before_samples():
            pipeline = Pipeline.create(resolved)
            pipeline.run()  # closes the source and sink (DataHub's exit stacks), even on failure
            pipeline.raise_from_status()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        for secret in secrets:
            text = text.replace(secret, "***")
        kind = recipe.get("source", {}).get("type")
        raise DataError(f"DataHub's '{kind}' source failed: {text[:1500]}") from None
    finally:
        if run is not None:
            AutokfpAspects.prepared.pop(run, None)
    return recipe


@contextlib.contextmanager
def _disposing_engines() -> Iterator[None]:
    """Dispose, on the way out (success or failure), every SQLAlchemy engine that opened a
    connection inside the block.

    Why: DataHub's SQL sources (``get_inspectors`` of ``sql_common``, ``postgres``,
    ``two_tier_sql_source``) call ``create_engine`` and never dispose the engine; closing the
    source and the pipeline does not either. Their pooled connections stayed open, about two
    PostgreSQL sessions per run, until garbage collection, and blocked a ``DROP DATABASE``
    (issue 18). An engine of other code that happened to connect meanwhile is disposed too,
    which is harmless: ``dispose`` closes idle pooled connections only, and the engine
    opens new ones when next used.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    engines: dict[int, Engine] = {}

    def connected(connection: Any) -> None:
        engines.setdefault(id(connection.engine), connection.engine)

    event.listen(Engine, "engine_connect", connected)
    try:
        yield
    finally:
        event.remove(Engine, "engine_connect", connected)
        for engine in engines.values():
            try:
                engine.dispose()
            except Exception as exc:  # noqa: BLE001 - never hide the run's own outcome
                log.warning("could not dispose a DataHub source's database engine: %s", exc)


@contextlib.contextmanager
def _strptime_cache() -> Iterator[None]:
    """Python's ``strptime`` keeps 5 compiled formats and drops them all on the 6th; the
    CSV schema inference of DataHub's file sources (tableschema) tries 14 date and time
    formats on every value, so each call compiled its regex again (60% of the inference's
    time in a profile of 1,000 files). The cache is larger while a recipe runs, and the
    locale is read once; no result changes."""
    import _strptime

    before, getlang = _strptime._CACHE_MAX_SIZE, _strptime._getlang
    _strptime._CACHE_MAX_SIZE = max(before, 64)
    lang = getlang()
    # strptime asks the locale (locale.getlocale) on every call to see whether its month and
    # day names went stale: 30% of its time here; nothing changes the locale during a run
    _strptime._getlang = lambda: lang
    try:
        yield
    finally:
        _strptime._CACHE_MAX_SIZE, _strptime._getlang = before, getlang


class LinearFileSinkConfig(FileSinkConfig):
    """DataHub's file sink settings, and where ``ingest`` wants the records loaded as they
    pass (``lite``: the catalog folder of DataHub Lite; ``run``: names this run, whose
    counts ``LinearFileSink.outcomes`` keeps). Not in the recipe kept: ``run_recipe`` adds
    them to the one it runs."""

    lite: str | None = None
    run: str | None = None
    # the batches for Lite go to this spool, which the process of _lite_writer loads into
    # the Lite of ``lite`` while this one goes on (see _staged_sources)
    lite_spool: str | None = None


# proposals held before they go to DataHub Lite together (one Lite session per batch)
LITE_BATCH = 1000


class LinearFileSink(FileSink):
    """DataHub's file sink, streamed: each record is written to the file (and, with
    ``config.lite``, to DataHub Lite in batches) as it arrives, and none is held.

    Why custom: DataHub's sink keeps every record until ``close`` and then builds the file
    by ``content += record`` per record, a copy of everything so far each time: quadratic
    (a third of a 2,000-dataset first run) and memory that grows with the dataset count;
    ``ingest`` then held every record again to load them into Lite. Here the memory is one
    batch of ``LITE_BATCH`` proposals whatever the count. Each record is written as compact
    JSON (Python's C encoder; DataHub's ``indent=4`` runs the pure-Python encoder, 6% of a
    first run): the file is the same JSON array of the same records (tested), which
    DataHub's file source and ``datahub check metadata-file`` read. ``run_recipe`` runs a
    recipe's ``file`` sink through this class.
    """

    config: LinearFileSinkConfig
    # config.run -> {"lite_written": proposals loaded into Lite, "patches": not loadable}
    outcomes: dict[str, dict[str, int]] = {}

    @classmethod
    def create(cls, config_dict: dict, ctx: Any) -> LinearFileSink:
        return cls(ctx, LinearFileSinkConfig.model_validate(config_dict))

    def __post_init__(self) -> None:
        super().__post_init__()
        from datahub.ingestion.fs.fs_base import get_path_schema

        self._out: Any = None  # the local file written as records arrive
        self._count = 0
        if get_path_schema(self.filename) == "file":
            path = Path(self.filename.removeprefix("file://"))
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = path.open("w", encoding="utf-8")
        self._lite: list[Any] = []
        self._outcome = {"lite_written": 0, "patches": 0}
        if self.config.run:
            LinearFileSink.outcomes[self.config.run] = self._outcome
        self._lite_out: Any = None
        if self.config.lite and self.config.lite_spool:
            self._lite_out = open(self.config.lite_spool, "wb")  # noqa: SIM115 - see close

    def write_record_async(self, record_envelope: Any, write_callback: Any) -> None:
        """A snapshot (``MetadataChangeEventClass``: DataHub's SQL sources emit their
        tables' aspects so) is converted once, without avrogen's validation pass (the same
        dict, tested), and its aspects reach Lite with that conversion; proposals already
        come as autokfp's ``Proposal`` from the transformer (serialised once for both)."""
        from datahub.ingestion.sink.file import _to_obj_for_file
        from datahub.metadata.schema_classes import MetadataChangeEventClass

        from autokfp.catalog.datahub import avro_obj

        record = record_envelope.record
        legacy = self.config.legacy_nested_json_string
        snapshot = type(record) is MetadataChangeEventClass and not legacy
        obj = avro_obj(record) if snapshot else _to_obj_for_file(
            record, simplified_structure=not legacy)
        if self._out is None:
            self.records.append(obj)
        else:
            self._out.write(("[\n" if self._count == 0 else ",\n") + json.dumps(obj))
        self._count += 1
        if self.config.lite:
            self._to_lite(record, obj if snapshot else None)
        self.report.report_record_written(record_envelope)
        if write_callback:
            write_callback.on_success(record_envelope, {})

    def _to_lite(self, record: Any, snapshot_obj: dict | None) -> None:
        from datahub.emitter.mcp import MetadataChangeProposalWrapper

        if snapshot_obj is not None:
            self._lite += snapshot_proposals(record, snapshot_obj)
        elif isinstance(record, MetadataChangeProposalWrapper):
            self._lite.append(_stamped(_cached(record)))
        else:  # a PATCH (the s3 source's lastModified): Lite takes only whole aspects
            self._outcome["patches"] += 1
        if len(self._lite) >= LITE_BATCH:
            self._flush_lite()

    def _flush_lite(self) -> None:
        if self._lite:
            assert self.config.lite is not None
            if self._lite_out is not None:  # loaded by the other process, in this order
                _write_frame(self._lite_out, ("batch", self._lite))
            else:
                self._outcome["lite_written"] += load_into_lite(self._lite, self.config.lite)
            self._lite = []

    def close(self) -> None:
        if self.config.lite:
            self._flush_lite()
            if self._outcome["patches"]:
                log.info("%d patch proposal(s) of '%s' are not loaded into DataHub Lite (it "
                         "takes whole aspects only); they are in the metadata file",
                         self._outcome["patches"], self.filename)
        if self._lite_out is not None:
            _write_frame(self._lite_out, ("end", None))
            self._lite_out.close()
        if self._out is not None:
            self._out.write("\n]" if self._count else "[]")
            self._out.close()
        else:
            records = ",\n".join(json.dumps(record) for record in self.records)
            self.fs.write(self.filename, f"[\n{records}\n]" if self.records else "[]")
        log.debug("wrote %d records to %s", self._count, self.filename)


def _stamped(proposal: Any) -> Any:
    """``proposal`` with the system metadata DataHub Lite would give it, when it has none
    (autokfp's own aspects: DataHub's pipeline stamps only its source's), converted without
    avrogen's validation pass.

    Why: Lite stamps such a proposal (``lastObserved``: now) and converts the stamp with
    DataHub's ``to_obj``, whose validation made it a quarter of Lite's time in a profiled
    first run; this is the same stamp and the same dict (tested)."""
    from datahub.metadata.schema_classes import SystemMetadataClass

    from autokfp.catalog.datahub import Proposal, avro_obj

    if proposal.systemMetadata is not None or not isinstance(proposal, Proposal):
        return proposal
    proposal.to_obj(simplified_structure=True)  # converted once (the file's, when written)
    cached = proposal.__dict__["_autokfp_obj"]
    proposal.systemMetadata = SystemMetadataClass(lastObserved=int(time.time() * 1000),
                                                  properties={})
    cached["systemMetadata"] = avro_obj(proposal.systemMetadata)
    return proposal


def snapshot_proposals(snapshot: Any, obj: dict) -> list[Any]:
    """The aspects of a DataHub snapshot (``MetadataChangeEventClass``) as the proposals
    DataHub Lite takes (``mcps_from_mce``'s), each already holding its serialised form taken
    from ``obj``, the snapshot's own conversion (``avro_obj``): its aspects are not
    converted a second time (the same dicts as ``simplified_obj``'s, tested)."""
    from datahub.emitter.serialization_helper import pre_json_transform

    from autokfp.catalog.datahub import Proposal, avro_obj

    inner = next(iter(obj["proposedSnapshot"].values()))
    system = obj.get("systemMetadata")
    out = []
    for aspect, aspect_obj in zip(snapshot.proposedSnapshot.aspects, inner["aspects"],
                                  strict=True):
        proposal = Proposal(entityUrn=snapshot.proposedSnapshot.urn, aspect=aspect,
                            auditHeader=snapshot.auditHeader,
                            systemMetadata=snapshot.systemMetadata)
        if snapshot.auditHeader is None:  # else simplified_obj's other branch
            cached: dict[str, Any] = {
                "entityType": proposal.entityType, "entityUrn": proposal.entityUrn,
                "changeType": proposal.changeType, "aspectName": proposal.aspectName,
                "aspect": {"json": pre_json_transform(next(iter(aspect_obj.values())))}}
            if snapshot.systemMetadata is not None:
                cached["systemMetadata"] = (system if system is not None
                                            else avro_obj(snapshot.systemMetadata))
            proposal.__dict__["_autokfp_obj"] = cached
        out.append(proposal)
    return out


# --------------------------------------------------------------------------- DataHub's source
#                                                                             beside the crawl

SPOOL_SINK = "autokfp.catalog.ingest.SpoolSink"


class SpoolSink(Sink[FileSinkConfig, SinkReport]):
    """The source's half of a recipe run in another process (see ``_staged_sources``): each
    work unit's records, as DataHub's pipeline hands them to its sink, are pickled to
    ``config.filename`` in frames (``_write_frame``) for ``_replay`` to pass through autokfp's
    transformer and the real sink, grouped by work unit as the pipeline would have.

    ``flush`` is called by DataHub's pipeline only once its source ran to its end (before it
    commits the stateful-ingestion checkpoint); it marks the end of the stream (``eos``), after
    which the pipeline would have sent ``EndOfStream`` through its transformers.
    """

    config: FileSinkConfig
    GROUPS = 64  # work units per frame

    @classmethod
    def create(cls, config_dict: dict, ctx: Any) -> SpoolSink:
        return cls(ctx, FileSinkConfig.model_validate(config_dict))

    def __post_init__(self) -> None:
        self._out = open(self.config.filename, "wb")  # noqa: SIM115 - closed in close()
        self._group: list[tuple[Any, dict[str, Any]]] = []
        self._groups: list[list[tuple[Any, dict[str, Any]]]] = []

    def handle_work_unit_start(self, workunit: Any) -> None:
        self._group = []

    def handle_work_unit_end(self, workunit: Any) -> None:
        self._groups.append(self._group)
        self._group = []
        if len(self._groups) >= self.GROUPS:
            self._frame()

    def write_record_async(self, record_envelope: Any, write_callback: Any) -> None:
        self._group.append((record_envelope.record, record_envelope.metadata))
        self.report.report_record_written(record_envelope)
        if write_callback:
            write_callback.on_success(record_envelope, {})

    def _frame(self) -> None:
        if self._groups:
            _write_frame(self._out, ("groups", self._groups))
            self._groups = []

    def flush(self) -> None:
        self._frame()
        _write_frame(self._out, ("eos", None))

    def close(self) -> None:
        self._frame()
        self._out.close()


def _write_frame(out: Any, frame: tuple[str, Any]) -> None:
    import pickle

    body = pickle.dumps(frame, protocol=5)
    out.write(len(body).to_bytes(8, "little") + body)
    out.flush()


@dataclass
class _Staged:
    """A generated recipe whose DataHub source runs in ``_staged_sources``'s process while
    autokfp's crawl runs in this one."""

    recipe: dict[str, Any]  # as generated before the crawl (compared with the one after it)
    spool: str  # SpoolSink's file
    verdicts: str | None  # the crawl's classifier verdicts, written once the crawl is done
    cancel: str  # written when the recipe must not run after all
    lite: str = ""  # the batches for DataHub Lite (see _lite_writer)
    # a second pass's classification (see _second_pass): called with each SchemaMetadata as
    # it is replayed, before autokfp's transformer
    classify: Any = None


def _stage(jobs: list[_Staged]) -> None:
    """The child process of ``_staged_sources``: run each staged recipe's source half."""
    for job in jobs:  # in a child, _orphan_safe froze the parent's objects (gc.freeze)
        error = None
        try:
            if job.verdicts is not None:  # autokfp's classifier answers from the crawl's
                _import_source(job.recipe)  # now, beside the crawl, not after it
                while not os.path.exists(job.verdicts) and not os.path.exists(job.cancel):
                    time.sleep(0.02)
            if os.path.exists(job.cancel):
                error = "cancelled"
            else:
                run_recipe(job.recipe, verdicts_path=job.verdicts, spool=job.spool)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            error = str(exc) or type(exc).__name__
        with open(job.spool, "ab") as out:
            _write_frame(out, ("end", error))


def _import_source(recipe: dict[str, Any]) -> None:
    """Import the module of the recipe's DataHub source plugin (its registry imports it on
    first use, in ``Pipeline.create``).

    Why: ``_stage`` runs a SQL recipe only once the crawl's verdicts exist, at the crawl's
    end, and the first run of a process (every discover task) then imported DataHub's SQL
    source modules (0.8 CPU-s of ``sql_common``, ``sqlglot``, SQLAlchemy's ORM) after the
    crawl, on the path the step waits for; imported before the wait, they load while the
    crawl runs. A plugin that cannot be imported is left to the recipe's run to report."""
    from datahub.ingestion.source.source_registry import source_registry

    kind = (recipe.get("source") or {}).get("type")
    with contextlib.suppress(Exception):
        source_registry.get(str(kind))


def _lite_writer(jobs: list[_Staged], catalog_dir: str) -> None:
    """The process loading the staged recipes' records into DataHub Lite (see
    ``_staged_sources``), one recipe after the other, in the batches and order the sink made:
    the Lite of a run after the crawl. Each recipe's outcome goes to ``<lite spool>.done``."""
    import gc

    gc.freeze()
    parent = os.getppid()
    for job in jobs:
        count, error = 0, None
        for kind, payload in _frames(job.lite, lambda: os.getppid() == parent):
            if kind == "batch" and error is None:
                try:
                    count += load_into_lite(payload, catalog_dir)
                except Exception as exc:  # noqa: BLE001 - the parent raises it
                    error = f"{type(exc).__name__}: {exc}"
            elif kind == "end" and payload is not None:
                error = error or payload
        Path(job.lite + ".part").write_text(json.dumps({"written": count, "error": error}))
        os.replace(job.lite + ".part", job.lite + ".done")


def _lite_outcome(job: _Staged, alive: Any) -> dict[str, Any]:
    """What ``_lite_writer`` made of a recipe's batches, once it is done with them.

    Raises:
        _ChildStalled: ``alive`` is a ``_Watched`` child that made no progress meanwhile."""
    done = job.lite + ".done"
    stall = _Watched.waiting(alive)
    while not os.path.exists(done):
        if not alive() and not os.path.exists(done):
            raise DataError("the process loading DataHub Lite beside this one ended before "
                            "it loaded the recipe's records (see its log above)")
        if stall is not None and stall.stalled():
            raise alive.stalled(stall)
        time.sleep(0.01)
    outcome: dict[str, Any] = json.loads(Path(done).read_text())
    return outcome


def _frames(path: str, alive: Any) -> Iterator[tuple[str, Any]]:
    """The frames of a spool as ``_stage`` writes them, up to its ``end`` frame, waiting for
    more while the process writing it is ``alive()``.

    Raises:
        _ChildStalled: ``alive`` is a ``_Watched`` child that wrote nothing and made no
            other progress for its bound (see ``lifeline.Stall``)."""
    import pickle

    stall = None

    def exactly(handle: Any, size: int) -> bytes:
        nonlocal stall
        data = b""
        while len(data) < size:
            more = handle.read(size - len(data))
            if more:
                data += more
                stall = None  # output: progress
                continue
            if not alive():
                more = handle.read(size - len(data))  # what it wrote before it ended
                if not more:
                    raise DataError("the process running DataHub's source beside the crawl "
                                    "ended without finishing its recipe (see its log above)")
                data += more
                continue
            stall = stall or _Watched.waiting(alive)
            if stall is not None and stall.stalled():
                raise alive.stalled(stall)
            time.sleep(0.005)
        return data

    while not os.path.exists(path):
        if not alive() and not os.path.exists(path):
            raise DataError("the process running DataHub's source beside the crawl ended "
                            "before it started its recipe (see its log above)")
        stall = stall or _Watched.waiting(alive)
        if stall is not None and stall.stalled():
            raise alive.stalled(stall)
        time.sleep(0.01)
    with open(path, "rb") as handle:
        while True:
            frame = pickle.loads(exactly(handle, int.from_bytes(exactly(handle, 8), "little")))
            yield frame
            if frame[0] == "end":
                return


def _replay(recipe: dict[str, Any], job: _Staged, alive: Any, extras: Mapping[str, Any],
            terms_path: str | None, collect: str, lite_dir: str | None) -> dict[str, Any]:
    """The sink's half of a staged recipe: the records DataHub's source emitted in the other
    process (its spool) go through autokfp's transformer and the recipe's file sink as
    ``Pipeline.run`` passes them (a work unit at a time, transformer errors logged and the
    rest kept, ``EndOfStream`` once the source ran to its end). Returns the recipe as
    ``run_recipe`` does.

    Raises:
        DataError: DataHub's source or the sink failed (after what came through is written,
            as DataHub's pipeline leaves it).
    """
    as_run = _as_run(recipe, extras, terms_path)
    try:
        return _replayed(recipe, as_run, job, alive, extras, terms_path, collect, lite_dir)
    finally:
        if lite_dir is not None and job.lite and not os.path.exists(job.lite):
            with open(job.lite, "wb") as out:  # the sink never started: nothing to load
                _write_frame(out, ("end", None))


def _replayed(recipe: dict[str, Any], as_run: dict[str, Any], job: _Staged, alive: Any,
              extras: Mapping[str, Any], terms_path: str | None, collect: str,
              lite_dir: str | None) -> dict[str, Any]:
    import uuid

    from datahub.configuration.config_loader import EnvResolver
    from datahub.ingestion.api.common import EndOfStream, PipelineContext, RecordEnvelope
    from datahub.ingestion.run.sink_callback import LoggingCallback

    sink_config = _linear_sink(EnvResolver(environ=os.environ).resolve(
        {"sink": recipe["sink"]})["sink"], lite_dir, collect)["config"]
    if lite_dir is not None and job.lite:
        sink_config["lite_spool"] = job.lite
    transformer = AutokfpAspects(extras, terms_path, collect)
    sink = LinearFileSink.create(sink_config, PipelineContext(run_id=uuid.uuid4().hex))
    callback = LoggingCallback()
    error, ended = None, False

    def write(envelopes: Iterable[Any]) -> None:
        try:
            for envelope in transformer.transform(envelopes):
                if isinstance(envelope.record, EndOfStream):
                    continue
                try:
                    sink.write_record_async(envelope, callback)
                except Exception as exc:  # noqa: BLE001 - as DataHub's pipeline does
                    sink.report.report_failure(f"Failed to write record: {exc}")
        except (RuntimeError, SystemExit):
            raise
        except Exception:  # noqa: BLE001 - DataHub's pipeline logs a transformer's error
            log.error("Failed to process some records. Continuing.", exc_info=True)

    try:
        for kind, payload in _frames(job.spool, alive):
            if kind == "groups":
                for group in payload:
                    if job.classify is not None:
                        for record, _ in group:
                            job.classify(record)
                    write([RecordEnvelope(record, metadata) for record, metadata in group])
            elif kind == "eos":
                ended = True
                if job.classify is not None:  # the terms' key aspects (see _second_pass)
                    write([RecordEnvelope(record, {"workunit_id": f"term-{record.entityUrn}"})
                           for record in job.classify.materialised()])
                write([RecordEnvelope(EndOfStream(), {"workunit_id": "end-of-stream"})])
            else:
                error = payload
    finally:
        sink.close()
    if error is None and sink.report.failures:
        error = f"PipelineExecutionError: Sink reported errors {list(sink.report.failures)}"
    if error is not None:
        if error.startswith("DataHub's"):
            raise DataError(error)
        raise DataError(f"DataHub's '{recipe.get('source', {}).get('type')}' source failed: "
                        f"{error[:1500]}")
    if not ended:  # cannot be: a run that ended well flushed its sink
        raise DataError("DataHub's pipeline beside the crawl did not finish its recipe")
    return as_run


# concurrent DataHub sources: False runs every recipe after the crawl, in this process (the
# code before session 15); only for a test to compare what both write
_CONCURRENT = True


def _referenced(recipe: dict[str, Any], value: str) -> bool:
    names = [k for k, v in os.environ.items() if v == value]
    text = json.dumps(recipe)
    return any("${" + n + "}" in text or "$" + n in text for n in names)


# the format of a recipe's fingerprint (``_fingerprint``), its first part: a fingerprint
# stored in another format (before session 19: 64 hex digits alone, the SHA-256 of every
# input's aspects) never equals one of this format, so the first run after an upgrade runs
# every generated recipe once (as after a change) and records this format
FINGERPRINT_FORMAT = "2"

# the catalog facts (``DatasetSchema.catalog``) autokfp's aspects show (``_catalog_properties``,
# ``_dataset_tags``); the others (last_crawled, previous_row_count) change on every crawl
_SHOWN_FACTS = ("schema_version", "accepted_version", "verdict", "breaking_columns", "changes")


def _input_digest(item: Any) -> int | None:
    """One input's part of its recipe's fingerprint (see ``_unchanged_fingerprint``): its
    version (autokfp's crawl signature), its error, and what autokfp's aspects for it
    (``extras_for``, profile aside) are built from: the schema without its profile
    statistics, and of its catalog facts those the aspects show. None when its version is
    unknown.

    Why not the aspects themselves (the format before session 19): building them for every
    input was a quarter of the fingerprints' cost (0.09 of 0.36 CPU-s for 2,000 inputs).
    What the code makes of these is in every fingerprint too (``_aspects_code``), and the
    names DataHub's SQL source gives a table (``sqlalchemy_names``) follow from the recipe's
    source, the input's id and its URN. Keep this in step with what ``extras_for`` reads of a
    schema (``test_ingest_fingerprint.py`` changes each part and checks both)."""
    import hashlib

    if item.signature is None or item.source_failed:
        return None
    s = item.schema
    facts = s.catalog or {}
    one = json.dumps([item.dataset_id, item.signature, item.error, s.urn, s.platform,
                      s.location, s.format, s.row_count, s.sample_rows, s.modified_at,
                      [facts.get(k) for k in _SHOWN_FACTS], s.view or None, s.nested_fields,
                      [[c.name, c.physical_type, c.semantic_type, c.nullable, c.tags]
                       for c in s.columns]], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(one.encode()).digest(), "big")


_ASPECTS_CODE: str | None = None


def _aspects_code() -> str:
    """The aspects autokfp's code builds (``extras_for``: properties, tags, field tags and
    descriptions, a view's lineage, the schema; the profile aside) for a fixed dataset that
    has each thing they show (a PII, a sensitive and a target column, a breaking schema
    change, nested fields, a view), hashed once a process. In every fingerprint, so code
    that builds other aspects from the same inputs runs every recipe again, as the
    fingerprint of each input's aspects did before session 19."""
    global _ASPECTS_CODE
    if _ASPECTS_CODE is None:
        import hashlib

        from autokfp.catalog.schema import ColumnSchema, DatasetSchema

        urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.probe,PROD)"
        probe = DatasetSchema(
            dataset_id="probe/main.probe", platform="sqlite", location="sqlite:///probe.db",
            row_count=10, sample_rows=10, format=None, modified_at="2026-01-01T00:00:00Z",
            urn=urn, nested_fields=[["email.domain", "str", False]],
            catalog={"schema_version": 2, "accepted_version": 1, "verdict": "breaking",
                     "breaking_columns": ["email"], "changes": ["email: type changed"]},
            view={"definition": "SELECT * FROM t", "upstreams": [
                "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.t,PROD)"],
                "columns": [{"column": "email", "upstreams": [[
                    "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.t,PROD)", "email"]],
                    "logic": "COPY"}]},
            columns=[ColumnSchema("id", "INTEGER", "id", nullable=False),
                     ColumnSchema("email", "TEXT", "email"),
                     ColumnSchema("salary", "REAL", "numeric", tags=["sensitive"]),
                     ColumnSchema("churned", "INTEGER", "boolean", tags=["target"])])
        extra = extras_for([probe], [probe.dataset_id], [probe.dataset_id], stamp=0)[urn]
        _ASPECTS_CODE = hashlib.sha256(json.dumps(
            _jsonable(extra), sort_keys=True, default=str).encode()).hexdigest()
    return _ASPECTS_CODE


def _fingerprint(recipe: dict[str, Any], count: int, total: int) -> str | None:
    """The fingerprint of a recipe whose ``count`` inputs' digests add up to ``total``:
    ``FINGERPRINT_FORMAT``, a dash, a SHA-256."""
    import hashlib

    if not count:
        return None
    source = json.loads(json.dumps(recipe.get("source", {})))
    source.get("config", {}).pop("stateful_ingestion", None)
    payload = json.dumps([source, count, f"{total % (1 << 256):064x}", _aspects_code()],
                         sort_keys=True, default=str)
    return f"{FINGERPRINT_FORMAT}-{hashlib.sha256(payload.encode()).hexdigest()}"


def _unchanged_fingerprint(recipe: dict[str, Any], items: Iterable[Any],
                           extras: Mapping[str, dict[str, Any]] | None = None) -> str | None:
    """What a generated recipe's run depends on: the recipe's source (state paths aside),
    the version of every input in the source (autokfp's crawl signatures) and what autokfp's
    aspects for them are built from (``_input_digest``; ``extras`` is not read). None when
    a version is unknown (never skipped).

    ``items`` are read once and not kept: each input's digest is added into a sum modulo
    2**256, which does not depend on their order (a multiset hash), so a source of 100,000
    inputs is fingerprinted in constant memory (``ingest`` adds them up as the crawl records
    them, ``_SourcePass``)."""
    total, count = 0, 0
    for d in items:
        digest = _input_digest(d)
        if digest is None:
            return None
        total, count = total + digest, count + 1
    return _fingerprint(recipe, count, total)


@dataclass
class _SourcePass:
    """What ``ingest`` needs of one source's datasets, gathered in its one pass over the
    crawl's report (the ledger's rows decoded once, not once per use: six passes were a
    third of an unchanged re-run's own work), or as the crawl records them (``_Deferred``).
    """

    depths: set[int] = field(default_factory=set)  # folder depths holding files
    count: int = 0  # inputs added to the fingerprint
    total: int = 0  # their digests' sum (see _unchanged_fingerprint)
    unknown: bool = False  # an input without a version: never skipped
    files: int = 0  # files or objects the crawl read (DataHub's source must emit as many)
    verdicts: dict[str, dict[str, str]] = field(default_factory=dict)  # _classifier_verdicts

    def relatives(self) -> list[str]:
        """One relative path per folder depth found: all ``_path_specs`` takes of them."""
        return ["d/" * depth + "f" for depth in sorted(self.depths)]

    def fingerprint(self, recipe: dict[str, Any]) -> str | None:
        return None if self.unknown else _fingerprint(recipe, self.count, self.total)

    def take(self, d: Any, files: bool) -> None:
        """``d``'s folder depth and count (``files``: a source of files or objects) and its
        part of the fingerprint."""
        if files and not d.source_failed:
            self.depths.add(min(d.dataset_id.split("/", 1)[1].count("/"), _MAX_DEPTH))
            self.files += int(d.ok)
        digest = None if self.unknown else _input_digest(d)
        if digest is None:
            self.unknown = True
        else:
            self.count, self.total = self.count + 1, self.total + digest


class _Deferred:
    """``_source_passes``' work for the deferred sources (see there), done as the crawl
    records each dataset (``crawl_sources``' ``on_found``): an unchanged re-run then reads
    nothing of the crawl's report back (decoding its rows was a third of what the
    fingerprints cost)."""

    def __init__(self, sources: list[Any], extras: ExtrasSpool, deferred: Iterable[str]):
        later = set(deferred)
        self.passes = {s.name: _SourcePass() for s in sources if s.name in later}
        self._files = {s.name for s in sources if not isinstance(s, SqlSource)}
        self._extras = extras

    def __call__(self, d: Any) -> None:
        one = self.passes.get(d.source_name)
        if one is None:
            return
        if d.ok and not d.source_failed:
            self._extras.name(d.schema)
        one.take(d, d.source_name in self._files)


def _cached(record: Any) -> Any:
    """The proposal as autokfp's ``Proposal`` (serialised once, without the validation
    pass), which Lite's ``write`` serialises again otherwise."""
    from autokfp.catalog.datahub import Proposal

    if (isinstance(record, Proposal) or record.aspect is None
            or record.entityKeyAspect is not None):
        return record  # a Proposal already: a new one would serialise it again
    return Proposal(entityType=record.entityType, entityUrn=record.entityUrn,
                    changeType=record.changeType, aspectName=record.aspectName,
                    aspect=record.aspect, systemMetadata=record.systemMetadata,
                    auditHeader=record.auditHeader, headers=record.headers)


def _classifier_verdicts(items: Iterable[Any], source: SqlSource) -> dict[str, dict[str, str]]:
    """{dataset name as DataHub's SQL source passes it to a classifier (its URN name without
    the platform instance): {column: semantic type}} of what autokfp's crawl typed."""
    from datahub.utilities.urns.dataset_urn import DatasetUrn

    prefix = f"{source.platform_instance}." if source.platform_instance else ""
    out: dict[str, dict[str, str]] = {}
    for d in items:
        if not d.ok or d.source_failed:
            continue
        name = DatasetUrn.from_string(dataset_urn(d.schema)).name
        out[name[len(prefix):] if prefix and name.startswith(prefix) else name] = {
            c.name: c.semantic_type for c in d.schema.columns}
    return out


def _source_passes(report: Any, sources: list[Any], extras: ExtrasSpool,
                   with_schema: set[str], deferred: Iterable[str] = (),
                   taken: _Deferred | None = None) -> dict[str, _SourcePass]:
    """One pass over the crawl's report: every dataset's schema into ``extras`` (with the
    crawl's schema for the sources in ``with_schema``), and per source what its recipe, its
    fingerprint and its classifier need.

    For the sources in ``deferred`` (re-runs, which their fingerprint may show unchanged, so
    their recipe is not run) only the fingerprint is taken: their schemas, names and verdicts
    are spooled by ``_spool_source`` if the recipe runs after all (an unchanged re-run
    spooled every schema for nothing). ``taken``: those taken as the crawl ran (the report
    is then read for the other sources only, and not at all if there are none)."""
    by_name = {s.name: s for s in sources}
    passes = {s.name: _SourcePass() for s in sources}
    later = set(deferred)
    if taken is not None:
        passes.update(taken.passes)
        later -= set(taken.passes)
        if all(s.name in taken.passes for s in sources):
            return passes
    for d in report.found:  # read from the crawl's ledger a row at a time
        one = passes.get(d.source_name)
        if one is None or (taken is not None and d.source_name in taken.passes):
            continue
        source = by_name[d.source_name]
        if d.ok and not d.source_failed:
            if d.source_name not in later:
                _spool_dataset(report, d, source, extras, d.source_name in with_schema, one)
            else:
                extras.name(d.schema)
        one.take(d, not isinstance(source, SqlSource))
    return passes


def _spool_source(report: Any, source: Any, extras: ExtrasSpool, with_schema: bool,
                  one: _SourcePass) -> None:
    """What ``_source_passes`` deferred for ``source``: its schemas, the names DataHub's SQL
    source gives its tables (``sqlalchemy_names``) and its verdicts."""
    for d in report.found:
        if d.source_name == source.name and d.ok and not d.source_failed:
            _spool_dataset(report, d, source, extras, with_schema, one)


def _spool_dataset(report: Any, d: Any, source: Any, extras: ExtrasSpool, with_schema: bool,
                   one: _SourcePass) -> None:
    """One crawled dataset into the spool: its schema, and for a SQL source its classifier
    verdicts and the names DataHub's SQL source gives it (``sqlalchemy_names``)."""
    extras.add(d.schema, reused=d.reused, with_schema=with_schema)
    if isinstance(source, SqlSource):
        one.verdicts.update(_classifier_verdicts([d], source))
        for wrong, urn in sqlalchemy_names(source, [d], report.naming.get(source.name)).items():
            extras.rename(wrong, urn)


def _pipeline(item: dict[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(item.get("pipeline_name") or "recipe"))


def _kept(item: dict[str, Any], work: str, store: Any, generated: bool) -> dict[str, str]:
    """{local file: its copy in the catalog} of a recipe's run: the transformer's glossary
    terms and the checkpoint of DataHub's file state provider. The checkpoint of the last
    run lives in the catalog (local or gs://); the recipe's state provider reads and writes
    a local copy."""
    pipeline = _pipeline(item)
    kept = {os.path.join(work, f"{pipeline}.terms.json"):
            store.uri("ingestion-state", f"{pipeline}.terms.json")}
    state = _state_file(item) if generated else None
    if state is not None:
        kept[state] = store.uri("ingestion-state", f"{pipeline}.json")
    return kept


def _fetch_kept(kept: Mapping[str, str]) -> None:
    """The local copies of ``_kept``'s files as the catalog has them (none if it has none)."""
    for local, remote in kept.items():
        if storage.exists(remote):
            Path(local).write_text(storage.read_text(remote))
        else:
            Path(local).unlink(missing_ok=True)


def _ingest_one(item: dict[str, Any], source: Any, *, generated: bool, work: str,
                extras: Mapping[str, Any], report: Any, store: Any,
                settings: Settings, stamp: str, result: IngestResult,
                summary: _SourcePass | None = None, staged: _Staged | None = None,
                alive: Any = None, lite_alive: Any = None) -> None:
    """Run one recipe (skipped when its source is unchanged since its last good run) and add
    what it emitted to ``result``. With ``staged``, DataHub's source already ran (or runs) in
    ``_staged_sources``'s process, and its records are passed through here (``_replay``)."""
    from autokfp import storage

    pipeline = _pipeline(item)
    terms = os.path.join(work, f"{pipeline}.terms.json")
    kept = _kept(item, work, store, generated)
    # an unchanged source is not read again: DataHub's sources re-read every input on
    # every run (their stateful ingestion only removes stale entities), so a recipe
    # whose inputs, settings and autokfp aspects are those of its last good run is
    # skipped; that run's checkpoint stays, and the catalog already holds its output
    done_uri = store.uri("ingestion-state", f"{pipeline}.done.json")
    fingerprint = None
    if source is not None and item["sink"].get("type") == "file":
        fingerprint = summary.fingerprint(item) if summary is not None else \
            _unchanged_fingerprint(
                item, (d for d in report.found if d.source_name == source.name), extras)
    last = {}
    if fingerprint and lite_path(settings.catalog_dir).exists():  # else refill Lite
        last = _last_run(store, item)
    if last and last.get("fingerprint") == fingerprint:
        result.skipped.append(pipeline)
        result.datasets += last["datasets"]
        result.extended += [u for u in last["datasets"] if u in extras]
        return
    if staged is None:  # a staged run's were fetched before its source ran
        _fetch_kept(kept)
    collect = f"{pipeline}-{stamp}"
    sink = item["sink"]
    lite_dir = str(settings.catalog_dir) if sink.get("type") == "file" else None
    try:
        verdicts = None
        if staged is not None:
            try:
                replayed = _replay(item, staged, alive, extras, terms, collect, lite_dir)
            except _ChildStalled:
                raise  # the recipe runs again in this process (see ingest)
            except BaseException:  # failed: Lite keeps what was loaded, as after run_recipe
                if lite_dir is not None and staged.lite:
                    _lite_outcome(staged, lite_alive)
                raise
            # a second pass's sink loads Lite itself (no lite spool, see _second_pass)
            lite = _lite_outcome(staged, lite_alive) if lite_dir is not None and staged.lite \
                else {}
            result.recipes.append(replayed)
            if lite.get("error"):
                raise DataError(f"DataHub's '{item['source'].get('type')}' source failed: "
                                f"the sink could not load DataHub Lite: {lite['error']}")
            if lite:
                LinearFileSink.outcomes.setdefault(collect, {})["lite_written"] = lite["written"]
        else:
            if _SHARE_VERDICTS and isinstance(source, SqlSource):
                verdicts = _verdicts_path(work, item)
                Path(verdicts).write_text(json.dumps(
                    summary.verdicts if summary is not None else _classifier_verdicts(
                        (d for d in report.found if d.source_name == source.name), source)))
            result.recipes.append(run_recipe(item, extras, terms, collect=collect,
                                             verdicts_path=verdicts, lite_dir=lite_dir))
        emitted = AutokfpAspects.emitted.get(collect) or Emitted()
        written = LinearFileSink.outcomes.get(collect) or {}
    finally:
        AutokfpAspects.emitted.pop(collect, None)
        LinearFileSink.outcomes.pop(collect, None)
    for local, remote in kept.items():
        if Path(local).exists():
            storage.write_text(remote, Path(local).read_text())
    urns = emitted.live()
    if generated and summary is not None and len(urns) < summary.files:
        # DataHub's source passed over files the crawl read (a path rule of its own): said,
        # never a silently smaller catalog
        result.missed[item.get("pipeline_name") or source.name] = (
            f"DataHub's {item['source'].get('type')} source emitted {len(urns)} dataset(s) of "
            f"the {summary.files} file(s) autokfp's crawl read in source "
            f"{getattr(source, 'name', '?')}; the others are not in the catalog: check the "
            "source's path and include patterns, or set catalog.ingestion: crawl")
        log.warning("DataHub ingestion: %s", result.missed[item.get("pipeline_name")
                                                          or source.name])
    result.datasets += urns
    result.removed += sorted(emitted.removed)
    result.extended += [u for u in urns if u in extras]
    if sink.get("type") != "file":  # DataHub's REST sink: GMS has it all
        result.gms_url = str(sink.get("config", {}).get("server"))
        return
    # the sink's file, kept in the catalog's metadata folder (copied a piece at a time)
    local = sink["config"]["filename"]
    target = store.uri("metadata", f"ingest-{stamp}-{Path(local).stem}.json")
    storage.write_text_pieces(target, _pieces(local))
    result.metadata_files.append(target)
    result.lite_written += int(written.get("lite_written") or 0)
    if fingerprint:
        storage.write_text(done_uri, json.dumps({"fingerprint": fingerprint,
                                                 "datasets": urns}))


def _last_run(store: Any, item: dict[str, Any]) -> dict[str, Any]:
    """The record of the recipe's last good run (``{"fingerprint", "datasets"}``), {} when
    there is none or it is not one (then the recipe runs: a fingerprint of another format,
    ``FINGERPRINT_FORMAT``, is never equal either)."""
    last = store.read_json(f"ingestion-state/{_pipeline(item)}.done.json", None)
    if not isinstance(last, dict) or not isinstance(last.get("datasets"), list):
        return {}
    return last


def _verdicts_path(work: str, item: dict[str, Any]) -> str:
    return os.path.join(work, f"{_pipeline(item)}.verdicts.json")


def _staged_jobs(config: RunConfig, skip: Iterable[str], work: str, store: Any
                 ) -> dict[str, _Staged]:
    """{source name: its recipe's source half, to run beside the crawl} (see
    ``_staged_sources``) for the sources it can run for: a folder or a SQL database
    (a bucket would be listed twice), with the file sink (no GMS), on a first run (no
    record of a last good run, so the recipe is not skipped, see ``_ingest_one``), whose
    recipe can be written before the crawl (a PostgreSQL source names its schema)."""
    from autokfp.catalog.sources import open_source
    from autokfp.catalog.sources.sql import _sql_platform_of

    if gms_settings() is not None:
        return {}
    out = {}
    for source in config.sources:
        if source.name in skip:
            continue
        # a re-run first, before any listing: the crawl's versions may show it unchanged
        pipeline = _pipeline({"pipeline_name": f"autokfp-{config.name}-{source.name}"})
        if store.read_json(f"ingestion-state/{pipeline}.done.json", None) is not None:
            continue
        if isinstance(source, FolderSource):
            relatives: Iterable[str] | None = open_source(source).list_datasets()
        elif isinstance(source, SqlSource) and (
                source.schema_name or _sql_platform_of(source) != "postgres"):
            relatives = None
        else:
            continue
        try:
            item = recipe_for(config, source, work, None, relatives)
        except Exception as exc:  # noqa: BLE001 - it runs after the crawl, which says why
            log.debug("source %s is not run beside the crawl: %s", source.name, exc)
            continue
        pipeline = _pipeline(item)  # recipe_for's name, as above
        _fetch_kept(_kept(item, work, store, True))
        out[source.name] = _Staged(
            recipe=item, spool=os.path.join(work, f"{pipeline}.spool"),
            verdicts=(_verdicts_path(work, item)
                      if isinstance(source, SqlSource) and _SHARE_VERDICTS else None),
            cancel=os.path.join(work, f"{pipeline}.cancel"),
            lite=os.path.join(work, f"{pipeline}.lite"))
    return out


class _Classification:
    """DataHub's classification of a second pass's SQL tables (see ``_second_pass``): the
    recipe's own classification config and classifier (autokfp's, answering from the
    crawl's verdicts), run by DataHub's ``ClassificationHandler`` on each SchemaMetadata as
    it is replayed, as DataHub's SQL source runs it on a table's schema before emitting it.
    The glossary terms it attaches are materialised (their key aspects) at the end of the
    stream, as DataHub's ``auto_materialize_referenced_tags_terms`` does for a source's."""

    def __init__(self, recipe: dict[str, Any], source: SqlSource, verdicts: str,
                 views: set[str]):
        self.classification = json.loads(json.dumps(
            recipe["source"]["config"]["classification"]))
        for classifier in self.classification.get("classifiers") or []:
            if classifier.get("type") == _CLASSIFIER:
                classifier["config"] = {**(classifier.get("config") or {}),
                                        "verdicts": verdicts}
        self._handler: Any = None
        self.prefix = f"{source.platform_instance}." if source.platform_instance else ""
        self.terms: set[str] = set()  # referenced
        self.keyed: set[str] = set()  # whose key aspect the source emitted
        self.system: Any = None  # the system metadata of the source's last record
        # DataHub's SQL sources classify tables only (sql_common's _process_table), not views
        self.views = views

    @property
    def handler(self) -> Any:
        """DataHub's handler with the recipe's classifiers, made when first used: autokfp's
        reads the verdicts file, written once the crawl is done."""
        from datahub.ingestion.glossary.classification_mixin import (
            ClassificationHandler,
            ClassificationReportMixin,
            ClassificationSourceConfigMixin,
        )

        if self._handler is None:
            self._handler = ClassificationHandler(
                ClassificationSourceConfigMixin.model_validate(
                    {"classification": self.classification}), ClassificationReportMixin())
        return self._handler

    def __call__(self, record: Any) -> None:
        from datahub.emitter.mcp import MetadataChangeProposalWrapper
        from datahub.metadata.schema_classes import MetadataChangeEventClass, SchemaMetadataClass
        from datahub.utilities.urns.dataset_urn import DatasetUrn

        if getattr(record, "systemMetadata", None) is not None:  # the pipeline's run
            self.system = record.systemMetadata
        aspects: list[Any]
        if isinstance(record, MetadataChangeEventClass):
            urn, aspects = record.proposedSnapshot.urn, list(record.proposedSnapshot.aspects)
        elif isinstance(record, MetadataChangeProposalWrapper) and record.entityUrn:
            urn, aspects = record.entityUrn, [record.aspect]
            if urn.startswith("urn:li:glossaryTerm:"):
                self.keyed.add(urn)
        else:
            return
        if urn in self.views:
            return
        for aspect in aspects:
            if not isinstance(aspect, SchemaMetadataClass) or not aspect.fields:
                continue
            name = DatasetUrn.from_string(urn).name
            if self.prefix and name.startswith(self.prefix):
                name = name[len(self.prefix):]
            if self.handler.is_classification_enabled_for_table(name):
                # no sample: autokfp's classifier answers every column it has a verdict for
                # (see classify.verdicts_before_samples)
                self.handler.classify_schema_fields(name, aspect, {})
                self.terms.update(t.urn for f in aspect.fields if f.glossaryTerms
                                  for t in f.glossaryTerms.terms)

    def materialised(self) -> list[Any]:
        from datahub.emitter.mcp import MetadataChangeProposalWrapper
        from datahub.metadata.urns import GlossaryTermUrn

        # stamped as the source's records were by DataHub's pipeline (its run id and name)
        return [MetadataChangeProposalWrapper(
            entityUrn=urn, aspect=GlossaryTermUrn.from_string(urn).to_key_aspect(),
            systemMetadata=copy.deepcopy(self.system))
            for urn in sorted(self.terms - self.keyed)]


class _SourceApart:
    """DataHub's source half ``recipe`` of a second pass (``_second_pass``), running into
    ``spool`` in a forked child (``_stage``, as ``_staged_sources`` runs a first run's
    source) from when it is made; called, the tables it emitted (``_datahub_tables``, read
    from the spool as the child writes it; None when the source failed, said at INFO), once
    the child is done, and ``done(tables)`` with them (once, the first time it is called).
    ``ingest`` hands it to the crawl (``sources.sql.given_tables``), which calls it when it
    reaches the source: the crawl's sources before it are read meanwhile.

    Why: run in this process, DataHub's SQL source left its memory here for the rest of the
    run (peak RSS of a first run of 1,000 SQLite tables + 1,000 files 271-277 MiB against
    205 with ``sql_pass: beside``, whose source runs in a child), the crawl's workers, forked
    from this process afterwards, were as much bigger (179 against 132 MiB each), and the
    crawl waited for it. A child that makes no progress for ``settings.child_stall_secs``
    is stopped and the source runs here, as before (a WARNING says so)."""

    def __init__(self, recipe: dict[str, Any], spool: str, name: str,
                 done: Any = lambda tables, views: None) -> None:
        self.name, self.spool, self.done = name, spool, done
        self.job = _Staged(recipe=recipe, spool=spool, verdicts=None, cancel="")
        self.process, self.stacks = _start_orphan_safe(
            os.path.dirname(spool), os.path.basename(spool) + ".stacks",
            "autokfp-datahub-sql-source", _stage, [self.job])
        self._called = False
        self._tables: Any = None

    def __call__(self) -> Any:
        if self._called:
            return self._tables
        self._called = True
        try:
            tables, views = self._read()
        except DataError as exc:
            log.info("DataHub ingestion: source %s: DataHub's source failed before the "
                     "second pass (%s); crawled and run as before", self.name, exc)
            return None
        finally:
            self.stop()
        self._tables = tables
        self.done(tables, views)
        return tables

    def _read(self) -> tuple[Any, set[str]]:
        from autokfp.settings import child_stall_secs

        try:
            got = _datahub_tables(self.spool, _Watched(
                self.process, "the process running DataHub's SQL source before the second "
                "pass", self.stacks, child_stall_secs()))
            self.process.join(30)  # its end frame is written: it is ending
            return got
        except _ChildStalled as error:  # stopped (_Watched.stalled): the source runs here
            log.warning("DataHub ingestion: source %s: %s; DataHub's source runs in the "
                        "discover step's own process instead (same output, only later)",
                        self.name, error)
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.spool)
            _stage([self.job])
            return _datahub_tables(self.spool, lambda: False)

    def stop(self) -> None:
        lifeline.stop_process(self.process)


def _datahub_tables(spool: str, alive: Any = lambda: False) -> tuple[Any, set[str]]:
    """The tables a SQL recipe's DataHub source emitted (its spool, ``SpoolSink``): each
    dataset's table name (DatasetProperties.name), its SchemaMetadata's field paths, native
    types and nullability, and whether it is a view (ViewProperties), as
    ``sources.sql.DataHubTables`` in the order autokfp's crawl reads tables (tables, then
    views, each by name); and the URNs of the views. ``alive``: whether the process
    writing the spool runs (see ``_frames``).

    Raises:
        DataError: the spool's end frame carries the source's error (``_stage``)."""
    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.metadata.schema_classes import (
        DatasetPropertiesClass,
        MetadataChangeEventClass,
        SchemaMetadataClass,
        ViewPropertiesClass,
    )

    from autokfp.catalog.sources.sql import DataHubTables

    names: dict[str, str] = {}
    fields: dict[str, list[list[str]]] = {}
    views: set[str] = set()
    for kind, payload in _frames(spool, alive):
        if kind == "end" and payload is not None:
            raise DataError(payload)
        if kind != "groups":
            continue
        for group in payload:
            for record, _ in group:
                aspects: list[Any]
                if isinstance(record, MetadataChangeEventClass):
                    urn, aspects = record.proposedSnapshot.urn, list(
                        record.proposedSnapshot.aspects)
                elif isinstance(record, MetadataChangeProposalWrapper) and record.entityUrn:
                    urn, aspects = record.entityUrn, [record.aspect]
                else:
                    continue
                if not urn.startswith("urn:li:dataset:"):
                    continue
                for aspect in aspects:
                    if isinstance(aspect, DatasetPropertiesClass) and aspect.name:
                        names[urn] = aspect.name
                    elif isinstance(aspect, SchemaMetadataClass):
                        fields[urn] = [[f.fieldPath, f.nativeDataType, str(bool(f.nullable))]
                                       for f in aspect.fields]
                    elif isinstance(aspect, ViewPropertiesClass):
                        views.add(urn)
    view_names = {names[u] for u in views if u in names}
    ordered = sorted(n for u, n in names.items() if u not in views) + sorted(view_names)
    return DataHubTables(names=ordered, views=view_names,
                         declared={n: fields[u] for u, n in names.items() if u in fields}), views


def _second_pass(config: RunConfig, names: Iterable[str], work: str, store: Any,
                 stack: contextlib.ExitStack | None = None,
                 ) -> tuple[dict[str, _Staged], dict[str, Any], dict[str, Any]]:
    """Start the DataHub source of each generated SQL recipe in ``names``, in a child of its
    own, into a spool (``SpoolSink``), whose tables autokfp's crawl of that source then
    samples (``sources.sql.given_tables``): ({source: its staged run, to replay after the
    crawl}, {source: ``DataHubTables``, or the ``_SourceApart`` that gives them once its
    source is done}, {source: (the record of its tables to keep once its run is done,
    where)}); the first and the last are filled as each ``_SourceApart`` is done
    (``_settled``: all of them).

    A re-run whose source's DDL is that of its last second pass (``sql.ddl_version``: SQLite
    and PostgreSQL) and whose recipe is the same does not run DataHub's source first: the crawl is
    given the tables DataHub emitted then (kept in ``ingestion-state/<pipeline>.tables.json``)
    and counts their rows, so an unchanged source is skipped as on the default path (its
    fingerprint), and a source whose data changed runs its whole recipe after the crawl, as
    on the default path. Why: DataHub's source re-reads every table on every run (5.2x the
    default's CPU on an unchanged re-run of 1,000 tables + 1,000 files, docs/catalog.md).

    Why (issue 18 item 1): autokfp's part of a SQL source is a second pass over what
    DataHub's source emitted: the tables and their declared columns are DataHub's
    SchemaMetadata, not a listing and reflection of autokfp's own; what autokfp adds is what
    no DataHub source computes, from a bounded sample of each table: the profile, semantic
    types, PII and quality tags and the schema-version verdicts. The source half runs
    without its classification (which would wait for verdicts autokfp has only after the
    crawl); DataHub's classification runs in the replay instead (``_Classification``).
    A source whose recipe cannot be built, or whose DataHub source fails, is left out (it
    is crawled and run as without ``catalog.sql_pass: second``, which reports the error as
    before)."""
    import hashlib

    from autokfp.catalog.sources.sql import DataHubTables, ddl_token_platform, ddl_version

    out: dict[str, _Staged] = {}
    tables: dict[str, Any] = {}
    records: dict[str, Any] = {}
    for source in config.sources:
        if source.name not in names or not isinstance(source, SqlSource):
            continue
        try:
            item = recipe_for(config, source, work)
        except Exception as exc:  # noqa: BLE001 - the run after the crawl says why
            log.warning("catalog.sql_pass: %s: source %s gets no second pass (its "
                        "recipe cannot be built: %s); catalogued as with sql_pass: beside",
                        config.catalog.sql_pass, source.name, exc)
            continue
        pipeline = _pipeline(item)
        state = ddl_version(source)
        ddl = state[0] if state else None
        if state is None and ddl_token_platform(source) is not None:
            # chosen (or set) for its token, which could not be read: say what that costs
            log.warning("DataHub ingestion: source %s: its DDL token could not be read "
                        "(why: above), so %s; let the connection read its catalog "
                        "(sqlite_master, or PostgreSQL's pg_catalog) or set "
                        "catalog.sql_pass: beside", source.name, _NO_TOKEN_RERUN)
        # the recipe, the DataHub release and this record's format: an upgrade of DataHub
        # (what its source emits) runs the source again
        recipe_key = hashlib.sha256(json.dumps(
            {"format": 2, "datahub": _datahub_version(), "source": {
                k: v for k, v in item["source"]["config"].items()
                if k != "stateful_ingestion"}},
            sort_keys=True, default=str).encode()).hexdigest()
        where = f"ingestion-state/{pipeline}.tables.json"
        last = store.read_json(where, None) if ddl else None
        # the tables recorded last time must be every one the database has for this
        # source (a table DataHub's source left out then, or a record edited since, would
        # otherwise go without autokfp's aspects for as long as the DDL stays the same)
        if isinstance(last, dict) and last.get("ddl") == ddl and \
                last.get("recipe") == recipe_key and state is not None and \
                set(last.get("names") or ()) == state[1] and store.read_json(
                    f"ingestion-state/{pipeline}.done.json", None) is not None:
            log.info("DataHub ingestion: source %s: DDL and recipe as at its last second "
                     "pass; DataHub's source is not run again, its %d tables are reused",
                     source.name, len(state[1]))
            tables[source.name] = DataHubTables(
                names=list(last["names"]), views=set(last["views"]),
                declared={k: list(v) for k, v in last["declared"].items()})
            continue
        _fetch_kept(_kept(item, work, store, True))
        half = json.loads(json.dumps(item))
        classification = half["source"]["config"].pop("classification", None)
        spool = os.path.join(work, f"{pipeline}.spool")
        verdicts = _verdicts_path(work, item)

        def done(got: Any, views: set[str], name: str = source.name, item: Any = item,
                 source: SqlSource = source, where: str = where, ddl: str | None = ddl,
                 recipe_key: str = recipe_key, spool: str = spool, verdicts: str = verdicts,
                 classify: bool = bool(classification and classification.get("enabled"))
                 ) -> None:
            if ddl:
                records[name] = (where, {
                    "ddl": ddl, "recipe": recipe_key, "names": got.names,
                    "views": sorted(got.views), "declared": got.declared})
            out[name] = _Staged(
                recipe=item, spool=spool, verdicts=verdicts, cancel="", lite="",
                classify=_Classification(item, source, verdicts, views) if classify else None)

        apart = tables[source.name] = _SourceApart(half, spool, source.name, done)
        if stack is not None:  # stopped however ingest ends: a later source's recipe or
            stack.callback(apart.stop)  # DDL query raising here included
    return out, tables, records


def _settled(tables: dict[str, Any]) -> dict[str, Any]:
    """``_second_pass``'s tables once each source's DataHub run is done (each
    ``_SourceApart`` called, which fills ``_second_pass``'s staged runs and records), without
    the sources whose DataHub source failed."""
    got = {name: value() if callable(value) else value for name, value in tables.items()}
    return {name: value for name, value in got.items() if value is not None}


class _ChildStalled(Exception):  # noqa: N818 - a state, caught in ingest only
    """A child of ``_staged_sources`` made no progress for its bound while this process
    waited on it (``_Watched.stalled``): it is stopped and its recipe runs here instead."""


class _Watched:
    """A child of ``_staged_sources`` as this process waits on it: called, whether it runs
    (the ``alive`` of ``_frames`` and ``_lite_outcome``); each of their waits is bounded by
    ``waiting``'s ``lifeline.Stall`` (no output and under ``lifeline.STALL_CPU_SECS`` of CPU
    time for ``seconds``)."""

    def __init__(self, process: Any, what: str, stacks: str, seconds: float) -> None:
        self.process, self.what, self.stacks, self.seconds = process, what, stacks, seconds

    def __call__(self) -> bool:
        return bool(self.process.is_alive())

    @staticmethod
    def waiting(alive: Any) -> Any:
        """A new wait's ``lifeline.Stall`` when ``alive`` is watched (None: not watched)."""
        if not isinstance(alive, _Watched):
            return None
        return lifeline.Stall(alive.process.pid, alive.seconds)

    def stalled(self, stall: Any) -> _ChildStalled:
        """Its stacks to the log, then a SIGKILL; the error the waiting caller raises."""
        stacks = lifeline.stacks_of(self.process.pid, self.stacks).strip()
        log.warning("%s (pid %d) made no progress for %g s (no output, under %g CPU-s, not "
                    "waiting on a server): "
                    "stopped. Its threads:\n%s", self.what, self.process.pid, stall.seconds,
                    lifeline.STALL_CPU_SECS, stacks or "(its stacks could not be read)")
        lifeline.stop_process(self.process, grace=0.0)  # SIGKILL: it may ignore SIGTERM
        return _ChildStalled(
            f"{self.what} made no progress for {stall.seconds:g} s (no output, under "
            f"{lifeline.STALL_CPU_SECS:g} CPU-s, not waiting on a server; "
            f"{lifeline.STALL_ENV} sets the bound): it was stopped (its threads were: "
            f"{_last_frames(stacks)})")


def _last_frames(stacks: str, lines: int = 6) -> str:
    """The innermost lines of the main thread's stack in a ``faulthandler`` dump (what it
    waited on), for a one-line message; the whole dump is in the log."""
    current = stacks.split("\n\n")[0].strip().splitlines()
    return " | ".join(line.strip() for line in current[1:lines + 1]) or "unknown"


def _staged_sources(jobs: list[_Staged], catalog_dir: str) -> tuple[Any, Any]:
    """Start DataHub's sources of ``jobs`` in a process of their own, beside autokfp's crawl
    in this one (both read their inputs; the machine's second core does DataHub's part).

    Why: a first run is the crawl, then DataHub's pipeline, each CPU-bound and of about the
    same cost; DataHub's source (its reads, work-unit processors, validation, stateful
    ingestion) needs nothing of the crawl but the folder depths and, for a SQL source's
    classification, the crawl's verdicts (the child waits for them; they are written when
    the crawl is done). Its records are pickled to a spool (``SpoolSink``) and passed
    through autokfp's transformer and the sink in this process (``_replay``), in the order
    and groups DataHub's pipeline would have, so what is written is the same (tested).
    The recipe is made again after the crawl; where it differs (the folder changed between
    the two listings) the staged run is dropped and the recipe runs as before. A forked
    process: nothing is imported again, and it inherits the configuration.

    A second process (``_lite_writer``) loads the replayed records into DataHub Lite while
    this one transforms and writes the next ones: the sink's batches go to it through a
    spool of their own, in order, one recipe after the other, so Lite gets the same writes
    in the same order as from the sink itself (one writer at a time; a recipe's outcome is
    awaited before the next recipe runs).

    Returns both processes, each as a ``_Watched`` whose waits are bounded: a child that
    makes no progress (``settings.child_stall_secs``) is stopped, and ``ingest`` runs its
    recipe, and those after it, in this process as before (``_ChildStalled``). A child forked from a process
    with other threads can wait for good on what one of them held at the fork (CI: the
    source's child of a pytest worker that had run an in-process GCS emulator and fsspec's
    IO loop sat 600 s with no output)."""
    from autokfp.settings import child_stall_secs

    seconds = child_stall_secs()
    work = os.path.dirname(jobs[0].spool)
    process, stacks = _start_orphan_safe(work, "sources.stacks", "autokfp-datahub-sources",
                                         _stage, jobs)
    writer, writer_stacks = _start_orphan_safe(work, "lite.stacks", "autokfp-lite-writer",
                                               _lite_writer, jobs, catalog_dir)
    return (_Watched(process, "the process running DataHub's source beside the crawl",
                     stacks, seconds),
            _Watched(writer, "the process loading DataHub Lite beside the discover step",
                     writer_stacks, seconds))


def _start_orphan_safe(work: str, stacks_name: str, name: str, target: Any,
                       *args: Any) -> tuple[Any, str]:
    """A forked child, started, running ``target(*args)`` under ``_orphan_safe``: its
    temporary files in the ingestion's scratch folder ``<work>/tmp``, its threads' stacks
    (asked for when it stalls: ``_Watched``) in ``<work>/tmp/<stacks_name>``. (the process,
    the stacks' path.) Used by ``_staged_sources`` and ``_SourceApart``."""
    import multiprocessing

    scratch = os.path.join(work, "tmp")
    os.makedirs(scratch, exist_ok=True)
    stacks = os.path.join(scratch, stacks_name)
    dies = lifeline.dies_with_parent()  # made here: it names this process as the parent
    process = multiprocessing.get_context("fork").Process(
        target=_orphan_safe, args=(dies, scratch, stacks, target, *args), name=name,
        daemon=True)
    process.start()
    return process, stacks


def _orphan_safe(dies: Any, scratch: str, stacks: str, target: Any, *args: Any) -> None:
    """``target(*args)`` in a child forked by ``_staged_sources``, which the kernel kills
    when its parent ends (``dies``: ``lifeline.dies_with_parent()``, made in the parent;
    ``kill -9`` included): nobody would read what it writes, and DataHub's source would run
    on, or wait for the crawl's verdicts, for good (a kill mid-crawl left the source's
    process polling for them, an orphan, 10 minutes on when it was found). The parent is
    the thread that forked it, which ``ingest`` holds until both children are stopped.

    Its temporary files go into ``scratch``, in the ingestion's scratch folder (removed by
    ``ingest``, or by the next one after a kill): DataHub's sources keep state in temporary
    SQLite files (``FileBackedDict``: a folder each in the temporary directory) that they
    remove only when the objects are finalised, at the latest as an interpreter exits; a
    forked child ends with ``os._exit`` and finalises nothing, which left 11 such folders
    in /tmp per first run of a folder and a SQL source. On ``lifeline.STACK_SIGNAL`` it
    writes its threads' stacks to ``stacks`` (asked for when it stalls: ``_Watched``).

    The child never collects (and so never finalises) the objects it inherited, the
    parent's connections and files among them (``gc.freeze``): here, not in ``target``,
    which ``_SourceApart`` also calls in the discover step's own process when its child
    stalls, where a freeze would keep every object then alive out of the collector for the
    rest of the run."""
    import gc
    import tempfile

    gc.freeze()

    tempfile.tempdir = scratch
    os.environ["TMPDIR"] = scratch  # what the libraries' own children would use
    dies()
    lifeline.dump_stacks_on_signal(stacks)
    _own_event_loop()
    target(*args)


_INHERITED_LOOPS: list[Any] = []  # see _own_event_loop


def _own_event_loop() -> None:
    """In a forked child: a new asyncio event loop for the main thread, if the parent's had
    one.

    Why: DataHub's pipeline runs its version check on ``asyncio.get_event_loop()`` (aiohttp,
    whose DNS lookups go to the loop's default executor). A parent that ran a recipe in
    process has such a loop, and its executor's thread (``asyncio_0``, in CI's dump of the
    hung run) is not in the child: work given to it there never runs, and the child waits
    for it for good (``test_ingest.py``). The parent's loop is kept, never closed nor
    finalised here: closing it would take its self-pipe out of the epoll instance the
    parent shares with this process, and the parent's loop would no longer wake."""
    import sys

    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    policy = asyncio.get_event_loop_policy()
    inherited = getattr(getattr(policy, "_local", None), "_loop", None)
    if inherited is not None:
        _INHERITED_LOOPS.append(inherited)
        asyncio.set_event_loop(asyncio.new_event_loop())


# the temporary folder of an ingestion (see storage.scratch)
INGEST_SCRATCH = "autokfp-ingest-"


def _pieces(path: str, size: int = 1 << 20) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        while piece := handle.read(size):
            yield piece


# autokfp's classifier in a generated SQL recipe answers from the crawl's typing of each
# column. Not an option: False (DataHub's sample of every column typed again, the code before
# the crawl's verdicts were shared) is only for a test to show what sharing changes
_SHARE_VERDICTS = True


def _datahub_version() -> str:
    """The installed acryl-datahub release ("" when its metadata cannot be read)."""
    from importlib import metadata

    try:
        return metadata.version("acryl-datahub")
    except metadata.PackageNotFoundError:
        return ""


# what a second pass's re-run costs on a server without a DDL token (docs/catalog.md,
# "Issue 18, session 20": 1,000 SQLite tables with the token's check taken out)
_NO_TOKEN_RERUN = ("DataHub's source reads every table again on every re-run, an unchanged "
                   "one included (5.2x the CPU of sql_pass: beside at 1,000 tables)")


def _sql_pass_choices(config: RunConfig, user_recipe: bool,
                      fallback: dict[str, str]) -> dict[str, tuple[str, str]]:
    """How each SQL source of ``config`` is catalogued: {source: ("second" or "beside",
    why)}, logged once (INFO) and kept in the result (``IngestResult.sql_pass``).

    ``catalog.sql_pass: auto`` (the default): ``second`` for a source with a DDL token
    (``sources.sql.ddl_token_platform``: SQLite on a file, PostgreSQL), whose unchanged
    re-run skips DataHub's source as ``beside``'s does; ``beside`` for the other servers,
    whose second pass would run DataHub's source on every re-run (``_NO_TOKEN_RERUN``), and
    wherever a second pass does not apply (a user's recipe, a GMS, a source the crawl
    catalogs alone), without a warning: nobody asked for it. Measured: on a first run
    ``second`` costs the CPU of ``beside`` on SQLite (1.00x, ABBA) and 9% more on
    PostgreSQL with 112-79 MiB less peak memory (docs/catalog.md, "Issue 18, session 22").
    ``second`` set: as before, a WARNING where it does not apply (``_say_where_no_second
    _pass``) and, since session 23, where the source has no DDL token (what its re-runs
    will cost). ``beside`` set: every SQL source beside."""
    from autokfp.catalog.sources.sql import ddl_token_platform, sql_platform, sqlite_without_token

    setting = config.catalog.sql_pass
    sql = [s for s in config.sources if isinstance(s, SqlSource)]
    out: dict[str, tuple[str, str]] = {}
    if not sql:
        return out
    if setting == "second":
        _say_where_no_second_pass(config, user_recipe, fallback)
    gms = gms_settings() is not None
    for source in sql:
        platform = ddl_token_platform(source)
        if setting == "beside":
            out[source.name] = ("beside", "catalog.sql_pass: beside")
        elif user_recipe:
            out[source.name] = ("beside", f"catalog.sql_pass: {setting}, but a recipe was "
                                          "given, which runs as written")
        elif gms:
            out[source.name] = ("beside", f"catalog.sql_pass: {setting}, but a DataHub GMS "
                                          "is configured (a second pass writes to the file "
                                          "sink and Lite)")
        elif source.name in fallback:
            out[source.name] = ("beside", f"catalog.sql_pass: {setting}, but "
                                          f"{fallback[source.name]}")
        elif setting == "second":
            out[source.name] = ("second", "catalog.sql_pass: second")
            if platform is None:
                try:
                    kind = sql_platform(source.url, source.name)
                except Exception:  # noqa: BLE001 - the crawl reports it
                    kind = "its platform unknown"
                log.warning("catalog.sql_pass: second: SQL source %r (%s) has no DDL token "
                            "(SQLite on a file and PostgreSQL have one), so %s; "
                            "catalog.sql_pass: auto catalogs it beside DataHub's source "
                            "instead", source.name, kind, _NO_TOKEN_RERUN)
        elif platform is not None:
            out[source.name] = ("second", f"catalog.sql_pass: auto, {platform} has a DDL "
                                          "token")
        else:
            try:
                kind = sql_platform(source.url, source.name)
            except Exception:  # noqa: BLE001 - the crawl reports it
                kind = "platform unknown"
            if kind == "sqlite":  # a file has a token (above)
                kind = sqlite_without_token(source)
            out[source.name] = ("beside", f"catalog.sql_pass: auto, {kind} has no DDL token "
                                          "(a second pass would run DataHub's source on "
                                          "every re-run)")
    log.info("catalog.sql_pass: %s", "; ".join(
        f"source {name!r} {mode} ({why})" for name, (mode, why) in out.items()))
    return out


def _say_where_no_second_pass(config: RunConfig, user_recipe: bool,
                              fallback: dict[str, str]) -> None:
    """A WARNING for each SQL source ``catalog.sql_pass: second`` was set for and does not
    apply to, with the reason (the default path runs it instead): a user's recipe, a GMS
    (the second pass replays its records into the file sink and Lite only), or a source the
    crawl reads alone (``crawl_only``). Called only where ``second`` was set: ``auto``
    chooses ``beside`` there without a word (``_sql_pass_choices``)."""
    sql = [s.name for s in config.sources if isinstance(s, SqlSource)]
    if not sql:
        return
    if user_recipe:
        why = "a recipe was given, and it runs as written"
    elif gms_settings() is not None:
        why = "a DataHub GMS is configured; the second pass writes to the file sink and Lite"
    else:
        for name in sql:
            if name in fallback:
                log.warning("catalog.sql_pass: second does not apply to SQL source %r (%s); "
                            "it is catalogued as with sql_pass: beside", name, fallback[name])
        return
    log.warning("catalog.sql_pass: second does not apply (%s); SQL sources %s are "
                "catalogued as with sql_pass: beside", why, ", ".join(map(repr, sql)))


def ingest(config: RunConfig, recipe: str | os.PathLike | None = None,
           settings: Settings | None = None) -> IngestResult:
    """Catalog the sources through DataHub's own source plugins, with autokfp's aspects.

    Args:
        config: the run config; its sources are crawled by autokfp for the aspects it adds
            (schema versions are recorded as by ``crawl_sources``).
        recipe: a user's recipe (YAML) run instead of the generated ones; its sink is kept
            if it has one.
        settings: state locations (default from the environment).

    Returns:
        The recipes as run (secrets as ``${VAR}``), the dataset URNs DataHub emitted and the
        ones autokfp extended, the metadata files and what went to Lite or the GMS.

    A generated recipe is not run for a source autokfp's crawl could not read (it is in
    ``failed`` and in the crawl report's ``source_errors``), so one unreachable source does
    not fail the others, as in crawl mode. Nor for a source whose recipe cannot be built
    (a PostgreSQL source whose default schema cannot be told): a warning names the reason,
    which is in ``failed`` and the crawl report's ``source_errors`` too.

    Raises:
        ConfigError: a bad recipe file. DataError: DataHub's source failed on a source the
            crawl could read, or a user's recipe failed.
    """
    import uuid

    from autokfp.catalog.crawl import crawl_sources
    from autokfp.catalog.sources.sql import given_tables
    from autokfp.catalog.store import CatalogStore

    settings = settings or Settings.from_env()
    store = CatalogStore(settings)
    fallback = {} if recipe is not None else {
        s.name: why for s in config.sources if (why := crawl_only(s)) is not None}
    stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        # the spool of every schema and the sinks' metadata files: a run killed with kill -9
        # leaves them (GBs at 100,000 datasets), and the next ingestion removes them
        storage.scratch.remove_stale(INGEST_SCRATCH)
        work = storage.scratch.scratch_folder(INGEST_SCRATCH)
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        # DataHub's sources of a first run, beside the crawl (see _staged_sources)
        # catalog.sql_pass: second: DataHub's SQL sources first, autokfp's pass over their
        # output after them (see _second_pass)
        # (catalog.sql_pass: auto, the default: where the source has a DDL token)
        choices = _sql_pass_choices(config, recipe is not None, fallback)
        second = {name for name, (mode, _why) in choices.items() if mode == "second"}
        passed, given, kept_tables = _second_pass(config, second, work, store, stack) \
            if second else ({}, {}, {})
        staged = _staged_jobs(config, set(fallback) | second, work, store) if (
            recipe is None and _CONCURRENT) else {}
        alive, lite_alive = _staged_sources(list(staged.values()), str(settings.catalog_dir)) \
            if staged else (None, None)
        children = [watched.process for watched in (alive, lite_alive) if watched is not None]
        for process in children:
            stack.callback(lifeline.stop_process, process)

        def stalled(error: _ChildStalled, source: str, dropped: bool = False) -> None:
            """A child stopped (``_Watched.stalled``) while this process waited on it for
            ``source``: no recipe is staged any more; each runs in this process, ``source``'s
            too, as without the children. ``dropped``: the wait was the drain of ``source``'s
            staged run, which the crawl had not confirmed (its recipe runs here anyway)."""
            nonlocal alive, lite_alive
            for process in children:
                lifeline.stop_process(process, grace=0.0)
            rest = [name for name in staged
                    if name != source and name not in report.source_errors]
            staged.clear()
            alive = lite_alive = None
            if dropped:
                then = (f"this process was reading what remained of the staged run of source "
                        f"'{source}', dropped after the crawl (the recipe made again from the "
                        "crawl differs from the one staged before it), so the recipe made from "
                        "the crawl runs in the discover step's own process, as it would have "
                        "without the stall")
            else:
                then = (f"the recipe of source '{source}' runs in the discover step's own "
                        "process instead (same output, only later)")
            result.fallbacks[source] = f"{error}; {then}" + (
                f"; the recipes of {', '.join(rest)} run in this process too, not in the child"
                if rest else "")
            log.warning("DataHub ingestion: source %s: %s", source, result.fallbacks[source])
        # autokfp's aspects, handed to its transformer in this process (see extras_for),
        # built per dataset from a spool of the crawl's schemas (see ExtrasSpool)
        extras = ExtrasSpool(work)
        stack.callback(extras.close)
        files = {s.name for s in config.sources
                 if isinstance(s, (FolderSource, S3Source, GcsSource))}
        # a generated recipe with a record of its last good run may be skipped: its schemas
        # are spooled only if its fingerprint shows a change (_spool_source); the
        # fingerprint is taken as the crawl records each dataset (_Deferred)
        recorded = {s.name for s in config.sources if recipe is None and s.name not in staged
                    and gms_settings() is None and store.read_json(
                        "ingestion-state/" + _pipeline(
                            {"pipeline_name": f"autokfp-{config.name}-{s.name}"})
                        + ".done.json", None) is not None}
        taken = _Deferred(list(config.sources), extras, recorded) if recorded else None
        # with the config's catalog.workers, as on the crawl path: DataHub's source beside
        # the crawl used the second core for about a quarter of a first crawl of 2,000
        # datasets (its SQL recipe waits for the crawl's verdicts), so the crawl alone held
        # the step's process for 19 of its 29 CPU-s (docs/catalog.md "Ingestion path speed,
        # session 18")
        with given_tables(given):  # a second pass's SQL tables are DataHub's
            report = crawl_sources(config, settings=settings, publish_metadata=False,
                                   publish_sources=fallback, on_found=taken)
        _settled(given)  # the second passes the crawl did not reach (fills passed)
        deferred = recorded if lite_path(settings.catalog_dir).exists() else set()
        result = IngestResult(report=report, sql_pass={
            name: f"{mode}: {why}" for name, (mode, why) in choices.items()})
        for name, why in fallback.items():
            result.crawled[name] = why
            log.warning("DataHub ingestion: source %s is catalogued by autokfp's crawl: %s",
                        name, why)
        if report.published.get("metadata_uri"):
            result.metadata_files.append(report.published["metadata_uri"])
        result.lite_written += int(report.published.get("lite_written") or 0)
        passes = _source_passes(report, list(config.sources), extras,
                                files if recipe is None else set(), deferred,
                                taken if deferred else None)
        for name in deferred:
            one_source = next(s for s in config.sources if s.name == name)
            if name in report.source_errors or name in fallback:
                continue
            try:
                item = recipe_for(config, one_source, work, report, passes[name].relatives())
            except DataError:
                continue  # not run: the loop below reports it
            last = _last_run(store, item)
            if not passes[name].fingerprint(item) or \
                    last.get("fingerprint") != passes[name].fingerprint(item):
                _spool_source(report, one_source, extras, name in files, passes[name])
        for name, job in passed.items():  # the verdicts its classification answers from
            if job.verdicts is not None:
                Path(job.verdicts).write_text(json.dumps(passes[name].verdicts))
        # the staged recipes the crawl confirms (made again from what it found: the same),
        # their classifier verdicts written at once so the other process goes on
        made: dict[str, dict[str, Any] | DataError] = {}
        for name, job in list(staged.items()):
            if name not in staged:  # a child stalled: nothing is staged any more
                break
            one = next(s for s in config.sources if s.name == name)
            if name not in report.source_errors:
                try:
                    made[name] = recipe_for(config, one, work, report,
                                            passes[name].relatives())
                except DataError as exc:
                    made[name] = exc
            if made.get(name) != job.recipe:  # not run, or not as staged: drop it
                Path(job.cancel).write_text("")
                with open(job.lite, "wb") as out:  # nothing for Lite from this one
                    _write_frame(out, ("end", None))
                del staged[name]
                if name not in report.source_errors and not isinstance(made[name], DataError):
                    try:
                        for _ in _frames(job.spool, alive):  # its state file is not ours
                            pass
                    except _ChildStalled as error:
                        stalled(error, name, dropped=True)
            elif job.verdicts is not None:
                Path(job.verdicts + ".part").write_text(json.dumps(passes[name].verdicts))
                os.replace(job.verdicts + ".part", job.verdicts)
        users, unbuilt = None, []
        if recipe is not None:
            users = load_recipe(recipe)
            users.setdefault("sink", recipe_sink(os.path.join(work, "recipe.json")))
        for source in list(config.sources) if users is None else [None]:
            if source is not None and source.name in fallback:
                continue  # crawled and published above
            if source is not None and source.name in report.source_errors:
                # unreachable (or refused) for the crawl: one bad source must not fail the
                # whole discovery, as it does not in crawl mode; it is in the report
                result.failed[source.name] = report.source_errors[source.name]
                log.warning("DataHub ingestion: source %s skipped, it could not be read: %s",
                            source.name, report.source_errors[source.name])
                continue
            if users is not None:
                item = users
            else:
                assert source is not None
                try:  # with what the crawl learned: nothing is asked of a source twice
                    made_item = made.get(source.name) or (
                        passed[source.name].recipe if source.name in passed else None)
                    if isinstance(made_item, DataError):
                        raise made_item
                    item = made_item or recipe_for(config, source, work, report,
                                                   passes[source.name].relatives())
                except DataError as exc:  # reported, never a silent guess
                    report.source_errors[source.name] = result.failed[source.name] = str(exc)
                    unbuilt.append(source.name)
                    log.warning("DataHub ingestion: no recipe for source %s: %s",
                                source.name, exc)
                    continue
            one_run = partial(_ingest_one, item, source, generated=users is None, work=work,
                              extras=extras, report=report, store=store, settings=settings,
                              stamp=stamp, result=result,
                              summary=None if source is None else passes[source.name])
            try:
                if source is not None and source.name in passed:  # replayed here
                    one_run(staged=passed[source.name], alive=lambda: False)
                    if source.name in kept_tables:  # for the next run's check
                        store.write_json(*kept_tables[source.name])
                else:
                    one_run(staged=None if source is None else staged.get(source.name),
                            alive=alive, lite_alive=lite_alive)
            except _ChildStalled as error:
                assert source is not None  # only a generated recipe is staged
                stalled(error, source.name)
                one_run()  # as a recipe that was never staged: its kept state fetched again
        for process in children:
            process.join(60)  # its recipes are all done: it is ending
    if unbuilt:  # the crawl report was written before: it names them too
        store.write_json("last-crawl.json", report.to_dict())
    store.write_json("last-ingest.json", result.to_dict())
    log.info("DataHub ingestion: %d dataset(s) from %d recipe(s) (%d skipped: unchanged), "
             "%d extended by autokfp, %d removed, %d source(s) failed", len(result.datasets),
             len(result.recipes), len(result.skipped), len(result.extended),
             len(result.removed), len(result.failed))
    return result
