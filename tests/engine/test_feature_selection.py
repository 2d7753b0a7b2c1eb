"""Feature selection by importance within a budget, recorded in the plan and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.profiling import profile_frame
from autokfp.config import FeatureSpec
from autokfp.modeling.features import (
    FeaturePlan,
    apply_features,
    apply_features_records,
    plan_features,
    select_features,
)


def _synthetic(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "signal": rng.normal(size=n),
        "weak": rng.normal(size=n),
        "noise": rng.normal(size=n),
        "segment": rng.choice(["a", "b", "c"], n),
        "joined": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"),
    })
    logit = 2.0 * frame["signal"] + 0.6 * frame["weak"] + (frame["segment"] == "a") * 1.0
    frame["y"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    # an indicator that is never missing carries nothing: give 'noise' gaps at random
    frame.loc[rng.uniform(size=n) < 0.05, "noise"] = np.nan
    return frame


def _plan(frame: pd.DataFrame) -> FeaturePlan:
    schema = profile_frame(frame, "files/x.parquet", "file", "/data")
    return plan_features(frame, schema, "y", "binary", FeatureSpec(), classes=[0, 1])


def test_importance_is_recorded_and_the_signal_is_kept() -> None:
    frame = _synthetic()
    plan = select_features(_plan(frame), frame, seed=1)
    assert plan.selection["status"] == "done"
    assert plan.selection["quick_model_useful"] is True
    importance = plan.feature_importance
    assert importance["signal"] > importance["weak"] > 0
    assert "signal" in plan.feature_columns and "weak" in plan.feature_columns
    assert max(importance, key=importance.get) == "signal"


def test_cap_keeps_the_most_important_and_records_why() -> None:
    frame = _synthetic()
    plan = select_features(_plan(frame), frame, max_features=2, seed=1)
    assert len(plan.feature_columns) == 2
    assert "signal" in plan.feature_columns
    reasons = plan.selection["excluded"]
    assert any("budget.max_features=2" in reason for reason in reasons.values())
    # a raw column whose every feature went is dropped with the reason; a partly kept one
    # (the datetime) keeps its raw column and lists the unused parts
    assert "noise" in plan.dropped and "feature selection" in plan.dropped["noise"]
    assert "noise" not in plan.input_columns
    assert set(plan.excluded_features) <= set(plan._all_feature_columns())


def test_both_apply_paths_agree_after_selection() -> None:
    frame = _synthetic()
    plan = select_features(_plan(frame), frame, max_features=4, seed=1)
    plan.excluded_features = sorted(set(plan.excluded_features) | {"joined__month"})
    again = FeaturePlan.from_json(plan.to_json())
    assert again.excluded_features == plan.excluded_features
    assert again.feature_columns == plan.feature_columns
    rows = frame.drop(columns=["y"]).head(40)
    batch = apply_features(rows, again)
    records = apply_features_records(rows.astype(object).where(rows.notna(), None)
                                     .to_dict("records"), again)
    assert list(batch.columns) == again.feature_columns
    assert [list(r) for r in records] == [again.feature_columns] * len(records)
    row_frame = pd.DataFrame(records, columns=again.feature_columns)
    for column in again.feature_columns:
        left, right = batch[column].reset_index(drop=True), row_frame[column]
        if again.categorical and column in again.categorical:
            assert left.fillna("<na>").tolist() == right.fillna("<na>").tolist()
        else:
            np.testing.assert_allclose(left.astype(float), right.astype(float), equal_nan=True)


def test_a_drop_is_kept_only_when_cross_validation_agrees() -> None:
    """Pure-noise columns are dropped and the check by cross-validation (folds apart from the
    importance folds) confirms the smaller set does no worse; an importance ranking that
    wrongly calls the strongest feature useless is caught there and nothing is dropped."""
    from autokfp.modeling import features as features_module

    rng = np.random.default_rng(3)
    n = 1200
    frame = pd.DataFrame({"signal": rng.normal(size=n), "weak": rng.normal(size=n)})
    for i in range(4):
        frame[f"junk{i}"] = rng.integers(0, 2, n).astype(float) * 0.0  # constant: never used
    logit = 2.5 * frame["signal"] + 0.8 * frame["weak"]
    frame["y"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    plan = select_features(_plan(frame), frame, seed=1)
    check = plan.selection.get("cv_check")
    if plan.selection["excluded"]:
        assert check is not None and check["accepted"] is True
        assert check["kept"] >= check["all"] - 1e-9  # AUC: the smaller set does no worse
    assert {"signal", "weak"} <= set(plan.feature_columns)

    real = features_module._permutation_importance

    def broken(features, y, plan, seed):  # an importance that calls 'signal' unused
        importance, score, useful = real(features, y, plan, seed)
        return {**importance, "signal": (0.0, 0.0, True)}, score, useful

    patched = pytest.MonkeyPatch()
    patched.setattr(features_module, "_permutation_importance", broken)
    try:
        plan = select_features(_plan(frame), frame, seed=1)
    finally:
        patched.undo()
    check = plan.selection["cv_check"]
    assert check["accepted"] is False and check["all"] > check["kept"] + 0.1, check
    assert "signal" in plan.feature_columns and not plan.selection["excluded"]
    assert "do worse under 3-fold cross-validation" in plan.selection["reason"]


def test_a_quick_model_no_better_than_chance_drops_nothing() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600),
                          "y": rng.integers(0, 2, 600)})
    plan = select_features(_plan(frame), frame, seed=2)
    assert plan.feature_columns == ["a", "b"]
    assert "no better than chance" in plan.selection["reason"]


def test_selection_never_leaves_the_model_without_input() -> None:
    frame = _synthetic()
    plan = select_features(_plan(frame), frame, max_features=1, seed=1)
    assert plan.feature_columns == ["signal"]


def test_engineer_stage_selects_and_reports(tmp_path, churn_frame) -> None:
    from autokfp.steps import engineer_features as engineer_features_step
    from tests.conftest import small_config

    frame = churn_frame.head(800)
    frame.to_parquet(tmp_path / "customers.parquet", index=False)
    config = small_config(tmp_path, budget={"max_runtime_secs": 10, "max_features": 8})
    schema = profile_frame(frame, "files/customers.parquet", "file", str(tmp_path))
    (tmp_path / "schema.json").write_text(schema.to_json())
    summary = engineer_features_step.engineer_features(config, tmp_path / "customers.parquet",
                                    tmp_path / "schema.json", tmp_path / "train.parquet",
                                    tmp_path / "test.parquet", tmp_path / "plan.json",
                                    tmp_path / "features.md")
    assert summary.features <= 8
    report = (tmp_path / "features.md").read_text()
    assert "## Feature selection by importance" in report
    assert "budget.max_features 8" in report
    plan = FeaturePlan.from_json((tmp_path / "plan.json").read_text())
    assert plan.feature_importance and len(plan.feature_columns) == summary.features


@pytest.mark.parametrize("setting", ["off"])
def test_selection_can_be_switched_off(tmp_path, churn_frame, setting) -> None:
    from autokfp.steps import engineer_features as engineer_features_step
    from tests.conftest import small_config

    frame = churn_frame.head(400)
    frame.to_parquet(tmp_path / "customers.parquet", index=False)
    config = small_config(tmp_path, selection={"feature_selection": setting})
    schema = profile_frame(frame, "files/customers.parquet", "file", str(tmp_path))
    (tmp_path / "schema.json").write_text(schema.to_json())
    engineer_features_step.engineer_features(config, tmp_path / "customers.parquet", tmp_path / "schema.json",
                          tmp_path / "train.parquet", tmp_path / "test.parquet",
                          tmp_path / "plan.json")
    plan = FeaturePlan.from_json((tmp_path / "plan.json").read_text())
    assert plan.selection == {} and plan.excluded_features == []


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_batched_permutation_scores_agree_with_scikit_learn(task) -> None:
    """The batched shuffle scoring gives scikit-learn's baseline score exactly and the same
    importances up to shuffle noise; a feature the model never uses scores exactly 0."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import get_scorer

    from autokfp.modeling.features import _QUICK_SCORERS, _shuffled_scores

    rng = np.random.default_rng(3)
    n = 1200
    x = rng.normal(size=(n, 4))
    signal = 2.0 * x[:, 0] + 0.7 * x[:, 1]
    if task == "regression":
        y = signal + rng.normal(scale=0.3, size=n)
        model = HistGradientBoostingRegressor(max_iter=40, random_state=0)
    else:
        edges = [0.0] if task == "binary" else [-1.0, 1.0]
        y = np.digitize(signal + rng.normal(scale=0.5, size=n), edges).astype(str)
        model = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    x[:, 3] = 0.0  # constant: the model can never split on it
    model.fit(x[:800], y[:800])
    held, held_y = x[800:], y[800:]
    score, permuted = _shuffled_scores(model, held, held_y, task, repeats=10, seed=0)
    scoring = _QUICK_SCORERS[task]
    assert score == pytest.approx(get_scorer(scoring)(model, held, held_y), abs=1e-9)
    ours = (score - permuted).mean(axis=1)
    theirs = permutation_importance(model, held, held_y, scoring=scoring, n_repeats=10,
                                    random_state=0).importances_mean
    assert ours[0] > ours[1] > max(abs(ours[2]), 0.0) and theirs[0] > theirs[1]
    np.testing.assert_allclose(ours[:2], theirs[:2], rtol=0.25)
    assert np.all(permuted[3] == score)  # never used → exactly zero importance
    assert abs(ours[2]) < 0.1 * ours[1]


FRESH_PROCESS_SELECTION = """
import json, sys
import pandas as pd
from threadpoolctl import threadpool_info
import autokfp.modeling.features as features

assert "sklearn.ensemble" not in sys.modules
seen = []
scores = features._shuffled_scores

def spy(*args, **kwargs):  # called inside the limit, after the quick model was fitted
    seen.append([p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openmp"])
    return scores(*args, **kwargs)

features._shuffled_scores = spy
plan = features.FeaturePlan.from_json(open(sys.argv[1]).read())
features.select_features(plan, pd.read_parquet(sys.argv[2]), seed=0)
print(json.dumps(seen))
"""


def test_the_quick_model_runs_one_openmp_thread_in_a_process_that_had_not_loaded_it(tmp_path):
    """threadpool_limits limits the libraries loaded when it starts: select_features loads
    scikit-learn's estimators (and their OpenMP runtime) first, so even a fresh process's
    first selection fits on one thread (OMP_NUM_THREADS=3 here: 3 without the early import;
    31.4 CPU-s against 4.0 for the README run's selection at load 14)."""
    import json
    import os
    import subprocess
    import sys

    frame = _synthetic(600)
    (tmp_path / "plan.json").write_text(_plan(frame).to_json())
    frame.to_parquet(tmp_path / "rows.parquet")
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS_SELECTION,
                           str(tmp_path / "plan.json"), str(tmp_path / "rows.parquet")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen and all(threads == [1] for threads in seen), seen
