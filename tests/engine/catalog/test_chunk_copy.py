"""A SQL table or a JSON-lines file copied to Parquet chunk by chunk (``copy_sql_dataset``,
``copy_jsonl_dataset``): the same frame and profile as ``load_dataset`` (pandas reading the
whole table or file), or, when the chunks cannot promise that, nothing written and the
dataset left to ``load_dataset``. Tables on a real PostgreSQL server and SQLite."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.chunk_copy import copy_jsonl_dataset, copy_sql_dataset
from autokfp.catalog.discovery import load_dataset
from autokfp.config import parse_config
from autokfp.examples.churn import generate_churn
from tests.memory_probe import growth_mb

PASSWORD_VAR = "AUTOKFP_TEST_PG_PASSWORD"


def _config(source: dict, dataset: str, target: str = "y"):
    return parse_config({"name": "chunks", "sources": [source],
                         "training": {"dataset": dataset, "target": target}})


@pytest.fixture
def database(postgres_server, monkeypatch):
    """A fresh PostgreSQL database 'chunks' and its source (the password as ${VAR})."""
    server = postgres_server
    server.run("postgres", "DROP DATABASE IF EXISTS chunks", "CREATE DATABASE chunks")
    monkeypatch.setenv(PASSWORD_VAR, server.password)
    url = server.url("chunks").replace(server.password, "${" + PASSWORD_VAR + "}")
    return server, {"name": "db", "kind": "sql", "url": url}


# 3,000 rows read 300 at a time: every widening happens after the first chunk
_TABLE = """CREATE TABLE customers AS SELECT i AS id, (i * 1.25)::numeric(10,2) AS amount,
  (i % 17) / 7.0 AS score, 'seg' || (i % 5) AS y,
  CASE WHEN i > 2000 AND i % 7 = 0 THEN NULL ELSE i % 3 = 0 END AS flag,
  CASE WHEN i > 2000 AND i % 11 = 0 THEN NULL ELSE i % 9 END AS late_missing,
  CASE WHEN i < 700 THEN NULL ELSE 'x' || i END AS empty_early,
  CASE WHEN i < 2900 THEN NULL ELSE i END AS empty_until_the_last_chunk,
  NULL::text AS never,
  to_char(date '2024-01-01' + i, 'YYYY-MM-DD') AS signed_up,
  timestamp '2024-01-01 00:00:00' + i * interval '1 hour' AS created,
  date '2020-01-01' + i AS day,
  CASE WHEN i < 2500 THEN i ELSE i + 0.5 END AS fractions_late
  FROM generate_series(1, 3000) AS i"""



def _streamed_without_warning(config, out, caplog):
    """The JSON-lines copy in 300-row chunks, which must stream (a schema) with no WARNING;
    (its schema, the changes it reported)."""
    changes: list[str] = []
    with caplog.at_level("WARNING", logger="autokfp.catalog"):
        schema = copy_jsonl_dataset(config, config.training.dataset, str(out), chunk_rows=300,
                                    changes=changes)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    assert schema is not None
    return schema, changes

def test_sql_chunks_give_the_whole_tables_frame_and_profile(database, tmp_path) -> None:
    server, source = database
    server.run("chunks", _TABLE)
    config = _config(source, "db/customers")
    frame, loaded = load_dataset(config)
    # what the chunks had to widen: pandas types these columns apart in the first chunk
    assert frame["flag"].dtype == object and frame["late_missing"].dtype == "float64"
    assert frame["fractions_late"].dtype == "float64" and frame["signed_up"].dtype.kind == "M"
    out = tmp_path / "dataset.parquet"
    schema = copy_sql_dataset(config, "db/customers", str(out), chunk_rows=300)
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert schema.to_dict() == loaded.to_dict()
    assert schema.column("y").tags == ["target"]
    assert not list(tmp_path.glob(".*tmp*"))
    small = copy_sql_dataset(config, "db/customers", str(out), sample_rows=500, chunk_rows=300)
    assert small is not None and (small.row_count, small.sample_rows) == (3_000, 500)
    # the sample is drawn from every chunk, not the first rows
    assert float(small.column("fractions_late").max) > 2_500


def test_sqlite_text_dates_are_parsed_as_the_whole_table(tmp_path) -> None:
    frame = generate_churn(2_000, seed=3)
    frame["signup_date"] = frame["signup_date"].astype(str)  # SQLite keeps dates as text
    frame.loc[1_500::7, "num_support_tickets"] = None
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        frame.to_sql("customers", connection, index=False)
    config = _config({"name": "db", "kind": "sql", "url": f"sqlite:///{path}"}, "db/customers",
                     "churned")
    whole, loaded = load_dataset(config)
    assert whole["signup_date"].dtype.kind == "M"
    out = tmp_path / "dataset.parquet"
    schema = copy_sql_dataset(config, "db/customers", str(out), chunk_rows=128)
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), whole)
    assert schema.to_dict() == loaded.to_dict()


# text dates in some chunks only (300 rows a chunk): 'due' a third not dates (the whole
# column is text), 'seen' 40 rows not dates in one chunk (1.3%: the whole column is dates,
# those rows missing), 'rare' 600 values, 20 not dates in one chunk (3.3%, every value tested)
_DATES = """CREATE TABLE dates AS SELECT i AS id, i % 2 AS y,
  CASE WHEN i < 2000 THEN to_char(date '2024-01-01' + i, 'YYYY-MM-DD') ELSE 'soon' END AS due,
  CASE WHEN i BETWEEN 2900 AND 2939 THEN 'soon'
       ELSE to_char(timestamp '2024-01-01' + i * interval '1 hour', 'YYYY-MM-DD HH24:MI') END
       AS seen,
  CASE WHEN i % 5 <> 0 THEN NULL WHEN i BETWEEN 2400 AND 2499 THEN 'n/k'
       ELSE to_char(date '2020-01-01' + i, 'YYYY-MM-DD') END AS rare
  FROM generate_series(1, 3000) AS i"""


def test_sql_text_dates_in_some_chunks_only_are_decided_by_the_whole_column(
        database, tmp_path, monkeypatch) -> None:
    """A text column that is dates in some chunks and not in others: pandas' whole read
    parses it or keeps it as text by testing the whole column's values (a sample of 1,000 of
    them, or every one), so the copy draws the same values from the table (two passes more)
    and reads it again so: the same frame and profile, and the same note of the values that
    are not dates made missing (now reported by both)."""
    from autokfp.catalog import chunk_copy

    server, source = database
    server.run("chunks", _DATES)
    config = _config(source, "db/dates")
    frame, loaded = load_dataset(config)
    assert (frame["due"].dtype.kind, frame["seen"].dtype.kind, frame["rare"].dtype.kind) == (
        "O", "M", "M")
    assert frame["seen"].isna().sum() == 40 and frame["rare"].notna().sum() == 580
    decided: list[tuple[str, bool]] = []
    real = chunk_copy._decide_dates

    def counted(*args, **kwargs):
        decided.append((args[2], real(*args, **kwargs)))
        return decided[-1][1]

    monkeypatch.setattr(chunk_copy, "_decide_dates", counted)
    out = tmp_path / "dataset.parquet"
    changes: list[str] = []
    schema = copy_sql_dataset(config, "db/dates", str(out), chunk_rows=300, changes=changes)
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert schema.to_dict() == loaded.to_dict()
    assert sorted(decided) == [("due", False), ("rare", True), ("seen", True)]
    assert not list(tmp_path.glob(".*tmp*"))
    # the text made missing is reported, by the whole read and the copy alike
    from autokfp.catalog.sources.files import DATA_CHANGES

    assert changes == frame.attrs[DATA_CHANGES] and len(changes) == 2
    assert "'seen'" in changes[0] and "40 values" in changes[0] and "'soon'" in changes[0]
    assert "'rare'" in changes[1] and "20 values" in changes[1] and "'n/k'" in changes[1]
    rows, reported = _streamed_by_discover(config, tmp_path, monkeypatch)
    assert (rows, reported) == (3_000, changes)


def _streamed_by_discover(config, tmp_path: Path, monkeypatch) -> tuple[int, list[str]]:
    """The discover step's write of the training dataset to ``tmp_path/d.parquet`` with
    ``load_dataset`` made to fail (so it must stream): its rows and reported changes."""
    from autokfp.catalog import discovery
    from autokfp.steps.discover import _write_training_data

    def no_whole_read(*args, **kwargs):
        raise AssertionError("the dataset was loaded whole")

    monkeypatch.setattr(discovery, "load_dataset", no_whole_read)
    _, rows, _, changes = _write_training_data(config, str(tmp_path / "d.parquet"))
    return rows, changes


def _jsonl_frame(rows: int = 3_000) -> pd.DataFrame:
    frame = generate_churn(rows, seed=4)
    rng = np.random.default_rng(1)
    frame["code"] = rng.integers(0, 9, rows).astype(float)
    frame.loc[2_000::53, "code"] = np.nan  # missing only after the first chunks
    frame["price"] = rng.integers(0, 50, rows).astype(float)
    frame.loc[2_500:, "price"] += 0.5  # pandas reads 1.0 as an integer: fractions come late
    frame["note"] = None
    frame.loc[1_000:, "note"] = [f"n{i}" for i in range(rows - 1_000)]
    frame["flag"] = rng.random(rows) < 0.5
    frame["empty"] = np.nan  # pandas types a column without a value float64
    return frame


def test_jsonl_chunks_give_the_whole_files_frame_and_profile(tmp_path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _jsonl_frame().to_json(folder / "customers.jsonl", orient="records", lines=True,
                           date_format="iso")
    config = _config({"name": "files", "kind": "folder", "path": str(folder)},
                     "files/customers.jsonl", "churned")
    frame, loaded = load_dataset(config)
    assert frame["empty"].dtype == "float64" and frame["price"].dtype == "float64"
    out = tmp_path / "dataset.parquet"
    schema = copy_jsonl_dataset(config, config.training.dataset, str(out), chunk_rows=300)
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert schema.to_dict() == loaded.to_dict()
    assert schema.column("churned").tags == ["target"]


@pytest.mark.parametrize("case", ["late_keys", "latin"])
def test_jsonl_keys_only_later_records_have_and_latin1_are_read_as_the_whole_file(
        tmp_path, monkeypatch, case) -> None:
    """Keys only later records have (an integer, a boolean and a text key, one of them in a
    single record, and a key the last chunks lack), and text that is not UTF-8 after the
    first chunks: the copy gives ``load_dataset``'s frame, profile and noted changes."""
    from autokfp.catalog.sources.files import DATA_CHANGES

    folder = tmp_path / "data"
    folder.mkdir()
    records = _jsonl_frame().to_dict("records")
    for i, record in enumerate(records):
        record["signup_date"] = str(record["signup_date"])
        if case == "late_keys":
            if i >= 1_700:
                record["visits"] = i % 4  # an integer key from the sixth chunk on: float64
            if i >= 2_100 and i % 3 == 0:
                record["vip"] = i % 2 == 0  # a boolean key with NaN: pandas makes 1.0/0.0
            if i == 2_950:
                record["referrer"] = "friend"  # one record: the column is NaN elsewhere
            if i < 2_400:
                record["legacy"] = f"l{i % 5}"  # a key the last chunks lack
        elif i == 2_600:
            record["region"] = "Malmø"
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"
    name = f"{case}.jsonl"
    (folder / name).write_bytes(text.encode("latin-1" if case == "latin" else "utf-8"))
    config = _config({"name": "files", "kind": "folder", "path": str(folder)},
                     f"files/{name}", "churned")
    frame, loaded = load_dataset(config)
    out = tmp_path / "dataset.parquet"
    changes: list[str] = []
    schema = copy_jsonl_dataset(config, config.training.dataset, str(out), chunk_rows=300,
                                changes=changes)
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert schema.to_dict() == loaded.to_dict()
    assert changes == frame.attrs[DATA_CHANGES]
    assert not list(tmp_path.glob(".*tmp*"))
    if case == "late_keys":
        assert list(frame.columns[-4:]) == ["legacy", "visits", "vip", "referrer"]
        assert [frame[c].dtype.kind for c in ("visits", "vip", "referrer")] == ["f", "f", "O"]
    else:
        assert len(changes) == 1 and "not UTF-8" in changes[0]
    # the discover step streams it and reports what reading it changed
    from autokfp.catalog import discovery
    from autokfp.steps.discover import _write_training_data

    def whole(*args, **kwargs):
        raise AssertionError("the file was loaded whole")

    monkeypatch.setattr(discovery, "load_dataset", whole)
    _, rows, _, reported = _write_training_data(config, str(tmp_path / "d.parquet"))
    assert (rows, reported) == (len(frame), changes)


def test_what_chunks_cannot_copy_as_pandas_reads_is_left_to_load_dataset(
        database, tmp_path, caplog) -> None:
    """Nothing written, and a WARNING names the dataset, the reason and, for a file, the
    memory pandas may take to read it whole."""
    server, source = database
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _jsonl_frame()
    # an object in the first chunks, a number in a later one: Arrow cannot make one column
    # of them (the discover step's write of the whole read fails on it too)
    nested = frame.assign(address=[{"city": f"c{i % 9}"} if i < 2_000 else i
                                   for i in range(len(frame))])
    nested.to_json(folder / "nested.jsonl", orient="records", lines=True)
    # objects without keys in every chunk: Parquet cannot write them (the whole read's write
    # fails too)
    frame.assign(props=[{} for _ in range(len(frame))]).to_json(
        folder / "keyless.jsonl", orient="records", lines=True)
    out = tmp_path / "dataset.parquet"
    sql = _config(source, "db/missing")
    files = _config({"name": "files", "kind": "folder", "path": str(folder)}, "files/x.jsonl")
    cases = [(copy_sql_dataset, sql, "db/missing"),
             *[(copy_jsonl_dataset, files, f"files/{name}.jsonl")
               for name in ("nested", "keyless", "missing")]]
    for copy, config, dataset in cases:
        caplog.clear()
        with caplog.at_level("WARNING", logger="autokfp.catalog"):
            assert copy(config, dataset, str(out), chunk_rows=300) is None, dataset
        assert not out.exists() and not list(tmp_path.glob(".*tmp*")), dataset
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if "missing" in dataset:
            assert not warned, warned
        else:
            assert len(warned) == 1 and dataset in warned[0], (dataset, warned)
            assert "loaded whole" in warned[0]
            assert ("GB" in warned[0]) == dataset.endswith(".jsonl"), warned[0]


def test_jsonl_nested_values_stream_as_the_discover_step_writes_the_whole_read(
        tmp_path, monkeypatch, caplog) -> None:
    """Nested JSON values (objects, arrays: an address, a list of tags, line items), read 300
    of 3,000 records at a time, with what chunks type otherwise than the whole column: keys
    only later records have (Arrow orders an object's keys by name), a whole number in the
    first chunks and fractions later, arrays empty in the first chunks, null and absent
    values, objects without keys ({}) in the first chunks. Until session 23 such a file was
    loaded whole (a WARNING). Now it is streamed:
    the Parquet file is the one the discover step writes of ``load_dataset``'s frame (Arrow's
    types over the whole column), the profile and notes are ``load_dataset``'s (each
    nested value as pandas read it: {"city": "c1"}, not Arrow's {"city": "c1", "zip": None}),
    no WARNING, and the discover step streams it."""
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    records = _jsonl_frame().to_dict("records")
    for i, record in enumerate(records):
        record["signup_date"] = str(record["signup_date"])
        address = {"city": f"c{i % 9}"}
        if i >= 1_200:
            address["zip"] = 1_000 + i % 50  # a key only later records have
        if i >= 2_400:
            address["geo"] = {"lat": i % 90 + 0.5, "lon": 10}  # an object inside
        record["address"] = None if i % 97 == 0 else address
        if i % 89 == 0:
            del record["address"]  # absent: missing, as null is
        record["tags"] = [] if i < 1_500 else [f"t{i % 4}", "vip"][: i % 3]  # empty first
        record["items"] = [{"sku": f"s{i % 13}", "qty": i % 5 if i < 2_700 else 0.5}]
        record["plan"] = {"tier": ["gold", "free"][i % 2], **({"seats": 3} if i >= 1_200
                                                             else {})}
        # objects without keys in the first chunks (Parquet cannot write such a type), in a
        # list too
        record["props"] = {} if i < 900 else {"source": "web"}
        record["events"] = [{}] if i < 600 else [{"kind": "open"}, {}]
    (folder / "nested.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = _config({"name": "files", "kind": "folder", "path": str(folder)},
                     "files/nested.jsonl", "churned")
    frame, loaded = load_dataset(config)
    _, reported = _as_discover_writes(config)
    whole = tmp_path / "whole.parquet"
    frame.to_parquet(whole, index=False)  # as the discover step writes the whole read
    out = tmp_path / "dataset.parquet"
    schema, changes = _streamed_without_warning(config, out, caplog)
    copied = pq.read_table(out)
    assert copied.replace_schema_metadata().equals(pq.read_table(whole)
                                                   .replace_schema_metadata())
    assert str(copied.schema.field("address").type) == (
        "struct<city: string, geo: struct<lat: double, lon: int64>, zip: int64>")
    assert str(copied.schema.field("items").type) == (
        "list<element: struct<qty: double, sku: string>>")
    assert str(copied.schema.field("props").type) == "struct<source: string>"
    assert copied.column("props").to_pylist()[:2] == [{"source": None}] * 2  # as Arrow's
    assert schema.to_dict() == loaded.to_dict()
    assert changes == reported == []
    profiled = {c.name: c for c in schema.columns}
    assert profiled["address"].physical_type == "json"
    # the values pandas read ({"tier": "gold"}), not Arrow's rows ({"seats": null, ...}),
    # profiled
    assert {text for text, _ in profiled["plan"].top_values} == {
        '{"tier": "gold"}', '{"tier": "free"}', '{"seats": 3, "tier": "gold"}',
        '{"seats": 3, "tier": "free"}'}
    assert not list(tmp_path.glob(".*tmp*"))
    with monkeypatch.context() as patched:
        rows, stepped = _streamed_by_discover(config, tmp_path, patched)
    assert (rows, stepped) == (3_000, reported)
    assert pq.read_table(tmp_path / "d.parquet").replace_schema_metadata().equals(
        copied.replace_schema_metadata())


def _mixed_records(latin: bool = False) -> list[dict]:
    """3,000 records (read 300 at a time) whose columns mix text with numbers or booleans
    after the first chunks: the copy reads each again as text (four passes)."""
    records = _jsonl_frame().to_dict("records")
    for i, record in enumerate(records):
        record["signup_date"] = str(record["signup_date"])
        record["ref"] = f"r{i}" if i < 1_000 else i  # text first, integers from chunk 4
        if i == 1_500:
            record["flag"] = "maybe"  # text in a boolean column
        if i in (2_400, 2_500):
            record["code"] = "n/k"  # text in a number column (1.0, NaN: as JSON gives them)
        if i % 2:
            record["tag"] = "seven" if i == 2_999 else 7  # one text value in the last record
        if latin and i == 2_700:
            record["region"] = "Malmø"
    return records


def _as_discover_writes(config) -> tuple[pd.DataFrame, list[str]]:
    """load_dataset's frame as the discover step writes it (a column of text and numbers
    as text), and the data changes it reports."""
    from autokfp.catalog.sources.files import DATA_CHANGES
    from autokfp.steps.discover import _mixed_as_text

    frame, _ = load_dataset(config)
    changes = list(frame.attrs.pop(DATA_CHANGES, [])) + _mixed_as_text(
        frame, config.training.dataset)
    return pd.read_parquet(__import__("io").BytesIO(frame.to_parquet(index=False))), changes


@pytest.mark.parametrize("latin", [False, True])
def test_jsonl_text_in_a_number_column_is_read_again_as_text(tmp_path, monkeypatch,
                                                             latin) -> None:
    """Text in a number or boolean column after the first chunks, text in the first chunks
    and numbers after, one text value in the last record (and latin-1): pandas' whole read
    keeps each as an object column of numbers and text, which the discover step writes as
    text (each value as Python writes what JSON gave: 1.0, True) and reports. The copy reads
    such a column again as text: the same frame, profile and notes, streamed."""
    folder = tmp_path / "data"
    folder.mkdir()
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in _mixed_records(latin)) + "\n"
    (folder / "mixed.jsonl").write_bytes(text.encode("latin-1" if latin else "utf-8"))
    config = _config({"name": "files", "kind": "folder", "path": str(folder)},
                     "files/mixed.jsonl", "churned")
    whole, loaded = load_dataset(config)
    assert [whole[c].dtype for c in ("ref", "flag", "code", "tag")] == [object] * 4
    written, reported = _as_discover_writes(config)
    out = tmp_path / "dataset.parquet"
    changes: list[str] = []
    schema = copy_jsonl_dataset(config, config.training.dataset, str(out), chunk_rows=300,
                                changes=changes)
    assert schema is not None
    copied = pd.read_parquet(out)
    pd.testing.assert_frame_equal(copied, written)
    # the profile equals the whole read's but for one thing: the whole read profiles the
    # object column before the step writes it as text, and its 1,000-value sample of 'flag'
    # (one text value in 3,000 booleans) calls it bool; the copy profiles what is written
    assert (loaded.column("flag").physical_type, schema.column("flag").physical_type) == (
        "bool", "string")
    loaded.column("flag").physical_type = "string"
    assert schema.to_dict() == loaded.to_dict()
    assert changes == reported
    assert [note.split("'")[1] for note in changes if "mixes text" in note] == [
        "code", "flag", "ref", "tag"]  # the file's column order
    assert copied["code"].iloc[0] == str(whole["code"].iloc[0]) and "." in copied["code"].iloc[0]
    assert (copied["ref"].iloc[999], copied["ref"].iloc[1_000]) == ("r999", "1000")
    assert copied["flag"].iloc[1_500] == "maybe" and copied["flag"].iloc[0] in ("True", "False")
    assert copied["tag"].iloc[0] is None and copied["tag"].iloc[1] == "7"
    assert any("(e.g. 'seven')" in note for note in changes)
    assert ("not UTF-8" in changes[0]) == latin
    assert not list(tmp_path.glob(".*tmp*"))
    # the discover step streams it and reports (audits) the same changes
    rows, stepped = _streamed_by_discover(config, tmp_path, monkeypatch)
    assert (rows, stepped) == (len(whole), reported)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d.parquet"), written)


def test_jsonl_dates_pandas_parses_in_some_chunks_only_are_read_as_the_whole_file(
        tmp_path, monkeypatch, caplog) -> None:
    """A column pandas tries as dates (its name: 'created_at', 'updated_at') that it parses
    in some chunks and not in another: the whole column holds the values no chunk could
    parse, so pandas' whole read keeps it as the values JSON gave (text; text and numbers,
    which the discover step writes as text and reports). The copy reads such a column again
    as those values: the same frame, profile and notes, streamed; 'seen_at', dates in every
    chunk, stays dates. A time zone in such a column beside other text is streamed too (until
    session 22 it was loaded whole); beside a number it is left to the whole read (pandas
    may fail on it outright), with a WARNING."""
    folder = tmp_path / "data"
    folder.mkdir()
    records = _jsonl_frame().to_dict("records")
    for i, record in enumerate(records):
        record["signup_date"] = str(record["signup_date"])
        day = f"{1 + i % 12:02d}-{1 + i % 28:02d}"
        # dates, ten records of other text in the seventh chunk (of ten)
        record["created_at"] = "unknown" if 2_000 <= i < 2_010 else f"2024-{day}"
        # text dates in the first chunks, seconds since 1970 after, one text in the last
        record["updated_at"] = (f"2024-{day} 10:00" if i < 1_500 else
                                "n/k" if i == 2_950 else 1_700_000_000 + i)
        record["seen_at"] = f"2023-{day}"
        record["paid_at"] = "unknown" if i == 2_500 else f"2024-{day}T10:00:00Z"
    lines = [json.dumps(r) for r in records]
    records[2_600]["paid_at"] = 1_700_000_000  # and a number (seconds since 1970)
    numbered = [json.dumps(r) for r in records]
    (folder / "dates.jsonl").write_text("\n".join(
        json.dumps({k: v for k, v in r.items() if k != "paid_at"}) for r in records) + "\n")
    (folder / "zoned.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "numbered.jsonl").write_text("\n".join(numbered) + "\n")
    config = _config({"name": "files", "kind": "folder", "path": str(folder)},
                     "files/dates.jsonl", "churned")
    whole, loaded = load_dataset(config)
    assert [whole[c].dtype.kind for c in ("created_at", "updated_at", "seen_at")] == [
        "O", "O", "M"]
    written, reported = _as_discover_writes(config)
    out = tmp_path / "dataset.parquet"
    changes: list[str] = []
    schema = copy_jsonl_dataset(config, config.training.dataset, str(out), chunk_rows=300,
                                changes=changes)
    assert schema is not None
    copied = pd.read_parquet(out)
    pd.testing.assert_frame_equal(copied, written)
    assert schema.to_dict() == loaded.to_dict()
    assert changes == reported and len(changes) == 1 and "'updated_at'" in changes[0]
    assert (copied["created_at"].iloc[0], copied["created_at"].iloc[2_000]) == (
        "2024-01-01", "unknown")
    assert (copied["updated_at"].iloc[0], copied["updated_at"].iloc[1_500]) == (
        "2024-01-01 10:00", "1700001500")
    assert not list(tmp_path.glob(".*tmp*"))
    with monkeypatch.context() as patched:
        rows, stepped = _streamed_by_discover(config, tmp_path, patched)
    assert (rows, stepped) == (3_000, reported)
    zoned = _config({"name": "files", "kind": "folder", "path": str(folder)},
                    "files/zoned.jsonl", "churned")
    whole, loaded = load_dataset(zoned)
    assert whole["paid_at"].dtype.kind == "O"  # dates with a time zone beside 'unknown'
    written, reported = _as_discover_writes(zoned)
    changes = []
    with caplog.at_level("WARNING", logger="autokfp.catalog"):
        schema = copy_jsonl_dataset(zoned, zoned.training.dataset, str(out), chunk_rows=300,
                                    changes=changes)
    assert schema is not None and schema.to_dict() == loaded.to_dict()
    copied = pd.read_parquet(out)
    pd.testing.assert_frame_equal(copied, written)
    assert changes == reported
    assert (copied["paid_at"].iloc[0], copied["paid_at"].iloc[2_500]) == (
        "2024-01-01T10:00:00Z", "unknown")
    numbered = _config({"name": "files", "kind": "folder", "path": str(folder)},
                       "files/numbered.jsonl", "churned")
    with caplog.at_level("WARNING", logger="autokfp.catalog"):
        assert copy_jsonl_dataset(numbered, numbered.training.dataset, str(out),
                                  chunk_rows=300) is None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "numbered.jsonl" in warned[0] and "'paid_at'" in warned[0]
    assert "time zone beside numbers" in warned[0]


@pytest.mark.parametrize("case", ["daylight_saving", "zone_then_none"])
def test_jsonl_dates_in_time_zones_that_differ_between_chunks_are_read_as_the_whole_file(
        tmp_path, monkeypatch, caplog, case) -> None:
    """A date-named column whose chunks are all dates, in time zones that differ between
    chunks: a European export's local offsets (+01:00 in winter, +02:00 from the
    daylight-saving change on), or a zone in the first chunks and none after. One column of
    dates cannot hold both, and pandas' whole read keeps the values JSON gave (text); until
    session 23 the file was loaded whole (a WARNING). Now streamed: ``load_dataset``'s frame
    as the discover step writes it, profile and notes, no WARNING; the discover step
    streams it."""
    folder = tmp_path / "data"
    folder.mkdir()
    records = _jsonl_frame().to_dict("records")
    for i, record in enumerate(records):  # the zone changes where a chunk (300) begins
        record["signup_date"] = str(record["signup_date"])
        day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00"
        if case == "daylight_saving":
            record["updated_at"] = day + ("+01:00" if i < 1_800 else "+02:00")
        else:
            record["updated_at"] = day + ("Z" if i < 1_800 else "")
    (folder / "zones.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = _config({"name": "files", "kind": "folder", "path": str(folder)},
                     "files/zones.jsonl", "churned")
    whole, loaded = load_dataset(config)
    assert whole["updated_at"].dtype == object  # the values JSON gave
    written, reported = _as_discover_writes(config)
    out = tmp_path / "dataset.parquet"
    schema, changes = _streamed_without_warning(config, out, caplog)
    copied = pd.read_parquet(out)
    pd.testing.assert_frame_equal(copied, written)
    assert schema.to_dict() == loaded.to_dict()
    assert changes == reported == []
    assert copied["updated_at"].iloc[1_799].endswith("Z" if case == "zone_then_none"
                                                     else "+01:00")
    assert not list(tmp_path.glob(".*tmp*"))
    with monkeypatch.context() as patched:
        rows, stepped = _streamed_by_discover(config, tmp_path, patched)
    assert (rows, stepped) == (3_000, reported)


def _mixed_table(path: Path) -> None:
    """A SQLite table of 3,000 rows (read 300 at a time) whose columns without a type, or
    whose typed columns SQLite stores other text in, mix text with numbers: 'ref' text in
    the first chunks and integers after, 'qty' integers with missing values (a chunk pandas
    types float64) and text in one row, 'amount' fractions and text in the last row; and
    'due', integers and then a date's text (``_mixed_dates``)."""
    rows = [(i, i % 2, f"r{i}" if i < 1_000 else i,
             "n/k" if i == 2_500 else (None if i % 7 == 0 else i % 9),
             "unknown" if i == 3_000 else i * 1.25,
             f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}", i if i < 2_800 else "2024-01-05")
            for i in range(1, 3_001)]
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE mixed (id INTEGER, y INTEGER, ref, qty INTEGER, "
                           "amount REAL, signed_up TEXT, due)")
        connection.executemany("INSERT INTO mixed VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        connection.execute("CREATE TABLE mixed_dates AS SELECT id, y, due FROM mixed")
        connection.execute("ALTER TABLE mixed DROP COLUMN due")


def test_sql_text_and_numbers_in_one_column_are_read_again_as_text(
        tmp_path, monkeypatch, caplog) -> None:
    """A SQLite column of text in some rows and numbers in others (in one chunk, or text in
    one chunk and numbers in another): pandas' whole read keeps an object column of both,
    which the discover step writes as text (each value as Python writes what the driver
    gave: 7, not the 7.0 of a chunk pandas types float64) and reports. The copy reads the
    table again with such a column as text from the driver's values: the same frame,
    profile and notes, streamed. A column whose text could be dates (the whole read tests
    1,000 drawn values, which may all be text) is left to the whole read, with a WARNING."""
    path = tmp_path / "shop.db"
    _mixed_table(path)
    config = _config({"name": "db", "kind": "sql", "url": f"sqlite:///{path}"}, "db/mixed")
    whole, loaded = load_dataset(config)
    assert [whole[c].dtype for c in ("ref", "qty", "amount")] == [object] * 3
    assert whole["signed_up"].dtype.kind == "M"
    written, reported = _as_discover_writes(config)
    out = tmp_path / "dataset.parquet"
    changes: list[str] = []
    schema = copy_sql_dataset(config, "db/mixed", str(out), chunk_rows=300, changes=changes)
    assert schema is not None
    copied = pd.read_parquet(out)
    pd.testing.assert_frame_equal(copied, written)
    assert schema.to_dict() == loaded.to_dict()
    assert changes == reported
    assert [note.split("'")[1] for note in changes] == ["ref", "qty", "amount"]
    assert (copied["ref"].iloc[998], copied["ref"].iloc[999]) == ("r999", "1000")
    assert copied["qty"].iloc[:7].tolist() == ["1", "2", "3", "4", "5", "6", None]
    assert copied["qty"].iloc[2_499] == "n/k" and copied["amount"].iloc[0] == "1.25"
    assert not list(tmp_path.glob(".*tmp*"))
    # the discover step streams it and reports (audits) the same changes
    with monkeypatch.context() as patched:
        rows, stepped = _streamed_by_discover(config, tmp_path, patched)
    assert (rows, stepped) == (3_000, reported)
    # integers, then a date's text: the whole read keeps it as text (a number is among the
    # 1,000 values it tests), but the copy cannot know that without them
    dated = _config({"name": "db", "kind": "sql", "url": f"sqlite:///{path}"}, "db/mixed_dates")
    assert load_dataset(dated)[0]["due"].dtype == object
    with caplog.at_level("WARNING", logger="autokfp.catalog"):
        assert copy_sql_dataset(dated, "db/mixed_dates", str(out), chunk_rows=300) is None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "mixed_dates" in warned[0] and "'due'" in warned[0], warned


def test_the_discover_step_copies_a_table_without_loading_it(database, tmp_path,
                                                             monkeypatch) -> None:
    from autokfp.catalog import discovery
    from autokfp.steps.discover import _write_training_data

    server, source = database
    server.run("chunks", _TABLE)
    config = _config(source, "db/customers")
    frame, loaded = load_dataset(config)

    def whole(*args, **kwargs):
        raise AssertionError("the table was loaded whole")

    monkeypatch.setattr(discovery, "load_dataset", whole)
    schema, rows, columns, changes = _write_training_data(config, str(tmp_path / "d.parquet"))
    assert (rows, columns, changes) == (3_000, len(frame.columns), [])
    assert schema.to_dict() == loaded.to_dict()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d.parquet"), frame)


_PROBE = """
from autokfp.catalog.chunk_copy import copy_jsonl_dataset, copy_sql_dataset
from autokfp.catalog.discovery import discover, load_dataset
from autokfp.config import parse_config

kind, where, name, out, how = sys.argv[1:]
source = ({"name": "db", "kind": "sql", "url": where} if kind == "sql" else
          {"name": "db", "kind": "folder", "path": where, "include": [name, "warm.jsonl"]})
warm = "warm" if kind == "sql" else "warm.jsonl"
config = parse_config({"name": "m", "sources": [source],
                       "training": {"dataset": f"db/{warm}", "target": "y"}})
copy = copy_sql_dataset if kind == "sql" else copy_jsonl_dataset
assert copy(config, f"db/{warm}", out, sample_rows=2_000, chunk_rows=20_000) is not None
load_dataset(config, f"db/{warm}", sample_rows=2_000)  # imports, pools
before = peak_kb()
if how == "chunks":
    assert copy(config, f"db/{name}", out, sample_rows=2_000, chunk_rows=20_000) is not None
elif how == "crawl":  # the catalog's profile sample of every dataset of the source
    found = {d.dataset_id: d for d in discover(config.sources, sample_rows=2_000)}
    assert found[f"db/{name}"].ok, found[f"db/{name}"].error
else:  # the whole table through pandas, as discover read it before
    frame, _ = load_dataset(config, f"db/{name}", sample_rows=2_000)
    frame.to_parquet(out, index=False)
report(before)
"""


def _growth(tmp_path: Path, kind: str, where: str, name: str, how: str) -> float:
    return growth_mb(_PROBE, kind, where, name, str(tmp_path / f"{how}-{name}.parquet"), how)


def _wide_table(name: str, rows: int) -> str:
    return (f"CREATE TABLE {name} AS SELECT i AS id, i % 97 AS a, i % 13 AS b, random() AS x1, "
            "random() AS x2, random() AS x3, random() AS x4, 'segment_' || (i % 7) AS s1, "
            "md5(i::text) AS s2, 'region_' || (i % 31) AS s3, i % 2 AS y "
            f"FROM generate_series(1, {rows}) AS i")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_sql_memory_stays_bounded_by_the_chunk(database, tmp_path) -> None:
    """A table of 100,000 and of 200,000 rows x 11 columns on PostgreSQL, in chunks of
    20,000 rows: doubling the table adds less than a quarter to the copy's peak growth,
    which stays under reading the smaller table whole; the crawl's profile sample of the
    larger table grows by less than a quarter of that. Measured: whole 102 MB, chunks 41.4 ->
    41.5 MB (300,000 rows until session 16), crawl 1.8 MB; at 150,000/450,000 rows without
    the server-side cursor (the driver fetched the whole result) chunks grew 108 -> 276 MB
    and the crawl 252 MB. Each in a fresh process (~110 s at load 15 with 300,000 rows)."""
    server, source = database
    server.run("chunks", _wide_table("warm", 3_000), _wide_table("big", 100_000),
               _wide_table("triple", 200_000))
    url = source["url"]
    whole = _growth(tmp_path, "sql", url, "big", "whole")
    chunks, triple = (_growth(tmp_path, "sql", url, name, "chunks") for name in ("big", "triple"))
    crawl = _growth(tmp_path, "sql", url, "triple", "crawl")
    print(f"peak growth: whole 100k rows {whole:.1f} MB; chunks 100k {chunks:.1f} MB, "
          f"200k {triple:.1f} MB; crawl 200k {crawl:.1f} MB")
    assert triple < 1.25 * chunks + 10, (chunks, triple)
    assert triple < whole, (triple, whole)
    assert crawl < whole / 4, (crawl, whole)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunks-big.parquet"),
                                  pd.read_parquet(tmp_path / "whole-big.parquet"))
    assert len(pd.read_parquet(tmp_path / "chunks-triple.parquet")) == 200_000


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_jsonl_memory_stays_bounded_by_the_chunk(tmp_path) -> None:
    """A JSON-lines file of 50,000 and of 150,000 rows x 11 columns (8 and 23 MB), in
    chunks of 20,000 rows: tripling the file adds less than a quarter to the copy's peak
    growth, which stays under reading the smaller file whole. Measured at 100,000/300,000
    rows (until session 16): chunks 53.7 -> 54.9 MB, whole 213 MB. The triple file with a
    key only its last records have, in latin-1 (read twice, the rows written rewritten once
    for the new column), stays under 1.5x the chunks' growth; so does the triple file with
    text in a number column in its last records (read again with that column as text:
    measured 59.3 MB against chunks 49.9 MB, whole 102.6 MB, load 19-23; a first version
    that handed pandas each chunk's lines as a new string took 94.8 MB). Each in a fresh
    process (~160 s at load 20)."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(5)

    def frame(rows: int) -> pd.DataFrame:
        i = np.arange(rows)
        return pd.DataFrame({
            "id": i, "a": i % 97, "b": i % 13, **{f"x{k}": rng.random(rows) for k in range(4)},
            "s1": [f"segment_{k % 7}" for k in i], "s2": [f"{k:032x}" for k in i * 7919],
            "s3": [f"region_{k % 31}" for k in i], "y": i % 2})

    frame(3_000).to_json(folder / "warm.jsonl", orient="records", lines=True)
    frame(50_000).to_json(folder / "big.jsonl", orient="records", lines=True)
    text = (folder / "big.jsonl").read_text()
    (folder / "triple.jsonl").write_text(text * 3)
    # the triple file, but its last records have a key the others lack and a latin-1 byte:
    # the copy adds the column (rewriting what it wrote) and starts over as latin-1
    late = [json.dumps({**r, "late": k, "s3": "Malmø"}, ensure_ascii=False)
            for k, r in enumerate(frame(10).to_dict("records"))]
    (folder / "late.jsonl").write_bytes((text * 3).encode()
                                        + "\n".join(late).encode("latin-1") + b"\n")
    # the triple file, but its last records have text in a number column: the copy reads
    # it again with that column as text (every line parsed a second time for it)
    mixed = [json.dumps({**r, "a": "n/k"}) for r in frame(10).to_dict("records")]
    (folder / "mixed.jsonl").write_text(text * 3 + "\n".join(mixed) + "\n")
    where = str(folder)
    whole = _growth(tmp_path, "jsonl", where, "big.jsonl", "whole")
    chunks, triple, restarted, as_text = (
        _growth(tmp_path, "jsonl", where, name, "chunks")
        for name in ("big.jsonl", "triple.jsonl", "late.jsonl", "mixed.jsonl"))
    print(f"peak growth: whole 50k rows {whole:.1f} MB; chunks 50k {chunks:.1f} MB, "
          f"150k {triple:.1f} MB; 150k with a late key and latin-1 {restarted:.1f} MB; "
          f"150k with text in a number column {as_text:.1f} MB")
    assert triple < 1.25 * chunks + 10, (chunks, triple)
    assert triple < whole, (triple, whole)
    # two passes (UTF-8 until the last records, then latin-1) and a rewrite for the new
    # column: measured 66.7-70.4 MB against chunks 49.7-51.4 MB (4 runs); rewriting 100,000
    # rows at a time instead of a chunk (a row group) took 94.4 MB
    assert restarted < 1.5 * chunks + 10, (chunks, restarted)
    assert restarted < whole, (restarted, whole)
    assert as_text < 1.5 * chunks + 10, (chunks, as_text)
    assert as_text < whole, (as_text, whole)
    copied = pd.read_parquet(tmp_path / "chunks-mixed.jsonl.parquet")
    assert len(copied) == 150_010 and copied["a"].iloc[-1] == "n/k" and copied["a"].iloc[0] == "0"
    copied = pd.read_parquet(tmp_path / "chunks-late.jsonl.parquet")
    assert len(copied) == 150_010 and copied["late"].notna().sum() == 10
    assert copied["s3"].iloc[-1] == "Malmø"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunks-big.jsonl.parquet"),
                                  pd.read_parquet(tmp_path / "whole-big.jsonl.parquet"))
    assert len(pd.read_parquet(tmp_path / "chunks-triple.jsonl.parquet")) == 150_000
