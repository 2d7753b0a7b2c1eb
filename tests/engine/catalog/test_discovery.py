"""Discovery of folders, gs:// prefixes and SQL databases, and loading one dataset."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.discovery import discover, load_dataset, masked_url
from autokfp.config import FolderSource, GcsSource, RunConfig, SqlSource, parse_config
from autokfp.errors import DataError

ROWS = 120
HOSTILE = 'x"; DROP TABLE customers; --'


def _customers(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "email": [f"c{i}@example.com" for i in range(rows)],
            "plan": rng.choice(["basic", "pro"], rows),
            "spend": rng.normal(50, 10, rows).round(2),
            "signed_up": pd.date_range("2023-01-01", periods=rows, freq="D"),
            "churned": rng.integers(0, 2, rows),
        }
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "scratch").mkdir()
    df = _customers()
    df.to_csv(root / "customers.csv", index=False)
    df.to_parquet(root / "nested" / "customers.parquet", index=False)
    df.to_json(
        root / "nested" / "deeper" / "events.jsonl", orient="records", lines=True, date_format="iso"
    )
    pd.DataFrame({"city": ["Zürich", "Köln", "Málaga"] * 10, "n": range(30)}).to_csv(
        root / "cities.csv", index=False, encoding="latin-1"
    )
    good = (root / "nested" / "customers.parquet").read_bytes()
    (root / "broken.parquet").write_bytes(good[: len(good) // 2])  # truncated upload
    (root / "empty.csv").write_text("")
    df.to_csv(root / "scratch" / "tmp.csv", index=False)  # excluded by folder
    df.to_csv(root / "customers.backup.csv", index=False)  # excluded by basename
    (root / "README.md").write_text("not data")  # not included
    (root / ".hidden.csv").write_text("a\n1\n")  # hidden files are skipped
    return root


def _folder_source(root: Path) -> FolderSource:
    return FolderSource(
        name="files",
        kind="folder",
        path=str(root),
        include=["*.csv", "*.parquet", "*.jsonl"],
        exclude=["scratch/*", "*.backup.csv"],
    )


def test_folder_crawl_reports_bad_files_and_keeps_going(folder: Path) -> None:
    found = {d.dataset_id: d for d in discover([_folder_source(folder)])}
    assert sorted(found) == [
        "files/broken.parquet",
        "files/cities.csv",
        "files/customers.csv",
        "files/empty.csv",
        "files/nested/customers.parquet",
        "files/nested/deeper/events.jsonl",
    ]
    ok = {k for k, d in found.items() if d.ok}
    assert ok == {
        "files/cities.csv",
        "files/customers.csv",
        "files/nested/customers.parquet",
        "files/nested/deeper/events.jsonl",
    }

    broken = found["files/broken.parquet"]
    assert "broken.parquet" in broken.error and "parquet" in broken.error.lower()
    assert broken.schema.columns == []
    with pytest.raises(DataError, match="broken.parquet"):
        broken.load()
    assert "0 rows" in found["files/empty.csv"].error
    assert "empty.csv" in found["files/empty.csv"].error

    for dataset_id in (
        "files/customers.csv",
        "files/nested/customers.parquet",
        "files/nested/deeper/events.jsonl",
    ):
        schema = found[dataset_id].schema
        assert schema.platform == "file"
        assert schema.row_count == ROWS
        assert schema.column_names == list(_customers().columns)
        assert schema.column("email").is_pii
        assert schema.column("signed_up").semantic_type == "datetime"
        assert schema.column("customer_id").semantic_type == "id"
    assert found["files/customers.csv"].schema.format == "csv"
    assert found["files/nested/customers.parquet"].schema.format == "parquet"
    assert found["files/nested/deeper/events.jsonl"].schema.format == "jsonl"
    assert found["files/nested/customers.parquet"].schema.location == str(
        folder / "nested" / "customers.parquet"
    )

    cities = found["files/cities.csv"]
    assert any("latin-1" in note for note in cities.notes)
    assert set(cities.load()["city"]) == {"Zürich", "Köln", "Málaga"}


def test_discovery_samples_but_load_reads_everything(folder: Path) -> None:
    (found,) = [
        d
        for d in discover([_folder_source(folder)], sample_rows=25)
        if d.dataset_id == "files/customers.csv"
    ]
    assert found.schema.sample_rows == 25
    assert found.schema.row_count == ROWS
    full = found.load()
    pd.testing.assert_frame_equal(full, pd.read_csv(folder / "customers.csv"))


def test_missing_folder_is_reported_not_raised(tmp_path: Path, folder: Path) -> None:
    missing = FolderSource(name="gone", kind="folder", path=str(tmp_path / "nope"))
    found = discover([missing, _folder_source(folder)])
    assert found[0].dataset_id == "gone" and "does not exist" in found[0].error
    assert sum(d.ok for d in found) == 4


# --------------------------------------------------------------------------- SQL


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as connection:
        df = _customers()
        df["signed_up"] = df["signed_up"].dt.strftime("%Y-%m-%d %H:%M:%S")  # SQLite: text
        df.to_sql("customers", connection, index=False)
        df.head(40).to_sql(HOSTILE, connection, index=False)
        df.head(30).to_sql("Order Items", connection, index=False)
        connection.execute("CREATE TABLE empty_table (a INTEGER, b TEXT)")
    return path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        return {r[0] for r in rows}


def test_sqlite_crawl_quotes_table_names(warehouse: Path) -> None:
    source = SqlSource(name="wh", kind="sql", url=f"sqlite:///{warehouse}")
    found = {d.dataset_id: d for d in discover([source])}
    assert set(found) == {"wh/customers", f"wh/{HOSTILE}", "wh/Order Items", "wh/empty_table"}
    customers = found["wh/customers"].schema
    assert customers.platform == "sqlite"
    assert customers.location == f"sqlite:///{warehouse}"
    assert customers.row_count == ROWS
    assert customers.format is None
    signed = customers.column("signed_up")
    assert signed.physical_type == "datetime64" and signed.semantic_type == "datetime"
    assert found[f"wh/{HOSTILE}"].ok and found[f"wh/{HOSTILE}"].schema.row_count == 40
    assert found["wh/Order Items"].schema.row_count == 30
    assert "0 rows" in found["wh/empty_table"].error
    # the hostile name was read as a name, never run as SQL
    assert _tables(warehouse) == {"customers", HOSTILE, "Order Items", "empty_table"}
    loaded = found[f"wh/{HOSTILE}"].load()
    assert len(loaded) == 40
    assert pd.api.types.is_datetime64_any_dtype(loaded["signed_up"])
    assert _tables(warehouse) == {"customers", HOSTILE, "Order Items", "empty_table"}


def test_tables_counted_in_batches_count_as_one_by_one(warehouse: Path, monkeypatch) -> None:
    """Row counts are asked a batch of tables per statement: across batch borders, with a
    view (counted on its own) and a configured table that does not exist (its batch is
    refused, so each table of it is counted alone and only the missing one fails)."""
    import autokfp.catalog.sources.sql as sql

    with sqlite3.connect(warehouse) as connection:
        for i in range(5):
            connection.execute(f'CREATE TABLE "t{i}" (a INTEGER)')
            connection.executemany(f'INSERT INTO "t{i}" VALUES (?)', [(n,) for n in range(i + 1)])
        connection.execute('CREATE VIEW "v" AS SELECT * FROM "t4" WHERE a > 1')
    monkeypatch.setattr(sql, "_COUNT_BATCH", 2)
    statements: list[str] = []
    original = sql._count_rows
    monkeypatch.setattr(sql, "_count_rows", lambda c, t, s: statements.append(t) or original(c, t, s))
    found = {d.dataset_id: d for d in discover([SqlSource(
        name="wh", kind="sql", url=f"sqlite:///{warehouse}")])}
    assert {f"wh/t{i}": found[f"wh/t{i}"].schema.row_count for i in range(5)} == {
        f"wh/t{i}": i + 1 for i in range(5)}
    assert found["wh/v"].schema.row_count == 3
    assert found[f"wh/{HOSTILE}"].schema.row_count == 40 and "0 rows" in found["wh/empty_table"].error
    assert statements == ["v"]  # every table came from a batch
    statements.clear()
    found = {d.dataset_id: d for d in discover([SqlSource(
        name="wh", kind="sql", url=f"sqlite:///{warehouse}", tables=["t0", "t1", "t2", "nope"])])}
    assert [found[f"wh/t{i}"].schema.row_count for i in range(3)] == [1, 2, 3]
    assert "nope" in found["wh/nope"].error
    assert statements == ["t2", "nope"]  # the refused batch, table by table


def test_a_sql_source_releases_its_connection_before_it_hands_on_its_last_table(
        warehouse: Path, monkeypatch) -> None:
    """The discover generator of a SQL source holds a connection while it reads the tables;
    once the last one is read it is closed, before that table goes to the crawl (which
    catalogues it and goes on to the other sources), not when the crawl asks for more."""
    from sqlalchemy import event

    import autokfp.catalog.sources.sql as sql

    out: list[int] = []  # connections of the source's engines checked out of their pools
    original = sql._engine

    def engine(source):
        made = original(source)
        event.listen(made, "checkout", lambda *_: out.append(1))
        event.listen(made, "checkin", lambda *_: out.append(-1))
        return made

    monkeypatch.setattr(sql, "_engine", engine)
    source = SqlSource(name="wh", kind="sql", url=f"sqlite:///{warehouse}")
    reader = sql.SqlDatabase(source)
    held, ids = [], []
    for item in reader.discover(20, None):
        held.append(sum(out))
        ids.append(item.dataset_id)
    assert len(held) == 4 and held[0] == 1, held  # the tables are read over one connection
    assert held[-1] == 0, held
    assert ids == [d.dataset_id for d in discover([source])]  # all of them, in order, once


def test_sqlite_columns_read_in_one_query_are_what_sqlalchemy_reflects(tmp_path: Path) -> None:
    """The declared columns of every SQLite table from one query equal SQLAlchemy's
    reflection of each table (the re-crawl's signatures depend on it), for declared types
    of every affinity, odd and missing ones; a table with a generated column is left to
    that reflection."""
    import sqlalchemy as sa

    from autokfp.catalog.sources.sql import _sqlite_declared_columns

    path = tmp_path / "types.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            'CREATE TABLE "odd ""types""" (a INTEGER PRIMARY KEY, b int, c VARCHAR(20), '
            "d numeric(10, 2), e, f BLOB, g real, h DOUBLE PRECISION, i DATETIME, j date, "
            "k BOOLEAN, l LONGTEXT, m weird_type, n CHARACTER VARYING(5), o FLOAT, p BIGINT, "
            "q TIMESTAMP, r nvarchar, s CLOB, t DECIMAL, u TINYINT, v json)")
        connection.execute("CREATE TABLE plain (x TEXT PRIMARY KEY, y REAL) WITHOUT ROWID")
        connection.execute("CREATE TABLE gen (a INTEGER, b INTEGER GENERATED ALWAYS AS (a + 1))")
        connection.execute("CREATE VIEW seen AS SELECT x FROM plain")
        pd.DataFrame({"n": [1], "when": pd.to_datetime(["2024-01-01"]), "s": ["a"],
                      "f": [1.5], "b": [True]}).to_sql("from_pandas", connection, index=False)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        inspector = sa.inspect(engine)
        fast = _sqlite_declared_columns(inspector)
        reflected = {t: [[str(c["name"]), str(c["type"])] for c in inspector.get_columns(t)]
                     for t in inspector.get_table_names()}
    finally:
        engine.dispose()
    assert "gen" not in fast and set(reflected) - {"gen"} <= set(fast)
    assert {t: fast[t] for t in reflected if t != "gen"} == {
        t: c for t, c in reflected.items() if t != "gen"}
    assert len(reflected['odd "types"']) == 22


def test_configured_tables_that_do_not_exist_are_reported(warehouse: Path) -> None:
    source = SqlSource(
        name="wh", kind="sql", url=f"sqlite:///{warehouse}", tables=["customers", "nope"]
    )
    found = {d.dataset_id: d for d in discover([source])}
    assert found["wh/customers"].ok
    assert "nope" in found["wh/nope"].error


def test_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    (found,) = discover([SqlSource(name="wh", kind="sql", url=f"sqlite:///{db}")])
    assert "does not exist" in found.error
    assert not db.exists()


def test_password_is_masked_in_location_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("AUTOKFP_TEST_DB_PASSWORD", secret)
    url = "postgresql://bob:${AUTOKFP_TEST_DB_PASSWORD}@127.0.0.1:1/sales"
    (found,) = discover([SqlSource(name="pg", kind="sql", url=url)])
    assert found.error  # nothing listens on port 1 (or no driver): reported, not raised
    assert found.schema.platform == "postgres"
    assert found.schema.location == "postgresql://bob:***@127.0.0.1:1/sales"
    assert secret not in found.error and secret not in repr(found)
    assert masked_url(f"mysql+pymysql://u:{secret}@h/db") == "mysql+pymysql://u:***@h/db"


# --------------------------------------------------------------------------- load_dataset


def _config(folder: Path, warehouse: Path, dataset: str, target: str = "churned") -> RunConfig:
    return parse_config(
        {
            "name": "churn",
            "sources": [
                {
                    "name": "files",
                    "kind": "folder",
                    "path": str(folder),
                    "exclude": ["scratch/*", "*.backup.csv"],
                },
                {"name": "wh", "kind": "sql", "url": f"sqlite:///{warehouse}"},
            ],
            "training": {"dataset": dataset, "target": target},
        }
    )


def test_load_dataset_from_folder_and_sql(folder: Path, warehouse: Path) -> None:
    df, schema = load_dataset(_config(folder, warehouse, "files/nested/customers.parquet"))
    assert len(df) == ROWS and schema.row_count == ROWS
    assert schema.column("churned").tags == ["target"]
    assert schema.dataset_id == "files/nested/customers.parquet"

    df, schema = load_dataset(_config(folder, warehouse, "wh/customers"))
    assert len(df) == ROWS
    assert schema.platform == "sqlite"
    assert pd.api.types.is_datetime64_any_dtype(df["signed_up"])
    assert "target" in schema.column("churned").tags

    df, _ = load_dataset(_config(folder, warehouse, f"wh/{HOSTILE}"))
    assert len(df) == 40
    assert "customers" in _tables(warehouse)


def test_load_dataset_that_does_not_exist_lists_the_others(folder: Path, warehouse: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(_config(folder, warehouse, "files/customer.csv"))
    message = str(info.value)
    assert "files/customer.csv" in message
    assert "files/customers.csv" in message and "files/nested/customers.parquet" in message
    assert "scratch" not in message  # excluded files are not offered

    with pytest.raises(DataError) as info:
        load_dataset(_config(folder, warehouse, "wh/customer"))
    assert "wh/customer'" in str(info.value) and "wh/customers" in str(info.value)

    with pytest.raises(DataError, match="training.dataset"):
        load_dataset(_config(folder, warehouse, "files/../warehouse.db"))


def test_load_dataset_empty_and_malformed(folder: Path, warehouse: Path) -> None:
    with pytest.raises(DataError, match=r"empty\.csv' has 0 rows; check the export"):
        load_dataset(_config(folder, warehouse, "files/empty.csv"))
    with pytest.raises(DataError, match=r"empty_table' has 0 rows"):
        load_dataset(_config(folder, warehouse, "wh/empty_table"))
    with pytest.raises(DataError) as info:
        load_dataset(_config(folder, warehouse, "files/broken.parquet"))
    assert str(folder / "broken.parquet") in str(info.value)
    assert "Parquet" in str(info.value)  # the parser's own complaint
    (folder / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl' as jsonl"):
        load_dataset(_config(folder, warehouse, "files/bad.jsonl"))


# --------------------------------------------------------------------------- gs://


def test_gcs_crawl_on_the_emulator(gcs_emulator, tmp_path: Path) -> None:
    from autokfp import storage

    base = storage.join(gcs_emulator.base_uri, f"discovery-{uuid.uuid4().hex[:8]}")
    df = _customers()
    local = tmp_path / "c.parquet"
    df.to_parquet(local, index=False)
    storage.write_bytes(storage.join(base, "raw", "customers.parquet"), local.read_bytes())
    storage.write_text(storage.join(base, "raw", "orders.csv"), df.head(50).to_csv(index=False))
    storage.write_text(storage.join(base, "raw", "notes.txt"), "ignored")
    storage.write_bytes(storage.join(base, "raw", "bad.parquet"), local.read_bytes()[:100])
    # a sibling prefix that starts with the same letters must not be crawled
    storage.write_text(storage.join(base + "-other", "x.csv"), "a\n1\n")

    source = GcsSource(name="lake", kind="gcs", uri=base)
    found = {d.dataset_id: d for d in discover([source])}
    assert set(found) == {
        "lake/raw/customers.parquet",
        "lake/raw/orders.csv",
        "lake/raw/bad.parquet",
    }
    customers = found["lake/raw/customers.parquet"]
    assert customers.ok and customers.schema.platform == "gcs"
    assert customers.schema.location == storage.join(base, "raw", "customers.parquet")
    assert customers.schema.row_count == ROWS
    assert found["lake/raw/orders.csv"].schema.row_count == 50
    assert "bad.parquet" in found["lake/raw/bad.parquet"].error
    pd.testing.assert_frame_equal(customers.load(), df)

    config = parse_config(
        {
            "name": "churn",
            "sources": [{"name": "lake", "kind": "gcs", "uri": base}],
            "training": {"dataset": "lake/raw/orders.csv", "target": "churned"},
        }
    )
    loaded, schema = load_dataset(config)
    assert len(loaded) == 50 and "target" in schema.column("churned").tags
    with pytest.raises(DataError, match="lake/raw/customers.parquet"):
        load_dataset(config, "lake/raw/nope.csv")


# --------------------------------------------------------------------------- s3:// (moto)


@pytest.mark.parametrize("scheme", ["s3", "minio"])
def test_s3_crawl_on_moto(s3_server, tmp_path: Path, scheme: str) -> None:
    from autokfp import storage
    from autokfp.config import S3Source

    base = f"{scheme}://{s3_server.bucket}/discovery-{uuid.uuid4().hex[:8]}"
    df = _customers()
    local = tmp_path / "c.parquet"
    df.to_parquet(local, index=False)
    storage.write_bytes(storage.join(base, "raw", "customers.parquet"), local.read_bytes())
    storage.write_text(storage.join(base, "raw", "orders.csv"), df.head(50).to_csv(index=False))
    storage.write_text(storage.join(base, "raw", "notes.txt"), "ignored")
    storage.write_bytes(storage.join(base, "raw", "bad.parquet"), local.read_bytes()[:100])
    storage.write_text(storage.join(base + "-other", "x.csv"), "a\n1\n")

    source = S3Source(name="lake", kind="s3", uri=base)
    found = {d.dataset_id: d for d in discover([source])}
    assert set(found) == {"lake/raw/customers.parquet", "lake/raw/orders.csv",
                          "lake/raw/bad.parquet"}
    customers = found["lake/raw/customers.parquet"]
    assert customers.ok and customers.schema.platform == "s3"
    assert customers.schema.location == storage.join(base, "raw", "customers.parquet")
    assert customers.schema.row_count == ROWS
    assert "bad.parquet" in found["lake/raw/bad.parquet"].error
    pd.testing.assert_frame_equal(customers.load(), df)
    # a rewritten object gets a new signature (its ETag changes), an untouched one keeps it
    before = {d.dataset_id: d.signature for d in discover([source])}
    storage.write_text(storage.join(base, "raw", "orders.csv"), df.head(40).to_csv(index=False))
    after = {d.dataset_id: d.signature for d in discover([source])}
    assert after["lake/raw/orders.csv"] != before["lake/raw/orders.csv"]
    assert after["lake/raw/customers.parquet"] == before["lake/raw/customers.parquet"]

    config = parse_config({"name": "churn", "sources": [{"name": "lake", "kind": "s3", "uri": base}],
                           "training": {"dataset": "lake/raw/orders.csv", "target": "churned"}})
    loaded, schema = load_dataset(config)
    assert len(loaded) == 40 and "target" in schema.column("churned").tags


def test_an_s3_listing_is_read_a_page_at_a_time(s3_server, monkeypatch) -> None:
    """The listing asks S3 for the next page only when the last one is used up (so a
    prefix of any size is listed in one page's memory), yields what s3fs's whole listing
    gives, and a listing that fails part-way keeps the objects already profiled and reports
    the source as failed."""
    from autokfp import storage
    from autokfp.config import S3Source
    from autokfp.storage import s3 as s3_store

    base = f"s3://{s3_server.bucket}/pages-{uuid.uuid4().hex[:8]}"
    for i in range(7):
        storage.write_text(storage.join(base, f"d{i % 2}", f"part-{i}.csv"), f"a\n{i}\n")
    storage.write_text(base + "-other/x.csv", "a\n1\n")  # a sibling prefix, not listed
    fs = s3_store.filesystem(base)
    whole = {path.split("/", 2)[2]: info for path, info in
             fs.find(base.split("://")[1], detail=True).items()}
    real_call, pages = fs.call_s3, []

    def counted(method, **kwargs):
        pages.append(kwargs.get("ContinuationToken"))
        return real_call(method, **kwargs)

    monkeypatch.setattr(fs, "call_s3", counted)
    listing = storage.iter_s3_objects(base, page_size=3)
    first = next(listing)
    assert len(pages) == 1  # one page asked for, not the whole listing
    rest = list(listing)
    assert len(pages) == 3 and pages[0] is None and all(pages[1:])
    objects = [first, *rest]
    assert [o["relative"] for o in objects] == sorted(whole)
    for obj in objects:
        info = whole[obj["relative"]]
        assert (obj["etag"], obj["size"]) == (info["ETag"].strip('"'), info["size"])
        assert obj["uri"] == storage.join(base, obj["relative"])

    def failing(method, **kwargs):
        if kwargs.get("ContinuationToken"):
            raise ConnectionError("connection reset on the second page")
        return real_call(method, **kwargs)

    monkeypatch.setattr(fs, "call_s3", failing)
    monkeypatch.setattr(s3_store, "LIST_PAGE", 3)
    found = discover([S3Source(name="lake", kind="s3", uri=base)])
    assert [d.dataset_id for d in found if not d.source_failed] == [
        f"lake/{relative}" for relative in sorted(whole)[:3]]
    assert all(d.ok for d in found[:3])
    failure = found[-1]
    assert failure.source_failed and "second page" in (failure.error or "")


def test_a_gcs_listing_is_read_a_page_at_a_time(paging_gcs, monkeypatch) -> None:
    """On a GCS stand-in that pages as GCS does, the listing asks for pages of ``LIST_PAGE``
    objects and for the next page only when the last one is used up (so a prefix of any size
    is listed in one page's memory), yields every object in name order, and a listing that
    fails part-way keeps the objects already profiled and reports the source as failed."""
    from requests.exceptions import ConnectionError as RequestsConnectionError

    from autokfp import storage
    from autokfp.storage import gcs as gcs_store

    base = f"{paging_gcs.base_uri}/pages-{uuid.uuid4().hex[:8]}"
    names = sorted(f"d{i % 2}/part-{i}.csv" for i in range(7))
    for name in names:
        storage.write_text(storage.join(base, name), "a\n1\n")
    storage.write_text(base + "-other/x.csv", "a\n1\n")  # a sibling prefix, not listed
    connection = gcs_store.client()._connection
    real_request, pages = connection.api_request, []

    def counted(*args, **kwargs):
        params = kwargs.get("query_params") or {}
        pages.append((params.get("maxResults"), params.get("pageToken")))
        return real_request(*args, **kwargs)

    monkeypatch.setattr(connection, "api_request", counted)
    assert [name for name, _ in gcs_store.iter_blobs(base)] == names  # one page
    assert pages == [(gcs_store.LIST_PAGE, None)] and gcs_store.LIST_PAGE == 1000
    pages.clear()
    listing = gcs_store.iter_blobs(base, page_size=3)
    first = next(listing)
    assert pages == [(3, None)]  # one page asked for, not the whole listing
    rest = list(listing)
    assert [p[0] for p in pages] == [3, 3, 3] and all(token for _, token in pages[1:])
    assert [name for name, _ in [first, *rest]] == names
    assert all(blob.generation and blob.size == 4 for _, blob in [first, *rest])

    def failing(*args, **kwargs):
        if (kwargs.get("query_params") or {}).get("pageToken"):
            raise RequestsConnectionError("connection reset on the second page")
        return real_request(*args, **kwargs)

    monkeypatch.setattr(connection, "api_request", failing)
    monkeypatch.setattr(gcs_store, "LIST_PAGE", 3)
    found = discover([GcsSource(name="lake", kind="gcs", uri=base)])
    assert [d.dataset_id for d in found if not d.source_failed] == [
        f"lake/{name}" for name in names[:3]]
    assert all(d.ok for d in found[:3])
    failure = found[-1]
    assert failure.source_failed and "second page" in (failure.error or "")


def test_a_gcs_listing_of_thousands_of_objects_holds_one_page(seeded_gcs, monkeypatch) -> None:
    """Thousands of objects on a GCS stand-in that pages (seeded into its folder, not
    uploaded): the gcs source lists every one, in name order, with the size and signature
    the server gives each object, and the listing's peak for 2,000 objects is that of 1,000
    (pages of 500 here: about two pages held, the one read and the next; one page of
    everything costs ~4 MB per 1,000 objects). The server reads every object's attributes
    for each page, so the counts are kept to a few thousand."""
    import base64
    import hashlib
    import tracemalloc

    from autokfp.catalog.sources.base import open_source, signature_of
    from autokfp.storage import gcs as gcs_store

    monkeypatch.setattr(gcs_store, "LIST_PAGE", 500)
    body = b"a,b\n1,2\n"
    counts = {"warm": 1, "small": 1000, "large": 2000}
    for bucket, count in counts.items():
        seeded_gcs.seed(bucket, ((f"p/part-{i:05d}.csv", body) for i in range(count)))

    def listing_peak(bucket: str) -> int:
        blob = gcs_store.client().bucket(bucket).get_blob(f"p/part-{counts[bucket] - 1:05d}.csv")
        assert blob.download_as_bytes() == body
        assert blob.md5_hash == base64.b64encode(hashlib.md5(body).digest()).decode()
        signature = signature_of("gcs", blob.generation, len(body), blob.md5_hash)
        reader = open_source(GcsSource(name="lake", kind="gcs", uri=f"gs://{bucket}/p"))
        seen = 0
        tracemalloc.start()
        try:
            for uri, relative, sig, _, size in reader._listed():
                assert (relative, sig, size) == (f"part-{seen:05d}.csv", signature, len(body))
                assert uri == f"gs://{bucket}/p/{relative}"
                seen += 1
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert seen == counts[bucket]
        return peak

    listing_peak("warm")  # the client's first-use costs, outside the measure
    small, large = listing_peak("small"), listing_peak("large")
    assert large - small < 512 * 1024, (small, large)


def test_s3_source_uri_is_checked() -> None:
    from autokfp.errors import ConfigError

    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        parse_config({"name": "churn", "sources": [{"name": "lake", "kind": "s3", "uri": "gs://x"}],
                      "training": {"dataset": "lake/a.csv", "target": "y"}})


def test_a_parquet_training_file_is_copied_in_batches_as_load_dataset_reads_it(
        folder: Path, warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autokfp.catalog import batches
    from autokfp.catalog.discovery import copy_parquet_dataset

    monkeypatch.setattr(batches, "BATCH_ROWS", 16)  # many batches
    config = _config(folder, warehouse, "files/nested/customers.parquet")
    frame, loaded = load_dataset(config)
    out = tmp_path / "out" / "dataset.parquet"
    schema = copy_parquet_dataset(config, config.training.dataset, str(out))
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert schema.to_dict() == loaded.to_dict()  # a file within the sample: profiled whole
    assert schema.column("churned").tags == ["target"] and schema.urn == loaded.urn
    # above the sample: every row copied, the profile on a sample, the row count exact
    small = copy_parquet_dataset(config, config.training.dataset, str(out), sample_rows=50)
    assert small is not None and (small.row_count, small.sample_rows) == (ROWS, 50)
    assert len(pd.read_parquet(out)) == ROWS
    # anything else is left to load_dataset, and nothing is written
    _customers().set_index("customer_id").to_parquet(folder / "indexed.parquet")
    for other in ("files/customers.csv", "wh/customers", "files/broken.parquet",
                  "files/nested/missing.parquet", "files/indexed.parquet"):
        assert copy_parquet_dataset(config, other, str(tmp_path / "no.parquet")) is None
    assert not (tmp_path / "no.parquet").exists()


@pytest.mark.parametrize("store", ["gcs_emulator", "s3_server"])
def test_the_discover_step_copies_a_bucket_object_without_loading_it(
        store: str, request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Parquet, CSV and JSON-lines object of a gcs or s3 source is downloaded to a local
    file and copied in batches, as a folder's file is: the same rows and schema as
    ``load_dataset`` reads whole (which the step must not call)."""
    from autokfp import storage
    from autokfp.catalog import batches, discovery
    from autokfp.steps.discover import _write_training_data

    server = request.getfixturevalue(store)
    kind = "gcs" if store == "gcs_emulator" else "s3"
    base = storage.join(server.base_uri, f"stream-{uuid.uuid4().hex[:8]}")
    df = _customers()
    local = tmp_path / "c.parquet"
    df.to_parquet(local, index=False)
    storage.write_bytes(storage.join(base, "customers.parquet"), local.read_bytes())
    storage.write_text(storage.join(base, "customers.csv"), df.to_csv(index=False))
    storage.write_text(storage.join(base, "customers.jsonl"),
                       df.drop(columns="signed_up").to_json(orient="records", lines=True))
    monkeypatch.setattr(batches, "BATCH_ROWS", 16)  # many batches
    for name in ("customers.parquet", "customers.csv", "customers.jsonl"):
        config = parse_config({"name": "churn", "sources": [{"name": "lake", "kind": kind,
                                                             "uri": base}],
                               "training": {"dataset": f"lake/{name}", "target": "churned"}})
        frame, loaded = load_dataset(config)
        assert loaded.platform == kind and loaded.location == storage.join(base, name)

        def whole(*args: object, name: str = name, **kwargs: object) -> None:
            raise AssertionError(f"{name} was loaded whole")

        with monkeypatch.context() as patch:
            patch.setattr(discovery, "load_dataset", whole)
            out = tmp_path / f"{name}.out.parquet"
            schema, rows, columns, _ = _write_training_data(config, str(out))
        assert (rows, columns) == (ROWS, len(frame.columns)), name
        assert schema.to_dict() == loaded.to_dict(), name
        pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    # an object that is not there is left to load_dataset, which names it
    config = parse_config({"name": "churn", "sources": [{"name": "lake", "kind": kind,
                                                         "uri": base}],
                           "training": {"dataset": "lake/nope.csv", "target": "churned"}})
    with pytest.raises(DataError, match="lake/nope.csv"):
        _write_training_data(config, str(tmp_path / "nope.parquet"))


def test_a_bucket_crawl_downloads_ahead_while_it_profiles(s3_server, monkeypatch) -> None:
    """Objects are downloaded by READ_AHEAD threads while earlier ones are profiled (a crawl
    of small objects waits on the store more than it computes): the first download does not
    end before a second has started, the first object is profiled while later ones are
    already downloading, no more than READ_AHEAD are in flight, every object is profiled as
    before, and no downloaded file or folder is left.

    Told by the order of events, not by wall time: on a loaded machine the profiling alone
    of 24 objects took longer than 24 serial 50 ms downloads (2.1 s at load 16)."""
    import threading

    from autokfp import storage
    from autokfp.catalog.sources import files
    from autokfp.config import S3Source

    base = f"s3://{s3_server.bucket}/ahead-{uuid.uuid4().hex[:8]}"
    for i in range(24):
        storage.write_text(storage.join(base, f"part-{i:02d}.csv"), f"a,b\n{i},x\n{i + 1},y\n")
    real, lock, folders = storage.download_file, threading.Lock(), set()
    started, flying, most, second = [0], [0], [0], threading.Event()
    overlapped: list[bool] = []

    def slow(uri, local):
        with lock:
            started[0] += 1
            first = started[0] == 1
            flying[0] += 1
            most[0] = max(most[0], flying[0])
            if started[0] >= 2:
                second.set()
        folders.add(Path(local).parent)
        try:
            if first:  # one at a time, a second download never starts while this one runs
                overlapped.append(second.wait(20))
            real(uri, local)
        finally:
            with lock:
                flying[0] -= 1

    profiled_with: list[int] = []  # downloads started when each object was profiled
    sample_file = files._sample_file

    def sampled(*args, **kwargs):
        profiled_with.append(started[0])
        return sample_file(*args, **kwargs)

    monkeypatch.setattr(storage, "download_file", slow)
    monkeypatch.setattr(files, "_sample_file", sampled)
    found = discover([S3Source(name="lake", kind="s3", uri=base)], sample_rows=100)
    assert [d.dataset_id for d in found] == [f"lake/part-{i:02d}.csv" for i in range(24)]
    assert all(d.ok and d.schema.row_count == 2 for d in found)
    assert overlapped == [True], "the downloads did not overlap"
    assert len(profiled_with) == 24 and profiled_with[0] > 1, profiled_with
    assert 1 < most[0] <= files.READ_AHEAD
    assert len(folders) == 1 and not any(f.exists() for f in folders)
    assert found[3].load()["a"].tolist() == [3, 4]  # a dataset still reads its object later


def test_a_bucket_crawl_reads_large_objects_ahead_within_a_byte_budget(s3_server,
                                                                         monkeypatch) -> None:
    """Read-ahead is bounded by bytes too: an object is downloaded ahead only while those
    downloading hold fewer than READ_AHEAD_BYTES (eight large objects at once would fill a
    pod's disk). With a budget of two objects and a half, at most three download at once,
    and every object is still profiled."""
    import threading
    import time

    from autokfp import storage
    from autokfp.catalog.sources import files
    from autokfp.config import S3Source

    base = f"s3://{s3_server.bucket}/budget-{uuid.uuid4().hex[:8]}"
    body = "a,b\n" + "".join(f"{i},{'x' * 90}\n" for i in range(100))  # ~9.5 KB each
    for i in range(8):
        storage.write_text(storage.join(base, f"part-{i}.csv"), body)
    real, lock, flying, most = storage.download_file, threading.Lock(), [0], [0]

    def slow(uri, local):
        with lock:
            flying[0] += 1
            most[0] = max(most[0], flying[0])
        try:
            time.sleep(0.1)
            real(uri, local)
        finally:
            with lock:
                flying[0] -= 1

    monkeypatch.setattr(storage, "download_file", slow)
    monkeypatch.setattr(files, "READ_AHEAD_BYTES", int(2.5 * len(body)))
    found = discover([S3Source(name="lake", kind="s3", uri=base)], sample_rows=100)
    assert [d.dataset_id for d in found] == [f"lake/part-{i}.csv" for i in range(8)]
    assert all(d.ok and d.schema.row_count == 100 for d in found)
    assert 1 < most[0] <= 3, most[0]
