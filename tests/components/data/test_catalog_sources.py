"""The ``catalog_sources`` component: counts for the UI, the report, the proposals, and the
number of breaking schema changes it returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Metrics

from autokfp.components import catalog_sources
from tests.components import artifact
from tests.conftest import small_config


def _crawl(config: dict, folder: Path):
    outputs = {"report": artifact(HTML, folder, "report"),
               "catalog": artifact(Artifact, folder, "catalog"),
               "metrics": artifact(Metrics, folder, "metrics")}
    breaking = catalog_sources.python_func(config=config, **outputs)
    return breaking, outputs


def test_catalog_sources_counts_what_it_found_and_what_broke(autokfp_home, churn_frame,
                                                             tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    churn_frame.to_parquet(data / "customers.parquet", index=False)
    (data / "broken.parquet").write_bytes(b"not parquet")
    config = small_config(data).to_dict()

    breaking, first = _crawl(config, tmp_path / "first")
    assert breaking == 0
    counts = first["metrics"].metadata
    assert counts["new"] == 1 and counts["catalogued"] == 1 and counts["failed"] == 1
    assert first["catalog"].metadata["new"] == 1
    assert "broken.parquet" in Path(first["report"].path).read_text()
    proposals = json.loads(Path(first["catalog"].path).read_text())
    assert any("customers.parquet" in json.dumps(p) for p in proposals)

    # the target column disappears: a breaking change, counted and returned
    churn_frame.drop(columns=["churned"]).to_parquet(data / "customers.parquet", index=False)
    breaking, second = _crawl(config, tmp_path / "second")
    assert breaking == 1
    assert second["metrics"].metadata["breaking"] == 1
    assert second["metrics"].metadata["changed"] == 1


def test_typed_sources_need_no_config_and_keep_stable_names(autokfp_home, churn_frame,
                                                            tmp_path, monkeypatch) -> None:
    import sqlite3

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    files = tmp_path / "files"
    files.mkdir()
    churn_frame.head(150).to_parquet(files / "customers.parquet", index=False)
    churn_frame.head(150).to_csv(files / "customers.csv", index=False)
    with sqlite3.connect(tmp_path / "warehouse.db") as connection:
        churn_frame.head(120)[["customer_id", "age", "churned"]].to_sql("scores", connection,
                                                                         index=False)
    outputs = {"report": artifact(HTML, tmp_path / "out", "report"),
               "catalog": artifact(Artifact, tmp_path / "out", "catalog"),
               "metrics": artifact(Metrics, tmp_path / "out", "metrics")}
    breaking = catalog_sources.python_func(
        sources=f"{files}, sqlite:///{tmp_path / 'warehouse.db'}", include="*.parquet", **outputs)
    assert breaking == 0
    index = json.loads((Path(autokfp_home.artifact_root) / "catalog" / "index.json").read_text())
    # the CSV is not included; the database file is named without its extension
    assert sorted(index["datasets"]) == ["files/customers.parquet", "warehouse/scores"]
    assert outputs["metrics"].metadata["new"] == 2


@pytest.mark.parametrize(("form", "words"), [
    ({"sources": "data/files"}, ["'data/files'", "absolute folder path", "gs://"]),
    ({"sources": "ftp://host/x"}, ["'ftp://host/x'", "database URL"]),
    ({"sources": " , "}, ["names no location"]),
    ({}, ["no sources: give the locations to crawl"]),
    ({"config": {"name": "x"}}, ["invalid setting", "sources"]),
])
def test_a_bad_discovery_form_is_named(tmp_path, form, words) -> None:
    from autokfp.errors import ConfigError

    outputs = {"report": artifact(HTML, tmp_path, "report"),
               "catalog": artifact(Artifact, tmp_path, "catalog"),
               "metrics": artifact(Metrics, tmp_path, "metrics")}
    with pytest.raises(ConfigError) as raised:
        catalog_sources.python_func(**form, **outputs)
    for word in words:
        assert word in str(raised.value)
    assert not Path(outputs["report"].path).exists()  # nothing written


def test_include_narrows_the_configs_own_sources_without_renaming_them(tmp_path) -> None:
    from autokfp.steps.catalog_sources import crawl_targets

    data = tmp_path / "data"
    data.mkdir()
    config = small_config(data).to_dict()
    (source,), training = crawl_targets(config, include="*.parquet")
    assert source.name == config["sources"][0]["name"] and source.include == ["*.parquet"]
    assert training.target == config["training"]["target"]
    # typed sources replace the config's; its training spec still tags the target
    sources, training = crawl_targets(config, sources="gs://bucket/churn,s3://lake/churn/")
    assert [(s.name, s.kind, s.uri) for s in sources] == [
        ("churn", "gcs", "gs://bucket/churn"), ("churn-2", "s3", "s3://lake/churn")]
    assert training is not None


def test_a_literal_password_in_typed_sources_is_refused_in_a_pod(tmp_path, monkeypatch) -> None:
    from autokfp.errors import ConfigError

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.delenv("AUTOKFP_RUNNER_PID", raising=False)
    outputs = {"report": artifact(HTML, tmp_path, "report"),
               "catalog": artifact(Artifact, tmp_path, "catalog"),
               "metrics": artifact(Metrics, tmp_path, "metrics")}
    with pytest.raises(ConfigError) as raised:
        catalog_sources.python_func(sources="postgresql://reader:s3cret-pw@db.example/crm",
                                    **outputs)
    assert "literal password" in str(raised.value) and "s3cret-pw" not in str(raised.value)
    assert "crm" in str(raised.value)  # the source, by name


def test_an_unknown_location_is_refused_without_echoing_its_password() -> None:
    from autokfp.errors import ConfigError
    from autokfp.steps.catalog_sources import crawl_targets

    with pytest.raises(ConfigError, match="is not a gs:// or s3:// prefix") as raised:
        crawl_targets(None, "gs://bucket/churn, snowflake://me:hunter2@acct/db")
    assert "hunter2" not in str(raised.value)
    assert "snowflake://me:***@acct/db" in str(raised.value)


def test_the_discovery_pipeline_runs_datahubs_ingestion_when_the_config_says_so(
        autokfp_home, churn_frame, tmp_path, monkeypatch) -> None:
    """``catalog.ingestion: datahub``: the discovery pipeline's step runs DataHub's own
    source (the generated ``s3`` recipe for the folder) with autokfp's aspects on top, as the
    training pipeline's discover step does; the report and counts are the crawl's."""
    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    churn_frame.head(300).to_parquet(data / "customers.parquet", index=False)
    config = small_config(data, catalog={"ingestion": "datahub"}).to_dict()

    breaking, out = _crawl(config, tmp_path / "first")
    assert breaking == 0 and out["metrics"].metadata["new"] == 1
    last = json.loads((Path(autokfp_home.artifact_root) / "catalog" / "last-ingest.json")
                      .read_text())
    assert [r["source"]["type"] for r in last["recipes"]] == ["s3"]  # DataHub's source ran
    urn = f"urn:li:dataset:(urn:li:dataPlatform:file,{str(data).lstrip('/')}/customers.parquet,PROD)"
    assert last["datasets"] == [urn] and last["extended"] == [urn]
    assert "customers.parquet" in Path(out["report"].path).read_text()
