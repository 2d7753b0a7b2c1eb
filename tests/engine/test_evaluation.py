"""Metrics on held-out rows and the champion/challenger decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from autokfp.modeling.evaluation import classification_details, compare_to_champion, compute_metrics

N = 2000
BINARY = {"task": "binary", "classes": [0, 1], "class_labels": ["0", "1"], "threshold": 0.5}
MULTI = {"task": "multiclass", "classes": ["bronze", "gold", "silver"],
         "class_labels": ["bronze", "gold", "silver"]}
REGRESSION = {"task": "regression", "classes": None, "class_labels": None}


def _binary_frame(score: np.ndarray) -> pd.DataFrame:
    p = 1.0 / (1.0 + np.exp(-score))
    return pd.DataFrame({"prediction": (p >= 0.5).astype(int), "probability_0": 1.0 - p,
                         "probability_1": p})


@pytest.fixture(scope="module")
def binary_case():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    signal = 1.2 * (y - 0.5) + rng.normal(0, 1.0, N)
    return pd.Series(y, name="churned"), signal


def _compare(y, challenger, champion, meta=BINARY, metric="auc", min_improvement=0.0,
             confidence=0.9, samples=100):
    return compare_to_champion(y, challenger, champion, meta, metric, min_improvement, confidence,
                               samples, seed=1, champion_version=None if champion is None else "3")


# --------------------------------------------------------------------------- metrics


def test_binary_metrics_match_sklearn(binary_case) -> None:
    y, signal = binary_case
    frame = _binary_frame(signal)
    got = compute_metrics(y, frame, BINARY)
    p = frame["probability_1"].to_numpy()
    predicted = (p >= 0.5).astype(int)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["logloss"] == pytest.approx(skm.log_loss(y, np.column_stack([1 - p, p])))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert got["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert got["rows"] == N
    assert 0.7 < got["auc"] < 0.9


def test_binary_metrics_respect_the_threshold(binary_case) -> None:
    y, signal = binary_case
    frame = _binary_frame(signal)
    strict = compute_metrics(y, frame, {**BINARY, "threshold": 0.8})
    predicted = (frame["probability_1"].to_numpy() >= 0.8).astype(int)
    assert strict["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert strict["recall"] < compute_metrics(y, frame, BINARY)["recall"]


def test_binary_string_labels_are_matched_by_text() -> None:
    meta = {"task": "binary", "classes": ["no", "yes"], "class_labels": ["no", "yes"]}
    y = pd.Series(["no", "yes", "yes", "no"])
    frame = pd.DataFrame({"probability_no": [0.9, 0.2, 0.4, 0.6],
                          "probability_yes": [0.1, 0.8, 0.6, 0.4]})
    got = compute_metrics(y, frame, meta)
    assert got["auc"] == 1.0
    assert got["accuracy"] == 1.0


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 3, 600)
    logits = rng.normal(0, 1, (600, 3))
    logits[np.arange(600), codes] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array(MULTI["class_labels"])
    y = pd.Series(labels[codes])
    frame = pd.DataFrame({f"probability_{c}": probs[:, i] for i, c in enumerate(labels)})
    got = compute_metrics(y, frame, MULTI)
    assert got["logloss"] == pytest.approx(skm.log_loss(codes, probs, labels=[0, 1, 2]))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(codes, probs.argmax(axis=1)))
    assert got["f1"] == pytest.approx(skm.f1_score(codes, probs.argmax(axis=1), average="macro"))
    assert "auc" not in got
    details = classification_details(y, frame, MULTI)
    assert details["labels"] == list(labels)
    matrix = np.asarray(details["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 600
    assert np.trace(matrix) / 600 == pytest.approx(got["accuracy"])


def test_unseen_labels_are_left_out_of_classification_metrics() -> None:
    y = pd.Series(["bronze", "gold", "platinum", "silver"])
    probs = np.eye(3)[[0, 1, 0, 2]]
    frame = pd.DataFrame({f"probability_{c}": probs[:, i]
                          for i, c in enumerate(MULTI["class_labels"])})
    got = compute_metrics(y, frame, MULTI)
    assert got["rows"] == 3
    assert got["accuracy"] == 1.0


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(4)
    truth = rng.normal(100, 20, 500)
    pred = truth + rng.normal(0, 5, 500)
    got = compute_metrics(pd.Series(truth), pd.DataFrame({"prediction": pred}), REGRESSION)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth, pred)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(truth, pred))
    assert got["r2"] == pytest.approx(skm.r2_score(truth, pred))
    assert 4.0 < got["rmse"] < 6.0


def test_only_the_metrics_asked_for_are_computed_with_the_same_values(binary_case) -> None:
    y, signal = binary_case
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([1.0, 1.0, 1.0], 300)
    cases = [(y, _binary_frame(signal), BINARY),
             (pd.Series(np.array(MULTI["class_labels"])[rng.integers(0, 3, 300)]),
              pd.DataFrame({f"probability_{c}": probs[:, i]
                            for i, c in enumerate(MULTI["class_labels"])}), MULTI),
             (pd.Series(rng.normal(0, 1, 300)), pd.DataFrame({"prediction": rng.normal(0, 1, 300)}),
              REGRESSION)]
    for truth, frame, meta in cases:
        every = compute_metrics(truth, frame, meta)
        for name in every:
            assert compute_metrics(truth, frame, meta, only={name}) == {
                name: every[name], "rows": every["rows"]}  # the same value, to the bit
        assert compute_metrics(truth, frame, meta, only=set(every)) == every


def test_binary_details_have_a_roc_curve(binary_case) -> None:
    y, signal = binary_case
    details = classification_details(y, _binary_frame(signal), BINARY)
    roc = details["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) <= 200
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0
    assert skm.auc(roc["fpr"], roc["tpr"]) == pytest.approx(
        skm.roc_auc_score(y, _binary_frame(signal)["probability_1"]), abs=0.01)


# ------------------------------------------------------------------------ comparison


def test_no_champion_promotes(binary_case) -> None:
    y, signal = binary_case
    result = _compare(y, _binary_frame(signal), None)
    assert result.promote is True
    assert result.champion is None
    assert "no current champion" in result.reason
    assert result.challenger == pytest.approx(skm.roc_auc_score(y, _binary_frame(signal)
                                                                ["probability_1"]))


def test_identical_predictions_do_not_promote(binary_case) -> None:
    y, signal = binary_case
    frame = _binary_frame(signal)
    result = _compare(y, frame, frame.copy())
    assert result.promote is False
    assert result.improvement == 0.0
    assert result.probability_better == 0.0
    assert "champion kept" in result.reason
    assert result.champion_version == "3"


def test_clearly_better_challenger_is_promoted(binary_case) -> None:
    y, signal = binary_case
    noisy = signal + np.random.default_rng(9).normal(0, 1.5, N)
    result = _compare(y, _binary_frame(signal), _binary_frame(noisy), confidence=0.9)
    assert result.promote is True
    assert result.improvement > 0.05
    assert result.probability_better >= 0.9
    assert result.ci_low > 0
    assert result.bootstrap_samples == 100
    assert "beats champion" in result.reason
    # and the other way round the better champion stays
    reverse = _compare(y, _binary_frame(noisy), _binary_frame(signal))
    assert reverse.promote is False
    assert reverse.improvement < 0
    assert reverse.probability_better < 0.1


def test_marginally_better_challenger_below_confidence_is_kept(binary_case) -> None:
    y, signal = binary_case
    rng = np.random.default_rng(21)
    a = signal + rng.normal(0, 0.3, N)
    b = signal + rng.normal(0, 0.3, N)
    auc_a = skm.roc_auc_score(y, a)
    auc_b = skm.roc_auc_score(y, b)
    better, worse = (a, b) if auc_a > auc_b else (b, a)
    result = _compare(y, _binary_frame(better), _binary_frame(worse), confidence=0.9)
    assert 0 < result.improvement < 0.01
    assert result.probability_better < 0.9
    assert result.promote is False
    assert "needs > 0.0 and >= 0.9" in result.reason


def test_min_improvement_blocks_a_confident_but_small_gain(binary_case) -> None:
    y, signal = binary_case
    noisy = signal + np.random.default_rng(9).normal(0, 1.5, N)
    result = _compare(y, _binary_frame(signal), _binary_frame(noisy), min_improvement=0.5)
    assert result.probability_better >= 0.9
    assert result.promote is False


def test_logloss_lower_is_better(binary_case) -> None:
    y, signal = binary_case
    sharp = _binary_frame(signal)
    overconfident = _binary_frame(4.0 * signal)  # same ranking, much worse calibration
    result = _compare(y, sharp, overconfident, metric="logloss")
    assert result.challenger < result.champion
    assert result.improvement > 0
    assert result.promote is True
    worse = _compare(y, overconfident, sharp, metric="logloss")
    assert worse.improvement < 0
    assert worse.promote is False


def test_rmse_lower_is_better() -> None:
    rng = np.random.default_rng(5)
    truth = pd.Series(rng.normal(50, 10, N))
    close = pd.DataFrame({"prediction": truth + rng.normal(0, 2, N)})
    far = pd.DataFrame({"prediction": truth + rng.normal(0, 6, N)})
    better = _compare(truth, close, far, meta=REGRESSION, metric="rmse")
    assert better.challenger < better.champion
    assert better.improvement == pytest.approx(better.champion - better.challenger)
    assert better.promote is True
    assert better.probability_better >= 0.9
    worse = _compare(truth, far, close, meta=REGRESSION, metric="rmse")
    assert worse.promote is False
    assert worse.probability_better < 0.1


def test_multiclass_logloss_comparison() -> None:
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 3, 1000)
    y = pd.Series(np.array(MULTI["class_labels"])[codes])
    good = np.full((1000, 3), 0.15)
    good[np.arange(1000), codes] = 0.7
    flat = np.full((1000, 3), 1 / 3)

    def frame(p):
        return pd.DataFrame({f"probability_{c}": p[:, i]
                             for i, c in enumerate(MULTI["class_labels"])})

    result = _compare(y, frame(good), frame(flat), meta=MULTI, metric="logloss")
    assert result.promote is True
    assert result.challenger < result.champion
    assert _compare(y, frame(flat), frame(good), meta=MULTI, metric="logloss").promote is False


def test_comparison_is_reproducible_and_serialisable(binary_case) -> None:
    y, signal = binary_case
    noisy = signal + np.random.default_rng(9).normal(0, 0.5, N)
    first = _compare(y, _binary_frame(signal), _binary_frame(noisy)).to_dict()
    second = _compare(y, _binary_frame(signal), _binary_frame(noisy)).to_dict()
    assert first == second
    assert set(first) >= {"metric", "challenger", "champion", "improvement", "probability_better",
                          "promote", "reason", "champion_version"}


def test_the_bootstraps_auc_is_scikit_learns() -> None:
    """``binary_auc`` (a rank sum, used hundreds of times per bootstrap) equals scikit-learn's
    ``roc_auc_score`` to 1e-12, with and without tied scores, and refuses one class alone."""
    from sklearn.metrics import roc_auc_score

    from autokfp.modeling.evaluation import binary_auc

    rng = np.random.default_rng(0)
    for rows in (5, 60, 900):
        for decimals in (1, 2, 8):  # 1 decimal: many ties
            y = rng.integers(0, 2, rows)
            y[:2] = [0, 1]
            scores = np.round(rng.random(rows) * 0.5 + 0.3 * y, decimals)
            assert binary_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    with pytest.raises(ValueError, match="one class"):
        binary_auc(np.ones(4, dtype=int), np.arange(4.0))
    # scikit-learn refuses NaN and infinite scores; a rank sum alone would give NaN or 1.0
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            binary_auc(np.array([0, 1, 1]), np.array([0.1, bad, 0.3]))
