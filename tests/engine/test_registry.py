"""The MLflow registry on SQLite: versions, role aliases, idempotent registration."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.errors import RegistryError
from autokfp.modeling import registry
from autokfp.modeling.model_package import load_model_package

NAME = "churn-test"
METRICS = {"test_auc": 0.81, "test_logloss": 0.45, "cv_auc": float("nan")}
PARAMS = {"engine": "h2o", "engines.h2o.include_algos": ["GLM", "GBM"]}
TAGS = {"engine": "h2o", "task": "binary", "dataset": "files/customers.parquet",
        "primary_metric": "auc"}


def _variant(model: Path, folder: Path, label: str) -> Path:
    """A copy of the model package with one harmless extra file, so its hash differs."""
    copy = folder / f"model-{label}"
    shutil.copytree(model, copy)
    (copy / "extra.txt").write_text(f"variant {label}\n")
    return copy


def _register(model_dir: Path, promote: bool, compared: str | None, decision: str = "test",
              metrics: dict | None = None) -> registry.RegisteredVersion:
    return registry.register_model(model_dir, NAME, metrics or METRICS, PARAMS, TAGS,
                                   promote=promote, decision=decision, compared_champion=compared)


def _alias(alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    client = registry.configure()
    try:
        return str(client.get_model_version_by_alias(NAME, alias).version)
    except MlflowException:
        return None


def _version_count() -> int:
    client = registry.configure()
    return len(client.search_model_versions(f"name = '{NAME}'"))


@pytest.fixture
def model_dir(trained_package) -> Path:
    return Path(trained_package.paths.model)


def test_first_registration_becomes_champion_and_loads_by_alias(autokfp_home, model_dir,
                                                                trained_package) -> None:
    first = _register(model_dir, promote=True, compared=None, decision="first model")
    assert first.version == "1"
    assert first.aliases == ["champion"]
    assert first.promoted is True
    assert first.reused is False
    assert first.replaced_version is None
    assert first.decision == "first model"
    assert _alias("champion") == "1"
    # the run and artifacts live under the configured home, not ./mlruns
    assert str(autokfp_home.home) in autokfp_home.tracking_uri
    assert any(Path(autokfp_home.mlflow_artifact_root).rglob("MLmodel"))
    assert first.source.startswith(autokfp_home.mlflow_artifact_root)

    champion = load_model_package(registry.model_uri(NAME))
    rows = pd.read_parquet(trained_package.paths.test).drop(columns=["churned"]).head(25)
    local = load_model_package(str(model_dir))
    np.testing.assert_allclose(champion.predict(rows)["probability_1"].to_numpy(),
                               local.predict(rows)["probability_1"].to_numpy(), atol=1e-9)


def test_challenger_promotion_previous_and_stale_decisions(autokfp_home, model_dir,
                                                           tmp_path) -> None:
    assert _register(model_dir, promote=True, compared=None).version == "1"

    # a different package that did not win: challenger, champion untouched
    second = _register(_variant(model_dir, tmp_path, "b"), promote=False, compared="1",
                       decision="champion kept: no better")
    assert second.version == "2"
    assert second.aliases == ["challenger"]
    assert second.promoted is False
    assert _alias("champion") == "1"
    assert _alias("challenger") == "2"
    assert _alias("previous") is None

    # a winner compared against the current champion: champion moves, old one is "previous"
    third = _register(_variant(model_dir, tmp_path, "c"), promote=True, compared="1",
                      decision="challenger wins")
    assert third.version == "3"
    assert third.promoted is True
    assert third.aliases == ["champion"]
    assert third.replaced_version == "1"
    assert _alias("champion") == "3"
    assert _alias("previous") == "1"

    # a winner whose comparison was made against v1, but v3 is champion now: not promoted
    stale = _register(_variant(model_dir, tmp_path, "d"), promote=True, compared="1",
                      decision="challenger wins")
    assert stale.version == "4"
    assert stale.promoted is False
    assert stale.aliases == ["challenger"]
    assert "not promoted" in stale.decision
    assert "from v1 to v3" in stale.decision
    assert "rerun" in stale.decision
    assert _alias("champion") == "3"
    assert _alias("previous") == "1"
    # the recorded decision is the one that was applied
    client = registry.configure()
    assert "not promoted" in client.get_model_version(NAME, "4").tags["decision"]


def test_identical_package_is_registered_once(autokfp_home, model_dir) -> None:
    first = _register(model_dir, promote=True, compared=None)
    again = _register(model_dir, promote=True, compared="1")
    assert again.reused is True
    assert again.version == first.version == "1"
    assert again.run_id == first.run_id
    assert "champion" in again.aliases
    assert again.promoted is True
    assert _version_count() == 1
    assert registry.package_hash(model_dir) == registry.package_hash(model_dir)


def test_package_hash_changes_with_any_file(model_dir, tmp_path) -> None:
    copy = _variant(model_dir, tmp_path, "x")
    assert registry.package_hash(copy) != registry.package_hash(model_dir)
    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain)
    assert registry.package_hash(plain) == registry.package_hash(model_dir)


def test_list_models_shows_versions_aliases_and_metrics(autokfp_home, model_dir,
                                                        tmp_path) -> None:
    _register(model_dir, promote=True, compared=None, decision="first")
    _register(_variant(model_dir, tmp_path, "b"), promote=False, compared="1", decision="kept",
              metrics={"test_auc": 0.79, "test_logloss": 0.47})
    models = registry.list_models()
    assert [m["name"] for m in models] == [NAME]
    (model,) = models
    assert {k: str(v) for k, v in model["aliases"].items()} == {"champion": "1", "challenger": "2"}
    versions = {v["version"]: v for v in model["versions"]}
    assert [v["version"] for v in model["versions"]] == ["2", "1"]  # newest first
    assert versions["1"]["aliases"] == ["champion"]
    assert versions["2"]["aliases"] == ["challenger"]
    assert versions["1"]["metrics"]["test_auc"] == pytest.approx(0.81)
    assert versions["2"]["metrics"]["test_auc"] == pytest.approx(0.79)
    assert "cv_auc" not in versions["1"]["metrics"]  # NaN is not recorded as a metric
    assert versions["1"]["engine"] == "h2o"
    assert versions["1"]["dataset"] == "files/customers.parquet"
    assert versions["1"]["decision"] == "first"
    assert versions["2"]["decision"] == "kept"
    assert versions["1"]["primary_metric"] == "auc"


def test_registering_a_folder_without_mlmodel_is_refused(autokfp_home, tmp_path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "model.zip").write_bytes(b"x")
    with pytest.raises(RegistryError, match="not an MLflow model folder") as info:
        _register(folder, promote=True, compared=None)
    assert str(folder) in str(info.value)
    assert registry.list_models() == []
