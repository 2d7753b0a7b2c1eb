"""The issue's "what will be checked", end to end on real services.

A folder, a SQLite database and a gs:// bucket (the GCS emulator) are crawled in one run,
with the catalog itself kept in gs://. Every dataset is catalogued with its semantic types
and PII tags in files ``datahub check metadata-file`` accepts; a model registered from the
warehouse table records its lineage; after a column of that table changes type the next
crawl records a breaking schema version, training is refused with the column named, and
``autokfp impact`` on the table lists the model.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autokfp import storage
from autokfp.catalog.datahub import model_version_urn, read_lite
from autokfp.catalog.schema import DatasetSchema
from autokfp.catalog.store import CatalogStore
from autokfp.config import parse_config
from autokfp.edge.cli import app
from autokfp.errors import SchemaError
from autokfp.modeling import registry
from autokfp.settings import Settings
from autokfp.steps.discover import discover
from autokfp.steps.register_model import register_model
from tests.engine.catalog.conftest import check_metadata_file

runner = CliRunner()


@pytest.fixture
def scenario(tmp_path, churn_frame, gcs_emulator, catalog_home, monkeypatch):
    prefix = f"{gcs_emulator.base_uri}/{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AUTOKFP_ARTIFACT_ROOT", f"{prefix}/artifacts")
    settings = Settings.from_env()
    frame = churn_frame.head(800)

    folder = tmp_path / "files"
    folder.mkdir()
    frame.head(300).to_csv(folder / "customers.csv", index=False)
    frame[["customer_id", "support_notes"]].to_json(folder / "notes.jsonl", orient="records",
                                                    lines=True)
    (folder / "broken.parquet").write_bytes(b"PAR1 truncated upload")

    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        frame.assign(signup_date=frame["signup_date"].dt.strftime("%Y-%m-%d")).to_sql(
            "customers", connection, index=False)
        frame.groupby("contract_type", as_index=False)["monthly_charges"].mean().to_sql(
            "plans", connection, index=False)

    lake = f"{prefix}/lake"
    local = tmp_path / "lake.parquet"
    frame.head(500).to_parquet(local, index=False)
    storage.write_bytes(f"{lake}/exports/customers.parquet", local.read_bytes())
    storage.write_text(f"{lake}/events.csv", "ip_address,event\n" + "".join(
        f"10.0.{i % 250}.{i % 200},login\n" for i in range(120)))

    config = parse_config({
        "name": "churn-scn",
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)},
                    {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}"},
                    {"name": "lake", "kind": "gcs", "uri": lake}],
        "training": {"dataset": "warehouse/customers", "target": "churned",
                     "id_column": "customer_id"},
        "quality": {"min_rows": 100},
    })
    return config, settings, db, frame


def _evaluation(path: Path) -> Path:
    path.write_text(json.dumps({
        "metrics": {"auc": 0.83, "logloss": 0.41},
        "comparison": {"promote": True, "reason": "no current champion: the first model "
                       "becomes champion", "champion_version": None, "metric": "auc",
                       "champion": None},
        "task": "binary", "primary_metric": "auc", "engine": "h2o", "test_rows": 160}))
    return path


def test_three_sources_breaking_change_refuses_training_and_impact_lists_the_model(
        scenario, trained_package, tmp_path) -> None:
    config, settings, db, frame = scenario
    out = tmp_path / "run1"
    summary = discover(config, str(out / "dataset.parquet"), str(out / "schema.json"),
                             str(out / "catalog.json"))
    assert summary.training_dataset == "warehouse/customers"
    assert summary.schema_version == 1 and summary.datasets_failed == 1

    # every dataset catalogued, with semantic types and PII tags, in the gs:// catalog
    store = CatalogStore(settings)
    assert store.root.startswith("gs://")
    index = store.load_index()
    assert sorted(index) == ["files/broken.parquet", "files/customers.csv", "files/notes.jsonl",
                             "lake/events.csv", "lake/exports/customers.parquet",
                             "warehouse/customers", "warehouse/plans"]
    assert index["files/broken.parquet"]["last_error"]
    for dataset_id in ("files/customers.csv", "warehouse/customers",
                       "lake/exports/customers.parquet"):
        entry = index[dataset_id]
        assert {"pii:email", "pii:phone", "sensitive"} <= set(entry["tags"]), dataset_id
        (version,) = store.versions(dataset_id)
        semantic = {c["name"]: c["semantic_type"] for c in version["schema"]["columns"]}
        assert semantic["customer_id"] == "id" and semantic["email"] == "email"
        assert semantic["phone"] == "phone" and semantic["signup_date"] == "datetime"
        assert semantic["monthly_charges"] == "numeric"
        assert semantic["contract_type"] == "categorical"
    assert index["lake/events.csv"]["pii_columns"] == ["ip_address"]
    assert index["lake/exports/customers.parquet"]["platform"] == "gcs"
    assert index["files/notes.jsonl"]["columns"] == 2

    home = tmp_path / "home"
    check_metadata_file(out / "catalog.json", home)
    published = json.loads(storage.read_text(store.uri("last-crawl.json")))["published"]
    crawl_file = tmp_path / "crawl.json"
    crawl_file.write_bytes(storage.read_bytes(published["metadata_uri"]))
    assert published["metadata_uri"].startswith("gs://")
    check_metadata_file(crawl_file, home)
    schema = DatasetSchema.from_json((out / "schema.json").read_text())
    assert schema.catalog["schema_version"] == 1
    assert "target" in schema.column("churned").tags

    # a model registered from the table records its lineage
    registration = register_model(config, str(trained_package.paths.model),
                                  str(_evaluation(tmp_path / "evaluation.json")),
                                  str(out / "schema.json"), str(tmp_path / "registration.json"))
    assert (registration.version, registration.aliases) == ("1", ["champion"])
    client = registry.configure(settings)
    version = client.get_model_version("churn-scn", "1")
    assert version.tags["dataset_schema_version"] == "1"
    model = read_lite(settings.catalog_dir, model_version_urn("churn-scn", 1))
    assert model["mlModelProperties"]["customProperties"]["training_datasets"] == \
        summary.training_urn

    # the database changes a column's type: the next crawl records a breaking version
    with sqlite3.connect(db) as connection:
        changed = frame.assign(signup_date=frame["signup_date"].dt.strftime("%Y-%m-%d"),
                               tenure_months=frame["tenure_months"].astype(str) + " months")
        changed.to_sql("customers", connection, index=False, if_exists="replace")
    out2 = tmp_path / "run2"
    with pytest.raises(SchemaError) as refused:
        discover(config, str(out2 / "dataset.parquet"), str(out2 / "schema.json"),
                       str(out2 / "catalog.json"))
    assert "'tenure_months'" in str(refused.value)
    assert "autokfp catalog accept warehouse/customers" in str(refused.value)
    assert not (out2 / "dataset.parquet").exists()  # nothing downstream gets data
    entry = store.load_index()["warehouse/customers"]
    assert (entry["latest_version"], entry["accepted_version"], entry["verdict"]) == (
        2, 1, "breaking")
    assert entry["breaking_columns"] == ["tenure_months"]

    # the catalog CLI shows it, and impact lists the model trained from the table
    listed = runner.invoke(app, ["catalog", "--json"])
    assert listed.exit_code == 0, listed.output
    shown = {d["dataset_id"]: d for d in json.loads(listed.stdout)}
    assert "schema:breaking" in shown["warehouse/customers"]["tags"]
    result = runner.invoke(app, ["impact", "warehouse/customers", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [m["name"] for m in found["model_versions"]] == ["churn-scn v1"]
    assert found["model_versions"][0]["aliases"] == ["champion"]
    from autokfp.settings import run_namespace  # deploy.namespace unset: the run's own

    assert [d["name"] for d in found["deployments"]] == [f"kserve:{run_namespace()}/churn-scn"]
    assert len(found["feature_sets"]) == 1
    table = runner.invoke(app, ["impact", "warehouse/customers"])
    assert table.exit_code == 0 and "churn-scn v1" in table.output

    # accepting the new schema lets training go on
    accepted = runner.invoke(app, ["catalog", "accept", "warehouse/customers"])
    assert accepted.exit_code == 0 and "v2" in accepted.output
    summary = discover(config, str(out2 / "dataset.parquet"), str(out2 / "schema.json"),
                             str(out2 / "catalog.json"))
    assert summary.schema_version == summary.accepted_schema_version == 2
