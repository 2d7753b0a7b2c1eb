"""The linear bootstrap (``modeling.bootstrap``) against the loop it replaced: the same
random draws, so every sample's metric must equal the metric computed on the drawn rows."""

from __future__ import annotations

import numpy as np
import pytest

from autokfp.modeling.bootstrap import Resampled, bootstrap_values
from autokfp.modeling.evaluation import _paired_bootstrap, metric_value


def _old_loop(metric, truth, score_sets, task, samples, seed):
    """The bootstrap as metric_with_interval, metric_spread and _paired_bootstrap did it:
    the drawn rows indexed out, the metric recomputed on them."""
    rng = np.random.default_rng(seed)
    out = []
    n = len(truth)
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        if task != "regression" and len(np.unique(truth[idx])) < 2:
            continue
        out.append(tuple(metric_value(metric, truth[idx], s[idx], task) for s in score_sets))
    return out


def _data(task: str, rows: int, seed: int, ties: bool):
    rng = np.random.default_rng(seed)
    if task == "regression":
        truth = rng.normal(size=rows)
        a = truth + rng.normal(scale=0.5, size=rows)
        b = truth + rng.normal(scale=0.8, size=rows)
        return truth, a, b
    k = 2 if task == "binary" else 4
    truth = rng.integers(0, k, rows)
    def probs(noise):
        raw = np.eye(k)[truth] + rng.random((rows, k)) * noise
        if ties:  # few distinct scores: many tied pairs, as a coarse model gives
            raw = np.round(raw, 1) + 0.01
        return raw / raw.sum(axis=1, keepdims=True)
    return truth, probs(2.0), probs(4.0)


CASES = [("binary", m) for m in ("auc", "logloss", "accuracy", "f1")] + \
    [("multiclass", m) for m in ("logloss", "accuracy", "f1")] + \
    [("regression", m) for m in ("rmse", "mae", "r2")]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("task", "metric"), CASES)
def test_every_sample_equals_the_metric_on_the_drawn_rows(task, metric, ties) -> None:
    truth, a, b = _data(task, 300, seed=7, ties=ties)
    new = bootstrap_values(metric, truth, (a, b), task, samples=40, seed=5)
    old = _old_loop(metric, truth, (a, b), task, samples=40, seed=5)
    assert len(new) == len(old) == 40
    np.testing.assert_allclose(np.array(new), np.array(old), rtol=1e-10, atol=1e-12)
    # and the samples differ from each other (a constant would pass the comparison above
    # only if the old loop were constant too)
    assert np.std(np.array(new)[:, 0]) > 0


def test_one_class_samples_are_left_out_as_before() -> None:
    # 1 positive in 8 rows: about a third of the samples draw no positive
    truth = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    scores = np.c_[np.linspace(0.9, 0.1, 8), np.linspace(0.1, 0.9, 8)]
    new = bootstrap_values("auc", truth, (scores,), "binary", samples=60, seed=1)
    old = _old_loop("auc", truth, (scores,), "binary", samples=60, seed=1)
    assert 10 < len(new) == len(old) < 60
    np.testing.assert_allclose(new, old, rtol=1e-12)


def test_weighted_auc_counts_tied_pairs_a_half() -> None:
    # positives 0.5, 0.5; negatives 0.5, 0.2: pairs (4): 2 ties (0.5 each) + 2 wins = 3/4
    truth = np.array([1, 1, 0, 0])
    scores = np.c_[1 - np.array([0.5, 0.5, 0.5, 0.2]), [0.5, 0.5, 0.5, 0.2]]
    prepared = Resampled("auc", truth, scores, "binary")
    assert prepared.value(np.ones(4)) == pytest.approx(0.75)
    # the first positive drawn 3 times: 6 pairs tie-or-win; (3+1)*(0.5) + (3+1)*1 = 6 of 8
    assert prepared.value(np.array([3.0, 1.0, 1.0, 1.0])) == pytest.approx(6 / 8)
    with pytest.raises(ValueError, match="Only one class"):
        prepared.value(np.array([1.0, 1.0, 0.0, 0.0]))


def test_non_finite_scores_are_refused() -> None:
    scores = np.c_[[0.5, 0.5], [0.5, np.nan]]
    with pytest.raises(ValueError, match="NaN or infinite"):
        Resampled("auc", np.array([0, 1]), scores, "binary")


def test_paired_bootstrap_gives_the_old_loops_figures() -> None:
    truth, a, b = _data("binary", 500, seed=11, ties=True)
    improvement, p_better, low, high, count = _paired_bootstrap(truth, a, b, "binary", "auc",
                                                                100, seed=3)
    old = np.array([x - y for x, y in _old_loop("auc", truth, (a, b), "binary", 100, 3)])
    assert count == len(old) == 100
    assert p_better == pytest.approx(float(np.mean(old > 0)))
    assert (low, high) == pytest.approx(tuple(np.quantile(old, [0.05, 0.95])))
    assert improvement > 0  # a is the less noisy model


def test_macro_f1_averages_over_the_classes_a_sample_holds() -> None:
    # class 2 is one row that no model predicts: samples without it average two classes,
    # as scikit-learn's f1_score(average="macro") does on the drawn rows
    rng = np.random.default_rng(2)
    truth = np.r_[rng.integers(0, 2, 29), 2]
    scores = np.c_[np.eye(2)[truth.clip(0, 1)] + rng.random((30, 2)), np.zeros(30)]
    scores = scores / scores.sum(axis=1, keepdims=True)
    new = bootstrap_values("f1", truth, (scores,), "multiclass", samples=50, seed=4)
    old = _old_loop("f1", truth, (scores,), "multiclass", samples=50, seed=4)
    np.testing.assert_allclose(new, old, rtol=1e-12)
    assert len({round(v, 9) for (v,) in new}) > 5
