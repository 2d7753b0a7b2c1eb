"""Lineage: dataset -> feature set -> model version -> deployment, impact and lineage
queries, and the DataHub ML entities that carry it."""

from __future__ import annotations

import pytest

from autokfp.catalog.crawl import crawl_sources
from autokfp.catalog.datahub import deployment_urn, model_version_urn, read_lite
from autokfp.catalog.lineage import (
    impact,
    lineage,
    load_lineage,
    record_deployment,
    record_model_lineage,
)
from autokfp.catalog.store import CatalogStore
from autokfp.errors import DataError
from tests.engine.catalog.conftest import check_metadata_file, write_table

PLAN = {"target": "churned", "task": "binary", "classes": [0, 1],
        "numeric": ["age", "tenure_months", "monthly_charges"],
        "categorical": ["contract_type", "region"], "boolean": [], "datetime": ["signup_date"],
        "text": [], "dropped": {"email": "personal data", "customer_id": "id"}}


def _crawled_schema(config):
    report = crawl_sources(config)
    item = next(d for d in report.found if d.dataset_id == "warehouse/customers")
    return item.schema


def test_model_lineage_answers_impact_and_lineage(churn_sources, catalog_home,
                                                  tmp_path) -> None:
    config, _folder, _db, _frame = churn_sources
    schema = _crawled_schema(config)
    recorded = record_model_lineage(
        "churn", 1, schema, PLAN, aliases=["champion"], metrics={"test_auc": 0.84},
        properties={"engine": "h2o", "run_id": "abc"},
        deployment=("ml-team", "churn"))
    assert recorded["model_urn"] == model_version_urn("churn", 1)
    assert recorded["feature_set_urn"].startswith(
        "urn:li:dataset:(urn:li:dataPlatform:autokfp,churn.features.")
    assert recorded["published"]["lite_error"] is None
    check_metadata_file(recorded["published"]["metadata_uri"], tmp_path / "home")

    second = record_model_lineage("churn", 2, schema, dict(PLAN, region=None),
                                  aliases=["champion"], metrics={"test_auc": 0.86},
                                  deployment=("ml-team", "churn"), replaced_version=1)
    record_model_lineage("churn", 3, schema, PLAN, aliases=["challenger"])

    found = impact("warehouse/customers")
    assert found["urn"] == schema_urn(schema)
    assert [m["name"] for m in found["model_versions"]] == ["churn v1", "churn v2", "churn v3"]
    assert len(found["feature_sets"]) == 2  # v1 and v3 share a plan
    (deployment,) = found["deployments"]
    assert deployment["name"] == "kserve:ml-team/churn" and deployment["version"] == "2"
    assert impact("files/customers.csv")["model_versions"] == []

    graph = load_lineage()
    assert graph.nodes[model_version_urn("churn", 1)]["aliases"] == ["previous"]
    served_by = [e["from"] for e in graph.edges if e["to"] == deployment_urn("ml-team", "churn")]
    assert served_by == [model_version_urn("churn", 2)]  # the deployment serves one version

    (v2,) = lineage("churn v2")
    assert {n["name"] for n in v2["upstream"]} == {"warehouse/customers",
                                                   second["feature_set_urn"].split(",")[1]}
    assert [n["name"] for n in v2["downstream"]] == ["kserve:ml-team/churn"]
    assert [item["node"]["name"] for item in lineage("churn")] == ["churn v1", "churn v2",
                                                                  "churn v3"]
    (dataset,) = lineage("warehouse/customers")
    assert {n["kind"] for n in dataset["downstream"]} == {"feature_set", "model_version",
                                                          "deployment"}
    with pytest.raises(DataError, match="models: churn"):
        lineage("nothing-like-this")

    # DataHub: the model names its training data, its group, job and deployment
    model = read_lite(catalog_home.catalog_dir, model_version_urn("churn", 2))
    properties = model["mlModelProperties"]
    assert properties["customProperties"]["training_datasets"] == schema_urn(schema)
    assert properties["deployments"] == [deployment_urn("ml-team", "churn")]
    assert properties["trainingJobs"] and properties["groups"]
    assert {d["dataset"] for d in model["mlModelTrainingData"]["trainingData"]} == {
        schema_urn(schema), second["feature_set_urn"]}
    old = read_lite(catalog_home.catalog_dir, model_version_urn("churn", 1))
    assert not old["mlModelProperties"].get("deployments")  # it no longer serves

    record_deployment("churn", 3, "ml-team", "churn")
    (deployment,) = impact("warehouse/customers")["deployments"]
    assert deployment["version"] == "3"
    with pytest.raises(DataError, match="register it first"):
        record_deployment("churn", 9, "ml-team", "churn")


def schema_urn(schema) -> str:
    from autokfp.catalog.datahub import dataset_urn

    return dataset_urn(schema)


def test_only_columns_a_model_uses_can_break(churn_sources, catalog_home) -> None:
    config, _folder, db, frame = churn_sources
    schema = _crawled_schema(config)
    record_model_lineage("churn", 1, schema, PLAN, aliases=["champion"])

    write_table(db, "customers", frame.drop(columns=["support_notes"]))  # not in the plan
    outcome = crawl_sources(config).outcome("warehouse/customers")
    assert (outcome.version, outcome.verdict) == (2, "compatible")
    assert outcome.accepted_version == 2

    write_table(db, "customers", frame.drop(columns=["support_notes", "monthly_charges"]))
    outcome = crawl_sources(config).outcome("warehouse/customers")
    assert (outcome.version, outcome.verdict) == (3, "breaking")
    assert outcome.breaking_columns == ["monthly_charges"]


def test_lineage_file_lives_in_the_artifact_store(churn_sources, catalog_home) -> None:
    config, *_ = churn_sources
    record_model_lineage("churn", 1, _crawled_schema(config), PLAN)
    store = CatalogStore(catalog_home)
    data = store.read_json("lineage.json", None)
    assert {n["kind"] for n in data["nodes"].values()} == {"dataset", "feature_set",
                                                          "model_version"}
    assert {e["relation"] for e in data["edges"]} == {"features_from", "trained_on"}
