"""A cross-validated stacked ensemble's refit is judged by its own out-of-fold predictions
(issue 17, session 23).

The refit step fitted the recipe twice: on the training rows (scored on the test rows against
the gated model: the held-out check) and on every labelled row (served). An H2O ensemble
AutoML built cross-validates its members and its metalearner (``metalearner_nfolds``), so the
all-rows fit scores every row out of fold anyway: the step compares those predictions of the
training rows with the gated model's own (``holdout.npz``) and fits once.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from autokfp.modeling.estimate import REFIT_OOF_FILE, read_holdout, save_holdout
from autokfp.modeling.feature_file import TARGET_COLUMN
from autokfp.training.h2o_automl import (
    MOJO_FILE,
    RECIPE_FILE,
    H2OAutoMLEngine,
    _holdout_predictions,
    _write_recipe,
)
from tests.conftest import small_config
from tests.engine.training.test_h2o_refit_weighted import X, _friedman

GATE_ROWS, TEST_ROWS = 600, 300


@contextmanager
def _on(h2o):
    """The test's own cluster in place of a refit's new one (``_new_cluster``)."""
    yield SimpleNamespace(load=lambda frame, types: h2o.H2OFrame(frame, column_types=types),
                          run_job=lambda model, job: job())


@pytest.fixture(scope="module")
def gated(_h2o_jvm: str, _h2o_clean_slate: None, tmp_path_factory) -> Path:
    """A gated package's engine folder as AutoML leaves a cross-validated ensemble: members
    and metalearner 3-fold cross-validated, the recipe, the MOJO and the ensemble's
    out-of-fold predictions of its rows (``holdout.npz``)."""
    from h2o.estimators import (
        H2OGeneralizedLinearEstimator,
        H2OGradientBoostingEstimator,
        H2OStackedEnsembleEstimator,
    )

    from tests.engine.training.conftest import _connect

    h2o = _connect(_h2o_jvm)
    rows = _friedman(GATE_ROWS, 1)
    frame = h2o.H2OFrame(rows)
    cv = {"nfolds": 3, "fold_assignment": "Modulo", "keep_cross_validation_predictions": True,
          "seed": 1}
    members = [H2OGradientBoostingEstimator(ntrees=30, max_depth=4, **cv),
               H2OGradientBoostingEstimator(ntrees=20, max_depth=3, learn_rate=0.2, **cv),
               H2OGeneralizedLinearEstimator(**cv)]
    for member in members:
        member.train(x=X, y=TARGET_COLUMN, training_frame=frame)
    ensemble = H2OStackedEnsembleEstimator(
        base_models=[m.model_id for m in members], metalearner_algorithm="AUTO",
        metalearner_nfolds=3, keep_levelone_frame=True, seed=1,
        metalearner_params={"keep_cross_validation_predictions": True})
    ensemble.train(x=X, y=TARGET_COLUMN, training_frame=frame)
    package = tmp_path_factory.mktemp("gated")
    engine = package / "artifacts" / "engine"
    engine.mkdir(parents=True)
    Path(ensemble.download_mojo(path=str(engine), get_genmodel_jar=False)).replace(
        engine / MOJO_FILE)
    _write_recipe(ensemble, engine)
    # AutoML keeps its metalearner's out-of-fold predictions without a setting in the recipe
    # (its actual metalearner_params are ""): so the recipe reads here
    recipe = json.loads((engine / RECIPE_FILE).read_text())
    recipe["params"]["metalearner_params"] = ""
    (engine / RECIPE_FILE).write_text(json.dumps(recipe))
    oof = _holdout_predictions(ensemble, "regression", None)
    assert oof is not None and len(oof) == GATE_ROWS
    save_holdout(engine, np.arange(GATE_ROWS), oof["predict"].to_numpy(),
                 rows[TARGET_COLUMN].to_numpy())
    return package


def _refit(h2o, gated: Path, out: Path, recipe: dict | None = None) -> Path:
    """The package refitted on the gated rows and the test rows (``engine.refit``), its
    engine folder at ``out/artifacts/engine``; ``recipe`` in place of the gated one."""
    engine_dir = gated / "artifacts" / "engine"
    if recipe is not None:
        source = out / "recipe-source"
        shutil.copytree(engine_dir, source)
        (source / RECIPE_FILE).write_text(json.dumps(recipe))
        engine_dir = source
    engine = H2OAutoMLEngine()
    engine._new_cluster = lambda budget: _on(h2o)  # type: ignore[method-assign]
    rows = pd.concat([_friedman(GATE_ROWS, 1), _friedman(TEST_ROWS, 2)], ignore_index=True)
    engine.refit(engine_dir, rows[X], rows[TARGET_COLUMN], "regression", None, [],
                 SimpleNamespace(max_runtime_secs=60, nthreads=1), "rmse",
                 out / "artifacts" / "engine")
    return out


def _check(package: Path, refit: Path) -> dict:
    from autokfp.steps.refit_model import _out_of_fold_check

    meta = {"task": "regression", "primary_metric": "rmse", "target": TARGET_COLUMN}
    return _out_of_fold_check(small_config(package), str(package), str(refit), meta,
                              GATE_ROWS + TEST_ROWS)


def test_the_refit_keeps_its_out_of_fold_predictions_and_a_sound_recipe_passes(
        h2o_cluster, gated: Path, tmp_path: Path) -> None:
    from autokfp.engine_registry import get_engine
    from autokfp.steps.refit_model import _judged_out_of_fold

    assert H2OAutoMLEngine().refit_out_of_fold(gated / "artifacts" / "engine")
    meta = {"task": "regression", "primary_metric": "rmse"}
    trainer = get_engine("h2o", None)
    assert _judged_out_of_fold(trainer, str(gated), meta, GATE_ROWS)
    refit = _refit(h2o_cluster, gated, tmp_path / "refit")
    stored = read_holdout(refit, REFIT_OOF_FILE)
    assert stored is not None
    assert np.array_equal(stored.positions, np.arange(GATE_ROWS + TEST_ROWS))
    assert np.isfinite(stored.scores).all()
    check = _check(gated, refit)
    # the same recipe with 300 more rows: out of fold it is no worse than the gated model
    assert check["passed"], check["detail"]
    assert check["rows"] == GATE_ROWS and check["basis"] == "out_of_fold"
    # the figures are the out-of-fold RMSEs of each on the training rows
    truth = _friedman(GATE_ROWS, 1)[TARGET_COLUMN].to_numpy()
    own = float(np.sqrt(np.mean((stored.scores[:GATE_ROWS] - truth) ** 2)))
    assert check["refit"]["rmse"] == pytest.approx(own)
    assert "out of fold on the 600 training rows" in check["detail"]


def test_a_recipe_that_refits_badly_is_rejected_by_its_out_of_fold_predictions(
        h2o_cluster, gated: Path, tmp_path: Path) -> None:
    recipe = json.loads((gated / "artifacts" / "engine" / RECIPE_FILE).read_text())
    # members corrupted to memorise their rows (as test_refit_for_serving's overfit recipe:
    # deep trees, single-row leaves, learning rate 1): on their own rows they are near
    # perfect; out of fold they are far worse
    for base in recipe["base_models"]:
        if base["algo"] == "gbm":
            base["params"].update(max_depth=20, min_rows=1, learn_rate=1.0, ntrees=10)
    refit = _refit(h2o_cluster, gated, tmp_path / "refit", recipe)
    check = _check(gated, refit)
    assert not check["passed"], check["detail"]
    assert "rejected" in check["rule"]["detail"]
    # by a wide margin (measured: 0.198 of the gated model's RMSE, se 0.029): beyond the
    # largest margin the rule allows and many standard errors
    rule = check["rule"]
    assert rule["shortfall"] > rule["tolerance"] and rule["shortfall"] > 4 * rule["se"], rule
    assert check["refit"]["rmse"] > check["gate"]["rmse"]


def test_the_held_out_fit_stays_where_the_out_of_fold_check_cannot_judge(
        gated: Path, tmp_path: Path) -> None:
    from autokfp.engine_registry import get_engine
    from autokfp.steps.refit_model import _judged_out_of_fold

    trainer = get_engine("h2o", None)
    regression = {"task": "regression", "primary_metric": "rmse"}
    # a binary classifier with sensitive columns: the fairness check needs the held-out fit
    fair = {"task": "binary", "fairness": {"sensitive_columns": ["x0"]}}
    assert not _judged_out_of_fold(trainer, str(gated), fair, GATE_ROWS)
    # a gated package without out-of-fold predictions of its training rows, or with
    # validation rows (blending) instead
    package = tmp_path / "package"
    shutil.copytree(gated, package)
    holdout = package / "artifacts" / "engine" / "holdout.npz"
    stored = read_holdout(gated)
    save_holdout(holdout.parent, stored.positions, stored.scores, stored.truth,
                 kind="validation")
    assert not _judged_out_of_fold(trainer, str(package), regression, GATE_ROWS)
    holdout.unlink()
    assert not _judged_out_of_fold(trainer, str(package), regression, GATE_ROWS)
    # a model that is not a cross-validated ensemble (a GBM leader is refitted without folds)
    recipe = package / "artifacts" / "engine" / RECIPE_FILE
    recipe.write_text(json.dumps({"algo": "gbm", "model_id": "g", "params": {"ntrees": 5}}))
    assert not H2OAutoMLEngine().refit_out_of_fold(recipe.parent)
    ensemble = {"algo": "stackedensemble", "model_id": "se", "base_models": [{"algo": "gbm"}],
                "params": {"metalearner_nfolds": 0}}
    recipe.write_text(json.dumps(ensemble))
    assert not H2OAutoMLEngine().refit_out_of_fold(recipe.parent)
