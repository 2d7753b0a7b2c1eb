"""The fingerprint that lets an unchanged source's recipe be skipped (``catalog.ingest``):
what it is built from, and a fingerprint stored in another format."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

import autokfp.catalog.ingest as ingest_module
from autokfp.catalog.discovery import DiscoveredDataset
from autokfp.catalog.ingest import _input_digest, _jsonable, extras_for, ingest
from autokfp.catalog.schema import ColumnSchema, DatasetSchema
from autokfp.config import parse_config

URN = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.t,PROD)"


def _dataset() -> DiscoveredDataset:
    schema = DatasetSchema(
        dataset_id="shop/main.t", platform="sqlite", location="sqlite:///shop.db",
        row_count=30, sample_rows=30, modified_at="2026-01-01T00:00:00Z", urn=URN,
        catalog={"schema_version": 2, "accepted_version": 1, "verdict": "changed",
                 "breaking_columns": [], "changes": ["plan: added"],
                 "previous_row_count": 29, "last_crawled": "2026-01-02T00:00:00Z"},
        columns=[ColumnSchema("id", "INTEGER", "id", nullable=False, distinct_count=30),
                 ColumnSchema("email", "TEXT", "email", null_count=1,
                              top_values=[("a@b.c", 1)]),
                 ColumnSchema("plan", "TEXT", "categorical", tags=["target"])])
    return DiscoveredDataset(schema=schema, signature="rows=30;cols=3")


def _aspects(d: DiscoveredDataset) -> str:
    """What the transformer adds for ``d`` (``extras_for``), its profile aside."""
    extras = extras_for([d.schema], [d.schema.dataset_id], [d.schema.dataset_id], stamp=0)
    return json.dumps({urn: _jsonable(extra) for urn, extra in extras.items()},
                      sort_keys=True, default=str)


def _col(column: str, **change):
    def apply(d: DiscoveredDataset) -> None:
        for key, value in change.items():
            setattr(d.schema.column(column), key, value)
    return apply


def _facts(**change):
    return lambda d: d.schema.catalog.update(change)


def _set(**change):
    return lambda d: [setattr(d.schema, k, v) for k, v in change.items()]


# each a change the aspects show: the fingerprint must change with it
SHOWN = {
    "signature": lambda d: setattr(d, "signature", "rows=31;cols=3"),
    "error": lambda d: setattr(d, "error", "cannot read"),
    "dataset_id": _set(dataset_id="shop/main.u"),
    "platform": _set(platform="postgres"),
    "location": _set(location="sqlite:///other.db"),
    "row_count": _set(row_count=31),
    "sample_rows": _set(sample_rows=20),
    "format": _set(format="csv"),
    "modified_at": _set(modified_at="2026-02-01T00:00:00Z"),
    "urn": _set(urn=URN.replace("main.t", "main.u")),
    "nested_fields": _set(nested_fields=[["email.domain", "str", False]]),
    "view": _set(view={"definition": "SELECT 1", "upstreams": [URN], "columns": []}),
    "columns": lambda d: d.schema.columns.pop(),
    "column name": _col("plan", name="tier"),
    "physical_type": _col("plan", physical_type="INTEGER"),
    "semantic_type": _col("plan", semantic_type="text"),
    "nullable": _col("id", nullable=True),
    "tags": _col("email", tags=["sensitive"]),
    "schema_version": _facts(schema_version=3),
    "accepted_version": _facts(accepted_version=2),
    "verdict": _facts(verdict="breaking"),
    "breaking_columns": _facts(breaking_columns=["plan"]),
    "changes": _facts(changes=["plan: type changed"]),
}
# each a change the aspects do not show (the profile's statistics, facts every crawl
# changes): the fingerprint must not change, or an unchanged re-run would never be skipped
NOT_SHOWN = {
    "null_count": _col("email", null_count=5),
    "distinct_count": _col("id", distinct_count=29),
    "min": _col("id", min=0.0),
    "max": _col("id", max=29.0),
    "mean": _col("id", mean=14.5),
    "top_values": _col("email", top_values=[("x@y.z", 2)]),
    "notes": lambda d: d.notes.append("read again"),
    "reused": lambda d: setattr(d, "reused", True),
    "previous_row_count": _facts(previous_row_count=30),
    "last_crawled": _facts(last_crawled="2026-03-01T00:00:00Z"),
}


@pytest.mark.parametrize("name", sorted(SHOWN))
def test_a_change_the_aspects_show_changes_the_inputs_digest(name) -> None:
    base = _dataset()
    changed = copy.deepcopy(base)
    SHOWN[name](changed)
    if name not in ("signature", "error"):  # those two are in the digest as they are
        assert _aspects(changed) != _aspects(base), f"{name} is not shown: move it"
    assert _input_digest(changed) != _input_digest(base)


@pytest.mark.parametrize("name", sorted(NOT_SHOWN))
def test_a_change_the_aspects_do_not_show_keeps_the_digest(name) -> None:
    base = _dataset()
    changed = copy.deepcopy(base)
    NOT_SHOWN[name](changed)
    assert _aspects(changed) == _aspects(base)
    assert _input_digest(changed) == _input_digest(base)


def test_every_schema_field_is_classified() -> None:
    """A field added to the schema must be put in SHOWN or NOT_SHOWN (and in
    ``_input_digest`` if the aspects show it), not silently left out of the fingerprint."""
    fields = {f.name for f in dataclasses.fields(DatasetSchema)} - {"columns", "catalog"}
    fields |= {f.name for f in dataclasses.fields(ColumnSchema)} - {"name"}
    known = set(SHOWN) | set(NOT_SHOWN)
    assert fields <= known, fields - known


def test_a_change_in_the_code_that_builds_the_aspects_changes_every_fingerprint(
        monkeypatch) -> None:
    recipe = {"source": {"type": "sqlalchemy", "config": {"connect_uri": "sqlite:///x.db"}}}
    before = ingest_module._fingerprint(recipe, 1, 123)
    assert before is not None and before.startswith(ingest_module.FINGERPRINT_FORMAT + "-")
    monkeypatch.setattr(ingest_module, "_ASPECTS_CODE", None)
    assert ingest_module._fingerprint(recipe, 1, 123) == before  # built again: the same
    monkeypatch.setattr(ingest_module, "_ASPECTS_CODE", None)
    tags = ingest_module.column_tags
    monkeypatch.setattr(ingest_module, "column_tags", lambda c: [*tags(c), "new"])
    assert ingest_module._fingerprint(recipe, 1, 123) != before


def test_a_fingerprint_of_another_format_is_read_as_changed(tmp_path, catalog_home,
                                                           monkeypatch) -> None:
    """A record of a recipe's last run with session 18's fingerprint (64 hex digits alone),
    or a record that is not one, runs the recipe again (never skipped, never an error) and
    is replaced by one of this format; the catalog is the same. Also an unchanged re-run
    of one source beside a changed one (its fingerprint taken as the crawl runs, the
    other's from the crawl's report)."""
    import sqlite3

    import pandas as pd

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db, folder = tmp_path / "shop.db", tmp_path / "files"
    folder.mkdir()
    frame = pd.DataFrame({"id": range(20), "email": [f"u{i}@example.com" for i in range(20)],
                          "plan": ["a", "b"] * 10})
    with sqlite3.connect(db) as connection:
        for name in ("customers", "orders"):
            frame.to_sql(name, connection, index=False)
    frame.to_csv(folder / "visits.csv", index=False)
    config = parse_config({"name": "shop", "sources": [
        {"name": "shop", "kind": "sql", "url": f"sqlite:///{db}"},
        {"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "shop/customers", "target": "plan"}})
    state = Path(catalog_home.artifact_root, "catalog", "ingestion-state")
    sql, files = state / "autokfp-shop-shop.done.json", state / "autokfp-shop-files.done.json"

    first = ingest(config)
    datasets = set(first.datasets)
    assert len(datasets) == 3 and first.skipped == []
    for done in (sql, files):
        assert json.loads(done.read_text())["fingerprint"].startswith("2-")
    again = ingest(config)
    assert sorted(again.skipped) == ["autokfp-shop-files", "autokfp-shop-shop"]
    assert set(again.datasets) == datasets

    record = json.loads(sql.read_text())
    old = hashlib.sha256(b"session 18").hexdigest()  # that format: 64 hex digits
    sql.write_text(json.dumps({**record, "fingerprint": old}))
    files.write_text(json.dumps(["not", "a", "record"]))
    upgraded = ingest(config)
    assert upgraded.skipped == [] and len(upgraded.metadata_files) == 2
    assert set(upgraded.datasets) == datasets
    for done in (sql, files):
        assert json.loads(done.read_text())["fingerprint"].startswith("2-")

    files.unlink()  # the folder's recipe runs (no record); the SQL one is skipped
    mixed = ingest(config)
    assert mixed.skipped == ["autokfp-shop-shop"] and set(mixed.datasets) == datasets
    assert json.loads(files.read_text())["fingerprint"].startswith("2-")
