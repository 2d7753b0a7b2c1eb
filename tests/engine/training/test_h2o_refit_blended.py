"""The refit of a blended H2O stacked ensemble (issue 17, found by session 12's review).

With ``engines.h2o.validation: auto`` a large table is validated by blending, so AutoML's
stacked ensembles are built on a blending frame and their base models keep no
cross-validation predictions. The refit trained the base models on every row and the
ensemble with neither, which H2O refuses ("base models must have cross-validation
predictions or a blending frame"): every refit of such a leader failed and the gated model
served. The refit then blended as the search did (base models on 80% of the rows, the
metalearner on the other 20%), which kept a fifth of the rows from base models that are
nearly the whole ensemble (diamonds, session 19). Now the base models are fitted on every row,
cross-validated, and the metalearner learns from their out-of-fold predictions. Real H2O (one
small JVM).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from autokfp.training.h2o_automl import REFIT_BLEND_FOLDS, _blended, _fit_recipe, _recipe


def _friedman(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 6))
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
         + 5 * x[:, 4] + rng.normal(0, 1, rows))
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).assign(y=y)


def test_a_blended_ensembles_base_models_are_refitted_on_every_row(h2o_cluster) -> None:
    from h2o.estimators import (
        H2OGeneralizedLinearEstimator,
        H2OGradientBoostingEstimator,
        H2OStackedEnsembleEstimator,
    )

    h2o = h2o_cluster
    x = [f"x{i}" for i in range(6)]
    gate_rows, test_rows = _friedman(1500, 1), _friedman(1000, 2)
    train, blend = h2o.H2OFrame(gate_rows).split_frame(ratios=[0.75], seed=3)
    # as AutoML builds it when blending: base models without cross-validation, the
    # ensemble's metalearner on a blending frame
    bases = [H2OGradientBoostingEstimator(ntrees=60, max_depth=4, seed=1),
             H2OGeneralizedLinearEstimator(seed=1)]
    for base in bases:
        base.train(x=x, y="y", training_frame=train)
    ensemble = H2OStackedEnsembleEstimator(base_models=[b.model_id for b in bases], seed=1)
    ensemble.train(x=x, y="y", training_frame=train, blending_frame=blend)
    recipe = _recipe(ensemble)
    assert recipe["algo"] == "stackedensemble" and len(recipe["base_models"]) == 2
    assert _blended(recipe)

    cluster = SimpleNamespace(run_job=lambda model, job: job())
    all_rows = pd.concat([gate_rows, _friedman(1500, 4)], ignore_index=True)
    refit = _fit_recipe(cluster, recipe, x, "y", h2o.H2OFrame(all_rows), 60)
    assert refit.algo == "stackedensemble"
    # every base model learnt from all 3,000 rows, cross-validated (its out-of-fold
    # predictions are what the metalearner learnt from), not from a blending split's 80%
    for base in refit.actual_params["base_models"]:
        model = h2o.get_model(base["name"] if isinstance(base, dict) else str(base))
        assert model.actual_params["nfolds"] == REFIT_BLEND_FOLDS, model.actual_params
        assert model._model_json["output"]["training_metrics"]._metric_json["nobs"] == 3000
        assert model.cross_validation_holdout_predictions() is not None
    test_frame = h2o.H2OFrame(test_rows)
    rmse = {name: float(np.sqrt(np.mean(
        (model.predict(test_frame).as_data_frame()["predict"].to_numpy() - test_rows["y"]) ** 2)))
        for name, model in (("gated", ensemble), ("refit", refit))}
    # the target's spread is about 4.9 (a model that learnt nothing); both learnt, and the
    # refit on twice the rows is no worse than the gated ensemble
    assert rmse["refit"] < 2.5 and rmse["refit"] <= rmse["gated"] * 1.05, rmse


def test_a_cross_validated_ensemble_is_not_taken_for_a_blended_one() -> None:
    cv = {"nfolds": 5, "keep_cross_validation_predictions": True}
    assert not _blended({"base_models": [{"params": cv}, {"params": cv}]})
    assert _blended({"base_models": [{"params": cv}, {"params": {"nfolds": 0}}]})
    assert not _blended({"base_models": []})


def test_an_automl_ensembles_glm_metalearner_is_refitted_as_auto() -> None:
    """AutoML's ensembles use metalearner AUTO (a GLM with non-negative weights); their
    actual parameters say ``glm``, and a plain GLM metalearner refitted diamonds' blended
    ensemble at RMSE 2,066 against the gated model's 562 (569 as AUTO, session 15)."""
    from autokfp.training.h2o_automl import recipe_params

    ensemble = {"algo": "stackedensemble",
                "params": {"metalearner_algorithm": "glm", "metalearner_params": "", "seed": 10}}
    assert recipe_params(ensemble)["metalearner_algorithm"] == "AUTO"
    assert recipe_params(ensemble)["seed"] == 10
    # a metalearner with settings of its own, or another algorithm, is kept as it is
    tuned = {"algo": "stackedensemble",
             "params": {"metalearner_algorithm": "glm", "metalearner_params": "{'alpha': 0.1}"}}
    assert recipe_params(tuned)["metalearner_algorithm"] == "glm"
    gbm_meta = {"algo": "stackedensemble", "params": {"metalearner_algorithm": "gbm"}}
    assert recipe_params(gbm_meta)["metalearner_algorithm"] == "gbm"
    # a GLM base model is no ensemble: its lambda gets the client's name, nothing else changes
    glm = {"algo": "glm", "params": {"lambda": [0.01], "alpha": [0.5]}}
    assert recipe_params(glm) == {"lambda_": [0.01], "alpha": [0.5]}
