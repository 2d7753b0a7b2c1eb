"""Fixtures of the engine tests: one small, real AutoKeras model per session."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

# A tiny search: 2 trials of a few epochs on ~480 rows, cut by the 25 s deadline if slower.
KERAS_BUDGET = {"max_runtime_secs": 120}
KERAS_ENGINES = {"h2o": {"max_models": 2, "nfolds": 3, "max_mem_size": "2G", "include_algos": ["GLM"]},
                 # out_of_fold_max_share: the k-fold refits run however busy the machine
                 # (they cost ~4 refits; under load 13 the estimate was 159 s of the 120)
                 "autokeras": {"max_trials": 2, "epochs": 6, "patience": 3,
                               "out_of_fold_max_share": 5.0}}


@pytest.fixture(scope="session")
def keras_package(tmp_path_factory, churn_frame):
    """Engineer features on 600 churn rows and train one AutoKeras model, once per test run
    (``built_once``).

    Returns a namespace with config, paths (train/test/plan/model) and the train summary.
    """
    from tests.conftest import built_once

    return built_once(tmp_path_factory, "keras", lambda root: _train_keras(root, churn_frame))


def _train_keras(root, churn_frame):
    from autokfp.catalog.profiling import profile_frame
    from autokfp.steps import engineer_features as engineer_features_step
    from autokfp.steps import train_model as train_step
    from tests.conftest import small_config

    folder = root / "data"
    folder.mkdir()
    frame = churn_frame.head(600)
    frame.to_parquet(folder / "customers.parquet", index=False)
    config = small_config(folder, budget=dict(KERAS_BUDGET), engines=KERAS_ENGINES)
    schema = profile_frame(frame, "files/customers.parquet", "file", str(folder))
    paths = SimpleNamespace(dataset=root / "dataset.parquet", schema=root / "schema.json",
                            train=root / "train.parquet", test=root / "test.parquet",
                            plan=root / "plan.json", model=root / "model",
                            leaderboard=root / "leaderboard.html")
    frame.to_parquet(paths.dataset, index=False)
    paths.schema.write_text(schema.to_json())
    engineer_features_step.engineer_features(config, paths.dataset, paths.schema, paths.train, paths.test, paths.plan)
    trained = train_step.train_model(config, str(paths.train), str(paths.plan), str(paths.model),
                                 str(paths.leaderboard), engine="autokeras")
    return SimpleNamespace(config=config, paths=paths, trained=trained, folder=folder)
