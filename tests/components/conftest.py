"""Fixtures shared by the component tests: the churn folder, one discover run, one
evaluated and registered model."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Metrics, Model

from autokfp.components import discover, evaluate_model, register_model
from tests.components import artifact
from tests.conftest import small_config


@pytest.fixture(scope="session")
def churn_folder(tmp_path_factory, churn_frame) -> Path:
    folder = tmp_path_factory.mktemp("churn-data")
    churn_frame.to_parquet(folder / "customers.parquet", index=False)
    return folder


@pytest.fixture(scope="session")
def discovered(tmp_path_factory, churn_folder):
    """The discover component run once over the churn folder."""
    out = tmp_path_factory.mktemp("discover")
    config = small_config(churn_folder).to_dict()
    dataset = artifact(Dataset, out, "dataset")
    schema = artifact(Artifact, out, "schema")
    catalog = artifact(Artifact, out, "catalog")
    fingerprint = discover.python_func(config=config, dataset=dataset, schema=schema,
                                       catalog=catalog)
    return config, dataset, schema, catalog, fingerprint


@pytest.fixture
def evaluated(trained_package, autokfp_home, tmp_path):
    """The session's trained package evaluated by the component (no champion yet)."""
    config = trained_package.config.to_dict()
    paths = trained_package.paths
    model = artifact(Model, tmp_path, "model", paths.model)
    test = artifact(Dataset, tmp_path, "test", paths.test)
    evaluation = artifact(Artifact, tmp_path, "evaluation")
    metrics = artifact(Metrics, tmp_path, "metrics")
    classification = artifact(ClassificationMetrics, tmp_path, "classification")
    promote, primary = evaluate_model.python_func(
        config=config, model=model, test=test, evaluation=evaluation, metrics=metrics,
        classification=classification)
    return dict(config=config, model=model, test=test, evaluation=evaluation, metrics=metrics,
                classification=classification, promote=promote, primary=primary)


@pytest.fixture
def registered(evaluated, trained_package, tmp_path):
    """... then registered by the component as churn-test v1 (champion)."""
    schema = artifact(Artifact, tmp_path, "schema", trained_package.paths.schema)
    registration = artifact(Artifact, tmp_path, "registration")
    version = register_model.python_func(config=evaluated["config"], model=evaluated["model"],
                                         evaluation=evaluated["evaluation"], schema=schema,
                                         registration=registration, kfp_run_id="run-abc",
                                         pipeline_name="autonomous-training")
    return {**evaluated, "schema": schema, "registration": registration, "version": version}
