"""DataHub ingestion through DataHub's own sources (recipes), with autokfp's aspects added by
its transformer; output to the file sink and DataHub Lite."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import yaml

from autokfp import lifeline
from autokfp.catalog.datahub import read_lite
from autokfp.catalog.ingest import ingest, recipe_source
from autokfp.config import parse_config
from tests.engine.catalog.conftest import check_metadata_file


def _tags(field: dict) -> set[str]:
    return {t["tag"] for t in (field.get("globalTags") or {}).get("tags", [])}


def test_generated_recipes_run_datahubs_sources_and_autokfp_adds_its_aspects(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """... and the temporary folder of an ingestion killed with kill -9 (its spool of every
    schema, its sinks' files) is removed by the next one, which leaves none of its own."""
    import tempfile

    from autokfp.storage import scratch

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, folder, _db, frame = churn_sources
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    killed = Path(scratch.scratch_folder("autokfp-ingest-"))  # as a killed run leaves it
    owner = json.loads((killed / scratch.OWNER_FILE).read_text())
    owner["started"] -= 1  # this process id, another process
    (killed / scratch.OWNER_FILE).write_text(json.dumps(owner))
    (killed / "extras.db").write_bytes(b"spooled schemas")
    result = ingest(config)
    assert not killed.exists() and not list(temp.glob("autokfp-ingest-*"))
    csv_urn = f"urn:li:dataset:(urn:li:dataPlatform:file,{str(folder).lstrip('/')}/customers.csv,PROD)"
    table_urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.customers,PROD)"
    assert {r["source"]["type"] for r in result.recipes} == {"s3", "sqlalchemy"}
    assert {csv_urn, table_urn} <= set(result.datasets)
    assert set(result.extended) == set(result.datasets)  # autokfp named every one the same
    for path in result.metadata_files:
        check_metadata_file(path, tmp_path / "home")
        # the sink wrote autokfp's serialisation of DataHub's records (no validation pass):
        # exactly what DataHub's own to_obj makes of them
        from datahub.emitter.mcp import MetadataChangeProposalWrapper

        records = [r for r in json.loads(Path(path).read_text()) if "proposedSnapshot" not in r]
        assert len(records) > 10
        for record in records:
            parsed = MetadataChangeProposalWrapper.from_obj(json.loads(json.dumps(record)))
            if isinstance(parsed, MetadataChangeProposalWrapper):  # not a PATCH
                assert parsed.to_obj(simplified_structure=True) == record

    entity = read_lite(catalog_home.catalog_dir, table_urn)
    fields = {f["fieldPath"]: f for f in entity["schemaMetadata"]["fields"]}
    assert fields["email"]["nativeDataType"] == "TEXT"  # DataHub's sqlalchemy source (ours: string)
    assert {"urn:li:tag:pii", "urn:li:tag:pii:email"} <= _tags(fields["email"])  # autokfp's
    assert "urn:li:tag:target" in _tags(fields["churned"])
    assert entity["datasetProperties"]["customProperties"]["schema_version"] == "1"
    assert entity["datasetProfile"]["rowCount"] == len(frame)
    assert "urn:li:tag:pii" in {t["tag"] for t in entity["globalTags"]["tags"]}
    csv = read_lite(catalog_home.catalog_dir, csv_urn)
    assert csv["datasetProperties"]["customProperties"]["number_of_files"] == "1"  # DataHub's
    assert "urn:li:tag:semantic:email" in _tags(
        next(f for f in csv["schemaMetadata"]["fields"] if f["fieldPath"] == "email"))


def _customers_database(server, name: str) -> None:
    """A fresh PostgreSQL database ``name`` with a 3-row ``customers`` table (an email
    column: PII) on ``server``."""
    server.run("postgres", f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    server.run(name, "CREATE TABLE customers (id integer, email text, segment text)",
               "INSERT INTO customers VALUES (1, 'a@example.com', 'x'), (2, 'b@example.com', "
               "'y'), (3, 'c@example.com', 'x')")


def test_a_users_recipe_keeps_secrets_as_references(postgres_server, churn_sources,
                                                   catalog_home, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    server = postgres_server
    _customers_database(server, "shop")
    monkeypatch.setenv("AUTOKFP_TEST_PG_PASSWORD", server.password)
    url = server.url("shop").replace(server.password, "${AUTOKFP_TEST_PG_PASSWORD}")
    config = parse_config({"name": "shop", "sources": [{"name": "shop", "kind": "sql",
                                                         "url": url}],
                           "training": {"dataset": "shop/customers", "target": "segment"}})
    generated = recipe_source(config.sources[0])
    assert generated["type"] == "postgres"
    assert generated["config"]["password"] == "${AUTOKFP_TEST_PG_PASSWORD}"
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(yaml.safe_dump({"source": generated}))

    result = ingest(config, recipe=recipe)
    urn = "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.customers,PROD)"
    assert result.datasets == [urn] and result.extended == [urn]
    fields = {f["fieldPath"]: f for f in
              read_lite(catalog_home.catalog_dir, urn)["schemaMetadata"]["fields"]}
    assert "urn:li:tag:pii:email" in _tags(fields["email"])
    stored = Path(catalog_home.artifact_root, "catalog", "last-ingest.json").read_text()
    assert server.password not in stored and "${AUTOKFP_TEST_PG_PASSWORD}" in stored
    assert json.loads(stored)["recipes"][0]["source"]["type"] == "postgres"


def test_a_url_wholly_in_a_variable_is_crawled_and_ingested_and_never_stored(
        postgres_server, catalog_home, tmp_path, monkeypatch) -> None:
    """``url: ${VAR}``, the whole database URL (password and all) in the environment: the
    recipe connects through the reference (DataHub's ``sqlalchemy_uri``), names the datasets
    from its host and database, and neither the URL nor the password is stored."""
    from autokfp.catalog.sources.sql import ddl_version

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    server = postgres_server
    _customers_database(server, "whole")
    monkeypatch.setenv("AUTOKFP_TEST_PG_URL", server.url("whole"))
    config = parse_config({"name": "whole", "sources": [{"name": "whole", "kind": "sql",
                                                         "url": "${AUTOKFP_TEST_PG_URL}"}],
                           "training": {"dataset": "whole/customers", "target": "segment"}})
    generated = recipe_source(config.sources[0])
    assert generated["type"] == "postgres"
    assert generated["config"]["sqlalchemy_uri"] == "${AUTOKFP_TEST_PG_URL}"
    assert generated["config"]["database"] == "whole"
    assert "password" not in generated["config"] and "username" not in generated["config"]
    assert ddl_version(config.sources[0]) is not None  # the second pass's token reads it too
    # the user's driver (pg8000 here) gets the recipe's search path, as DataHub connects
    import sqlalchemy as sa

    engine = sa.create_engine(server.url("whole"), **generated["config"]["options"])
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW search_path").scalar() == "pg_catalog"
    finally:
        engine.dispose()
    result = ingest(config)
    urn = "urn:li:dataset:(urn:li:dataPlatform:postgres,whole.public.customers,PROD)"
    assert urn in result.datasets and urn in result.extended
    stored = Path(catalog_home.artifact_root, "catalog", "last-ingest.json").read_text()
    assert server.password not in stored and "${AUTOKFP_TEST_PG_URL}" in stored
    assert _files_holding(Path(catalog_home.artifact_root), server.password) == []


def _files_holding(folder: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_discover_step_runs_datahubs_ingestion_when_the_config_says_so(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    import pytest

    from autokfp.errors import ConfigError
    from autokfp.steps.discover import discover

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, _folder, _db, frame = churn_sources
    data = config.model_dump(mode="json", by_alias=True)
    data["catalog"] = {"ingestion": "datahub"}
    out = discover(data, str(tmp_path / "d.parquet"), str(tmp_path / "s.json"),
                   str(tmp_path / "c.json"))
    assert out.training_urn == "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.customers,PROD)"
    assert out.rows == len(frame)
    last = json.loads(Path(catalog_home.artifact_root, "catalog", "last-ingest.json").read_text())
    assert out.training_urn in last["extended"]
    with pytest.raises(ConfigError, match="catalog.ingestion: datahub"):
        parse_config({**data, "catalog": {"ingestion": "crawl", "recipe": "x.yml"}})


def test_the_discover_step_ingests_by_default_and_crawls_when_the_config_says_so(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """DataHub's ingestion is the default (issue 18); ``catalog.ingestion: crawl`` keeps
    autokfp's own crawl, with the same training dataset URN."""
    from autokfp.steps.discover import discover

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, _folder, _db, _frame = churn_sources
    data = config.model_dump(mode="json", by_alias=True)
    data.pop("catalog", None)
    assert parse_config(data).catalog.ingestion == "datahub"
    last = Path(catalog_home.artifact_root, "catalog", "last-ingest.json")
    ingested = discover(data, str(tmp_path / "d.parquet"), str(tmp_path / "s.json"),
                        str(tmp_path / "c.json"))
    assert ingested.training_urn in json.loads(last.read_text())["extended"]
    last.unlink()
    crawled = discover({**data, "catalog": {"ingestion": "crawl"}}, str(tmp_path / "d2.parquet"),
                       str(tmp_path / "s2.json"), str(tmp_path / "c2.json"))
    assert crawled.training_urn == ingested.training_urn and not last.exists()


def test_datahubs_classification_runs_autokfps_classifier(tmp_path, catalog_home,
                                                          monkeypatch) -> None:
    """DataHub's SQL source samples the columns and calls autokfp's classifier; the PII
    columns get DataHub's info-type glossary terms, the others none."""
    import sqlite3

    import pandas as pd

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "crm.db"
    n = 60
    with sqlite3.connect(db) as connection:
        pd.DataFrame({
            "id": range(n),
            "contact": [f"person{i}@mail.example.org" for i in range(n)],
            "ip": [f"10.0.{i % 250}.{(i * 7) % 250}" for i in range(n)],
            "plan": ["basic", "pro", "team"] * (n // 3),
        }).to_sql("accounts", connection, index=False)
    config = parse_config({"name": "crm", "sources": [{"name": "crm", "kind": "sql",
                                                       "url": f"sqlite:///{db}"}],
                           "training": {"dataset": "crm/accounts", "target": "plan"}})
    ingest(config)
    urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.accounts,PROD)"
    fields = {f["fieldPath"]: f for f in
              read_lite(catalog_home.catalog_dir, urn)["schemaMetadata"]["fields"]}
    terms = {name: {t["urn"] for t in (f.get("glossaryTerms") or {}).get("terms", [])}
             for name, f in fields.items()}
    assert terms == {"id": set(), "contact": {"urn:li:glossaryTerm:Email_Address"},
                     "ip": {"urn:li:glossaryTerm:IP_Address"}, "plan": set()}


def test_datahubs_classification_takes_the_crawls_verdict(tmp_path, catalog_home,
                                                          monkeypatch) -> None:
    """autokfp's classifier answers from the crawl's typing of a column (its sample spans the
    table) instead of typing DataHub's sample (the first rows) again: the glossary term and
    autokfp's pii tag agree. Typing DataHub's sample alone misses the emails here."""
    import sqlite3

    import pandas as pd

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "crm.db"
    n = 600  # DataHub's reader samples the first 120 rows (sample_size 100 x 1.2)
    with sqlite3.connect(db) as connection:
        pd.DataFrame({
            "id": range(n),
            "contact": [None] * 400 + [f"person{i}@mail.example.org" for i in range(200)],
            "plan": ["basic", "pro", "team"] * (n // 3),
        }).to_sql("accounts", connection, index=False)
    # sql_pass: beside: the classification of DataHub's source itself, beside the crawl (a
    # second pass, auto's choice for SQLite, classifies in its replay, from the verdicts
    # always: test_ingest_second_pass.py)
    beside = {"sql_pass": "beside"}
    config = parse_config({"name": "crm", "sources": [{"name": "crm", "kind": "sql",
                                                       "url": f"sqlite:///{db}"}],
                           "training": {"dataset": "crm/accounts", "target": "plan"},
                           "catalog": beside})
    urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.accounts,PROD)"

    def contact() -> tuple[set[str], set[str]]:
        fields = {f["fieldPath"]: f for f in
                  read_lite(catalog_home.catalog_dir, urn)["schemaMetadata"]["fields"]}
        terms = (fields["contact"].get("glossaryTerms") or {}).get("terms", [])
        return {t["urn"] for t in terms}, _tags(fields["contact"])

    from datahub.ingestion.source.sql.sqlalchemy_data_reader import SqlAlchemyTableDataReader

    import autokfp.catalog.ingest as ingest_module

    # tables whose first rows DataHub's source read (in the process DataHub's source runs in
    # beside the crawl: written to a file)
    read = tmp_path / "samples.jsonl"
    sample = SqlAlchemyTableDataReader.get_sample_data_for_table

    def recorded(self, table_id, *args, **kwargs):
        with read.open("a") as out:
            out.write(json.dumps(table_id) + "\n")
        return sample(self, table_id, *args, **kwargs)

    def samples() -> list[list[str]]:
        return [json.loads(line) for line in read.read_text().splitlines()]

    read.write_text("")
    monkeypatch.setattr(SqlAlchemyTableDataReader, "get_sample_data_for_table", recorded)
    monkeypatch.setattr(ingest_module, "_SHARE_VERDICTS", False)
    ingest(config)  # DataHub's sample typed again: no email in it
    terms, tags = contact()
    assert terms == set() and "urn:li:tag:pii:email" in tags  # the two disagree
    assert samples() == [["main", "accounts"]]
    (db.parent / "again.db").write_bytes(db.read_bytes())  # a new source: a first run
    config = parse_config({"name": "crm", "sources": [
        {"name": "again", "kind": "sql", "url": f"sqlite:///{db.parent / 'again.db'}",
         "platform_instance": "eu"}],
        "training": {"dataset": "again/accounts", "target": "plan"}, "catalog": beside})
    urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,eu.main.accounts,PROD)"
    monkeypatch.setattr(ingest_module, "_SHARE_VERDICTS", True)
    result = ingest(config)
    assert "verdicts" not in json.dumps(result.recipes)  # a run's file, not the recipe's
    terms, tags = contact()
    assert terms == {"urn:li:glossaryTerm:Email_Address"} and "urn:li:tag:pii:email" in tags
    # every column answered from the crawl's verdicts: the table's sample was not read
    assert samples() == [["main", "accounts"]]


def _versions(catalog_dir, urn: str) -> dict[str, int]:
    """{aspect: latest version} of one entity in DataHub Lite's SQLite file."""
    import sqlite3

    from autokfp.catalog.datahub import lite_path

    with sqlite3.connect(lite_path(catalog_dir)) as connection:
        rows = connection.execute("SELECT aspect_name, max(version) FROM metadata_aspect_v2 "
                                  "WHERE urn = ? GROUP BY aspect_name", [urn]).fetchall()
    return dict(rows)


def test_stateful_ingestion_adds_nothing_on_an_unchanged_rerun_and_soft_deletes_a_dropped_table(
        tmp_path, catalog_home, monkeypatch) -> None:
    """DataHub's own stateful ingestion (its file state provider, the checkpoint kept in the
    catalog): a re-run over unchanged data is skipped, a re-run after another table changed
    writes no new aspect version of the unchanged one into DataHub Lite, and a table dropped
    from the database is soft-deleted (Status removed) there."""
    import sqlite3

    import pandas as pd

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "shop.db"
    frame = pd.DataFrame({"id": range(30), "email": [f"u{i}@example.com" for i in range(30)],
                          "plan": ["a", "b", "c"] * 10})
    with sqlite3.connect(db) as connection:
        for name in ("customers", "orders", "visits"):
            frame.to_sql(name, connection, index=False)
    config = parse_config({"name": "shop", "sources": [{"name": "shop", "kind": "sql",
                                                         "url": f"sqlite:///{db}"}],
                           "training": {"dataset": "shop/customers", "target": "plan"}})
    urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.{},PROD)".format
    first = ingest(config)
    assert first.removed == []
    assert first.recipes[0]["source"]["config"]["stateful_ingestion"]["enabled"] is True
    state = Path(catalog_home.artifact_root, "catalog", "ingestion-state",
                 "autokfp-shop-shop.json")
    assert state.exists()
    before = _versions(catalog_home.catalog_dir, urn("customers"))
    assert before["schemaMetadata"] == 1 and before["datasetProfile"] == 1

    again = ingest(config)  # nothing changed: DataHub's source is not run again
    assert again.skipped == ["autokfp-shop-shop"] and again.metadata_files == []
    assert again.removed == [] and set(again.datasets) == set(first.datasets)
    assert _versions(catalog_home.catalog_dir, urn("customers")) == before

    with sqlite3.connect(db) as connection:  # another table changes: the source runs again
        connection.execute("INSERT INTO visits VALUES (30, 'u30@example.com', 'a')")
    changed = ingest(config)
    assert changed.skipped == [] and len(changed.metadata_files) == 1
    assert _versions(catalog_home.catalog_dir, urn("customers")) == before  # still nothing new
    assert _versions(catalog_home.catalog_dir, urn("visits"))["datasetProfile"] == 2

    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE orders")
    dropped = ingest(config)
    assert dropped.removed == [urn("orders")]
    assert urn("orders") not in dropped.datasets
    assert read_lite(catalog_home.catalog_dir, urn("orders"))["status"]["removed"] is True
    assert read_lite(catalog_home.catalog_dir, urn("visits"))["status"]["removed"] is False
    assert _versions(catalog_home.catalog_dir, urn("customers")) == before

    from autokfp.catalog.datahub import lite_path

    for leftover in lite_path(catalog_home.catalog_dir).parent.glob("datahub-lite.db*"):
        leftover.unlink()  # a deleted DataHub Lite is refilled, not skipped
    refilled = ingest(config)
    assert refilled.skipped == []
    assert read_lite(catalog_home.catalog_dir, urn("customers"))["schemaMetadata"]["fields"]


def _snapshot(urn: str):
    """A MetadataChangeEvent as DataHub's sqlalchemy source emits a table: a DatasetSnapshot
    with union-typed fields, tags, glossary terms and nulls."""
    from datahub.metadata.schema_classes import (
        AuditStampClass,
        DatasetPropertiesClass,
        DatasetSnapshotClass,
        GlobalTagsClass,
        GlossaryTermAssociationClass,
        GlossaryTermsClass,
        MetadataChangeEventClass,
        MySqlDDLClass,
        NumberTypeClass,
        SchemaFieldClass,
        SchemaFieldDataTypeClass,
        SchemaMetadataClass,
        StringTypeClass,
        TagAssociationClass,
    )

    stamp = AuditStampClass(time=1764979200000, actor="urn:li:corpuser:datahub")
    fields = [
        SchemaFieldClass(fieldPath="id", type=SchemaFieldDataTypeClass(NumberTypeClass()),
                         nativeDataType="INTEGER", nullable=False, isPartOfKey=True),
        SchemaFieldClass(fieldPath="email", type=SchemaFieldDataTypeClass(StringTypeClass()),
                         nativeDataType="TEXT", nullable=True, description="email column",
                         globalTags=GlobalTagsClass(tags=[TagAssociationClass("urn:li:tag:pii")]),
                         glossaryTerms=GlossaryTermsClass(terms=[GlossaryTermAssociationClass(
                             "urn:li:glossaryTerm:Email_Address")], auditStamp=stamp))]
    return MetadataChangeEventClass(proposedSnapshot=DatasetSnapshotClass(urn=urn, aspects=[
        DatasetPropertiesClass(name="t", customProperties={"schema_version": "1"}),
        SchemaMetadataClass(schemaName="main.t", platform="urn:li:dataPlatform:sqlite",
                            version=0, hash="", platformSchema=MySqlDDLClass(tableSchema=""),
                            fields=fields)]))


def test_the_streamed_file_sink_writes_datahubs_records_and_loads_lite_in_batches(
        tmp_path, monkeypatch) -> None:
    """run_recipe runs a recipe's file sink through LinearFileSink, which streams: the file
    holds the same JSON records as DataHub's file sink wrote (compact, not indented), and
    with ``lite`` every whole aspect reaches DataHub Lite a batch at a time, a snapshot's
    aspects with the serialisation the file got (the same as DataHub's, checked here)."""
    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.emitter.mcp_builder import mcps_from_mce
    from datahub.ingestion.api.common import PipelineContext, RecordEnvelope
    from datahub.ingestion.sink.file import FileSink
    from datahub.metadata.schema_classes import (
        DatasetPropertiesClass,
        MetadataChangeProposalClass,
        StatusClass,
        SystemMetadataClass,
    )

    from autokfp.catalog import ingest as ingest_module
    from autokfp.catalog.datahub import avro_obj, lite_config, simplified_obj
    from autokfp.catalog.ingest import LinearFileSink, snapshot_proposals

    urn = "urn:li:dataset:(urn:li:dataPlatform:file,a/b{}.csv,PROD)".format
    records: list = [MetadataChangeProposalWrapper(entityUrn=urn(i), aspect=aspect)
                     for i in range(3) for aspect in (StatusClass(removed=False),
                                                      DatasetPropertiesClass(
                         name=f"b{i}", customProperties={"k": "v\u00e9"}))]
    snapshot = _snapshot(urn(9))  # as DataHub's SQL sources emit a table, stamped by its run
    snapshot.systemMetadata = SystemMetadataClass(lastObserved=5, runId="r")
    records.insert(1, snapshot)
    records.append(MetadataChangeProposalClass(  # a PATCH: in the file, not in Lite
        entityType="dataset", entityUrn=urn(0), changeType="PATCH",
        aspectName="datasetProperties"))
    assert [p.to_obj(simplified_structure=True) for p in snapshot_proposals(
        snapshot, avro_obj(snapshot))] == [simplified_obj(m) for m in mcps_from_mce(snapshot)]
    monkeypatch.setattr(ingest_module, "LITE_BATCH", 2)
    loads: list[int] = []
    real_load = ingest_module.load_into_lite

    def counting_load(proposals, catalog_dir):
        loads.append(len(proposals))
        return real_load(proposals, catalog_dir)

    monkeypatch.setattr(ingest_module, "load_into_lite", counting_load)
    for count in (0, 1, len(records)):
        written, loads[:] = [], []
        for cls in (FileSink, LinearFileSink):
            path = tmp_path / f"{cls.__name__}-{count}.json"
            config = {"filename": str(path)}
            if cls is LinearFileSink:
                config.update(lite=str(tmp_path / f"catalog-{count}"), run=f"r{count}")
            sink = cls.create(config, PipelineContext(run_id="t"))
            for record in records[:count]:
                sink.write_record_async(RecordEnvelope(record, metadata={}), None)
            sink.close()
            written.append(json.loads(path.read_text()))
        assert written[0] == written[1] and len(written[1]) == count
        aspects = 8 if count == len(records) else count  # 6 + the snapshot's 2, no PATCH
        assert LinearFileSink.outcomes.pop(f"r{count}")["lite_written"] == aspects
        assert max(loads, default=0) <= 3 and sum(loads) == aspects  # batches of 2 (+1)
    lite = __import__("datahub.lite.lite_util", fromlist=["x"]).get_datahub_lite(
        lite_config(tmp_path / f"catalog-{len(records)}"))
    try:
        got = lite.get(urn(9), None, typed=False) or {}
        assert "schemaMetadata" in got and got["datasetProperties"]["customProperties"] == {
            "schema_version": "1"}
        assert lite.get(urn(2), None, typed=False)["datasetProperties"]["name"] == "b2"
        # a proposal without system metadata (autokfp's own aspects) is stamped as Lite
        # stamps it itself (lastObserved aside)
        ours = lite.get(urn(2), ["status"], details=True)["status"]["__systemMetadata"]
        real_load([MetadataChangeProposalWrapper(entityUrn=urn(7), aspect=StatusClass(
            removed=False))], tmp_path / f"catalog-{len(records)}")
        theirs = lite.get(urn(7), ["status"], details=True)["status"]["__systemMetadata"]
        assert ours.pop("lastObserved") and theirs.pop("lastObserved")
        assert ours == theirs and ours["runId"] == "no-run-id-provided"
    finally:
        lite.close()


def test_with_a_gms_datahubs_rest_sink_and_state_provider_are_used(tmp_path, catalog_home,
                                                                      monkeypatch) -> None:
    """DATAHUB_GMS_URL set: the generated recipe sends through DataHub's REST sink (GMS's
    batch endpoint, every proposal valid to DataHub's schemas, the token a ${VAR}), keeps
    its stateful-ingestion checkpoint in GMS (DataHub's datahub state provider), and a
    table dropped before the next run is soft-deleted there."""
    import sqlite3

    import pandas as pd

    from tests.engine.catalog.gms_fake import FakeGms

    token = "eyJhbGciOiJIUzI1NiJ9.ingest-token"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "shop.db"
    frame = pd.DataFrame({"id": range(20), "email": [f"u{i}@example.com" for i in range(20)],
                          "plan": ["a", "b"] * 10})
    with sqlite3.connect(db) as connection:
        for name in ("customers", "orders"):
            frame.to_sql(name, connection, index=False)
    config = parse_config({"name": "shop", "sources": [{"name": "shop", "kind": "sql",
                                                         "url": f"sqlite:///{db}"}],
                           "training": {"dataset": "shop/customers", "target": "plan"}})
    urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.{},PROD)".format
    with FakeGms(token) as gms:
        monkeypatch.setenv("DATAHUB_GMS_URL", gms.url)
        monkeypatch.setenv("DATAHUB_GMS_TOKEN", token)
        first = ingest(config)
        assert first.recipes[0]["sink"] == {"type": "datahub-rest", "config": {
            "server": "${DATAHUB_GMS_URL}", "token": "${DATAHUB_GMS_TOKEN}"}}
        assert "state_provider" not in first.recipes[0]["source"]["config"][
            "stateful_ingestion"]  # DataHub's default with a GMS: its datahub provider
        assert set(first.datasets) == {urn("customers"), urn("orders")} == set(first.extended)
        assert first.gms_url and first.metadata_files == [] and first.lite_written == 0
        assert gms.refused == []
        posts = {r["path"] for r in gms.requests if r["method"] == "POST"}
        assert "/aspects?action=ingestProposalBatch" in posts
        fields = {f["fieldPath"]: f for f in gms.aspects[(urn("customers"),
                                                          "schemaMetadata")]["fields"]}
        assert "urn:li:tag:pii:email" in _tags(fields["email"])  # autokfp's transformer
        checkpoints = [k for k in gms.timeseries if k[1] == "datahubIngestionCheckpoint"]
        assert checkpoints  # DataHub's checkpoint, kept in GMS

        with sqlite3.connect(db) as connection:
            connection.execute("DROP TABLE orders")
        second = ingest(config)
        assert second.removed == [urn("orders")] and second.datasets == [urn("customers")]
        assert gms.aspects[(urn("orders"), "status")] == {"removed": True}
        assert gms.aspects[(urn("customers"), "status")] == {"removed": False}
        assert gms.refused == []
    assert token not in Path(catalog_home.artifact_root, "catalog", "last-ingest.json").read_text()


def _sessions(server, database: str) -> list[tuple]:
    """The sessions open on ``database`` (seen from the ``postgres`` database, so the
    test's own monitoring session is not among them)."""
    import pg8000.native

    monitor = pg8000.native.Connection(server.user, password=server.password,
                                       host="127.0.0.1", port=server.port, database="postgres")
    try:
        return [tuple(r) for r in monitor.run(
            "SELECT pid, application_name, state FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()", db=database)]
    finally:
        monitor.close()


def test_ingest_leaves_no_postgres_session_open_on_success_or_failure(
        postgres_server, tmp_path, catalog_home, monkeypatch) -> None:
    """Issue 18: DataHub's SQL sources create SQLAlchemy engines they never dispose, so each
    ``ingest()`` left its pooled sessions open until garbage collection (a ``DROP DATABASE``
    was refused). Automatic collection is off while this runs: only an explicit close counts."""
    import gc

    import pytest

    from autokfp.catalog.ingest import AutokfpAspects
    from autokfp.errors import DataError

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS leak", "CREATE DATABASE leak")
    server.run("leak", "CREATE TABLE customers (id integer, email text, segment text)",
               "INSERT INTO customers VALUES (1, 'a@example.com', 'x'), (2, 'b@example.com', "
               "'y'), (3, 'c@example.com', 'x')")
    config = parse_config({"name": "leak", "sources": [{"name": "leak", "kind": "sql",
                                                         "url": server.url("leak")}],
                           "training": {"dataset": "leak/customers", "target": "segment"}})
    assert _sessions(server, "leak") == []
    gc.collect()
    gc.disable()
    try:
        result = ingest(config)
        assert "urn:li:dataset:(urn:li:dataPlatform:postgres,leak.public.customers,PROD)" \
            in result.datasets  # DataHub's postgres source did read the database
        assert _sessions(server, "leak") == []

        def broken(self, record_envelopes):  # fails once DataHub's source has read a table
            for _ in record_envelopes:
                raise RuntimeError("transformer broke mid-run")
            yield from ()

        monkeypatch.setattr(AutokfpAspects, "transform", broken)
        server.run("leak", "INSERT INTO customers VALUES (4, 'd@example.com', 'y')")
        with pytest.raises(DataError, match="transformer broke mid-run"):
            ingest(config)
        assert _sessions(server, "leak") == []
    finally:
        gc.enable()
    server.run("postgres", "DROP DATABASE leak")  # what the leak used to block


def test_one_unreachable_source_does_not_fail_the_ingestion_of_the_others(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """As in crawl mode, a source nobody can reach is reported, not fatal: the folder is still
    catalogued through DataHub's own source, and the discovery step's counts say one failed."""
    import socket

    from autokfp.steps.catalog_sources import catalog_sources

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, folder, _db, _frame = churn_sources
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = config.model_dump(mode="json", by_alias=True)
    data["catalog"] = {"ingestion": "datahub"}
    data["sources"] = [data["sources"][0],
                       {"name": "gone", "kind": "sql",
                        "url": f"postgresql+pg8000://u@127.0.0.1:{port}/shop"}]
    data["training"] = {**data["training"], "dataset": "files/customers.csv"}
    result = ingest(parse_config(data))
    assert set(result.failed) == {"gone"}
    assert result.failed["gone"]  # the crawl's error, not an empty note
    assert [r["source"]["type"] for r in result.recipes] == ["s3"]  # the folder's ran
    csv_urn = f"urn:li:dataset:(urn:li:dataPlatform:file,{str(folder).lstrip('/')}/customers.csv,PROD)"
    assert csv_urn in result.datasets
    out = catalog_sources(data, str(tmp_path / "r.html"), str(tmp_path / "c.json"))
    assert out.sources_failed == 1
    assert out.catalogued >= 1


def test_a_postgres_schema_that_cannot_be_told_is_reported_never_guessed_as_public(
        postgres_server, catalog_home, tmp_path, monkeypatch) -> None:
    """Reviewer's note on 7a85894: a PostgreSQL source without ``schema`` got a recipe for
    ``public`` in silence when its default schema could not be told. Now the recipe names the
    schema autokfp's crawl learned from the connection (no second connection), and when there
    is none the source is reported with the reason (``failed``, the crawl report), not run."""
    import socket

    from autokfp.catalog.ingest import recipe_source
    from autokfp.catalog.store import CatalogStore
    from autokfp.errors import DataError

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = parse_config({"name": "x", "sources": [
        {"name": "gone", "kind": "sql", "url": f"postgresql+pg8000://u:s3cret-pw@127.0.0.1:"
                                                f"{port}/shop"}],
        "training": {"dataset": "gone/t", "target": "y"}})
    try:
        recipe_source(closed.sources[0])
        raise AssertionError("a recipe was built for a schema nobody could tell")
    except DataError as exc:
        text = str(exc)
    assert "'gone'" in text and "set 'schema:'" in text and "s3cret-pw" not in text
    assert "refused" in text.lower() or "connect" in text.lower(), text

    # a database whose search_path names no existing schema: current_schema() is NULL
    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS lost", "CREATE DATABASE lost")
    server.run("lost", "CREATE TABLE public.orders (id integer)",
               "ALTER DATABASE lost SET search_path = nosuch")
    config = parse_config({"name": "lost", "sources": [
        {"name": "lost", "kind": "sql", "url": server.url("lost")}],
        "training": {"dataset": "lost/orders", "target": "id"}})
    result = ingest(config)
    assert set(result.failed) == {"lost"} and "no current schema" in result.failed["lost"]
    assert result.recipes == [] and result.datasets == []  # public was not read instead
    assert result.report.source_errors["lost"] == result.failed["lost"]
    written = CatalogStore().read_json("last-crawl.json", {})
    assert written["source_errors"]["lost"] == result.failed["lost"]


def test_sqlite_view_lineage_on_the_ingestion_path_names_the_tables_it_reads(
        tmp_path, catalog_home, monkeypatch) -> None:
    """DataHub's sqlalchemy source cannot split a SQLite view's name (``main.big_orders``) and
    names the tables its view reads ``edge.customers``, datasets that do not exist (the
    parity test shows its stock recipe doing so). On the ingestion path autokfp's transformer
    renames them to the tables they are, in the view's table and column lineage and in its
    query's subjects: every dataset the file and Lite name is one DataHub's source catalogued."""
    import re
    import sqlite3

    import pandas as pd

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "warehouse.db"
    frame = pd.DataFrame({"id": range(6), "email": [f"u{i}@example.com" for i in range(6)],
                          "amount": [1.5 * i for i in range(6)]})
    with sqlite3.connect(db) as connection:
        frame.to_sql("customers", connection, index=False)
        frame.rename(columns={"amount": "total"}).to_sql("orders", connection, index=False)
        connection.execute("CREATE VIEW big_orders AS SELECT o.id, total, c.email FROM orders o "
                           "JOIN customers c ON c.id = o.id WHERE o.total > 2")
    config = parse_config({"name": "edge", "sources": [
        {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}", "env": "DEV",
         "platform_instance": "edge"}],
        "training": {"dataset": "warehouse/customers", "target": "id"}})
    result = ingest(config)
    urn = "urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.{},DEV)".format
    assert set(result.datasets) == {urn("customers"), urn("orders"), urn("big_orders")}
    (path,) = result.metadata_files
    text = Path(path).read_text()
    named = set(re.findall(r"urn:li:dataset:\(urn:li:dataPlatform:sqlite,[^,]+,DEV\)", text))
    assert named == set(result.datasets)  # no edge.customers, no customers
    lineage = read_lite(catalog_home.catalog_dir, urn("big_orders"))["upstreamLineage"]
    assert sorted(u["dataset"] for u in lineage["upstreams"]) == [urn("customers"), urn("orders")]
    field = "urn:li:schemaField:({},{})".format
    columns = {fine["downstreams"][0].rsplit(",", 1)[1][:-1]: fine["upstreams"]
               for fine in lineage["fineGrainedLineages"]}
    assert columns == {"id": [field(urn("orders"), "id")], "total": [field(urn("orders"), "total")],
                       "email": [field(urn("customers"), "email")]}
    subjects = [r for r in json.loads(text) if r.get("aspectName") == "querySubjects"]
    assert subjects and {s["entity"] for s in subjects[0]["aspect"]["json"]["subjects"]
                         if s["entity"].startswith("urn:li:dataset:")} == set(result.datasets)


def test_a_gs_prefix_without_hmac_keys_is_catalogued_by_the_crawl_and_the_rest_by_datahub(
        gcs_emulator, churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """DataHub's gcs source reads GCS only through its S3 API with HMAC keys. Without them a
    gs:// source is catalogued by autokfp's crawl (published to the metadata file and Lite,
    ``IngestResult.crawled`` says why), the folder still by DataHub's own source, and the
    discovery step does not fail (it raised 'GCS_HMAC_ACCESS_ID: unbound variable')."""
    import uuid

    from autokfp import storage
    from autokfp.steps.catalog_sources import catalog_sources

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GCS_HMAC_ACCESS_ID", raising=False)
    monkeypatch.delenv("GCS_HMAC_ACCESS_SECRET", raising=False)
    config, folder, _db, frame = churn_sources
    base = storage.join(gcs_emulator.base_uri, f"ingest-{uuid.uuid4().hex[:8]}")
    storage.write_text(storage.join(base, "raw", "orders.csv"), frame.head(30).to_csv(index=False))
    data = config.model_dump(mode="json", by_alias=True)
    data["catalog"] = {"ingestion": "datahub"}
    data["sources"] = [data["sources"][0], {"name": "lake", "kind": "gcs", "uri": base}]
    data["training"] = {**data["training"], "dataset": "files/customers.csv"}
    result = ingest(parse_config(data))
    assert set(result.crawled) == {"lake"} and "HMAC" in result.crawled["lake"]
    assert [r["source"]["type"] for r in result.recipes] == ["s3"]  # the folder's, DataHub's
    bucket_key = base.split("://", 1)[1]
    gcs_urn = f"urn:li:dataset:(urn:li:dataPlatform:gcs,{bucket_key}/raw/orders.csv,PROD)"
    entity = read_lite(catalog_home.catalog_dir, gcs_urn)  # the crawl published it
    assert entity["datasetProfile"]["rowCount"] == 30
    assert any(gcs_urn in Path(p).read_text() for p in result.metadata_files)
    csv_urn = f"urn:li:dataset:(urn:li:dataPlatform:file,{str(folder).lstrip('/')}/customers.csv,PROD)"
    assert csv_urn in result.datasets and gcs_urn not in result.datasets
    again = ingest(parse_config(data))  # unchanged: the crawl publishes nothing new
    assert again.metadata_files == [] or all(gcs_urn not in Path(p).read_text()
                                             for p in again.metadata_files)
    out = catalog_sources(data, str(tmp_path / "r.html"), str(tmp_path / "c.json"))
    assert out.sources_failed == 0 and out.catalogued >= 2


def test_the_transformers_extras_are_the_crawls_own_aspects(churn_sources, catalog_home,
                                                            tmp_path) -> None:
    """extras_for builds only the aspects the transformer adds (an unchanged re-run builds
    them for every dataset): they are metadata_proposals' own, a reused dataset gets no
    profile, and the JSON form a recipe of one's own names reads back the same."""
    import sqlite3

    from autokfp.catalog.crawl import crawl_sources
    from autokfp.catalog.datahub import dataset_facts, dataset_urn, metadata_proposals
    from autokfp.catalog.ingest import (
        AutokfpAspects,
        ExtrasSpool,
        _classifier_verdicts,
        _source_passes,
        _unchanged_fingerprint,
        extras_for,
        extras_json,
        recipe_for,
    )

    config, _folder, db, _frame = churn_sources
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE VIEW churned AS SELECT customer_id FROM customers "
                           "WHERE churned = 1")
    schemas = [d.schema for d in crawl_sources(config, publish_metadata=False).found if d.ok]
    assert any(s.view for s in schemas) and len(schemas) >= 4
    reused = schemas[0].dataset_id
    extras = extras_for(schemas, [reused])
    for schema in schemas:
        made = {p.aspectName: p.aspect for p in metadata_proposals(schema)}
        extra = extras[dataset_urn(schema)]
        assert extra["properties"] == made["datasetProperties"].customProperties
        assert extra["tags"] == [t.tag for t in made["globalTags"].tags]
        if schema.dataset_id == reused:
            assert extra["profile"] is None
        else:  # built when the transformer asks for it
            ours, theirs = extra["profile"]().to_obj(), made["datasetProfile"].to_obj()
            assert ours.pop("timestampMillis") and theirs.pop("timestampMillis")
            assert ours == theirs
        lineage = made.get("upstreamLineage")
        assert (extra["lineage"].to_obj() if extra["lineage"] else None) == (
            lineage.to_obj() if lineage else None)
    path = tmp_path / "extras.json"
    path.write_text(extras_json(extras))
    loaded = AutokfpAspects.create({"extras": str(path)}, None).extras
    assert loaded.keys() == extras.keys()
    for urn, extra in extras.items():
        assert loaded[urn]["properties"] == extra["properties"]
        assert loaded[urn]["profile"] == (extra["profile"]().to_obj() if extra["profile"]
                                          else None)
    # ingest() builds them per dataset from a spool of the schemas, keeping only the recent
    # ones: one here, so every lookup but the repeated one builds them again, the same
    spool = ExtrasSpool(str(tmp_path))
    spool.RECENT = 1
    for schema in schemas:
        spool.add(schema, reused=schema.dataset_id == reused)
    spool.rename("urn:li:dataset:(urn:li:dataPlatform:sqlite,wrong,PROD)",
                 dataset_urn(schemas[1]))
    assert list(spool) == list(extras) and len(spool) == len(extras)
    assert "urn:li:dataset:(urn:li:dataPlatform:sqlite,nosuch,PROD)" not in spool
    def built(extra: dict) -> dict:
        made = {k: v() if callable(v) else v for k, v in extra.items()}
        return {k: v.to_obj() if hasattr(v, "to_obj") else v for k, v in made.items()}

    for urn in [*extras, *extras]:
        theirs, ours = built(spool[urn]), built(extras[urn])
        for one in (theirs, ours):
            if one["profile"]:
                one["profile"].pop("timestampMillis")
        if urn == dataset_urn(schemas[1]):
            assert theirs.pop("datahub_names") == [
                "urn:li:dataset:(urn:li:dataPlatform:sqlite,wrong,PROD)"]
        assert theirs == ours
    # at the end of the stream the transformer asks for each dataset's tags, profile, schema
    # and a view's lineage again (ExtrasSpool.closing): the same, without building the rest
    import pytest

    import autokfp.catalog.ingest as ingest_module

    def closing_part(extra: dict) -> dict:
        one = built(extra)
        if one["profile"]:
            one["profile"].pop("timestampMillis")
        return {key: one[key] for key in ("tags", "profile", "lineage", "schema")}

    facts: list = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_module, "dataset_facts", lambda schema: facts.append(schema) or
                      dataset_facts(schema))
        for urn in extras:
            assert closing_part(spool.closing(urn)) == closing_part(extras[urn])
    assert facts == []  # each was built before: its properties and field tags are not again
    assert AutokfpAspects(spool).renames == {
        "urn:li:dataset:(urn:li:dataPlatform:sqlite,wrong,PROD)": dataset_urn(schemas[1])}
    spool.close()
    # ingest() reads the crawl once (_source_passes) for the recipes' path specs, the
    # fingerprints and the classifier: the same as reading it per use
    report = crawl_sources(config, publish_metadata=False)
    (tmp_path / "pass").mkdir()
    one_pass = ExtrasSpool(str(tmp_path / "pass"), stamp=1)
    passes = _source_passes(report, list(config.sources), one_pass, {"files"})
    assert sorted(passes["files"].depths) == [0, 1]
    for source in config.sources:
        per_use = recipe_for(config, source, str(tmp_path), report)
        assert recipe_for(config, source, str(tmp_path), report,
                          passes[source.name].relatives()) == per_use
        mine = [d for d in report.found if d.source_name == source.name]
        assert passes[source.name].fingerprint(per_use) == _unchanged_fingerprint(
            per_use, mine, one_pass) is not None
    assert passes["warehouse"].verdicts == _classifier_verdicts(
        [d for d in report.found if d.source_name == "warehouse"], config.sources[1])
    assert set(one_pass.renames.values()) <= set(one_pass)  # the view's tables, renamed
    assert one_pass.renames and all(one_pass[urn]["datahub_names"] == [wrong]
                                    for wrong, urn in one_pass.renames.items())
    one_pass.close()


def test_a_typo_in_an_s3_sources_bucket_fails_it_and_stateful_ingestion_removes_nothing(
        s3_server, churn_frame, catalog_home, tmp_path, monkeypatch) -> None:
    """DataHub's stateful ingestion soft-deletes what a run of the s3 source no longer sees.
    A bucket that does not exist must fail the source (crawl and ingestion both name it),
    not run the recipe over an empty listing that soft-deletes every dataset it had."""
    import uuid

    from autokfp import storage

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    base = f"{s3_server.base_uri}/ingest-{uuid.uuid4().hex[:8]}"
    storage.write_text(f"{base}/a.csv", churn_frame.head(40).to_csv(index=False))
    storage.write_text(f"{base}/b/c.csv", churn_frame.head(30).to_csv(index=False))

    def config(uri: str):
        return parse_config({"name": "lake", "sources": [{"name": "lake", "kind": "s3",
                                                           "uri": uri}],
                             "training": {"dataset": "lake/a.csv", "target": "churned"}})

    first = ingest(config(base))
    assert first.failed == {} and first.removed == [] and len(first.datasets) == 2
    typo = f"{s3_server.bucket}-typo"
    second = ingest(config(base.replace(s3_server.bucket, typo, 1)))
    assert set(second.failed) == {"lake"}
    assert f"bucket '{typo}' does not exist" in second.failed["lake"]
    assert second.recipes == [] and second.removed == []
    for urn in first.datasets:
        assert read_lite(catalog_home.catalog_dir, urn)["status"]["removed"] is False


def _hidden_root_folder(tmp_path):
    """A folder source under a hidden folder, with a ``_staging/`` folder (read by autokfp's
    crawl) and hidden files and folders below it (skipped by both)."""
    import pandas as pd

    folder = tmp_path / ".cache" / "files"
    (folder / "_staging").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    frame = pd.DataFrame({"a": range(30), "y": [0, 1, 2] * 10})
    for path in ("t1.csv", "t2.csv", "_staging/t3.csv", ".hidden/t4.csv", ".t5.csv"):
        frame.to_csv(folder / path, index=False)
    return folder, parse_config({
        "name": "hidden", "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/t1.csv", "target": "y"}})


def test_a_folder_under_a_hidden_folder_is_ingested_as_the_crawl_reads_it(
        tmp_path, catalog_home) -> None:
    """DataHub's s3 source drops every path with a part starting with '.' or '_', the
    root's own included: a source under ~/.cache was cataloged as nothing, without an
    error. Now DataHub's source emits exactly the files autokfp's crawl reads."""
    folder, config = _hidden_root_folder(tmp_path)
    result = ingest(config)
    names = sorted(urn.split(",")[1].split("/files/", 1)[1] for urn in result.datasets)
    assert names == ["_staging/t3.csv", "t1.csv", "t2.csv"], result.datasets
    assert result.missed == {}
    assert sorted(result.extended) == sorted(result.datasets)  # autokfp's aspects on each


def test_a_dataset_datahubs_source_passes_over_is_reported_not_silently_dropped(
        tmp_path, catalog_home, monkeypatch) -> None:
    """Should DataHub's source emit fewer files than the crawl read (here: the hidden-folder
    rule put back), the run says so, naming the counts and what to do."""
    from autokfp.catalog import ingest as ingest_module

    real = ingest_module._path_specs

    def datahubs_default(*args, **kwargs):
        return [{k: v for k, v in spec.items() if k != "include_hidden_folders"}
                for spec in real(*args, **kwargs)]

    monkeypatch.setattr(ingest_module, "_path_specs", datahubs_default)
    _, config = _hidden_root_folder(tmp_path)
    result = ingest(config)
    assert result.datasets == []
    (message,) = result.missed.values()
    assert "emitted 0 dataset(s) of the 3 file(s) autokfp's crawl read in source files" \
        in message, message
    assert "catalog.ingestion: crawl" in message


def _beside(config):
    """``config`` with ``catalog.sql_pass: beside`` (the default, ``auto``, takes a second
    pass on SQLite): for the tests of DataHub's SQL source staged beside the crawl."""
    return config.model_copy(update={"catalog": config.catalog.model_copy(
        update={"sql_pass": "beside"})})


def _written(result, catalog_dir: Path, home: Path) -> dict:
    """What an ingestion wrote (metadata files, DataHub Lite, its result), times, run ids and
    the catalog's own paths masked."""
    import re
    import sqlite3

    def masked(text: str) -> str:
        text = text.replace(str(home), "H")
        text = re.sub(r"autokfp-ingest-\w+", "W", text)
        text = re.sub(r"[a-z0-9]+-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d-\w{6}", "R", text)  # run ids
        text = re.sub(r"\d{8}T\d{6}-\w{6}", "S", text)
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", "T", text)
        return re.sub(r"\b1[78]\d{11}\b", "0", text)  # epoch milliseconds

    with sqlite3.connect(catalog_dir / "datahub-lite.db") as lite:
        tables = [t for (t,) in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = sorted(masked(json.dumps([t, *map(str, row)]))
                      for t in tables for row in lite.execute(f"SELECT * FROM {t}"))
    files = [masked(Path(f).read_text()) for f in result.metadata_files]
    return {"lite": rows, "files": files, "result": masked(json.dumps(result.to_dict()))}


def test_datahubs_sources_beside_the_crawl_write_what_a_run_after_it_writes(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """A first run starts DataHub's sources in a process of their own beside autokfp's crawl
    and passes their records through its transformer and sink after it: the metadata files,
    DataHub Lite and the result are those of running each recipe after the crawl (the code
    before), on files, a table with PII and a view. When the recipe made after the crawl
    differs from the one started before it, the staged run is dropped and the recipe runs
    after the crawl; no process is left behind."""
    import multiprocessing
    import tempfile

    import autokfp.catalog.ingest as ingest_module
    from autokfp.settings import Settings

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, _folder, db, _frame = churn_sources
    config = _beside(config)  # the SQL source staged too, as with sql_pass: beside
    add_contacts_and_a_view(db)
    staged: list[str] = []
    jobs = ingest_module._staged_jobs
    monkeypatch.setattr(ingest_module, "_staged_jobs", lambda *a: (
        staged.extend(out := jobs(*a)), out)[1])

    def run(mode: str) -> dict:
        home = tmp_path / mode
        monkeypatch.setenv("AUTOKFP_HOME", str(home))
        settings = Settings.from_env()
        settings.ensure_local_dirs()
        monkeypatch.setattr(ingest_module, "_CONCURRENT", mode != "after")
        first = ingest(config, settings=settings)
        again = ingest(config, settings=settings)  # an unchanged re-run: nothing staged
        assert again.skipped and not again.lite_written
        return {**_written(first, settings.catalog_dir, home),
                "again": _written(again, settings.catalog_dir, home)["result"]}

    temp = tmp_path / "temp"  # the temporary directory of this process and its forks
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    after = run("after")
    assert staged == []
    gc.collect()
    before = set(temp.rglob("sqlite.db"))
    beside = run("beside")
    assert staged == ["files", "warehouse"]  # both first runs, neither re-run
    # DataHub's sources keep state in temporary SQLite files, removed as their objects are
    # finalised (here, as the interpreter exits); the forked children finalise nothing:
    # theirs go into the ingestion's own scratch folder (11 were left in /tmp for good).
    # This process's own (a recipe it ran itself, e.g. after a stalled child under load)
    # are removed when collected: collect, so only files nobody will remove are counted
    gc.collect()
    assert not [str(p.relative_to(temp)) for p in set(temp.rglob("sqlite.db")) - before]
    assert len(after["lite"]) > 100 and len(after["files"]) == 2
    assert beside == after
    assert not multiprocessing.active_children()
    # a staged recipe the crawl does not confirm (here: made different on purpose) is
    # dropped, and the recipe runs after the crawl as before
    staged.clear()
    monkeypatch.setattr(ingest_module, "_staged_jobs", lambda *a: {
        name: ingest_module._Staged(**{**vars(job), "recipe": {**job.recipe, "x": 1}})
        for name, job in jobs(*a).items()})
    assert run("dropped") == after
    assert not multiprocessing.active_children()



def test_a_staged_child_that_hangs_is_stopped_and_its_recipe_runs_in_the_step(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """DataHub's sources and the Lite writer run in children forked beside the crawl; a child
    forked while another thread holds a lock waits on it for good (the copy is held and no
    thread in the child releases it: CI's hung discover step sat 600 s). Once a child makes
    no progress (no output, no CPU time) for AUTOKFP_CHILD_STALL_SECS it is stopped, its
    stacks are logged, and its recipe and those after it run in the step's own process: the
    same metadata files, Lite and result as a run without children, a warning in the audit
    trail, no process left behind."""
    import multiprocessing
    import os
    import threading
    import time
    from types import SimpleNamespace

    import autokfp.catalog.ingest as ingest_module
    from autokfp.catalog.store import CatalogStore
    from autokfp.governance.audit import read_events
    from autokfp.settings import Settings
    from autokfp.steps import discover as discover_step

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, *_ = churn_sources
    config = _beside(config)  # the SQL source staged too (a second pass's child stalling:
    # test_ingest_second_pass.py)
    held, release = threading.Lock(), threading.Event()
    parent = os.getpid()

    def holder() -> None:  # another thread of the step's process, in a lock at the fork
        with held:
            release.wait()

    def waits_in_the_child(function):
        def call(*args, **kwargs):
            if os.getpid() != parent:
                with held:  # held by a thread that is not in this process
                    pass
            return function(*args, **kwargs)
        return call

    def run(mode: str) -> tuple[dict, float, dict]:
        home = tmp_path / mode
        monkeypatch.setenv("AUTOKFP_HOME", str(home))
        settings = Settings.from_env()
        settings.ensure_local_dirs()
        monkeypatch.setattr(ingest_module, "_CONCURRENT", mode != "after")
        started = time.monotonic()
        if mode == "writer":  # through the discover step: its warning in the audit trail
            # (anchored in MLflow: a file store, where a new SQLite one takes 10 s to set up)
            monkeypatch.setenv("MLFLOW_TRACKING_URI", (home / "mlruns").as_uri())
            monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
            discover_step.discover(config, str(home / "d.parquet"), str(home / "s.json"),
                                   str(home / "c.json"))
            done = CatalogStore(settings).read_json("last-ingest.json", None)
            result = SimpleNamespace(metadata_files=done["metadata_files"], to_dict=lambda: done)
        else:
            result = ingest(config, settings=settings)
            done = result.to_dict()
        seconds = time.monotonic() - started
        assert not multiprocessing.active_children()
        written = _written(result, settings.catalog_dir, home)
        outcome = json.loads(written["result"])
        fallbacks = outcome.pop("fallbacks")
        return {**written, "result": json.dumps(outcome)}, seconds, fallbacks

    after, _, none = run("after")
    assert none == {}
    monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "1.5")
    # a working child shows progress by 0.05 CPU-s in 1.5 s (3 % of a core), not 0.5 (a
    # third of one, which a loaded machine may not give it): the child the test hangs on a
    # lock uses none, whatever the machine's speed
    monkeypatch.setattr(lifeline, "STALL_CPU_SECS", 0.05)
    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    try:
        # DataHub's source hangs in its child: the first staged recipe, and the next one
        monkeypatch.setattr(ingest_module, "run_recipe", waits_in_the_child(
            ingest_module.run_recipe))
        source, seconds, fallbacks = run("source")
        assert list(fallbacks) == ["files"], fallbacks
        assert "made no progress for 1.5 s" in fallbacks["files"], fallbacks
        assert "in call" in fallbacks["files"], fallbacks  # the stack: where it waited
        assert "the recipe of source 'files' runs in the discover step's own process " \
               "instead" in fallbacks["files"], fallbacks
        assert fallbacks["files"].endswith(
            "; the recipes of warehouse run in this process too, not in the child"), fallbacks
        assert "dropped" not in fallbacks["files"], fallbacks
        assert source == after
        assert seconds < 60, seconds
        # the crawl does not confirm the staged recipes (made different on purpose): each is
        # dropped, and the child hangs while this process reads what remains of the first
        # one's run. The message says so: that recipe would have run here anyway
        jobs = ingest_module._staged_jobs
        monkeypatch.setattr(ingest_module, "_staged_jobs", lambda *a: {
            name: ingest_module._Staged(**{**vars(job), "recipe": {**job.recipe, "x": 1}})
            for name, job in jobs(*a).items()})
        dropped, seconds, fallbacks = run("dropped")
        assert list(fallbacks) == ["files"], fallbacks
        assert "made no progress for 1.5 s" in fallbacks["files"], fallbacks
        assert "reading what remained of the staged run of source 'files', dropped after " \
               "the crawl" in fallbacks["files"], fallbacks
        assert "as it would have without the stall" in fallbacks["files"], fallbacks
        assert "instead" not in fallbacks["files"].split("; the recipes of")[0]
        assert fallbacks["files"].endswith(
            "; the recipes of warehouse run in this process too, not in the child"), fallbacks
        assert dropped == after
        assert seconds < 60, seconds
        monkeypatch.undo()
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "1.5")
        monkeypatch.setattr(lifeline, "STALL_CPU_SECS", 0.05)
        # the Lite writer hangs on its first batch
        monkeypatch.setattr(ingest_module, "load_into_lite", waits_in_the_child(
            ingest_module.load_into_lite))
        writer, seconds, fallbacks = run("writer")
    finally:
        release.set()
        thread.join()
    assert list(fallbacks) == ["files"], fallbacks
    assert "the process loading DataHub Lite" in fallbacks["files"], fallbacks
    assert writer == after | {"result": writer["result"]}  # the step's own run differs
    assert json.loads(writer["result"])["datasets"] == json.loads(after["result"])["datasets"]
    assert seconds < 90, seconds
    events = [e for e in read_events(Settings.from_env())
              if e["kind"] == "discovery.source_child_stalled"]
    assert [e["details"]["source"] for e in events] == ["files"], events
    assert "the process loading DataHub Lite" in events[0]["details"]["warning"]



def test_a_forked_child_gets_an_event_loop_of_its_own(churn_sources, catalog_home, tmp_path,
                                                       monkeypatch) -> None:
    """A process that ran DataHub's pipeline in process has an event loop on its main thread
    (DataHub's version check: ``asyncio.get_event_loop()``, aiohttp's DNS lookups in the
    loop's default executor), whose executor thread (``asyncio_0``, in the dump of CI's hung
    run) is not in a child forked from it: work the child gave that loop's executor never
    ran, and the child waited for good. Here the child's recipe first waits for such work,
    with no timeout: the children get a loop of their own, so the staged run needs no
    fallback, and the parent's loop (never closed by a child) still wakes at once."""
    import asyncio
    import os
    import time

    import autokfp.catalog.ingest as ingest_module
    from autokfp.settings import Settings

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "5")  # the code before: a fallback
    monkeypatch.setattr(lifeline, "STALL_CPU_SECS", 0.05)  # not the machine's speed: progress
    config, folder, *_ = churn_sources
    config = parse_config({"name": "loop", "sources": [
        {"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/customers.csv", "target": "churned"}})
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(asyncio.get_event_loop_policy()._local, "_loop", loop)
    try:
        loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0))  # its thread
        parent, run_recipe = os.getpid(), ingest_module.run_recipe

        def checks_versions(*args, **kwargs):
            if os.getpid() != parent:  # in the child, on its main thread's loop
                current = asyncio.get_event_loop()
                assert current.run_until_complete(current.run_in_executor(None, sum, [1, 2]))
            return run_recipe(*args, **kwargs)

        monkeypatch.setattr(ingest_module, "run_recipe", checks_versions)
        staged = []
        jobs = ingest_module._staged_jobs
        monkeypatch.setattr(ingest_module, "_staged_jobs", lambda *a: (
            staged.extend(out := jobs(*a)), out)[1])
        result = ingest(config, settings=Settings.from_env())
        assert staged == ["files"]
        assert result.fallbacks == {}, result.fallbacks
        assert len(result.datasets) == 2, result.datasets
        started = time.monotonic()
        assert loop.run_until_complete(asyncio.wait_for(
            loop.run_in_executor(None, sum, [2, 3]), 10)) == 5
        assert time.monotonic() - started < 8  # a broken executor hangs (the 10 s wait_for)
    finally:
        loop.close()


KILLED_MID_CRAWL = '''
import multiprocessing, os, signal, sqlite3, sys
from pathlib import Path

import pandas as pd

import autokfp.catalog.crawl as crawl_module
from autokfp.catalog.ingest import ingest
from autokfp.config import parse_config
from autokfp.settings import Settings

root = Path(sys.argv[1])
(root / "files").mkdir()
frame = pd.DataFrame({"id": range(50), "email": [f"u{i}@mail.example.org" for i in range(50)]})
frame.to_csv(root / "files" / "c.csv", index=False)
with sqlite3.connect(root / "w.db") as connection:
    frame.to_sql("contacts", connection, index=False)
config = parse_config({"name": "killed", "sources": [
    {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{root / 'w.db'}"},
    {"name": "files", "kind": "folder", "path": str(root / "files")}],
    "training": {"dataset": "warehouse/contacts", "target": "email"}})


def killed_mid_crawl(*args, **kwargs):
    pids = [p.pid for p in multiprocessing.active_children()]
    (root / "children").write_text(" ".join(map(str, pids)))
    os.kill(os.getpid(), signal.SIGKILL)


crawl_module.crawl_sources = killed_mid_crawl
settings = Settings.from_env()
settings.ensure_local_dirs()
ingest(config, settings=settings)
'''


def test_a_kill_9_mid_crawl_leaves_no_datahub_source_process_behind(tmp_path) -> None:
    """DataHub's sources of a first run (and the Lite writer) run in processes forked beside
    the crawl; the ingesting process killed with SIGKILL mid-crawl takes them with it. (They
    were left running: the SQL source's process waited for the crawl's verdicts for good.)"""
    import os
    import subprocess
    import sys
    import time

    from autokfp.lifeline import pid_alive

    root = tmp_path / "killed"
    root.mkdir()
    env = {**os.environ, "AUTOKFP_HOME": str(root / "home"), "HOME": str(root / "h"),
           "DATAHUB_TELEMETRY_ENABLED": "false"}
    env.pop("DATAHUB_GMS_URL", None)
    env.pop("DATAHUB_GMS_TOKEN", None)
    # output to a file: a child left behind would hold a pipe open, and the wait with it
    with (root / "out.log").open("w") as out:
        code = subprocess.run([sys.executable, "-c", KILLED_MID_CRAWL, str(root)], env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode
    assert code == -9, (root / "out.log").read_text()
    children = [int(pid) for pid in (root / "children").read_text().split()]
    # DataHub's file source and the Lite writer, and the SQL source's second pass
    # (catalog.sql_pass: auto on SQLite) unless it was already done
    assert len(children) in (2, 3), children
    deadline = time.monotonic() + 10
    try:
        while any(map(pid_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if pid_alive(pid)], "left running after the kill"
    finally:
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, 9)


def test_a_staged_sql_source_is_imported_before_it_waits_for_the_crawls_verdicts(
        tmp_path, monkeypatch) -> None:
    """The process running DataHub's sources beside the crawl waits for the crawl's verdicts
    before it runs a SQL recipe; the source plugin's modules are imported before that wait
    (beside the crawl), not after it, on the path the discover step waits for."""
    import gc
    import pickle
    import threading
    import time

    from datahub.ingestion.source.source_registry import source_registry

    from autokfp.catalog import ingest as ingest_module

    asked: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: None)  # _stage freezes its own process
    monkeypatch.setattr(source_registry, "get", lambda key: asked.append(key))
    job = ingest_module._Staged(
        recipe={"source": {"type": "sqlalchemy", "config": {}}},
        spool=str(tmp_path / "spool"), verdicts=str(tmp_path / "verdicts.json"),
        cancel=str(tmp_path / "cancel"))
    staged = threading.Thread(target=ingest_module._stage, args=([job],), daemon=True)
    staged.start()
    deadline = time.monotonic() + 10
    while not asked and time.monotonic() < deadline:
        time.sleep(0.01)
    assert asked == ["sqlalchemy"]  # imported while the verdicts are still to come
    assert staged.is_alive() and not Path(job.verdicts).exists()
    Path(job.cancel).write_text("")
    staged.join(30)
    body = Path(job.spool).read_bytes()[8:]
    assert pickle.loads(body) == ("end", "cancelled")


def test_the_ingestion_paths_crawl_reads_with_the_configs_workers(
        tmp_path, catalog_home, monkeypatch) -> None:
    """The crawl that gives autokfp's aspects on the ingestion path reads and profiles with
    ``catalog.workers`` worker processes, as on the crawl path (it was held to one)."""
    import sqlite3

    import pandas as pd

    from autokfp.catalog import crawl

    asked: list = []
    real = crawl.resolve_workers
    monkeypatch.setattr(crawl, "resolve_workers",
                        lambda setting: asked.append(setting) or real(setting))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as connection:
        pd.DataFrame({"id": range(5), "y": [0, 1, 0, 1, 0]}).to_sql("t", connection,
                                                                      index=False)
    config = parse_config({"name": "w", "sources": [{"name": "w", "kind": "sql",
                                                     "url": f"sqlite:///{db}"}],
                           "catalog": {"workers": 3},
                           "training": {"dataset": "w/t", "target": "y"}})
    result = ingest(config)
    assert asked == [3]
    assert result.datasets == ["urn:li:dataset:(urn:li:dataPlatform:sqlite,main.t,PROD)"]


def add_contacts_and_a_view(db) -> None:
    """The churn SQLite warehouse plus a PII table (50 e-mail addresses, ``contacts``) and a
    view (``churned``): what DataHub's classification and view handling are tested on."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE contacts (id INTEGER, email TEXT)")
        connection.executemany("INSERT INTO contacts VALUES (?, ?)",
                               [(i, f"user{i}@mail.example.org") for i in range(50)])
        connection.execute("CREATE VIEW churned AS SELECT customer_id FROM customers "
                           "WHERE churned = 1")
