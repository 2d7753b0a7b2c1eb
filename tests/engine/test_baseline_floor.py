"""A first model must beat the trivial baseline (class prior, mean) on held-out rows.

The models here are real scikit-learn models trained on real signal or on noise; the
comparison is the one selection uses when there is no champion yet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from autokfp.modeling.evaluation import compare_to_champion

BINARY = {"task": "binary", "classes": [0, 1], "class_labels": ["0", "1"], "threshold": 0.5}
MULTI = {"task": "multiclass", "classes": ["a", "b", "c"], "class_labels": ["a", "b", "c"]}
REGRESSION = {"task": "regression", "classes": None, "class_labels": None}


def _classification(n: int, signal: float, seed: int, classes: int = 2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    logits = signal * x[:, :classes] + rng.gumbel(size=(n, classes)) if classes > 2 else None
    if classes == 2:
        y = (signal * x[:, 0] + rng.logistic(size=n) > 0).astype(int)
    else:
        y = logits.argmax(axis=1)
    return x, y


def _first_model(x, y, meta, metric):
    half = len(y) // 2
    model = LogisticRegression(max_iter=500).fit(x[:half], y[:half])
    proba = model.predict_proba(x[half:])
    labels = meta["class_labels"]
    frame = pd.DataFrame({f"probability_{labels[i]}": proba[:, i] for i in range(len(labels))})
    truth = pd.Series([labels[v] for v in y[half:]])
    return compare_to_champion(truth, frame, None, meta, metric, 0.0, 0.9, 100, seed=3)


@pytest.mark.parametrize("metric", ["auc", "logloss", "accuracy"])
def test_a_model_of_noise_is_not_made_champion(metric):
    x, y = _classification(600, signal=0.0, seed=1)
    comparison = _first_model(x, y, BINARY, metric)
    assert comparison.promote is False
    assert "does not beat the trivial baseline" in comparison.reason
    assert "class prior" in comparison.reason and "300 held-out rows" in comparison.reason
    assert "selection.baseline_margin" in comparison.reason
    assert comparison.extra["baseline"]["passed"] is False


@pytest.mark.parametrize("metric", ["auc", "logloss", "accuracy"])
def test_a_model_with_signal_becomes_the_first_champion(metric):
    x, y = _classification(600, signal=2.0, seed=2)
    comparison = _first_model(x, y, BINARY, metric)
    assert comparison.promote is True, comparison.reason
    assert comparison.reason.startswith("no current champion: the first model becomes champion")
    assert comparison.improvement > comparison.extra["baseline"]["required_improvement"]


def test_a_worse_than_chance_model_is_refused_with_its_figures():
    """The case of the report: a first model at test AUC ~0.40 was promoted."""
    x, y = _classification(600, signal=1.0, seed=4)
    half = len(y) // 2
    model = LogisticRegression().fit(x[:half], 1 - y[:half])  # learns the labels inverted
    p = model.predict_proba(x[half:])[:, 1]
    frame = pd.DataFrame({"probability_0": 1 - p, "probability_1": p})
    comparison = compare_to_champion(pd.Series(y[half:].astype(str)), frame, None, BINARY, "auc",
                                     0.0, 0.9, 100, seed=3)
    assert comparison.challenger < 0.45
    assert comparison.promote is False
    assert "auc 0.2" in comparison.reason or "auc 0.3" in comparison.reason or \
        "auc 0.4" in comparison.reason
    assert "vs 0.5000 for the class prior" in comparison.reason


def test_multiclass_first_model_against_the_prior():
    x, y = _classification(900, signal=2.0, seed=5, classes=3)
    assert _first_model(x, y, MULTI, "logloss").promote is True
    x, y = _classification(900, signal=0.0, seed=6, classes=3)
    assert _first_model(x, y, MULTI, "logloss").promote is False


@pytest.mark.parametrize("signal, promoted", [(3.0, True), (0.0, False)])
def test_regression_first_model_against_the_mean(signal, promoted):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 3))
    y = signal * x[:, 0] + rng.normal(size=400)
    model = LinearRegression().fit(x[:200], y[:200])
    frame = pd.DataFrame({"prediction": model.predict(x[200:])})
    comparison = compare_to_champion(pd.Series(y[200:]), frame, None, REGRESSION, "rmse", 0.0, 0.9,
                                     100, seed=3)
    assert comparison.promote is promoted, comparison.reason
    assert "for the mean" in comparison.reason


def test_the_margin_is_a_setting():
    """A weak but real signal passes a small margin and fails a large one."""
    x, y = _classification(2000, signal=0.4, seed=8)
    loose = _first_model(x, y, BINARY, "auc")
    assert loose.promote is True, loose.reason
    half = len(y) // 2
    model = LogisticRegression().fit(x[:half], y[:half])
    p = model.predict_proba(x[half:])[:, 1]
    frame = pd.DataFrame({"probability_0": 1 - p, "probability_1": p})
    strict = compare_to_champion(pd.Series(y[half:].astype(str)), frame, None, BINARY, "auc", 0.0,
                                 0.9, 100, seed=3, baseline_margin=0.3)
    assert strict.promote is False
    assert "needs > 0.3000" in strict.reason
