"""resolve_config: the run form's typed parameters over an optional config, checked first."""

from __future__ import annotations

import pytest

from autokfp.components import resolve_config
from autokfp.errors import ConfigError, DataError, SchemaError
from tests.conftest import small_config


def test_the_form_alone_makes_a_run_config(churn_folder) -> None:
    dataset = str(churn_folder / "customers.parquet")
    config = resolve_config.python_func(
        dataset=dataset, target="churned", task="binary", budget_seconds=30, engines="h2o",
        require_approval=True)
    assert config["name"] == "customers"  # from the dataset, when nothing names the model
    (source,) = config["sources"]
    assert source["kind"] == "folder" and source["path"] == str(churn_folder)
    assert source["include"] == ["customers.parquet"]  # discovery reads that file only
    assert config["training"]["dataset"] == f"{source['name']}/customers.parquet"
    assert config["training"]["task"] == "binary"
    assert config["budget"]["max_runtime_secs"] == 30
    assert list(config["engines"]) == ["h2o"]
    assert config["governance"]["require_approval"] is True


def test_the_form_overrides_the_config_and_keeps_the_rest(churn_folder) -> None:
    base = small_config(churn_folder, governance={"require_approval": True}).to_dict()
    config = resolve_config.python_func(config=base, model_name="churn-ui", engines="h2o")
    assert config["name"] == "churn-ui"
    assert config["training"] == base["training"] and config["sources"] == base["sources"]
    # the engine named in the form keeps its settings from the config
    assert config["engines"] == {"h2o": base["engines"]["h2o"]}
    assert config["budget"] == base["budget"]
    # the form can add the approval requirement, never remove it
    assert config["governance"]["require_approval"] is True


@pytest.mark.parametrize(("form", "error", "words"), [
    ({"task": "binar"}, ConfigError, ["training.task", "'binary'"]),
    ({"engines": "h2o,xgb"}, ConfigError, ["unknown training engine 'xgb'", "h2o"]),
    ({"budget_seconds": 5}, ConfigError, ["budget.max_runtime_secs", "10"]),
    ({"model_name": "Churn Model"}, ConfigError, ["name:", "pattern"]),
    ({"target": "churn"}, SchemaError, ["training.target 'churn' is not a column", "churned"]),
    ({"dataset": "files/nothing.parquet"}, DataError, ["nothing.parquet"]),
    ({"dataset": "data/x.csv"}, ConfigError, ["absolute file path", "gs://"]),
])
def test_a_bad_value_is_named(churn_folder, form, error, words) -> None:
    base = small_config(churn_folder).to_dict()
    with pytest.raises(error) as raised:
        resolve_config.python_func(config=base, **form)
    for word in words:
        assert word in str(raised.value)


def test_without_a_dataset_it_says_what_to_give() -> None:
    with pytest.raises(ConfigError, match="no dataset: give the run's dataset"):
        resolve_config.python_func(target="churned")


def test_a_datahub_urn_from_the_run_form_is_read_where_the_catalog_found_it(
        churn_folder, autokfp_home, monkeypatch) -> None:
    from autokfp.catalog.crawl import crawl_sources

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    crawl_sources(small_config(churn_folder))
    path = churn_folder / "customers.parquet"
    urn = f"urn:li:dataset:(urn:li:dataPlatform:file,{str(path).lstrip('/')},PROD)"
    config = resolve_config.python_func(dataset=urn, target="churned", engines="h2o")
    assert config["training"]["dataset"] == "run-form/customers.parquet"
    assert config["sources"][0]["path"] == str(churn_folder)
    with pytest.raises(ConfigError, match="is not in the catalog"):
        resolve_config.python_func(dataset=urn.replace("customers", "nobody"), target="churned")


def test_the_monitoring_form_sets_the_monitoring_settings_without_reading_data(
        churn_folder, tmp_path) -> None:
    base = small_config(churn_folder, monitoring={"window_days": 3, "drift_share": 0.5,
                                                  "labels": {"id_column": "customer_id"}})
    config = resolve_config.python_func(
        config=base.to_dict(), window_days=14.0, performance_drop=0.1,
        labels="gs://bucket/labels/", check_data=False)
    monitoring = config["monitoring"]
    assert monitoring["window_days"] == 14.0 and monitoring["performance_drop"] == 0.1
    assert monitoring["drift_share"] == 0.5  # -1 keeps the config's
    assert monitoring["labels"] == {**base.to_dict()["monitoring"]["labels"],
                                    "path": "gs://bucket/labels/", "id_column": "customer_id"}
    # without check_data a dataset that is not there yet is not read (monitoring reads it
    # only when it retrains)
    missing = resolve_config.python_func(dataset=str(tmp_path / "later.parquet"),
                                         target="churned", check_data=False)
    assert missing["training"]["dataset"] == "run-form/later.parquet"


@pytest.mark.parametrize(("form", "words"), [
    ({"drift_share": 1.5}, ["monitoring.drift_share", "1"]),
    ({"window_days": 0.0}, ["monitoring.window_days", "greater than 0"]),
    ({"performance_drop": 2.0}, ["monitoring.performance_drop"]),
])
def test_a_bad_monitoring_value_is_named(churn_folder, form, words) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_config.python_func(config=small_config(churn_folder).to_dict(),
                                   check_data=False, **form)
    for word in words:
        assert word in str(raised.value)


def test_a_literal_password_in_the_form_is_refused_in_a_pod(monkeypatch) -> None:
    """A run's parameters are stored and shown by Kubeflow and passed to every task; the
    moved password would exist in the first task's pod only."""
    form = {"dataset": "postgresql://reader:s3cret-pw@db.example/crm#customers",
            "target": "churned", "check_data": False}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # on a machine (or under kfp.local) the password moves to this process's environment
    config = resolve_config.python_func(**form)
    assert "s3cret-pw" not in str(config) and "${AUTOKFP_SQL_PASSWORD_" in str(config)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.delenv("AUTOKFP_RUNNER_PID", raising=False)
    # a namespace with its ConfigMap (without it the task stops on that first)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc.cluster.local:5000")
    monkeypatch.setenv("AUTOKFP_ARTIFACT_ROOT", "gs://autokfp-nowhere/autokfp")
    monkeypatch.delenv("AUTOKFP_MLFLOW_ARTIFACT_ROOT", raising=False)
    with pytest.raises(ConfigError) as raised:
        resolve_config.python_func(**form)
    message = str(raised.value)
    assert "literal password" in message and "${VAR}" in message and "run-form" in message
    assert "s3cret-pw" not in message
