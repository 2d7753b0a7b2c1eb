"""The ``profile`` component: the quality gate's counts, its report, and a stop on bad data."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Metrics

from autokfp.catalog.profiling import profile_frame
from autokfp.components import profile
from autokfp.errors import QualityGateError
from tests.components import artifact
from tests.conftest import small_config


def test_profile_passes_good_data_and_logs_check_counts(discovered, tmp_path) -> None:
    config, dataset, schema, _catalog, _fp = discovered
    report = artifact(HTML, tmp_path, "report")
    metrics = artifact(Metrics, tmp_path, "metrics")
    summary = artifact(HTML, tmp_path, "summary")
    profile.python_func(config=config, dataset=dataset, schema=schema, report=report,
                        metrics=metrics, summary=summary)
    assert "<html" in Path(report.path).read_text().lower()
    assert metrics.metadata["checks_failed"] == 0
    assert metrics.metadata["checks_passed"] > 0
    assert metrics.metadata["rows"] == 2000
    assert "<html" in Path(summary.path).read_text().lower()  # Evidently's data summary


def test_profile_stops_on_a_constant_target(churn_frame, churn_folder, tmp_path) -> None:
    frame = churn_frame.assign(churned=churn_frame["churned"].iloc[0])
    dataset = artifact(Dataset, tmp_path, "dataset")
    frame.to_parquet(dataset.path, index=False)
    schema = artifact(Artifact, tmp_path, "schema")
    Path(schema.path).write_text(
        profile_frame(frame, "files/customers.parquet", "file", str(churn_folder)).to_json())
    report = artifact(HTML, tmp_path, "report")
    metrics = artifact(Metrics, tmp_path, "metrics")
    with pytest.raises(QualityGateError, match="churned"):
        profile.python_func(config=small_config(churn_folder).to_dict(), dataset=dataset,
                            schema=schema, report=report, metrics=metrics)
    # the report explaining the failure is still written for the UI
    assert Path(report.path).exists()


def test_used_alone_it_needs_a_target_and_nothing_else(churn_frame, tmp_path) -> None:
    """A CSV dataset, no schema, no run config: the default quality policy on the target."""
    dataset = artifact(Dataset, tmp_path, "dataset")
    churn_frame.head(400).to_csv(dataset.path, index=False)
    report = artifact(HTML, tmp_path, "report")
    metrics = artifact(Metrics, tmp_path, "metrics")
    profile.python_func(dataset=dataset, target="churned", report=report, metrics=metrics)
    assert metrics.metadata["rows"] == 400 and metrics.metadata["checks_failed"] == 0
    # the constant target fails the gate the same way as in autokfp's pipeline
    churn_frame.head(400).assign(churned=0).to_csv(dataset.path, index=False)
    with pytest.raises(QualityGateError, match="churned"):
        profile.python_func(dataset=dataset, target="churned", report=report, metrics=metrics)
    from autokfp.errors import ConfigError

    with pytest.raises(ConfigError, match="training.target"):  # no target at all
        profile.python_func(dataset=dataset, report=report, metrics=metrics)
