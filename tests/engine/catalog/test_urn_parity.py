"""URN parity: the datasets autokfp catalogs get the URNs and schema field paths that
DataHub's own sources give the same data, so autokfp's lineage joins an existing catalog.

Each test runs DataHub's stock recipe for the platform (``Pipeline.create`` with the
``sqlalchemy``, ``postgres``, ``s3`` or ``gcs`` source into a file sink) and an autokfp
crawl of the same data, and compares every dataset URN and field path.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import yaml

from autokfp.catalog.crawl import crawl_sources
from autokfp.config import parse_config


def _frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "id": range(n),
        "email": [f"user{i}@example.com" for i in range(n)],
        "amount": [1.5 * i for i in range(n)],
        "segment": ["a", "b"] * (n // 2),
    })


def _datasets(records: list[dict]) -> dict[str, list[str]]:
    """{dataset URN: sorted field paths} from a metadata file's records (MCPs and MCEs)."""
    out: dict[str, list[str]] = {}
    for record in records:
        snapshot = (record.get("proposedSnapshot") or {})
        for kind, body in snapshot.items():
            if kind.endswith("DatasetSnapshot"):
                out.setdefault(body["urn"], [])
                for aspect in body.get("aspects", []):
                    for name, value in aspect.items():
                        if name.endswith("SchemaMetadata"):
                            out[body["urn"]] = sorted(f["fieldPath"] for f in value["fields"])
        if record.get("entityType") == "dataset":
            urn = record["entityUrn"]
            out.setdefault(urn, [])
            if record.get("aspectName") == "schemaMetadata":
                fields = record["aspect"]["json"]["fields"]
                out[urn] = sorted(f["fieldPath"] for f in fields)
    return out


def _lineage(records: list[dict]) -> dict[str, list[str]]:
    """{dataset URN: sorted upstream URNs} from the metadata file's UpstreamLineage aspects."""
    out: dict[str, list[str]] = {}
    for record in records:
        if record.get("aspectName") == "upstreamLineage":
            upstreams = record["aspect"]["json"]["upstreams"]
            out[record["entityUrn"]] = sorted(u["dataset"] for u in upstreams)
    return out


def _datahub_records(source: dict, tmp_path: Path, monkeypatch) -> list[dict]:
    """The records DataHub's own source writes with its stock recipe into a file sink."""
    from datahub.ingestion.run.pipeline import Pipeline

    monkeypatch.setenv("HOME", str(tmp_path / "datahub-home"))
    out = tmp_path / f"datahub-{source['type']}.json"
    pipeline = Pipeline.create({"source": source,
                                "sink": {"type": "file", "config": {"filename": str(out)}}})
    pipeline.run()
    pipeline.raise_from_status()
    return json.loads(out.read_text())


def _datahub_run(source: dict, tmp_path: Path, monkeypatch,
                 lineage: dict | None = None) -> dict[str, list[str]]:
    """Run DataHub's own source with its stock recipe into a file sink."""
    records = _datahub_records(source, tmp_path, monkeypatch)
    if lineage is not None:
        lineage.update(_lineage(records))
    return _datasets(records)


def _autokfp_run(sources: list[dict], training: str, lineage: dict | None = None,
                 columns: dict | None = None) -> dict[str, list[str]]:
    config = parse_config({"name": "parity", "sources": sources,
                           "training": {"dataset": training, "target": "segment"}})
    report = crawl_sources(config)
    failed = {d.dataset_id: d.error for d in report.datasets if d.status == "failed"}
    assert not failed and not report.source_errors, (failed, report.source_errors)
    records = json.loads(Path(report.published["metadata_uri"]).read_text())
    if lineage is not None:
        lineage.update(_lineage(records))
    if columns is not None:
        columns.update(_column_lineage(records))
    return _datasets(records)


def test_sqlite_tables_are_named_as_datahubs_sqlalchemy_source(tmp_path, catalog_home,
                                                               monkeypatch) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        _frame().to_sql("customers", connection, index=False)
        _frame().rename(columns={"amount": "total"}).to_sql("orders", connection, index=False)
        connection.execute("CREATE VIEW big_orders AS SELECT o.id, total, c.email FROM "
                           "orders o JOIN customers c ON c.id = o.id WHERE o.total > 2")
    their_lineage: dict = {}
    our_lineage: dict = {}
    our_columns: dict = {}
    theirs = _datahub_run({"type": "sqlalchemy", "config": {
        "platform": "sqlite", "connect_uri": f"sqlite:///{db}", "env": "DEV",
        "platform_instance": "edge"}}, tmp_path, monkeypatch, their_lineage)
    ours = _autokfp_run([{"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}",
                          "env": "DEV", "platform_instance": "edge"}], "warehouse/customers",
                        our_lineage, our_columns)
    assert ours == theirs
    view = "urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.big_orders,DEV)"
    assert ours[view] == ["email", "id", "total"]
    assert our_lineage == {view: [
        "urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.customers,DEV)",
        "urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.orders,DEV)"]}
    # DataHub's sqlalchemy source cannot split "main.big_orders" into database, schema and
    # view, so it parses without defaults and names edge.customers and edge.orders, datasets
    # that do not exist; autokfp names the tables it (and DataHub) catalogued
    assert their_lineage[view] and not set(their_lineage[view]) & set(theirs)
    assert "urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.customers,DEV)" in ours
    assert ours["urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.orders,DEV)"] == [
        "email", "id", "segment", "total"]
    # column lineage through DataHub's parser: the unqualified "total" resolves with the
    # tables' columns, looked up under names without the platform instance
    field = "urn:li:schemaField:(urn:li:dataset:(urn:li:dataPlatform:sqlite,edge.main.{},DEV),{})"
    assert {c: up for c, (up, _) in our_columns[view].items()} == {
        "id": [field.format("orders", "id")], "total": [field.format("orders", "total")],
        "email": [field.format("customers", "email")]}


def test_include_views_false_skips_views_as_datahubs_source_does(tmp_path, catalog_home,
                                                                  monkeypatch) -> None:
    """``include_views: false`` on a SQL source: no view is crawled (none is sampled or
    counted), as DataHub's sqlalchemy source with ``include_views: false`` leaves them out;
    the tables are named as before, and a generated recipe carries the setting."""
    from autokfp.catalog.ingest import _sql_recipe

    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        _frame().to_sql("customers", connection, index=False)
        connection.execute("CREATE VIEW big_customers AS SELECT id FROM customers WHERE amount > 2")
    theirs = _datahub_run({"type": "sqlalchemy", "config": {
        "platform": "sqlite", "connect_uri": f"sqlite:///{db}", "include_views": False}},
        tmp_path, monkeypatch)
    source = {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}",
              "include_views": False}
    ours = _autokfp_run([source], "warehouse/customers")
    assert ours == theirs
    assert list(ours) == ["urn:li:dataset:(urn:li:dataPlatform:sqlite,main.customers,PROD)"]
    config = parse_config({"name": "parity", "sources": [source],
                           "training": {"dataset": "warehouse/customers", "target": "segment"}})
    assert _sql_recipe(config.sources[0])["config"]["include_views"] is False


def test_postgres_tables_are_named_as_datahubs_postgres_source(postgres_server, tmp_path,
                                                                catalog_home, monkeypatch) -> None:
    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS crm", "CREATE DATABASE crm")
    server.run("crm", "CREATE SCHEMA sales",
                   "CREATE TABLE public.customers (id integer, email text, amount double "
                   "precision, segment text)",
                   "CREATE TABLE sales.orders (order_id bigint, customer_id integer, placed "
                   "timestamp, total numeric(10, 2))",
                   "INSERT INTO public.customers VALUES (1, 'a@example.com', 1.5, 'a'), "
                   "(2, 'b@example.com', 2.5, 'b')",
                   "INSERT INTO sales.orders VALUES (10, 1, '2024-01-01', 9.99), "
                   "(11, 2, '2024-01-02', 19.99)",
                   # quoted names keep their case and spaces in DataHub's URNs and paths
                   'CREATE TABLE sales."Returns" ("Order ID" bigint, reason text, tags text[], '
                   "doc jsonb)",
                   """INSERT INTO sales."Returns" VALUES (10, 'late', '{a,b}', '{"k": 1}')""",
                   # views are datasets to DataHub's source too, with their lineage
                   "CREATE VIEW sales.order_totals AS SELECT c.segment, sum(o.total) AS total "
                   "FROM sales.orders o JOIN public.customers c ON c.id = o.customer_id "
                   "GROUP BY c.segment",
                   "CREATE VIEW public.big_customers AS SELECT id, email FROM customers "
                   "WHERE amount > 2")
    their_lineage: dict = {}
    our_lineage: dict = {}
    theirs = _datahub_run({"type": "postgres", "config": {
        "host_port": f"127.0.0.1:{server.port}", "database": "crm", "username": server.user,
        "password": server.password}}, tmp_path, monkeypatch, their_lineage)
    ours = _autokfp_run([
        {"name": "crm", "kind": "sql", "url": server.url("crm")},
        {"name": "sales", "kind": "sql", "url": server.url("crm"), "schema": "sales"},
    ], "crm/customers", our_lineage)
    assert ours == theirs
    urn = "urn:li:dataset:(urn:li:dataPlatform:postgres,crm.{},PROD)".format
    assert ours[urn("sales.order_totals")] == ["segment", "total"]
    assert ours[urn("public.big_customers")] == ["email", "id"]
    assert our_lineage == {  # PostgreSQL's own record of what each view reads (pg_depend)
        urn("sales.order_totals"): [urn("public.customers"), urn("sales.orders")],
        urn("public.big_customers"): [urn("public.customers")]}
    assert their_lineage[urn("public.big_customers")] == our_lineage[urn("public.big_customers")]
    # DataHub parses the definition, where PostgreSQL prints "customers" unqualified (public
    # is on the search path), and names it in the view's schema: crm.sales.customers, a
    # dataset that does not exist. Every upstream it names that exists, autokfp names too.
    real = [u for u in their_lineage[urn("sales.order_totals")] if u in theirs]
    assert set(real) <= set(our_lineage[urn("sales.order_totals")]) and real
    assert ours["urn:li:dataset:(urn:li:dataPlatform:postgres,crm.sales.orders,PROD)"] == [
        "customer_id", "order_id", "placed", "total"]
    assert "urn:li:dataset:(urn:li:dataPlatform:postgres,crm.public.customers,PROD)" in ours
    assert ours["urn:li:dataset:(urn:li:dataPlatform:postgres,crm.sales.Returns,PROD)"] == [
        "Order ID", "doc", "reason", "tags"]


def _write_files(write) -> None:
    """Flat files, and the cases where naming could drift: spaces and capitals in file and
    column names, a dot inside a column name, nested JSON objects (DataHub lists the paths
    inside them) and a Parquet struct (DataHub lists only the column)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _frame()
    write("customers.csv", frame.to_csv(index=False).encode())
    orders = pa.Table.from_pandas(frame.rename(columns={"amount": "total"}), preserve_index=False)
    orders = orders.append_column("shipping", pa.array(
        [{"city": "Lyon", "zip": str(i)} for i in range(len(frame))]))
    buffer = io.BytesIO()
    pq.write_table(orders, buffer)
    write("nested/orders.parquet", buffer.getvalue())
    events = [{**row, "address": {"city": "Lyon", "geo": {"lat": 45.7, "lon": None}},
               "items": [{"sku": f"s{i}", "qty": i}, {"sku": "x"}], "labels": ["a"]}
              for i, row in enumerate(frame.to_dict(orient="records"))]
    write("nested/events.jsonl", "\n".join(json.dumps(e) for e in events).encode())
    write("Sales Report 2024.csv", frame.rename(columns={
        "amount": "Unit Price", "segment": "Segment", "email": "contact.email"}).to_csv(
        index=False).encode())


_NESTED_PATHS = ["address", "address.city", "address.geo", "address.geo.lat",
                 "address.geo.lon", "amount", "email", "id", "items", "items.qty", "items.sku",
                 "labels", "segment"]


def _lake_named_by_datahub(tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, list[str]]]:
    """The test files written to a folder, and what DataHub's stock file recipe (its s3
    source on local path specs, schema inference on) names in it: dataset URN -> field
    paths."""
    folder = tmp_path / "lake"

    def write(relative: str, data: bytes) -> None:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)

    _write_files(write)
    theirs = _datahub_run({"type": "s3", "config": {"path_specs": [
        {"include": f"{folder}/*.*"}, {"include": f"{folder}/*/*.*"}]}}, tmp_path, monkeypatch)
    return folder, theirs


def test_folder_files_are_named_as_datahubs_file_source(tmp_path, catalog_home,
                                                         monkeypatch) -> None:
    folder, theirs = _lake_named_by_datahub(tmp_path, monkeypatch)
    ours = _autokfp_run([{"name": "files", "kind": "folder", "path": str(folder)}],
                        "files/customers.csv")
    assert ours == theirs
    name = str(folder / "nested" / "orders.parquet").lstrip("/")
    assert ours[f"urn:li:dataset:(urn:li:dataPlatform:file,{name},PROD)"] == [
        "email", "id", "segment", "shipping", "total"]
    name = str(folder / "nested" / "events.jsonl").lstrip("/")
    assert ours[f"urn:li:dataset:(urn:li:dataPlatform:file,{name},PROD)"] == _NESTED_PATHS
    name = str(folder / "Sales Report 2024.csv").lstrip("/")
    assert ours[f"urn:li:dataset:(urn:li:dataPlatform:file,{name},PROD)"] == [
        "Segment", "Unit Price", "contact.email", "id"]


def test_folder_files_on_the_ingestion_path_have_datahubs_names_and_field_paths(
        tmp_path, catalog_home, monkeypatch) -> None:
    """The ingestion path runs DataHub's s3 source without its schema inference (autokfp's
    crawl reads the files anyway; its schema is added by the transformer): every dataset
    and field path in its metadata file is still what DataHub's stock recipe, inference on,
    names; and each file's schema is there once, autokfp's."""
    from autokfp.catalog.ingest import ingest

    folder, theirs = _lake_named_by_datahub(tmp_path, monkeypatch)
    config = parse_config({"name": "parity", "sources": [
        {"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/customers.csv", "target": "segment"}})
    result = ingest(config)
    assert [r["source"]["config"]["enable_schema_inference"] for r in result.recipes] == [False]
    records = [r for path in result.metadata_files if "/ingest-" in path
               for r in json.loads(Path(path).read_text())]
    assert _datasets(records) == theirs and len(theirs) == 4
    schemas = [r for r in records if r.get("aspectName") == "schemaMetadata"]
    assert sorted(r["entityUrn"] for r in schemas) == sorted(theirs)  # one each
    name = str(folder / "customers.csv").lstrip("/")
    fields = next(r["aspect"]["json"]["fields"] for r in schemas
                  if r["entityUrn"] == f"urn:li:dataset:(urn:li:dataPlatform:file,{name},PROD)")
    assert {f["fieldPath"]: f["nativeDataType"] for f in fields}["id"] == "int64"  # autokfp's
    assert "urn:li:tag:pii:email" in {t["tag"] for f in fields if f["fieldPath"] == "email"
                                      for t in f["globalTags"]["tags"]}


def test_s3_objects_are_named_as_datahubs_s3_source(s3_server, tmp_path, catalog_home,
                                                    monkeypatch) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    prefix = "parity/raw"

    def write(relative: str, data: bytes) -> None:
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{relative}", Body=data)

    _write_files(write)
    base = f"s3://{s3_server.bucket}/{prefix}"
    theirs = _datahub_run({"type": "s3", "config": {
        "path_specs": [{"include": f"{base}/*.*"}, {"include": f"{base}/*/*.*"}],
        "aws_config": {"aws_endpoint_url": s3_server.endpoint, "aws_region": "us-east-1",
                       "aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
        "platform_instance": "lake"}}, tmp_path, monkeypatch)
    ours = _autokfp_run([{"name": "lake", "kind": "s3", "uri": base, "platform_instance": "lake"}],
                        "lake/customers.csv")
    assert ours == theirs
    assert (f"urn:li:dataset:(urn:li:dataPlatform:s3,lake.{s3_server.bucket}/{prefix}/"
            "customers.csv,PROD)") in ours
    assert len(ours) == 4


def test_gcs_objects_are_named_as_datahubs_gcs_source(gcs_emulator, s3_server, tmp_path,
                                                      catalog_home, monkeypatch) -> None:
    """DataHub's gcs source reads GCS through its S3-compatible XML API (HMAC keys), which
    the GCS emulator does not serve; so the same objects go to the emulator (for autokfp,
    which uses the JSON API) and to a moto bucket of the same name, and DataHub's source
    (unchanged, its endpoint constant pointed at moto, as its own code invites a test to)
    reads them there. The names depend only on the gs:// path specs, which are the same."""
    import boto3
    from datahub.ingestion.source.gcs import gcs_source
    from google.cloud import storage as gcs

    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint)
    s3.create_bucket(Bucket=gcs_emulator.bucket)
    bucket = gcs.Client(project="autokfp-test").bucket(gcs_emulator.bucket)
    prefix = "parity/gcs"

    def write(relative: str, data: bytes) -> None:
        s3.put_object(Bucket=gcs_emulator.bucket, Key=f"{prefix}/{relative}", Body=data)
        bucket.blob(f"{prefix}/{relative}").upload_from_string(data)

    _write_files(write)
    base = f"gs://{gcs_emulator.bucket}/{prefix}"
    monkeypatch.setattr(gcs_source, "GCS_ENDPOINT_URL", s3_server.endpoint)
    theirs = _datahub_run({"type": "gcs", "config": {
        "path_specs": [{"include": f"{base}/*.*"}, {"include": f"{base}/*/*.*"}],
        "credential": {"hmac_access_id": "testing", "hmac_access_secret": "testing"},
        "platform_instance": "lake", "env": "DEV"}}, tmp_path, monkeypatch)
    ours = _autokfp_run([{"name": "lake", "kind": "gcs", "uri": base, "platform_instance": "lake",
                          "env": "DEV"}], "lake/customers.csv")
    assert ours == theirs
    assert len(ours) == 4
    urn = f"urn:li:dataset:(urn:li:dataPlatform:gcs,lake.{gcs_emulator.bucket}/{prefix}/{{}},DEV)"
    assert ours[urn.format("nested/events.jsonl")] == _NESTED_PATHS
    assert urn.format("Sales Report 2024.csv") in ours


def _column_lineage(records: list[dict]) -> dict[str, dict[str, tuple[list[str], str]]]:
    """{view URN: {view column: (sorted upstream field URNs, transformOperation)}}."""
    from datahub.utilities.urns.field_paths import get_simple_field_path_from_v2_field_path
    from datahub.utilities.urns.urn import Urn

    out: dict[str, dict[str, tuple[list[str], str]]] = {}
    for record in records:
        if record.get("aspectName") != "upstreamLineage":
            continue
        for fine in record["aspect"]["json"].get("fineGrainedLineages") or []:
            assert fine["upstreamType"] == "FIELD_SET" and fine["downstreamType"] == "FIELD"
            (downstream,) = fine["downstreams"]
            column = get_simple_field_path_from_v2_field_path(Urn.from_string(downstream)
                                                              .entity_ids[1])
            out.setdefault(record["entityUrn"], {})[column] = (
                sorted(fine["upstreams"]), fine.get("transformOperation"))
    return out


def test_postgres_view_column_lineage_through_datahubs_parser(postgres_server, tmp_path,
                                                                catalog_home, monkeypatch) -> None:
    """Views with renamed, computed, aggregated and star columns, across two schemas and on
    top of another view: every view column links to the table columns it is made of, as
    DataHub's fineGrainedLineages, and equals DataHub's own postgres source's where that
    names the tables right (its parse takes the view's schema for unqualified names)."""
    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS cll", "CREATE DATABASE cll")
    server.run("cll", "CREATE SCHEMA sales",
               "CREATE TABLE public.customers (id integer, email text, amount double "
               "precision, segment text)",
               "CREATE TABLE sales.orders (order_id bigint, customer_id integer, total "
               "numeric(10, 2))",
               "INSERT INTO public.customers VALUES (1, 'a@example.com', 1.5, 'a'), "
               "(2, 'b@example.com', 2.5, 'b')",
               "INSERT INTO sales.orders VALUES (10, 1, 9.99), (11, 2, 19.99)",
               "CREATE VIEW public.renamed AS SELECT id AS customer_id, amount AS spend, "
               "amount * 100 AS spend_cents, 'x' AS constant FROM customers",
               "CREATE VIEW public.everything AS SELECT * FROM customers",
               "CREATE VIEW sales.customer_spend AS SELECT c.id AS customer, "
               "upper(c.segment) AS segment_code, sum(o.total) * 1.2 AS gross, "
               "c.email || '/' || o.customer_id AS tag FROM customers c JOIN sales.orders o "
               "ON o.customer_id = c.id GROUP BY c.id, c.segment, c.email, o.customer_id",
               "CREATE VIEW public.top AS SELECT customer_id, spend FROM renamed "
               "WHERE spend > 2")
    def urn(name: str) -> str:
        return f"urn:li:dataset:(urn:li:dataPlatform:postgres,cll.{name},PROD)"

    def field(name: str, column: str) -> str:
        return f"urn:li:schemaField:({urn(name)},{column})"

    config = parse_config({"name": "cll", "sources": [
        {"name": "cll", "kind": "sql", "url": server.url("cll")},
        {"name": "sales", "kind": "sql", "url": server.url("cll"), "schema": "sales"}],
        "training": {"dataset": "cll/customers", "target": "segment"}})
    report = crawl_sources(config)
    assert not report.source_errors
    records = json.loads(Path(report.published["metadata_uri"]).read_text())
    ours = _column_lineage(records)
    customers, orders = "public.customers", "sales.orders"
    assert {c: up for c, (up, _) in ours[urn("public.renamed")].items()} == {
        "customer_id": [field(customers, "id")], "spend": [field(customers, "amount")],
        "spend_cents": [field(customers, "amount")]}  # the constant reads no column
    logic = {c: op for c, (_, op) in ours[urn("public.renamed")].items()}
    assert logic["spend"].startswith("COPY:") and logic["spend_cents"].startswith("SQL:")
    assert {c: up for c, (up, _) in ours[urn("public.everything")].items()} == {
        c: [field(customers, c)] for c in ("id", "email", "amount", "segment")}
    assert {c: up for c, (up, _) in ours[urn("sales.customer_spend")].items()} == {
        "customer": [field(customers, "id")], "segment_code": [field(customers, "segment")],
        "gross": [field(orders, "total")],
        "tag": sorted([field(customers, "email"), field(orders, "customer_id")])}
    assert ours[urn("sales.customer_spend")]["segment_code"][1].startswith("SQL:")
    # a view on a view links to the view's columns (its own lineage goes on from there)
    assert {c: up for c, (up, _) in ours[urn("public.top")].items()} == {
        "customer_id": [field("public.renamed", "customer_id")],
        "spend": [field("public.renamed", "spend")]}

    theirs = _column_lineage(_datahub_records({"type": "postgres", "config": {
        "host_port": f"127.0.0.1:{server.port}", "database": "cll", "username": server.user,
        "password": server.password}}, tmp_path, monkeypatch))
    for view in ("public.renamed", "public.everything", "public.top"):  # search-path schema
        assert {c: up for c, (up, _) in theirs[urn(view)].items()} == {
            c: up for c, (up, _) in ours[urn(view)].items()}, view
    # in sales, DataHub's parse names unqualified 'customers' cll.sales.customers (none such)
    assert field(customers, "id") not in theirs[urn("sales.customer_spend")]["customer"][0]


def _view_database(server, database: str = "vl") -> None:
    """Views in and outside the search path's schema, reading tables of public, of their own
    schema, of the user's own schema ("$user", first on the search path: the fixture's
    user is app) and of no schema on the path, and a view DataHub's parser cannot read."""
    server.run("postgres", f"DROP DATABASE IF EXISTS {database}", f"CREATE DATABASE {database}")
    server.run(database, "CREATE SCHEMA sales", "CREATE SCHEMA app",
               "CREATE TABLE public.customers (id integer, email text, amount double "
               "precision, segment text)",
               "CREATE TABLE sales.orders (order_id bigint, customer_id integer, total "
               "numeric(10, 2))",
               "CREATE TABLE app.notes (id integer, note text)",
               "CREATE TABLE public.docs (id integer, body text)",
               "INSERT INTO public.customers VALUES (1, 'a@example.com', 1.5, 'a'), "
               "(2, 'b@example.com', 2.5, 'b')",
               "INSERT INTO sales.orders VALUES (10, 1, 9.99), (11, 2, 19.99)",
               "INSERT INTO app.notes VALUES (1, 'first'), (2, 'second')",
               "INSERT INTO public.docs VALUES (1, '<r><v>x</v></r>')",
               "CREATE VIEW public.renamed AS SELECT id AS customer_id, amount AS spend "
               "FROM customers",
               "CREATE VIEW public.order_view AS SELECT order_id, total * 2 AS double_total "
               "FROM sales.orders",
               "CREATE VIEW sales.spend AS SELECT c.id AS customer, c.segment, sum(o.total) "
               "AS total FROM customers c JOIN sales.orders o ON o.customer_id = c.id "
               "GROUP BY c.id, c.segment",
               "CREATE VIEW sales.notes_view AS SELECT n.note, c.email FROM notes n "
               "JOIN customers c ON c.id = n.id",
               # DataHub's SQL parser (sqlglot) raises a ParseError on XMLTABLE
               "CREATE VIEW public.xml_view AS SELECT d.id, x.v FROM docs d, "
               "XMLTABLE('/r' PASSING xmlparse(document d.body) COLUMNS v text PATH 'v') x")


def test_view_lineage_names_real_tables_in_every_schema_on_both_paths(
        postgres_server, tmp_path, catalog_home, monkeypatch, caplog) -> None:
    """Table and column lineage of views outside the search path's schema, or reading tables
    of another schema, name the tables PostgreSQL says they read: on the ingestion path
    (DataHub's own postgres source, run by the generated recipe) and on the crawl path;
    equal to DataHub's stock recipe for the views it names right; a view DataHub's parser
    cannot read is logged and noted in the crawl report, with its table lineage kept."""
    import logging

    from autokfp.catalog.ingest import ingest

    server = postgres_server
    _view_database(server)

    def urn(name: str) -> str:
        return f"urn:li:dataset:(urn:li:dataPlatform:postgres,vl.{name},PROD)"

    def field(name: str, column: str) -> str:
        return f"urn:li:schemaField:({urn(name)},{column})"

    customers, orders, notes = "public.customers", "sales.orders", "app.notes"
    tables = {urn("public.renamed"): [urn(customers)],
              urn("public.order_view"): [urn(orders)],
              urn("sales.spend"): sorted([urn(customers), urn(orders)]),
              urn("sales.notes_view"): sorted([urn(notes), urn(customers)]),
              urn("public.xml_view"): [urn("public.docs")]}
    columns = {urn("public.renamed"): {"customer_id": [field(customers, "id")],
                                       "spend": [field(customers, "amount")]},
               urn("public.order_view"): {"order_id": [field(orders, "order_id")],
                                          "double_total": [field(orders, "total")]},
               urn("sales.spend"): {"customer": [field(customers, "id")],
                                    "segment": [field(customers, "segment")],
                                    "total": [field(orders, "total")]},
               urn("sales.notes_view"): {"note": [field(notes, "note")],
                                         "email": [field(customers, "email")]}}

    def upstream_columns(records: list) -> dict:
        return {view: {c: up for c, (up, _) in found.items()}
                for view, found in _column_lineage(records).items()}

    # DataHub's stock recipe: right where the view and its tables are on the search path,
    # wrong elsewhere (it takes the view's schema for names PostgreSQL printed unqualified)
    stock_records = _datahub_records({"type": "postgres", "config": {
        "host_port": f"127.0.0.1:{server.port}", "database": "vl", "username": server.user,
        "password": server.password}}, tmp_path, monkeypatch)
    their_tables, their_columns = _lineage(stock_records), upstream_columns(stock_records)
    for view in (urn("public.renamed"), urn("public.order_view")):
        assert their_tables[view] == tables[view] and their_columns[view] == columns[view]
    assert urn("sales.customers") in their_tables[urn("sales.spend")]  # no such table
    assert urn("sales.notes") in their_tables[urn("sales.notes_view")]  # no such table

    sources = [{"name": schema, "kind": "sql", "url": server.url("vl"), "schema": schema}
               for schema in ("public", "sales", "app")]
    config = parse_config({"name": "vl", "sources": sources,
                           "training": {"dataset": "public/customers", "target": "segment"}})
    with caplog.at_level(logging.WARNING, logger="autokfp.catalog.sources.sql"):
        result = ingest(config)
    records = [r for path in result.metadata_files for r in json.loads(Path(path).read_text())]
    assert set(tables) <= set(result.datasets)
    assert _lineage(records) == tables
    assert upstream_columns(records) == columns  # the XMLTABLE view has none
    # one lineage a view: DataHub's, or autokfp's (pg_depend) for the view its parser could
    # not read (DataHub's source emits none for it); the transformer's state spans work units
    lineages = [r["entityUrn"] for r in records if r.get("aspectName") == "upstreamLineage"]
    assert sorted(lineages) == sorted(tables)
    # DataHub's query entities for the views name only datasets that exist
    subjects = {s["entity"] for r in records if r.get("aspectName") == "querySubjects"
                for s in r["aspect"]["json"]["subjects"]}
    named = {s[len("urn:li:schemaField:("):s.rindex(",")] if s.startswith("urn:li:schemaField")
             else s for s in subjects}
    assert urn(customers) in named and named <= set(result.datasets)

    # the crawl path (what the ingestion path adds its aspects from) reads the same
    report = result.report
    crawled = {d.dataset_id: d.schema.view for d in report.found if d.schema.view}
    assert {urn(f"{i.split('/')[0]}.{i.split('/')[1]}"): sorted(v["upstreams"])
            for i, v in crawled.items()} == tables
    assert crawled["sales/spend"]["definition"] == next(
        r["aspect"]["json"]["viewLogic"] for r in records
        if r.get("aspectName") == "viewProperties" and r["entityUrn"] == urn("sales.spend"))
    assert "public.customers c" in crawled["sales/spend"]["definition"]
    for view_id, view in crawled.items():
        found = {c["column"]: sorted(field(f"{t.split(',')[1][3:]}", col) for t, col in
                                     c["upstreams"]) for c in view.get("columns", [])}
        assert found == columns.get(urn(view_id.replace("/", ".")), {}), view_id
    # the view DataHub's parser cannot read: a warning naming it and the parser's error,
    # and a note in the crawl report; its table lineage stays
    xml = next(d for d in report.datasets if d.dataset_id == "public/xml_view")
    assert len(xml.notes) == 1 and "public/xml_view" in xml.notes[0]
    assert "ParseError" in xml.notes[0] and "table lineage is kept" in xml.notes[0]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("public/xml_view" in w and "ParseError" in w for w in warned), warned
    assert not [d.notes for d in report.datasets if d.dataset_id != "public/xml_view"
                and d.notes]
    # ... and the summaries list it: the crawl report's page and `autokfp discover`, whose
    # re-crawl reuses the view's unchanged entry (its note kept with it)
    from typer.testing import CliRunner

    from autokfp.catalog.crawl import render_crawl_html
    from autokfp.edge.cli import app

    assert "<h2>Notes</h2>" in render_crawl_html(report) and "XMLTable" in render_crawl_html(
        report)
    path = tmp_path / "vl.yaml"
    public_only = config.model_copy(update={"sources": config.sources[:1]})
    path.write_text(yaml.safe_dump(public_only.to_dict()))
    monkeypatch.setenv("COLUMNS", "400")
    shown = CliRunner().invoke(app, ["discover", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "Notes:" in shown.output and "public/xml_view" in shown.output.split("Notes:")[1]
    assert "ParseError" in shown.output.split("Notes:")[1]


def test_a_postgres_source_without_a_schema_is_the_users_default_schema_on_both_paths(
        postgres_server, tmp_path, catalog_home, monkeypatch) -> None:
    """A PostgreSQL source without ``schema`` reads the connection's default schema,
    current_schema(): the user's own ("$user") when it exists. The generated recipe gives
    DataHub's postgres source that schema too (it said public), so DataHub's datasets are the
    ones autokfp's crawl read and extended."""
    from autokfp.catalog.ingest import ingest, recipe_source

    monkeypatch.setenv("HOME", str(tmp_path / "datahub-home"))
    server = postgres_server
    _view_database(server, "vd")  # the fixture's user is app, and vd has a schema app
    config = parse_config({"name": "vd", "sources": [
        {"name": "vd", "kind": "sql", "url": server.url("vd")}],
        "training": {"dataset": "vd/notes", "target": "note"}})
    assert recipe_source(config.sources[0])["config"]["schema_pattern"] == {"allow": ["^app$"]}
    result = ingest(config)
    notes = "urn:li:dataset:(urn:li:dataPlatform:postgres,vd.app.notes,PROD)"
    assert result.datasets == [notes] and result.extended == [notes]
