"""A DataHub dataset URN as a run's dataset: found in the catalog (autokfp's index, DataHub
Lite, a GMS), turned into a source the run reads, refused clearly when unknown."""

from __future__ import annotations

from pathlib import Path

import pytest
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import DatasetPropertiesClass, StatusClass

from autokfp.catalog.crawl import crawl_sources
from autokfp.catalog.datahub import emit_to_gms, load_into_lite
from autokfp.catalog.locations import locate_dataset
from autokfp.errors import ConfigError
from autokfp.steps.resolve_config import resolve_config
from tests.engine.catalog.gms_fake import FakeGms

TOKEN = "eyJhbGciOiJIUzI1NiJ9.locate-token"
SQLITE_URN = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.customers,PROD)"


def file_urn(path: Path) -> str:
    return f"urn:li:dataset:(urn:li:dataPlatform:file,{str(path).lstrip('/')},PROD)"


@pytest.fixture
def crawled(churn_sources, catalog_home):
    config, folder, db, frame = churn_sources
    crawl_sources(config)
    return config, folder, db, frame


def test_a_crawled_file_urn_becomes_the_runs_dataset(crawled) -> None:
    _config, folder, _db, frame = crawled
    urn = file_urn(folder / "customers.csv")
    found = locate_dataset(urn)
    assert found.location == str(folder / "customers.csv")
    assert found.dataset_id == "files/customers.csv"
    assert found.found_in.startswith("autokfp's catalog index at ")

    resolved = resolve_config(dataset=urn, target="churned", budget_seconds=30).config
    assert resolved["training"]["dataset"] == "run-form/customers.csv"
    (source,) = resolved["sources"]
    assert source["kind"] == "folder" and source["path"] == str(folder)
    assert source["include"] == ["customers.csv"]
    assert resolved["name"] == "customers"


def test_the_configs_own_source_is_used_when_it_holds_the_dataset(crawled) -> None:
    config, folder, _db, _frame = crawled
    resolved = resolve_config(config.to_dict(), dataset=file_urn(folder / "customers.csv"),
                              target="churned").config
    assert resolved["training"]["dataset"] == "files/customers.csv"
    assert [s["name"] for s in resolved["sources"]] == ["files", "warehouse"]


def test_a_sqlite_table_urn_reads_the_table(crawled) -> None:
    _config, _folder, db, _frame = crawled
    resolved = resolve_config(dataset=SQLITE_URN, target="churned").config
    (source,) = resolved["sources"]
    assert source["kind"] == "sql" and source["url"] == f"sqlite:///{db}"
    assert source["tables"] == ["customers"]
    assert resolved["training"]["dataset"] == "run-form/customers"


def test_a_same_named_source_elsewhere_does_not_stand_in(crawled, tmp_path) -> None:
    config, folder, _db, frame = crawled
    other = tmp_path / "other"
    other.mkdir()
    frame.head(200).to_csv(other / "customers.csv", index=False)
    data = config.to_dict()
    data["sources"][0]["path"] = str(other)  # "files", but another folder
    with pytest.raises(ConfigError, match="config's source 'files' holds a different dataset"):
        resolve_config(data, dataset=file_urn(folder / "customers.csv"), target="churned")


def test_an_unknown_urn_says_where_it_looked_and_what_to_do(crawled, catalog_home) -> None:
    urn = file_urn(Path("/nowhere/customers.csv"))
    with pytest.raises(ConfigError) as refused:
        resolve_config(dataset=urn, target="churned")
    message = str(refused.value)
    assert f"dataset {urn} is not in the catalog" in message
    assert "autokfp's catalog index at" in message
    assert f"DataHub Lite at {catalog_home.catalog_dir}" in message
    assert "autokfp discover CONFIG" in message


def test_a_malformed_urn_shows_what_one_looks_like(catalog_home) -> None:
    with pytest.raises(ConfigError, match="is not a DataHub dataset URN.*urn:li:dataset:\\("):
        resolve_config(dataset="urn:li:dataset:customers", target="churned")


def test_a_dataset_gone_from_its_source_is_refused(crawled) -> None:
    config, folder, _db, _frame = crawled
    (folder / "customers.csv").unlink()
    crawl_sources(config)
    with pytest.raises(ConfigError, match="was gone from its source at the last crawl"):
        resolve_config(dataset=file_urn(folder / "customers.csv"), target="churned")


def _datahub_file_dataset(path: Path) -> list[MetadataChangeProposalWrapper]:
    """A dataset as DataHub's own file source writes it: no autokfp location property."""
    urn = file_urn(path)
    return [MetadataChangeProposalWrapper(entityUrn=urn, aspect=StatusClass(removed=False)),
            MetadataChangeProposalWrapper(entityUrn=urn, aspect=DatasetPropertiesClass(
                name=path.name, customProperties={"number_of_files": "1"}))]


def test_a_dataset_only_datahub_ingested_is_located_from_its_urn(catalog_home, churn_frame,
                                                                 tmp_path) -> None:
    path = tmp_path / "lake" / "accounts.parquet"
    path.parent.mkdir()
    churn_frame.head(300).to_parquet(path, index=False)
    load_into_lite(_datahub_file_dataset(path), catalog_home.catalog_dir)
    found = locate_dataset(file_urn(path))
    assert found.location == str(path) and found.dataset_id is None
    assert found.found_in == f"DataHub Lite at {catalog_home.catalog_dir}"
    resolved = resolve_config(dataset=file_urn(path), target="churned").config
    assert resolved["sources"][0]["path"] == str(path.parent)


def test_a_database_table_without_a_server_in_datahub_says_how_to_add_it(catalog_home) -> None:
    urn = "urn:li:dataset:(urn:li:dataPlatform:postgres,crm.public.customers,PROD)"
    load_into_lite([MetadataChangeProposalWrapper(entityUrn=urn, aspect=DatasetPropertiesClass(
        name="customers"))], catalog_home.catalog_dir)
    with pytest.raises(ConfigError, match="does not say which postgres server holds it.*sources"):
        resolve_config(dataset=urn, target="churned")


def test_a_urn_is_looked_up_in_the_gms_with_its_token(catalog_home, churn_frame, tmp_path,
                                                      monkeypatch) -> None:
    s3_urn = "urn:li:dataset:(urn:li:dataPlatform:s3,lake/churn/customers.parquet,PROD)"
    removed_urn = file_urn(tmp_path / "old.parquet")
    with FakeGms(TOKEN) as gms:
        emit_to_gms([
            MetadataChangeProposalWrapper(entityUrn=s3_urn, aspect=DatasetPropertiesClass(
                name="customers.parquet")),
            MetadataChangeProposalWrapper(entityUrn=removed_urn, aspect=StatusClass(removed=True)),
            MetadataChangeProposalWrapper(entityUrn=removed_urn, aspect=DatasetPropertiesClass(
                name="old.parquet")),
        ], gms.url, token=TOKEN)
        monkeypatch.setenv("DATAHUB_GMS_URL", gms.url)
        monkeypatch.setenv("DATAHUB_GMS_TOKEN", TOKEN)
        found = locate_dataset(s3_urn)
        with pytest.raises(ConfigError, match="is marked removed in DataHub GMS at"):
            locate_dataset(removed_urn)
        with pytest.raises(ConfigError, match=f"looked in .*; DataHub GMS at {gms.url}"):
            locate_dataset(file_urn(tmp_path / "never.parquet"))
    assert found.location == "s3://lake/churn/customers.parquet"
    assert found.found_in == f"DataHub GMS at {gms.url}"
    reads = [r for r in gms.requests if r["path"].startswith("/aspects/")]
    assert reads and {r["authorization"] for r in reads} == {f"Bearer {TOKEN}"}


def test_an_unreachable_gms_is_named_without_the_token(catalog_home, monkeypatch) -> None:
    monkeypatch.setenv("DATAHUB_GMS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", TOKEN)
    with pytest.raises(ConfigError) as refused:
        locate_dataset(SQLITE_URN)
    assert "DataHub GMS at http://127.0.0.1:9 is not reachable" in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_a_password_protected_table_needs_its_source_in_the_config() -> None:
    from autokfp.catalog.locations import CatalogedDataset

    urn = "urn:li:dataset:(urn:li:dataPlatform:postgres,crm.public.customers,PROD)"
    found = CatalogedDataset(urn, "postgres", "autokfp's catalog index at gs://b/catalog",
                             dataset_id="crm/customers",
                             database="postgresql://ml:***@db.internal:5432/crm")
    assert found.run_dataset({"crm"}) == "crm/customers"  # the config's source has the secret
    with pytest.raises(ConfigError) as refused:
        found.run_dataset(set())
    message = str(refused.value)
    assert "table 'customers' of a database (postgresql://ml:***@db.internal:5432/crm)" in message
    assert "as 'crm' with its password as ${VAR}" in message and "'crm/customers'" in message
    open_db = CatalogedDataset(urn, "sqlite", "x", dataset_id="wh/customers",
                               database="sqlite:////data/wh.db")
    assert open_db.run_dataset(set()) == "sqlite:////data/wh.db#customers"
