"""apply_run_form and TrainingSettings: what the training pipeline's typed run form means."""

from __future__ import annotations

import json

import pytest

from autokfp.config import apply_run_form, parse_training_settings
from autokfp.errors import ConfigError


@pytest.mark.parametrize(("uri", "kind", "prefix"), [
    ("gs://bucket/churn/customers.parquet", "gcs", "gs://bucket/churn"),
    ("s3://bucket/a/b/customers.parquet", "s3", "s3://bucket/a/b"),
    ("minio://bucket/customers.parquet", "s3", "minio://bucket"),
])
def test_an_object_store_uri_becomes_a_source_holding_that_file(uri, kind, prefix) -> None:
    config = apply_run_form(None, dataset=uri, target="churned")
    (source,) = config.sources
    assert (source.kind, source.uri, source.include) == (kind, prefix, ["customers.parquet"])
    assert config.training.dataset == f"{source.name}/customers.parquet"
    assert config.name == "customers"


def test_a_uri_next_to_configured_sources_adds_a_source_of_its_own(tmp_path) -> None:
    base = {"name": "churn", "sources": [{"name": "run-form", "kind": "folder", "path": str(tmp_path)}],
            "training": {"dataset": "run-form/x.csv", "target": "y", "task": "binary"}}
    config = apply_run_form(base, dataset="gs://b/p/new.parquet")
    assert [s.name for s in config.sources] == ["run-form", "run-form-1"]
    assert config.training.dataset == "run-form-1/new.parquet"
    assert config.training.target == "y" and config.training.task == "binary"  # kept
    assert config.name == "churn"


def test_a_bucket_without_a_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="give the file"):
        apply_run_form(None, dataset="gs://bucket", target="y")


def test_an_unknown_database_url_is_refused_without_echoing_its_password() -> None:
    """A run's error reaches the task log and the Kubeflow UI: the URL's literal password
    must not (only ``***``)."""
    with pytest.raises(ConfigError, match="is neither") as raised:
        apply_run_form(None, dataset="snowflake://me:hunter2@acct/db#t", target="y")
    assert "hunter2" not in str(raised.value)
    assert "snowflake://me:***@acct/db#t" in str(raised.value)  # still names the input


def test_training_settings_round_trip_also_from_json_text() -> None:
    config = apply_run_form(None, dataset="gs://b/p/d.parquet", target="y", engines="h2o",
                            budget_seconds=45)
    settings = config.training_settings()
    assert parse_training_settings(settings.to_dict()) == settings
    assert parse_training_settings(json.dumps(settings.to_dict())) == settings
    assert parse_training_settings(config.to_dict()) == settings  # a whole config still works
    with pytest.raises(ConfigError, match="budget.max_runtime_secs"):
        parse_training_settings({**settings.to_dict(), "budget": {"max_runtime_secs": 1}})
