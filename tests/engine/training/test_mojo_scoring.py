"""The MOJO fast path (``MojoScorer.predict_rows``: one ``score0`` call per row) answers
exactly as H2O's ``EasyPredictModelWrapper`` (``predict_rows_easy``), for a binary,
a multiclass and a regression model, on held-out rows and on rows a client could send:
unseen categories, missing and NaN values, numbers as text, columns the model does not
know, columns left out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.engine_registry import get_engine
from autokfp.modeling.features import FeaturePlan, apply_features

pytestmark = pytest.mark.slow  # two small H2O AutoML runs (GLM and GBM), under a minute each


def _hostile(rows: list[dict], categorical: set[str]) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        names = sorted(row)
        name = names[i % len(names)]
        if i % 5 == 0:
            row[name] = None
        elif i % 5 == 1:
            row[name] = math.nan
        elif i % 5 == 2 and categorical:
            row[sorted(categorical)[i % len(categorical)]] = "a level never seen"
        elif i % 5 == 3:
            numeric = [n for n in names if n not in categorical and isinstance(row[n], float)
                       and row[n] == row[n]]
            if numeric:
                row[numeric[0]] = str(row[numeric[0]])  # a number sent as text
        else:
            row.pop(name)
            row["a column the model does not know"] = 7
        out.append(row)
    return out


def _assert_same(scorer, features: pd.DataFrame) -> None:
    rows = features.astype(object).where(features.notna(), None).to_dict("records")
    cases = rows + _hostile(rows, set(scorer._categorical))
    fast = scorer.predict_rows(iter(cases), len(cases))
    easy = scorer.predict_rows_easy(iter(cases))
    assert fast.shape == easy.shape
    np.testing.assert_array_equal(fast, easy)  # to the bit
    # a frame (``predict``: each column coded at once, each distinct row scored once)
    # answers as its rows do, for the plain numeric columns and for object columns holding
    # what a client could send
    hostile = pd.DataFrame(_hostile(rows, set(scorer._categorical)), columns=list(features.columns))
    repeated = pd.concat([features.head(30), features, features.head(30)], ignore_index=True)
    for frame in (features, repeated,  # rows that repeat are scored once, answered each time
                  pd.concat([features.astype(object), hostile, hostile], ignore_index=True)):
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        np.testing.assert_array_equal(scorer.predict(frame),
                                      scorer.predict_rows(iter(records), len(records)))


def test_the_fast_path_equals_easy_predict_for_the_trained_binary_model(trained_package):
    model = Path(trained_package.paths.model)
    meta = json.loads((model / "artifacts" / "meta.json").read_text())
    plan = FeaturePlan.from_json((model / "artifacts" / "plan.json").read_text())
    scorer = get_engine("h2o").load_scorer(model / "artifacts" / "engine", meta["task"],
                                           meta["class_labels"])
    _assert_same(scorer, apply_features(pd.read_parquet(trained_package.paths.test), plan))


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_the_fast_path_equals_easy_predict_for_multiclass_and_regression(task, churn_frame,
                                                                         tmp_path):
    from autokfp.config import BudgetSpec

    frame = churn_frame.head(400)
    features = frame[["age", "gender", "region", "contract_type", "tenure_months",
                      "monthly_charges", "num_support_tickets"]].copy()
    if task == "multiclass":
        target = frame["internet_service"].astype(str)
        classes = sorted(target.unique())
    else:
        target = frame["total_charges"].astype(float).fillna(0.0)
        classes = None
    engine = get_engine("h2o", {"max_models": 2, "nfolds": 2, "max_mem_size": "1G",
                                "include_algos": ["GLM", "GBM"]})
    metric = "logloss" if task == "multiclass" else "rmse"
    result = engine.train(features, target, task, classes, ["gender", "region", "contract_type"],
                          BudgetSpec(max_runtime_secs=10), metric, tmp_path / "engine")
    scorer = engine.load_scorer(result.artifact_dir, task, classes)
    _assert_same(scorer, features.head(150))


def test_the_runs_shared_scorer_answers_as_in_process_and_a_failing_one_is_left(
        trained_package, monkeypatch):
    """A local run's tasks score H2O models in one shared scorer (``mojo_service``): the
    same answers to the bit as this process's own JVM, each model loaded there once; a
    scorer that stops answering (SIGSTOP) is left after its time limit and one killed at
    once, each time with the task's own JVM giving the same answers."""
    import os
    import signal
    import time

    from autokfp.training import mojo_service

    model = Path(trained_package.paths.model)
    meta = json.loads((model / "artifacts" / "meta.json").read_text())
    plan = FeaturePlan.from_json((model / "artifacts" / "plan.json").read_text())
    features = apply_features(pd.read_parquet(trained_package.paths.test), plan)
    rows = features.astype(object).where(features.notna(), None).to_dict("records")
    rows += _hostile(rows, set())

    def scorer():
        return get_engine("h2o").load_scorer(model / "artifacts" / "engine", meta["task"],
                                             meta["class_labels"])

    monkeypatch.setenv(mojo_service.SCORER_ENV, "0")  # switched off: in this process
    own = scorer()
    assert own._shared is None
    expected, expected_rows = own.predict(features), own.predict_rows(iter(rows))
    monkeypatch.delenv(mojo_service.SCORER_ENV)
    monkeypatch.setattr(mojo_service, "_unusable", False)
    with mojo_service.shared_mojo_scorer() as address:
        assert address is not None
        pid = int(os.environ[mojo_service.SCORER_ENV].partition(":")[0])
        shared = scorer()
        assert shared._shared is not None and shared._local is None  # no JVM here for it
        np.testing.assert_array_equal(shared.predict(features), expected)
        np.testing.assert_array_equal(shared.predict_rows(iter(rows)), expected_rows)
        begun = time.monotonic()
        again = scorer()  # loaded there once: the second task's load is a look-up
        assert again._shared is not None and again._shared.handle == shared._shared.handle
        # the same handle says it was a look-up; the time only that it waited on no load's
        # limit (180 s): 60 s leaves room for a loaded machine's round trip (was 3 s, 1 s)
        assert time.monotonic() - begun < 60.0

        monkeypatch.setattr(mojo_service, "SCORE_TIMEOUT_SECS", 2.0)
        os.kill(pid, signal.SIGSTOP)
        try:
            begun = time.monotonic()
            np.testing.assert_array_equal(again.predict(features), expected)
            assert time.monotonic() - begun < 2.0 + 0.002 * len(features) + 10
            assert again._shared is None and again._local is not None
            assert mojo_service.shared_address() is None  # this process scores itself now
        finally:
            os.kill(pid, signal.SIGCONT)
        monkeypatch.setattr(mojo_service, "_unusable", False)
        # the product's time limit again (120 s): a scorer that is gone must be noticed at
        # once, not after it. 60 s is room for this process's own JVM to load the model on a
        # loaded machine; the bound was 5 s under the 2 s limit above, which it could not tell
        monkeypatch.setattr(mojo_service, "SCORE_TIMEOUT_SECS", 120.0)
        os.kill(pid, signal.SIGKILL)
        begun = time.monotonic()
        np.testing.assert_array_equal(shared.predict(features), expected)
        assert time.monotonic() - begun < 60.0  # gone: noticed at once, no time limit waited
        assert shared._shared is None
        assert scorer()._shared is None  # later loads do not try it again
    assert mojo_service.SCORER_ENV not in os.environ
