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
