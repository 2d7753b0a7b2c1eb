"""A third engine added in one module (tests/engine/training/hist_gradient_boosting_engine.py)
is found, configured, trained, packaged and served without any other change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from autokfp.engine_registry import default_engines, engine_names
from autokfp.errors import ConfigError
from tests.conftest import small_config


def test_the_plugin_is_found_through_its_entry_point(engine_plugin, tmp_path) -> None:
    assert engine_plugin.title == "scikit-learn HistGradientBoosting"
    assert "hgb" in engine_names()
    assert "hgb" not in default_engines()  # a plugin trains only when the config names it
    config = small_config(tmp_path, engines={"hgb": {"max_iter": 50}, "h2o": {}})
    assert config.engine_names() == ["hgb", "h2o"]
    assert config.engines["hgb"].max_iter == 50
    assert config.to_dict()["engines"]["hgb"]["learning_rate"] == 0.05
    with pytest.raises(ConfigError, match="hgb.max_iters: unknown setting"):
        small_config(tmp_path, engines={"hgb": {"max_iters": 50}})


def test_without_the_plugin_installed_the_config_names_what_is_missing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown training engine 'hgb'"):
        small_config(tmp_path, engines=["hgb"])


def test_the_plugin_trains_and_packages_like_a_shipped_engine(engine_plugin, tmp_path,
                                                             churn_frame) -> None:
    from autokfp.catalog.profiling import profile_frame
    from autokfp.modeling.model_package import load_model_package
    from autokfp.steps import engineer_features, train_model

    folder = tmp_path / "data"
    folder.mkdir()
    frame = churn_frame.head(1500)
    frame.to_parquet(folder / "customers.parquet", index=False)
    config = small_config(folder, engines=["hgb"])
    schema = profile_frame(frame, "files/customers.parquet", "file", str(folder))
    (tmp_path / "schema.json").write_text(schema.to_json())
    paths = {name: tmp_path / name for name in ("train.parquet", "test.parquet", "plan.json")}
    engineer_features.engineer_features(config, folder / "customers.parquet",
                                        tmp_path / "schema.json", paths["train.parquet"],
                                        paths["test.parquet"], paths["plan.json"])
    # in a child process, as the pipeline's train_model task runs it
    summary = train_model.train_model(config, str(paths["train.parquet"]), str(paths["plan.json"]),
                                      str(tmp_path / "model"), str(tmp_path / "board.html"),
                                      engine="hgb", isolate=True)
    assert summary["status"] == "trained" and summary["engine"] == "hgb", summary
    meta = json.loads(Path(tmp_path / "model" / "artifacts" / "meta.json").read_text())
    assert meta["engine"] == "hgb" and meta["calibration"]["source"]
    model = load_model_package(str(tmp_path / "model"))
    test = pd.read_parquet(paths["test.parquet"])
    predictions = model.predict(test.drop(columns=["churned"]))
    auc = roc_auc_score(test["churned"].astype(str) == "1", predictions["probability_1"])
    assert auc > 0.75, auc  # the data's oracle is ~0.86; a broken model scores ~0.5
    # the serving fast path (rows as dicts) goes through the interface's default predict_rows
    rows = test.drop(columns=["churned"]).head(5)
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    fast = model.unwrap_python_model().predict_records(records)
    np.testing.assert_allclose(fast["probability_1"], predictions["probability_1"].head(5),
                               atol=1e-9)
