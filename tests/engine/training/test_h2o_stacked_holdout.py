"""A stacked ensemble leader keeps out-of-fold predictions too (selection and calibration
read them): H2O keeps none for the ensemble itself, so they come from its cross-validated
metalearner. They are downloaded in chunks of rows, only the score columns. Real H2O (one
small JVM, about 30 s)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.training.h2o_automl import _holdout_predictions, _holdout_scores


def test_a_stacked_ensemble_gives_its_metalearners_out_of_fold_predictions(h2o_cluster) -> None:
    from h2o.estimators import (
        H2OGeneralizedLinearEstimator,
        H2OGradientBoostingEstimator,
        H2OStackedEnsembleEstimator,
    )

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["y"] = 3 * frame["a"] + np.sin(2 * frame["b"]) * 2 + rng.normal(0, 0.5, len(frame))
    data = h2o_cluster.H2OFrame(frame)
    common = {"nfolds": 3, "fold_assignment": "Modulo", "keep_cross_validation_predictions": True,
              "seed": 1}
    gbm = H2OGradientBoostingEstimator(ntrees=30, max_depth=3, **common)
    glm = H2OGeneralizedLinearEstimator(**common)
    for model in (gbm, glm):
        model.train(x=["a", "b", "c"], y="y", training_frame=data)
    # as AutoML builds its ensembles (keep_cross_validation_predictions reaches the metalearner)
    ensemble = H2OStackedEnsembleEstimator(
        base_models=[gbm, glm], metalearner_nfolds=3, seed=1,
        metalearner_params={"keep_cross_validation_predictions": True})
    ensemble.train(x=["a", "b", "c"], y="y", training_frame=data)
    assert ensemble.cross_validation_holdout_predictions() is None  # why the fallback exists

    predicted = _holdout_predictions(ensemble, "regression", None)
    assert predicted is not None and len(predicted) == len(frame)
    positions, values = _holdout_scores(predicted, "regression", None, len(frame))
    assert (positions == np.arange(len(frame))).all()
    rmse = float(np.sqrt(np.mean((values - frame["y"].to_numpy()) ** 2)))
    # the ensemble's own cross-validation figure, and out of sample (worse than its fit)
    assert rmse == pytest.approx(ensemble.model_performance(xval=True).rmse(), rel=1e-6)
    assert rmse > 1.05 * ensemble.model_performance(train=True).rmse()


def test_out_of_fold_scores_are_downloaded_in_chunks_of_the_score_columns_alone(
        h2o_cluster, monkeypatch) -> None:
    """A binary classifier's out-of-fold class probabilities, fetched ``chunk_rows`` rows at
    a time and without H2O's label column, equal the whole frame's."""
    import h2o
    from h2o.estimators import H2OGradientBoostingEstimator

    rng = np.random.default_rng(6)
    frame = pd.DataFrame(rng.normal(size=(1_000, 3)), columns=["a", "b", "c"])
    frame["y"] = np.where(frame["a"] + rng.normal(0, 1, len(frame)) > 0, "yes", "no")
    data = h2o_cluster.H2OFrame(frame, column_types={"y": "enum"})
    gbm = H2OGradientBoostingEstimator(ntrees=10, max_depth=3, nfolds=2, seed=1,
                                       keep_cross_validation_predictions=True)
    gbm.train(x=["a", "b", "c"], y="y", training_frame=data)
    whole = gbm.cross_validation_holdout_predictions().as_data_frame(use_multi_thread=False)

    downloads: list[tuple[int, list[str]]] = []
    original = h2o.H2OFrame.as_data_frame

    def spy(self, *args, **kwargs):
        got = original(self, *args, **kwargs)
        downloads.append((len(got), list(got.columns)))
        return got

    monkeypatch.setattr(h2o.H2OFrame, "as_data_frame", spy)
    predicted = _holdout_predictions(gbm, "binary", ["no", "yes"], chunk_rows=300)
    assert downloads == [(300, ["no", "yes"])] * 3 + [(100, ["no", "yes"])]
    assert list(predicted.columns) == ["no", "yes"] and len(predicted) == len(frame)
    np.testing.assert_array_equal(predicted.to_numpy(), whole[["no", "yes"]].to_numpy())
    positions, scores = _holdout_scores(predicted, "binary", ["no", "yes"], len(frame))
    assert scores.shape == (1_000, 2) and (positions == np.arange(1_000)).all()
    # a class H2O's frame does not have: no scores, rather than wrong ones
    assert _holdout_predictions(gbm, "binary", ["no", "maybe"], chunk_rows=300) is None


def test_a_leader_no_better_than_the_prior_gets_a_default_gbm_beside_it(h2o_cluster) -> None:
    """AutoML's leader at the class prior in cross-validation (here a GLM alone on an
    interaction, which it cannot learn: on a loaded node every model cut short looks the
    same) gets one GBM with H2O's defaults beside it on the board, with out-of-fold
    predictions; a leader that learnt something gets none, and neither does a search whose
    include_algos leaves GBM out."""
    from types import SimpleNamespace

    from h2o.automl import H2OAutoML

    from autokfp.training.h2o_automl import _leaderboard, _no_better_than_baseline

    rng = np.random.default_rng(8)
    frame = pd.DataFrame(rng.normal(size=(600, 2)), columns=["a", "b"])
    frame["y"] = np.where(frame["a"] * frame["b"] > 0, "yes", "no")  # an XOR: no linear signal
    frame["c"] = rng.normal(size=len(frame))
    data = h2o_cluster.H2OFrame(frame, column_types={"y": "enum"})
    cluster = SimpleNamespace(run_job=lambda model, job: job())
    budget = SimpleNamespace(seed=1, max_runtime_secs=60)

    def search(y: str):  # AutoML's plan with GLM and GBM: its GLM comes first
        automl = H2OAutoML(max_models=1, include_algos=["GLM", "GBM"], nfolds=3, seed=1,
                           keep_cross_validation_predictions=True, verbosity=None)
        automl.train(x=["a", "b", "c"], y=y, training_frame=data)
        return automl

    def board(automl, y: str, include: list[str] | None):
        return _leaderboard(cluster, automl, frame[["a", "b", "c"]], frame[y], y, data,
                            "binary" if y == "y" else "regression", 3, budget, "auc",
                            include).as_data_frame()

    automl = search("y")
    assert automl.leader.algo == "glm" and automl.leader.auc(xval=True) < 0.55
    found = board(automl, "y", None)
    assert found["model_id"][0].startswith("GBM_fallback_") and len(found) == 2
    assert found["auc"][0] > 0.9  # cross-validated: the default GBM learns the interaction
    leader = h2o_cluster.get_model(found["model_id"][0])
    assert len(_holdout_predictions(leader, "binary", ["no", "yes"])) == len(frame)
    assert len(board(automl, "y", ["GLM"])) == 1  # the user left GBM out
    # a regression leader that learnt the signal: no fallback
    frame["z"] = 2 * frame["c"] + rng.normal(0, 0.3, len(frame))
    data = h2o_cluster.H2OFrame(frame, column_types={"y": "enum"})
    automl = search("z")
    assert automl.leader.r2(xval=True) > 0.9 and len(board(automl, "z", None)) == 1
    # the multiclass prior: a log loss within 2% of the classes' entropy learnt nothing
    three = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    entropy = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2))
    assert _no_better_than_baseline({"cv_logloss": entropy * 0.99}, "multiclass", three)
    assert not _no_better_than_baseline({"cv_logloss": entropy * 0.9}, "multiclass", three)
