"""Both engines honour the one small interface that selection, registry and serving rely on."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.engine_registry import BUILTIN_ENGINES
from autokfp.errors import ConfigError, TrainingError
from autokfp.modeling.features import FeaturePlan, apply_features
from autokfp.training import Engine, EngineSettings, engine_names, engine_spec, get_engine

ENGINES = engine_names()


def test_the_shipped_engines_register_themselves_and_unknown_names_are_refused() -> None:
    assert len(ENGINES) >= len(BUILTIN_ENGINES)
    for name in ENGINES:
        spec = engine_spec(name)
        assert spec.name == name and issubclass(spec.settings, EngineSettings)
        assert spec.engine.__module__ in BUILTIN_ENGINES or spec.default is False
    with pytest.raises(ConfigError, match="available"):
        get_engine("sagemaker")


def test_the_interface_module_imports_no_engine() -> None:
    import subprocess
    import sys

    code = ("import sys, autokfp.training.base; "
            f"print(sorted(m for m in {list(BUILTIN_ENGINES)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registering_the_engines_imports_no_scoring_library() -> None:
    """Every process that parses a config loads the engine registry, which imports the
    engine modules: the local run's first tasks, before the warm worker is ready, spent
    25-36 s under load importing scikit-learn and SciPy through them (session 14)."""
    import subprocess
    import sys

    code = ("import sys; from autokfp.engine_registry import engine_specs; engine_specs(); "
            f"print(sorted(m for m in {list(BUILTIN_ENGINES)!r} if m in sys.modules), "
            "sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{sorted(BUILTIN_ENGINES)} []"


@pytest.mark.parametrize("name", ENGINES)
def test_engine_signatures_match_the_protocol(name: str) -> None:
    engine = get_engine(name)
    assert engine.name == name
    assert isinstance(engine.settings, engine_spec(name).settings)
    for method in ("train", "load_scorer"):
        wanted = list(inspect.signature(getattr(Engine, method)).parameters)
        got = list(inspect.signature(getattr(type(engine), method)).parameters)
        assert got == wanted, f"{name}.{method} takes {got}, the interface {wanted}"


def _package(fixture) -> tuple[Path, dict, FeaturePlan, pd.DataFrame]:
    model = Path(fixture.paths.model)
    meta = json.loads((model / "artifacts" / "meta.json").read_text())
    plan = FeaturePlan.from_json((model / "artifacts" / "plan.json").read_text())
    test = pd.read_parquet(fixture.paths.test)
    return model, meta, plan, test


@pytest.mark.parametrize("fixture_name", ["trained_package", "keras_package"])
def test_scorers_return_class_probabilities_in_class_order(fixture_name, request) -> None:
    model, meta, plan, test = _package(request.getfixturevalue(fixture_name))
    engine = get_engine(meta["engine"])
    scorer = engine.load_scorer(model / "artifacts" / "engine", meta["task"], meta["class_labels"])
    features = apply_features(test, plan)
    scores = scorer.predict(features)
    assert scores.shape == (len(test), len(meta["class_labels"]))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    assert ((scores >= 0) & (scores <= 1)).all()
    # the same rows as dicts (the serving fast path) give the same answer
    rows = features.head(10).astype(object).where(features.head(10).notna(), None)
    np.testing.assert_allclose(scorer.predict_rows(rows.to_dict("records")), scores[:10],
                               atol=1e-6)
    # and the column order of the feature frame does not matter
    np.testing.assert_allclose(scorer.predict(features[features.columns[::-1]]), scores,
                               atol=1e-9)


@pytest.mark.parametrize("fixture_name", ["trained_package", "keras_package"])
def test_meta_carries_cv_estimate_and_spread(fixture_name, request) -> None:
    _model, meta, _plan, _test = _package(request.getfixturevalue(fixture_name))
    metric = meta["primary_metric"]
    assert 0.5 < meta["cv_metrics"][f"cv_{metric}"] <= 1.0
    assert meta["cv_metrics"][f"cv_{metric}_sd"] >= 0.0
    assert meta["params"]["cv_method"]
    assert meta["train_seconds"] > 0


@pytest.mark.parametrize("name", ENGINES)
def test_a_folder_without_the_engine_files_is_refused(name: str, tmp_path) -> None:
    with pytest.raises(TrainingError, match="missing"):
        get_engine(name).load_scorer(tmp_path, "binary", ["0", "1"])


def test_h2o_search_gets_the_whole_budget(trained_package) -> None:
    """The budget is search time: the JVM start, upload and export come on top of it."""
    meta = _package(trained_package)[1]
    budget = trained_package.config.budget
    assert meta["params"]["automl_secs"] == budget.max_runtime_secs


def test_the_time_budget_not_a_model_cap_ends_the_h2o_search_by_default() -> None:
    from autokfp.training.h2o_automl import H2OSettings

    assert H2OSettings().max_models is None
