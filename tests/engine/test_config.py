"""The run configuration: validation at the edge, errors that name the field and the fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from autokfp.config import (
    FolderSource,
    RunConfig,
    SqlSource,
    expand_env,
    load_config,
    parse_config,
)
from autokfp.errors import ConfigError


def _valid() -> dict[str, Any]:
    return {
        "name": "churn",
        "sources": [
            {"name": "files", "kind": "folder", "path": "/data/files", "include": ["*.parquet"]},
            {"name": "warehouse", "kind": "sql", "url": "sqlite:////data/warehouse.db",
             "schema": "main"},
            {"name": "lake", "kind": "gcs", "uri": "gs://bucket/prefix/"},
        ],
        "training": {"dataset": "warehouse/customers", "target": "churned",
                     "id_column": "customer_id", "task": "binary", "positive_class": "1"},
        "split": {"test_fraction": 0.25, "seed": 3},
        "budget": {"max_runtime_secs": 60},
        "engines": {"h2o": {"max_models": 5, "include_algos": ["GBM", "GLM"]},
                    "autokeras": {"max_trials": 3}},
        "features": {"drop_pii": False, "drop_columns": ["notes"]},
        "selection": {"primary_metric": "logloss", "confidence": 0.95},
        "deploy": {"canary_traffic_percent": 25, "min_replicas": 2, "max_replicas": 4},
    }


def _error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def _with(path: str, value: Any, delete: bool = False) -> dict[str, Any]:
    """The valid config with one dotted setting replaced (or deleted)."""
    data = _valid()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if delete:
        del node[last]
    else:
        node[last] = value
    return data


# ------------------------------------------------------------------------------ valid


def test_valid_config_round_trips_through_to_dict() -> None:
    config = parse_config(_valid())
    assert isinstance(config, RunConfig)
    as_dict = config.to_dict()
    again = parse_config(copy.deepcopy(as_dict))
    assert again == config
    assert again.to_dict() == as_dict
    # the SQL schema keeps its public (aliased) key, and the gs:// uri is normalised
    warehouse = next(s for s in as_dict["sources"] if s["name"] == "warehouse")
    assert warehouse["schema"] == "main"
    assert config.source("lake").uri == "gs://bucket/prefix"
    assert config.model_name == "churn"
    assert as_dict["selection"]["confidence"] == 0.95


def test_defaults_fill_everything_but_name_sources_and_training() -> None:
    config = parse_config({"name": "m", "sources": [{"name": "f", "kind": "folder", "path": "/d"}],
                           "training": {"dataset": "f/a.csv", "target": "y"}})
    assert config.training.task == "auto"
    assert config.split.test_fraction == 0.2
    assert config.selection.primary_metric == "auto"
    assert config.features.drop_pii is True


def test_source_lookup_names_the_available_sources() -> None:
    config = parse_config(_valid())
    with pytest.raises(ConfigError, match="nope.*files.*warehouse.*lake"):
        config.source("nope")


# -------------------------------------------------------------------------------- bad


@pytest.mark.parametrize(
    ("path", "value", "field", "allowed"),
    [
        ("budget.max_runtim_secs", 5, "budget.max_runtim_secs", "max_runtime_secs"),
        ("trainin", {}, "trainin", "training"),
        ("training.targt", "y", "training.targt", "target"),
        ("sources.0.pth", "x", "sources.0.pth", "path"),
        ("sources.1.tabels", ["a"], "sources.1.tabels", "tables"),
    ],
)
def test_unknown_key_names_it_and_lists_the_allowed_keys(path: str, value: Any, field: str,
                                                       allowed: str) -> None:
    message = _error(_with(path, value))
    assert f"{field}: unknown setting" in message
    assert "allowed here:" in message
    listed = message.split("allowed here:", 1)[1]
    assert allowed in listed


def test_unknown_top_level_key_lists_every_section() -> None:
    message = _error(_with("trainin", {}))
    for section in ("name", "sources", "training", "split", "budget", "features", "quality",
                    "selection", "deploy"):
        assert section in message.split("allowed here:", 1)[1]


@pytest.mark.parametrize(
    ("path", "value", "field", "allowed"),
    [
        ("training.task", "classify", "training.task", "'binary'"),
        ("selection.primary_metric", "mse", "selection.primary_metric", "'rmse'"),
        ("engines.h2o.include_algos", ["GBM", "SVM"], "h2o.include_algos.1", "'XGBoost'"),
        ("sources.0.kind", "ftp", "sources.0.kind", "'folder', 'gcs', 's3', 'sql'"),
    ],
)
def test_bad_enum_names_field_and_choices(path: str, value: Any, field: str, allowed: str) -> None:
    message = _error(_with(path, value))
    assert field in message
    assert allowed in message


@pytest.mark.parametrize(
    ("path", "value", "field", "bound"),
    [
        ("split.test_fraction", 0.9, "split.test_fraction", "less than 0.5"),
        ("budget.max_runtime_secs", 1, "budget.max_runtime_secs", "greater than or equal to 10"),
        ("selection.confidence", 1.0, "selection.confidence", "less than 1"),
        ("deploy.canary_traffic_percent", 150, "deploy.canary_traffic_percent", "100"),
        ("features.leakage_threshold", 0.2, "features.leakage_threshold", "0.5"),
    ],
)
def test_out_of_range_number_names_field_and_bound(path: str, value: Any, field: str,
                                                   bound: str) -> None:
    message = _error(_with(path, value))
    assert field in message
    assert bound in message


@pytest.mark.parametrize("path", ["training.target", "training.dataset", "name", "sources.0.path"])
def test_missing_required_setting_is_named(path: str) -> None:
    message = _error(_with(path, None, delete=True))
    assert f"{path}: required setting is missing" in message


def test_dataset_naming_an_unknown_source_lists_the_sources() -> None:
    message = _error(_with("training.dataset", "ftp/customers"))
    assert "training.dataset 'ftp/customers'" in message
    assert "'ftp'" in message
    assert "files, warehouse, lake" in message


def test_dataset_without_a_source_part_shows_the_expected_shape() -> None:
    message = _error(_with("training.dataset", "customers"))
    assert "training.dataset" in message
    assert "<source name>/<table or file>" in message


def test_duplicate_source_names_are_rejected() -> None:
    data = _valid()
    data["sources"].append({"name": "files", "kind": "folder", "path": "/other"})
    message = _error(data)
    assert "unique" in message
    assert "repeated: files" in message


def test_every_bad_field_is_reported_at_once() -> None:
    data = _with("split.test_fraction", 0.9)
    data["engines"]["h2o"]["nfolds"] = 50
    data["name"] = "Bad Name!"
    message = _error(data)
    assert "3 invalid setting(s)" in message
    for field in ("split.test_fraction", "h2o.nfolds", "name"):
        assert field in message


def test_replica_bounds_are_checked_together() -> None:
    message = _error(_with("deploy", {"min_replicas": 3, "max_replicas": 1}))
    assert "deploy" in message
    assert "max_replicas must be >= min_replicas" in message


def test_non_mapping_is_rejected_with_its_type() -> None:
    message = _error(["name", "churn"])
    assert "expected a mapping" in message
    assert "list" in message


# ------------------------------------------------------------------------- load_config


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_comment_only_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("  \n# nothing\n\n")
    with pytest.raises(ConfigError, match="is empty") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_blank_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.yaml"
    path.write_text("   \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(path)


def test_load_config_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: churn\nsources: [unclosed\n  - x: {\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: churn\n- sources: []\n")
    with pytest.raises(ConfigError, match="expected a mapping") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("name: churn\nsources: [{name: f, kind: folder, path: d}]\n"
                    "training: {dataset: f/a.csv, target: y, tsk: binary}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "training.tsk: unknown setting" in str(info.value)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path, monkeypatch) -> None:
    conf_dir = tmp_path / "project" / "conf"
    conf_dir.mkdir(parents=True)
    path = conf_dir / "run.yaml"
    path.write_text(
        "name: churn\n"
        "sources:\n"
        "  - {name: files, kind: folder, path: ../data/files}\n"
        "  - {name: absolute, kind: folder, path: /srv/data}\n"
        "  - {name: warehouse, kind: sql, url: 'sqlite:///db/warehouse.db'}\n"
        "  - {name: fixed, kind: sql, url: 'sqlite:////var/db/w.db'}\n"
        "  - {name: memory, kind: sql, url: 'sqlite:///:memory:'}\n"
        "  - {name: pg, kind: sql, url: 'postgresql://u:${PGPASS}@h/db'}\n"
        "training: {dataset: warehouse/customers, target: churned}\n"
    )
    # the working directory must not matter
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    files = config.source("files")
    assert isinstance(files, FolderSource)
    assert Path(files.path) == (tmp_path / "project" / "data" / "files").resolve()
    assert config.source("absolute").path == "/srv/data"
    warehouse = config.source("warehouse")
    assert isinstance(warehouse, SqlSource)
    assert warehouse.url == "sqlite:///" + str((conf_dir / "db" / "warehouse.db").resolve())
    assert config.source("fixed").url == "sqlite:////var/db/w.db"
    assert config.source("memory").url == "sqlite:///:memory:"
    # secrets stay unexpanded references until the moment of use
    assert config.source("pg").url == "postgresql://u:${PGPASS}@h/db"


def test_example_config_loads() -> None:
    import autokfp.examples

    example = Path(autokfp.examples.__file__).parent / "churn.yaml"
    config = load_config(example)
    assert config.training.target == "churned"


# --------------------------------------------------------------------------- expand_env


def test_expand_env_with_set_variable(monkeypatch) -> None:
    monkeypatch.setenv("AUTOKFP_TEST_PASSWORD", "s3cret")
    monkeypatch.setenv("AUTOKFP_TEST_HOST", "db.internal")
    url = "postgresql://app:${AUTOKFP_TEST_PASSWORD}@${AUTOKFP_TEST_HOST}/churn"
    assert expand_env(url) == "postgresql://app:s3cret@db.internal/churn"
    assert expand_env("sqlite:///plain.db") == "sqlite:///plain.db"


def test_expand_env_with_unset_variable_names_it(monkeypatch) -> None:
    monkeypatch.delenv("AUTOKFP_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="AUTOKFP_TEST_UNSET.*not set"):
        expand_env("postgresql://app:${AUTOKFP_TEST_UNSET}@h/db")


def test_the_demo_config_survives_kfp_parameter_conversion_and_round_trips() -> None:
    """Pipelines receive ``to_dict()`` as a KFP parameter, which cannot hold a null: an open
    range bound is written as a {min, max} mapping without the open side."""
    import yaml
    from kfp.compiler.pipeline_spec_builder import to_protobuf_value

    from autokfp.examples.demo import example_config_text

    config = parse_config(yaml.safe_load(example_config_text()))
    assert (0.0, None) in config.quality.ranges.values()  # the demo has an open-ended range
    data = config.to_dict()
    to_protobuf_value(data)  # raises on None anywhere
    assert data["quality"]["ranges"]["monthly_charges"] == {"min": 0.0}
    assert parse_config(data) == config
    assert parse_config(json.loads(json.dumps(data))) == config


def test_a_range_mapping_with_an_unknown_key_is_named() -> None:
    data = {**_valid(), "quality": {"ranges": {"age": {"min": 18, "maximum": 110}}}}
    with pytest.raises(ConfigError, match=r"quality.ranges.*age.*maximum.*min and/or max"):
        parse_config(data)
    assert parse_config({**_valid(), "quality": {"ranges": {"age": {"max": 110}}}}
                        ).quality.ranges == {"age": (None, 110.0)}


# ----------------------------------------------------------------------------- engines


def test_each_engine_validates_its_own_settings() -> None:
    config = parse_config(_valid())
    assert config.engine_names() == ["h2o", "autokeras"]
    assert config.engines["h2o"].max_models == 5
    assert config.engines["autokeras"].max_trials == 3
    assert config.engines["autokeras"].epochs == 100  # the engine's own default
    message = _error(_with("engines.h2o.nfols", 3))
    assert "h2o.nfols: unknown setting" in message and "nfolds" in message.split("allowed here:")[1]
    message = _error(_with("engines.autokeras.epochs", 0))
    assert "autokeras.epochs" in message and "greater than or equal to 1" in message
    # blending fits each model once: a set nfolds would be silently unused, so it is refused
    blending = _with("engines.h2o.validation", "blending")
    blending["engines"]["h2o"]["nfolds"] = 4
    message = _error(blending)
    assert "h2o" in message and "nfolds: 4" in message and "validation: blending" in message
    assert "remove nfolds" in message
    blending["engines"]["h2o"]["validation"] = "cross_validation"
    assert parse_config(blending).engines["h2o"].nfolds == 4


def test_an_unknown_engine_names_the_registered_ones() -> None:
    message = _error(_with("engines", {"sagemaker": {}}))
    assert "unknown training engine 'sagemaker'" in message
    assert "h2o" in message and "autokeras" in message


def test_a_list_of_engine_names_takes_each_engines_defaults() -> None:
    config = parse_config(_with("engines", ["autokeras"]))
    assert config.engine_names() == ["autokeras"]
    assert config.engines["autokeras"].max_trials == 10
    assert "repeat" in _error(_with("engines", ["h2o", "h2o"]))
    # no engines named: the shipped defaults
    data = _valid()
    del data["engines"]
    assert parse_config(data).engine_names() == ["h2o", "autokeras"]


def test_the_old_layout_with_engine_knobs_in_budget_still_runs(caplog) -> None:
    data = _valid()
    del data["engines"]
    data["engines"] = ["h2o", "autokeras"]
    data["budget"] = {"max_runtime_secs": 60, "max_models": 5, "nfolds": 4,
                      "max_mem_size": "2G", "h2o_max_restarts": 0, "include_algos": ["GBM"],
                      "autokeras_max_trials": 3, "autokeras_epochs": 7, "autokeras_patience": 2,
                      "autokeras_validation_fraction": 0.3}
    with caplog.at_level("WARNING", logger="autokfp.config"):
        config = parse_config(copy.deepcopy(data))
    h2o, keras = config.engines["h2o"], config.engines["autokeras"]
    assert (h2o.max_models, h2o.nfolds, h2o.max_mem_size, h2o.max_restarts,
            h2o.include_algos) == (5, 4, "2G", 0, ["GBM"])
    assert (keras.max_trials, keras.epochs, keras.patience,
            keras.validation_fraction) == (3, 7, 2, 0.3)
    assert config.budget.max_runtime_secs == 60
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "budget.h2o_max_restarts is deprecated: write it as engines.h2o.max_restarts" in warned
    assert "budget.autokeras_epochs is deprecated: write it as engines.autokeras.epochs" in warned
    # the new layout it maps to parses to the same config, without warnings
    caplog.clear()
    with caplog.at_level("WARNING", logger="autokfp.config"):
        assert parse_config(config.to_dict()) == config
    assert not caplog.records
    # a knob of an engine that is not configured is dropped (with a warning), not an error
    data["engines"] = ["autokeras"]
    assert parse_config(copy.deepcopy(data)).engine_names() == ["autokeras"]


def test_an_old_and_a_new_name_of_one_setting_is_refused() -> None:
    data = _valid()
    data["budget"]["nfolds"] = 4
    data["engines"]["h2o"]["nfolds"] = 5
    message = _error(data)
    assert "budget.nfolds and engines.h2o.nfolds are the same setting" in message


def test_the_demo_config_parses_without_deprecations(caplog) -> None:
    from autokfp.config import load_config

    with caplog.at_level("WARNING", logger="autokfp.config"):
        config = load_config(Path(__file__).parents[2] / "autokfp" / "examples" / "churn.yaml")
    assert not caplog.records
    assert config.engine_names() == ["h2o", "autokeras"]


@pytest.mark.parametrize(("dataset", "source", "suggested"), [
    ("/data/churn/customers.parquet", {"name": "data", "kind": "folder", "path": "/data/churn"},
     "data/customers.parquet"),
    ("gs://lake-bucket/churn/customers.parquet",  # named apart from the config's own 'lake'
     {"name": "lake2", "kind": "gcs", "uri": "gs://lake-bucket"}, "lake2/churn/customers.parquet"),
    ("file:///data/churn/customers.parquet",  # a file URI is a local path, not a SQL url
     {"name": "data", "kind": "folder", "path": "/data/churn"}, "data/customers.parquet"),
])
def test_a_path_as_training_dataset_is_answered_with_the_source_that_names_it(
        dataset, source, suggested) -> None:
    """A new user writes the file's path (what the run form takes) as training.dataset: the
    error says the config's form and gives a source and dataset that work as written."""
    data = _valid()
    data["training"]["dataset"] = dataset
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    message = str(raised.value)
    assert f"training.dataset '{dataset}' is a path or URI" in message, message
    assert "names source ''" not in message
    assert f"training.dataset: {suggested}" in message, message
    fixed = {**data, "sources": [*data["sources"], source],
             "training": {**data["training"], "dataset": suggested}}
    assert parse_config(fixed).training.dataset == suggested  # the suggestion is a valid config


def test_an_unknown_source_in_training_dataset_lists_the_sources() -> None:
    data = _valid()
    data["training"]["dataset"] = "pond/customers.parquet"
    with pytest.raises(ConfigError, match=r"names source 'pond', which is not in sources; it is "
                                          r"<source>/<table or file path>.*\(files, warehouse, "
                                          r"lake\)"):
        parse_config(data)
