"""The AutoKeras engine: its input encoding, a real (tiny) search, and the packaged pyfunc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from autokfp.config import BudgetSpec
from autokfp.modeling.features import OTHER_LEVEL
from autokfp.modeling.model_package import load_model_package
from autokfp.training.autokeras_engine import AutoKerasEngine, AutoKerasSettings, KerasEncoding

FRESH_PROCESS = """
import sys
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_parquet(sys.argv[2])
model.predict(rows.drop(columns=["churned"])).to_parquet(sys.argv[3])
"""


# ------------------------------------------------------------------------------ encoding


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "tenure": [1.0, 5.0, np.nan, 20.0, 3.0],
        "tenure__missing": [0.0, 0.0, 1.0, 0.0, 0.0],
        "plan": ["basic", "pro", None, "basic", OTHER_LEVEL],
    })


def test_encoding_standardises_numbers_and_one_hots_categories(frame) -> None:
    encoding = KerasEncoding.fit(frame, ["plan"])
    matrix = encoding.transform(frame)
    assert matrix.dtype == np.float32
    assert matrix.shape == (5, 2 + 3)  # tenure, tenure__missing, basic/pro/__other__
    assert encoding.categorical["plan"] == ["basic", "pro", OTHER_LEVEL]
    assert matrix[2, 0] == 0.0  # a missing number becomes the (standardised) mean
    assert matrix[2, 1] > 0  # ...and its indicator says so
    np.testing.assert_array_equal(matrix[2, 2:], [0, 0, 0])  # a missing category: all zeros
    np.testing.assert_array_equal(matrix[1, 2:], [0, 1, 0])
    observed = matrix[[0, 1, 3, 4], 0]
    assert abs(float(observed.mean())) < 0.3


def test_encoding_of_rows_matches_the_frame_and_handles_the_unknown(frame) -> None:
    encoding = KerasEncoding.fit(frame, ["plan"])
    new = frame.assign(plan=["gold", "pro", None, "basic", "basic"],
                       tenure=[1e9, -1e9, np.nan, 2.0, 4.0])
    rows = new.astype(object).where(new.notna(), None).to_dict("records")
    np.testing.assert_array_equal(encoding.transform_rows(rows), encoding.transform(new))
    matrix = encoding.transform(new)
    np.testing.assert_array_equal(matrix[0, 2:], [0, 0, 1])  # unseen level -> __other__
    assert matrix[0, 0] == encoding.clip and matrix[1, 0] == -encoding.clip
    again = KerasEncoding.from_json(encoding.to_json())
    np.testing.assert_array_equal(again.transform(new), matrix)


def test_encoding_names_missing_feature_columns(frame) -> None:
    from autokfp.errors import DataError

    encoding = KerasEncoding.fit(frame, ["plan"])
    with pytest.raises(DataError, match="tenure__missing"):
        encoding.transform(frame.drop(columns=["tenure__missing"]))


# ----------------------------------------------------------------------- a real search


def test_trains_within_its_budget_and_reports_validation_figures(keras_package) -> None:
    trained = keras_package.trained
    assert trained["engine"] == "autokeras"
    assert trained["device"] == "cpu"
    assert trained["models_trained"] >= 1
    assert "cv_auc" in trained and "cv_auc_sd" in trained
    # the search ends by its trial/epoch counts long before this generous deadline, so the
    # model's quality does not depend on how busy the machine is; the deadline still holds
    budget = keras_package.config.budget.max_runtime_secs
    engine_dir = keras_package.paths.model / "artifacts" / "engine"
    # the refit on all rows comes on top (like H2O's export), bounded by refit_max_share
    seconds = json.loads((engine_dir / "engine.json").read_text())["seconds"]
    refit = seconds.get("refit", 0.0)
    # the budget is search time: TensorFlow's import and set-up come before it (9-27 s on a
    # loaded machine), as H2O's JVM start does
    assert seconds["search"] <= budget + 15, seconds
    assert trained["engine_seconds"] - refit - seconds["import"] <= budget + 30, seconds
    assert refit <= AutoKerasSettings().refit_max_share * budget + 30
    meta = json.loads((keras_package.paths.model / "artifacts" / "meta.json").read_text())
    assert meta["engine"] == "autokeras"
    # the estimate is of k-fold refits over every training row, not the validation rows
    # that chose the trial and the epoch
    assert meta["params"]["cv_method"].startswith("out of fold: 5-fold refits"), meta["params"]
    assert meta["holdout_kind"] == "out_of_fold"
    assert meta["holdout_rows"] == meta["trained_rows"]
    # refitted on every training row after the search (the model card states the count)
    assert meta["fitted_rows"] == meta["trained_rows"] == len(pd.read_parquet(keras_package.paths.train))
    assert (engine_dir / "model.keras").is_file()
    assert (engine_dir / "encoding.json").is_file()
    assert not (engine_dir / "search").exists()  # the trial checkpoints are not shipped
    assert "trial_" in keras_package.paths.leaderboard.read_text()


def test_packaged_model_ranks_held_out_rows(keras_package) -> None:
    model = load_model_package(str(keras_package.paths.model))
    test = pd.read_parquet(keras_package.paths.test)
    scored = model.predict(test.drop(columns=["churned"]))
    assert list(scored.columns) == ["prediction", "probability_0", "probability_1"]
    np.testing.assert_allclose(scored[["probability_0", "probability_1"]].sum(axis=1), 1.0,
                               atol=1e-6)
    assert roc_auc_score(test["churned"], scored["probability_1"]) > 0.6


def test_fresh_process_loads_and_reproduces_predictions(keras_package, tmp_path) -> None:
    model = load_model_package(str(keras_package.paths.model))
    test = pd.read_parquet(keras_package.paths.test)
    expected = model.predict(test.drop(columns=["churned"]))
    out = tmp_path / "fresh.parquet"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(keras_package.paths.model),
                             str(keras_package.paths.test), str(out)],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = pd.read_parquet(out)
    assert (fresh["prediction"].to_numpy() == expected["prediction"].to_numpy()).all()
    np.testing.assert_allclose(fresh["probability_1"], expected["probability_1"], atol=1e-6)


def test_row_wise_fast_path_matches_the_batch(keras_package) -> None:
    model = load_model_package(str(keras_package.paths.model)).unwrap_python_model()
    test = pd.read_parquet(keras_package.paths.test).drop(columns=["churned"]).head(25)
    batch = model.predict(None, test)
    records = test.astype(object).where(test.notna(), None).to_dict("records")
    rows = model.predict_records(records)
    np.testing.assert_allclose(rows["probability_1"].to_numpy(),
                               batch["probability_1"].to_numpy(), atol=1e-6)
    # one row at a time gives the same figures (its speed: scripts/benchmark_fast_path.py)
    for record, expected in zip(records[:10], rows["probability_1"], strict=False):
        np.testing.assert_allclose(
            model.predict_records([record])["probability_1"].to_numpy(), [expected], atol=1e-6)


def test_importing_autokfp_does_not_import_tensorflow() -> None:
    code = ("import sys, autokfp, autokfp.steps.train_model, autokfp.training, autokfp.modeling.model_package, "
            "autokfp.modeling.selection, autokfp.modeling.validation, autokfp.training.autokeras_engine; "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'autokeras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_heads(task, tmp_path) -> None:
    from sklearn.datasets import load_diabetes, load_iris

    if task == "multiclass":
        data = load_iris(as_frame=True)
        classes = ["0", "1", "2"]
        metric = "logloss"
    else:
        data = load_diabetes(as_frame=True)
        classes = None
        metric = "rmse"
    features, target = data.data.head(150), data.target.head(150)
    budget = BudgetSpec(max_runtime_secs=10)
    engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, epochs=3, patience=2))
    result = engine.train(features, target, task, classes, [], budget, metric, tmp_path / "engine")
    scores = engine.load_scorer(result.artifact_dir, task, classes).predict(features)
    if task == "multiclass":
        assert scores.shape == (150, 3)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
        assert f"cv_{metric}" in result.cv_metrics
    else:
        assert scores.shape == (150,)
        # decoded back to the target's scale (the network learns a standardised target)
        assert abs(float(np.mean(scores)) - float(target.mean())) < 3 * float(target.std())
        assert f"cv_{metric}_sd" in result.cv_metrics
    board = pd.read_csv(Path(result.artifact_dir) / "leaderboard.csv")
    assert len(board) == 1 and board.loc[0, "model_id"] == "trial_0"


def test_the_exported_network_is_refitted_on_every_training_row(tmp_path, monkeypatch) -> None:
    """The search picks the architecture and epoch count on its validation rows; the exported
    network is then trained again on all training rows (fit + validation), and kept only
    when its loss on them is no worse than the search's network's on its own rows. What is
    exported must rank the untouched test rows as well as the search's network (a refit
    from untrained weights, or on the wrong labels, would not), and the out-of-sample
    predictions calibration and selection read stay the search's.

    The loss check turned this refit down in every run here (loss ~0.041 on 398 rows against
    the search's ~0.031 on its 318, over the 10 % tolerance), so the test only ever took its
    'rejected' branch and never checked the refit it is named after: the tolerance is
    widened here so that the refitted network is exported and checked. Turning a refit that
    did not learn down is test_a_refit_that_did_not_learn_is_rejected's."""
    from sklearn.datasets import load_breast_cancer

    from autokfp.training import autokeras_engine

    monkeypatch.setattr(autokeras_engine, "REFIT_LOSS_TOLERANCE", 1.0)
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True)
    features, target = data.data, data.target.astype(str)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.3,
                                                        random_state=0, stratify=target)
    x_train, y_train = x_train.reset_index(drop=True), y_train.reset_index(drop=True)
    budget = BudgetSpec(max_runtime_secs=120)
    results, aucs = {}, {}
    for refit in (True, False):
        engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, out_of_fold_folds=0, epochs=20, patience=5,
                                                   refit=refit, refit_max_share=1.0))
        result = engine.train(x_train, y_train, "binary", ["0", "1"], [], budget, "auc",
                              tmp_path / f"refit-{refit}")
        scorer = engine.load_scorer(result.artifact_dir, "binary", ["0", "1"])
        aucs[refit] = roc_auc_score(y_test.astype(int), scorer.predict(x_test)[:, 1])
        results[refit] = (result, scorer)
    refitted, scorer = results[True]
    searched = results[False][0]
    validation_rows = len(refitted.holdout[0])
    assert searched.fitted_rows == len(x_train) - validation_rows
    note = refitted.params["refit"]
    assert note == json.loads((Path(refitted.artifact_dir) / "engine.json").read_text())["refit"]
    assert refitted.fitted_rows == len(x_train), note
    assert note.startswith(f"on all {len(x_train)} training rows"), note
    assert aucs[True] > 0.9 and aucs[True] >= aucs[False] - 0.03, (aucs, note)
    # the holdout scores are out of sample: a network refitted on those very rows scores
    # them differently
    positions, holdout_scores = refitted.holdout
    again = scorer.predict(x_train.iloc[positions])
    assert not np.allclose(again, holdout_scores, atol=1e-4)


def test_a_refit_over_its_share_of_the_budget_is_skipped(tmp_path) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, out_of_fold_folds=0, epochs=5, patience=2,
                                               refit_max_share=1e-6))
    result = engine.train(data.data, data.target.astype(str), "binary", ["0", "1"], [],
                          BudgetSpec(max_runtime_secs=10), "auc", tmp_path / "engine")
    assert result.fitted_rows == len(data.data) - len(result.holdout[0])
    assert result.params["refit"].startswith("skipped: about")


def test_a_refit_that_did_not_learn_is_rejected(tmp_path, monkeypatch) -> None:
    """A refitted network that never trained (its fit a no-op: random weights) has a far
    higher loss than the search's network: it is not exported."""
    import keras
    from sklearn.datasets import load_breast_cancer

    real_clone = keras.models.clone_model

    def untrained_clone(*args, **kwargs):
        clone = real_clone(*args, **kwargs)
        clone.fit = lambda *a, **k: SimpleNamespace(history={"loss": [0.5]})
        return clone

    monkeypatch.setattr(keras.models, "clone_model", untrained_clone)
    data = load_breast_cancer(as_frame=True)
    # refit_max_share: a busy machine's slow epochs must not skip the refit under test; the
    # budget is not reached on an idle machine (15 epochs of 455 rows) but under load 30 a
    # 60 s budget cut the search short (AUC 0.896)
    engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, out_of_fold_folds=0, epochs=15, patience=3,
                                               refit_max_share=2.0))
    result = engine.train(data.data, data.target.astype(str), "binary", ["0", "1"], [],
                          BudgetSpec(max_runtime_secs=180), "auc", tmp_path / "engine")
    assert result.params["refit"].startswith("rejected: loss"), result.params["refit"]
    assert result.fitted_rows == len(data.data) - len(result.holdout[0])
    scores = engine.load_scorer(result.artifact_dir, "binary", ["0", "1"]).predict(data.data)
    assert roc_auc_score(data.target, scores[:, 1]) > 0.9  # the search's network went out


def test_the_budget_is_search_time_counted_after_tensorflow_is_ready(tmp_path,
                                                                    monkeypatch) -> None:
    """TensorFlow's import and set-up take 5-18 s on a busy machine; the search's deadline
    is counted from when they are done (a slow set-up, here 3 s, must not shorten it)."""
    from sklearn.datasets import load_diabetes

    from autokfp.training import autokeras_engine

    ready: dict[str, float] = {}
    configure = autokeras_engine._configure_tensorflow

    def slow_configure(budget):
        time.sleep(3.0)
        device = configure(budget)
        ready["at"] = time.monotonic()
        return device

    class Stop(Exception):
        pass

    def capture(searcher, clock, *args, **kwargs):
        ready["deadline"] = clock.deadline
        raise Stop

    monkeypatch.setattr(autokeras_engine, "_configure_tensorflow", slow_configure)
    monkeypatch.setattr(autokeras_engine, "_search", capture)
    data = load_diabetes(as_frame=True)
    budget = BudgetSpec(max_runtime_secs=60)
    engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, epochs=2))
    with pytest.raises(Stop):
        engine.train(data.data.head(100), data.target.head(100), "regression", None, [], budget,
                     "rmse", tmp_path / "engine")
    reserve = autokeras_engine.EXPORT_RESERVE_SECS + autokeras_engine.EXPORT_RESERVE_SHARE * 60
    # the whole budget (less the export reserve) lies ahead once TensorFlow is ready
    assert ready["deadline"] >= ready["at"] + 60 - reserve - 0.01


def _categorical_regression(rows: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A target driven by a six-level category (rare levels: one-hot inputs far from mean 0 /
    variance 1, which the network's Normalization layer rescales) and one number."""
    rng = np.random.default_rng(seed)
    level = rng.choice(list("abcdef"), size=rows, p=[0.4, 0.3, 0.15, 0.08, 0.05, 0.02])
    effect = {"a": 0.0, "b": 10.0, "c": -10.0, "d": 20.0, "e": -20.0, "f": 30.0}
    number = rng.normal(size=rows)
    target = np.array([effect[v] for v in level]) + 5.0 * number + rng.normal(size=rows)
    return (pd.DataFrame({"number": number, "level": level}),
            pd.Series(target, name="target"))


def test_a_refitted_network_with_one_hot_inputs_scores_as_it_trained(tmp_path) -> None:
    """The refit's clone must normalise its inputs with the search's statistics while it
    trains, as the saved model does once loaded. Before the fix it trained on mean 0 /
    variance 1 and was saved with the search's statistics: loaded, it scored its own
    training rows at ~6x the validation RMSE (diamonds: 4,287 against 678)."""
    features, target = _categorical_regression()
    engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, out_of_fold_folds=0, epochs=40, patience=5,
                                               refit_max_share=2.0))
    result = engine.train(features, target, "regression", None, ["level"],
                          BudgetSpec(max_runtime_secs=30), "rmse", tmp_path / "engine")
    note = result.params["refit"]
    assert note.startswith(f"on all {len(features)} training rows"), note
    scores = engine.load_scorer(result.artifact_dir, "regression", None).predict(features)
    rmse = float(np.sqrt(np.mean((scores - target.to_numpy()) ** 2)))
    # the target's sd is ~13; the noise 1; a network scoring as it trained is near its
    # validation RMSE, the broken refit at several times it
    assert rmse <= 1.5 * result.cv_metrics["cv_rmse"] + 0.5, (rmse, result.cv_metrics, note)


def test_a_refit_that_loads_back_differently_is_not_exported(tmp_path, monkeypatch) -> None:
    """The refitted network goes out only if, saved and loaded as scoring loads it, it
    predicts what it did in memory; otherwise the search's network is exported."""
    from autokfp.training import autokeras_engine

    real_load = autokeras_engine._load_keras_model

    def drifting_load(path):
        model = real_load(path)
        if Path(path).name.startswith("refit-"):  # the staged refit: its output bias moved
            last = model.layers[-1]
            last.bias.assign(last.bias.numpy() + 1.0)
        return model

    monkeypatch.setattr(autokeras_engine, "_load_keras_model", drifting_load)
    features, target = _categorical_regression(rows=600)
    engine = AutoKerasEngine(AutoKerasSettings(max_trials=1, out_of_fold_folds=0, epochs=15, patience=3,
                                               refit_max_share=2.0))
    result = engine.train(features, target, "regression", None, ["level"],
                          BudgetSpec(max_runtime_secs=20), "rmse", tmp_path / "engine")
    assert result.params["refit"].startswith("rejected: saved and loaded"), result.params["refit"]
    assert result.fitted_rows == len(features) - len(result.holdout[0])
    assert not list(Path(result.artifact_dir).glob("refit-*"))
    # the search's network went out: it scores its validation rows as the holdout says
    positions, holdout = result.holdout
    again = engine.load_scorer(result.artifact_dir, "regression", None).predict(
        features.iloc[positions])
    np.testing.assert_allclose(again, holdout, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("exported", "note"), [
    (True, "refitted (worded any way)"),
    (False, "on all 100 training rows, but the round trip failed"),
])
def test_the_fitted_row_count_follows_whether_the_refit_was_exported(
        tmp_path, monkeypatch, exported: bool, note: str) -> None:
    """The package's fitted_rows comes from whether the refit was saved, never from the
    wording of the note (a note that happens to start "on all" does not make a rejected
    refit count every row, and a reworded note does not lose them)."""
    from autokfp.training import autokeras_engine

    monkeypatch.setattr(autokeras_engine, "_refit_all_rows",
                        lambda *args, **kwargs: (object(), "refit trained"))
    monkeypatch.setattr(autokeras_engine, "_save_refit",
                        lambda model, x, path, text: (exported, note))
    engine = AutoKerasEngine(AutoKerasSettings(refit=True))
    x, y = np.zeros((100, 3), dtype="float32"), np.zeros(100, dtype="float32")
    fit_idx = np.arange(80)
    timings: dict[str, float] = {}
    rows, said = engine._refit(autokeras_engine._SearchClock(time.monotonic() + 60), x, y, 32,
                               BudgetSpec(max_runtime_secs=60), fit_idx, tmp_path, timings)
    assert (rows, said) == ((100 if exported else 80), note)
    assert "refit" in timings
