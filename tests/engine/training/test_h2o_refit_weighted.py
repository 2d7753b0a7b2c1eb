"""The refit of an H2O stacked ensemble fits only the base models its metalearner weights
(issue 17, session 22).

AutoML's metalearner (a GLM with non-negative weights and an L1 share) gives many members of
an AllModels ensemble weight 0 (Males, session 21: 19 of 29), and the refit fitted every one
of them twice, cross-validated, for nothing. Which members carry weight is read from the
gated ensemble's MOJO, which lists only those H2O scores with.
"""

from __future__ import annotations

import json
import zipfile
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from autokfp.modeling.feature_file import TARGET_COLUMN
from autokfp.training.h2o_automl import (
    MOJO_FILE,
    RECIPE_FILE,
    H2OAutoMLEngine,
    _write_recipe,
    weighted_members,
)

X = [f"x{i}" for i in range(6)]


def _friedman(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 6))
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
         + 5 * x[:, 4] + rng.normal(0, 1, rows))
    return pd.DataFrame(x, columns=X).assign(**{TARGET_COLUMN: y})


def _ini(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.ini", text)
    return path


def test_only_the_members_the_mojo_lists_are_kept(tmp_path: Path) -> None:
    recipe = {"algo": "stackedensemble", "model_id": "SE",
              "base_models": [{"model_id": m, "algo": "gbm"} for m in ("a", "b", "c")]}
    listed = "base_models_num = 3\nmetalearner = m\nbase_model0 = a\nbase_model2 = c\n"
    kept, dropped = weighted_members(recipe, _ini(tmp_path, listed))
    assert [b["model_id"] for b in kept["base_models"]] == ["a", "c"] and dropped == ["b"]
    assert len(recipe["base_models"]) == 3  # the recipe read is not changed
    # every member listed, a count that is not the recipe's, a member the recipe does not
    # know, none listed, no MOJO, not an ensemble: the recipe is kept whole
    for text in ("base_models_num = 3\nbase_model0 = a\nbase_model1 = b\nbase_model2 = c\n",
                 "base_models_num = 4\nbase_model0 = a\n",
                 "base_models_num = 3\nbase_model0 = a\nbase_model1 = z\n",
                 "base_models_num = 3\n"):
        assert weighted_members(recipe, _ini(tmp_path, text)) == (recipe, [])
    assert weighted_members(recipe, tmp_path / "missing.zip") == (recipe, [])
    gbm = {"algo": "gbm", "model_id": "g", "params": {}}
    assert weighted_members(gbm, _ini(tmp_path, listed)) == (gbm, [])


@contextmanager
def _on(h2o):
    """The test's own cluster in place of a refit's new one (``_new_cluster``)."""
    yield SimpleNamespace(load=lambda frame, types: h2o.H2OFrame(frame, column_types=types),
                          run_job=lambda model, job: job())


def test_a_member_with_weight_0_is_not_refitted(h2o_cluster, tmp_path: Path) -> None:
    from h2o.estimators import (
        H2OGeneralizedLinearEstimator,
        H2OGradientBoostingEstimator,
        H2OStackedEnsembleEstimator,
    )

    h2o = h2o_cluster
    gate_rows = _friedman(600, 1)
    frame = h2o.H2OFrame(gate_rows)
    cv = {"nfolds": 3, "fold_assignment": "Modulo", "keep_cross_validation_predictions": True,
          "seed": 1}
    # as AutoML builds an AllModels ensemble: cross-validated members, two near copies of
    # one strong model and a weak one, so the non-negative, L1-shared metalearner leaves
    # some at 0
    members = [H2OGradientBoostingEstimator(ntrees=30, max_depth=4, **cv),
               H2OGradientBoostingEstimator(ntrees=31, max_depth=4, **cv),
               H2OGradientBoostingEstimator(ntrees=2, max_depth=1, learn_rate=0.05, **cv),
               H2OGeneralizedLinearEstimator(**cv)]
    for member in members:
        member.train(x=X, y=TARGET_COLUMN, training_frame=frame)
    ensemble = H2OStackedEnsembleEstimator(base_models=[m.model_id for m in members],
                                           metalearner_algorithm="AUTO", seed=1)
    ensemble.train(x=X, y=TARGET_COLUMN, training_frame=frame)
    weights = ensemble.metalearner().coef()
    zero = [m.model_id for m in members if weights[m.model_id] == 0]
    weighted = [m.model_id for m in members if weights[m.model_id] != 0]
    assert zero and weighted, weights  # the set-up gives some members weight 0, not all

    gated = tmp_path / "gated"
    gated.mkdir()
    Path(ensemble.download_mojo(path=str(gated), get_genmodel_jar=False)).replace(
        gated / MOJO_FILE)
    _write_recipe(ensemble, gated)
    # what the MOJO lists is the metalearner's own weights
    _, dropped = weighted_members(json.loads((gated / RECIPE_FILE).read_text()),
                                  gated / MOJO_FILE)
    assert sorted(dropped) == sorted(zero), (dropped, weights)

    engine = H2OAutoMLEngine()
    engine._new_cluster = lambda budget: _on(h2o)  # type: ignore[method-assign]
    all_rows = pd.concat([gate_rows, _friedman(400, 2)], ignore_index=True)
    result = engine.refit(gated, all_rows[X], all_rows[TARGET_COLUMN], "regression", None, [],
                          SimpleNamespace(max_runtime_secs=60, nthreads=1), "rmse",
                          tmp_path / "refit")
    info = json.loads((tmp_path / "refit" / "engine.json").read_text())
    assert sorted(info["base_models_not_refitted"]) == sorted(zero)
    assert result.params["refit_base_models"].startswith(f"{len(weighted)} of {len(members)}")
    # the refitted ensemble has the weighted members only, each fitted on every row
    refitted = h2o.get_model(result.leader)
    bases = [h2o.get_model(b["name"] if isinstance(b, dict) else str(b))
             for b in refitted.actual_params["base_models"]]
    assert len(bases) == len(weighted)
    by_id = {m.model_id: m for m in members}
    assert sorted((b.algo, b.actual_params.get("ntrees")) for b in bases) == sorted(
        (by_id[m].algo, by_id[m].actual_params.get("ntrees")) for m in weighted)
    for base in bases:
        assert base._model_json["output"]["training_metrics"]._metric_json["nobs"] == 1000
    # and it serves: every row of new data scored from the same columns
    test_rows = _friedman(400, 3)
    scorer = engine.load_scorer(tmp_path / "refit", "regression", None)
    assert scorer.feature_names == X
    predicted = np.asarray(scorer.predict(test_rows[X])).reshape(-1)
    assert predicted.shape == (400,) and np.isfinite(predicted).all()
    # it learnt (the target's spread is about 4.9)
    rmse = float(np.sqrt(np.mean((predicted - test_rows[TARGET_COLUMN]) ** 2)))
    assert rmse < 2.5, rmse
