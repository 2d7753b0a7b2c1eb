"""Each KFP component called as plain Python (``.python_func``) with artifacts in a temp dir.

Training itself is covered once per session by the ``trained_package`` fixture; these tests
check the component faces around it: what each writes, returns and logs for the UI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from autokfp.catalog.profiling import profile_frame
from autokfp.errors import DeploymentError, QualityGateError
from components import (
    deploy_model,
    discover,
    engineer_features,
    evaluate_model,
    profile,
    register_model,
)
from tests.conftest import small_config


def _artifact(cls, folder: Path, name: str):
    """An artifact whose ``.path`` is ``folder/name`` (what the KFP executor hands a task)."""
    artifact = cls(name=name, uri=str(folder / name))
    assert Path(artifact.path) == folder / name
    return artifact


@pytest.fixture(scope="module")
def churn_folder(tmp_path_factory, churn_frame) -> Path:
    folder = tmp_path_factory.mktemp("churn-data")
    churn_frame.to_parquet(folder / "customers.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def discovered(tmp_path_factory, churn_folder):
    """The discover component run once over the churn folder."""
    out = tmp_path_factory.mktemp("discover")
    config = small_config(churn_folder).to_dict()
    dataset = _artifact(Dataset, out, "dataset")
    schema = _artifact(Artifact, out, "schema")
    catalog = _artifact(Artifact, out, "catalog")
    fingerprint = discover.python_func(config=config, dataset=dataset, schema=schema,
                                       catalog=catalog)
    return config, dataset, schema, catalog, fingerprint


# ------------------------------------------------------------------------------ discover


def test_discover_writes_dataset_schema_and_catalog(discovered, churn_frame) -> None:
    _config, dataset, schema, catalog, fingerprint = discovered
    frame = pd.read_parquet(dataset.path)
    assert frame.shape == churn_frame.shape
    assert dataset.metadata["rows"] == len(churn_frame)
    assert dataset.metadata["columns"] == churn_frame.shape[1]
    assert dataset.metadata["dataset_id"] == "files/customers.parquet"
    assert dataset.metadata["urn"].startswith("urn:li:dataset:")

    schema_json = json.loads(Path(schema.path).read_text())
    assert schema_json["fingerprint"] == fingerprint
    assert isinstance(fingerprint, str) and fingerprint

    proposals = json.loads(Path(catalog.path).read_text())
    assert isinstance(proposals, list) and proposals
    assert catalog.metadata == {"datasets_found": 1, "datasets_failed": 0}


# ------------------------------------------------------------------------------- profile


def test_profile_passes_good_data_and_logs_check_counts(discovered, tmp_path) -> None:
    config, dataset, schema, _catalog, _fp = discovered
    report = _artifact(HTML, tmp_path, "report")
    metrics = _artifact(Metrics, tmp_path, "metrics")
    profile.python_func(config=config, dataset=dataset, schema=schema, report=report,
                        metrics=metrics)
    assert "<html" in Path(report.path).read_text().lower()
    assert metrics.metadata["checks_failed"] == 0
    assert metrics.metadata["checks_passed"] > 0
    assert metrics.metadata["rows"] == 2000


def test_profile_stops_on_a_constant_target(churn_frame, churn_folder, tmp_path) -> None:
    frame = churn_frame.assign(churned=churn_frame["churned"].iloc[0])
    dataset = _artifact(Dataset, tmp_path, "dataset")
    frame.to_parquet(dataset.path, index=False)
    schema = _artifact(Artifact, tmp_path, "schema")
    Path(schema.path).write_text(
        profile_frame(frame, "files/customers.parquet", "file", str(churn_folder)).to_json())
    report = _artifact(HTML, tmp_path, "report")
    metrics = _artifact(Metrics, tmp_path, "metrics")
    with pytest.raises(QualityGateError, match="churned"):
        profile.python_func(config=small_config(churn_folder).to_dict(), dataset=dataset,
                            schema=schema, report=report, metrics=metrics)
    # the report explaining the failure is still written for the UI
    assert Path(report.path).exists()


# ------------------------------------------------------------------------------ features


def test_engineer_features_splits_and_plans(discovered, tmp_path) -> None:
    config, dataset, schema, _catalog, _fp = discovered
    train = _artifact(Dataset, tmp_path, "train")
    test = _artifact(Dataset, tmp_path, "test")
    plan = _artifact(Artifact, tmp_path, "plan")
    report = _artifact(Markdown, tmp_path, "report")
    task, features = engineer_features.python_func(config=config, dataset=dataset, schema=schema,
                                                   train=train, test=test, plan=plan,
                                                   report=report)
    assert task == "binary"
    assert features > 0
    train_rows, test_rows = len(pd.read_parquet(train.path)), len(pd.read_parquet(test.path))
    assert train_rows + test_rows == 2000
    assert train.metadata["rows"] == train_rows and test.metadata["rows"] == test_rows
    assert json.loads(Path(plan.path).read_text())["target"] == "churned"
    assert Path(report.path).read_text().startswith("# Features for `files/customers.parquet`")


# ------------------------------------------- evaluate -> register -> deploy (one registry)


def test_evaluate_register_deploy_the_trained_model(trained_package, autokfp_home,
                                                    tmp_path) -> None:
    config = trained_package.config.to_dict()
    paths = trained_package.paths
    model = _artifact(Model, tmp_path, "model")
    model.uri = str(paths.model)  # the package trained once for the session
    test = _artifact(Dataset, tmp_path, "test")
    test.uri = str(paths.test)

    evaluation = _artifact(Artifact, tmp_path, "evaluation")
    metrics = _artifact(Metrics, tmp_path, "metrics")
    classification = _artifact(ClassificationMetrics, tmp_path, "classification")
    promote, primary = evaluate_model.python_func(
        config=config, model=model, test=test, evaluation=evaluation, metrics=metrics,
        classification=classification)

    assert metrics.metadata["test_auc"] >= 0.78
    assert {"test_logloss", "test_accuracy", "test_f1"} <= set(metrics.metadata)
    assert promote is True  # no champion yet
    assert primary == pytest.approx(metrics.metadata["test_auc"])
    roc = classification.metadata["confidenceMetrics"]
    assert len(roc) > 2
    assert {"falsePositiveRate", "recall", "confidenceThreshold"} <= set(roc[0])
    matrix = classification.metadata["confusionMatrix"]
    assert len(matrix["annotationSpecs"]) == 2 and len(matrix["rows"]) == 2
    assert evaluation.metadata["promote"] is True
    assert json.loads(Path(evaluation.path).read_text())["metrics"]["auc"] >= 0.78

    schema = _artifact(Artifact, tmp_path, "schema")
    schema.uri = str(paths.schema)
    registration = _artifact(Artifact, tmp_path, "registration")
    version = register_model.python_func(config=config, model=model, evaluation=evaluation,
                                         schema=schema, registration=registration)
    assert version == "1"
    assert registration.metadata["model"] == "churn-test"
    assert registration.metadata["aliases"] == "champion"
    assert json.loads(Path(registration.path).read_text())["promoted"] is True

    manifest = _artifact(Artifact, tmp_path, "manifest")
    decision = _artifact(Artifact, tmp_path, "decision")
    manifest_only = {**config, "deploy": {**config["deploy"], "target": "manifest"}}
    outcome = deploy_model.python_func(config=manifest_only, registration=registration, test=test,
                                       manifest=manifest, decision=decision)
    assert outcome == "skipped"  # target manifest: written, not rolled out
    assert decision.metadata["action"] == "initial"
    service = yaml.safe_load(Path(manifest.path).read_text())
    assert service["kind"] == "InferenceService"
    assert service["spec"]["predictor"]["model"]["storageUri"]
    assert manifest.metadata["version"] == "1"
    assert json.loads(Path(decision.path).read_text())["target"] == "manifest"


def test_deploy_without_a_champion_says_so(autokfp_home, churn_folder, tmp_path) -> None:
    registration = _artifact(Artifact, tmp_path, "registration")
    Path(registration.path).write_text(json.dumps({"promoted": False}))
    manifest = _artifact(Artifact, tmp_path, "manifest")
    decision = _artifact(Artifact, tmp_path, "decision")
    test = _artifact(Dataset, tmp_path, "test")
    with pytest.raises(DeploymentError, match="no champion"):
        deploy_model.python_func(config=small_config(churn_folder).to_dict(),
                                 registration=registration, test=test, manifest=manifest,
                                 decision=decision)
    assert not Path(manifest.path).exists()
    assert not Path(decision.path).exists()
