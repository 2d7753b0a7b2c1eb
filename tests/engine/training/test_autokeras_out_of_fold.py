"""AutoKeras's out-of-sample estimate: k-fold refits of the chosen architecture, each row
scored by a model that never saw it (not the validation rows that chose the trial and the
epoch, which session 16 found flatter AutoKeras: it beat H2O there in 9 of 17 suite runs,
on fresh rows in 3)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from autokfp.training import autokeras_engine
from autokfp.training.autokeras_engine import (
    KerasEncoding,
    _cross_fit,
    _fold_numbers,
    _out_of_fold_scores,
    _SearchClock,
)


def test_every_row_is_scored_once_by_a_model_that_never_saw_it() -> None:
    """A memorising 'model' scores a row it trained on by its label and any other 0.5: every
    out-of-fold score must be 0.5, and each row scored exactly once, by folds stratified by
    class."""
    rng = np.random.default_rng(3)
    codes = (rng.random(103) < 0.3).astype(int)
    fold_of = _fold_numbers(codes, 5, seed=7)
    for label in (0, 1):  # stratified: each fold holds a fifth of each class, give or take one
        counts = np.bincount(fold_of[codes == label], minlength=5)
        assert counts.max() - counts.min() <= 1, counts
    scored_by: list[np.ndarray] = []

    def memoriser(trained: np.ndarray, scored: np.ndarray) -> np.ndarray:
        scored_by.append(scored)
        memory = dict(zip(trained.tolist(), codes[trained].tolist()))
        return np.array([memory.get(row, 0.5) for row in scored.tolist()], dtype=float)

    scores = _cross_fit(memoriser, fold_of, 5)
    assert scores is not None and np.all(scores == 0.5), scores
    assert len(scored_by) == 5
    assert sorted(np.concatenate(scored_by).tolist()) == list(range(103))
    # a fold that fails, or the time running out before the last fold, gives no scores
    assert _cross_fit(lambda trained, scored: None, fold_of, 5) is None
    assert _cross_fit(memoriser, fold_of, 5, give_up_at=time.monotonic() - 1) is None


def _searched(rows: int, seed: int):
    """A search's outcome on a learnable binary table: (clock holding a small compiled
    network and its epoch count, x whose first column is each row's number, y)."""
    import keras

    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(rows, 2))
    y = (signal.sum(axis=1) + 0.5 * rng.normal(size=rows) > 0).astype("float32")
    x = np.column_stack([np.arange(rows) / rows, signal]).astype("float32")
    keras.utils.set_random_seed(seed)
    network = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                                keras.layers.Dense(1, activation="sigmoid")])
    network.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    clock = _SearchClock(time.monotonic())
    clock.best_model, clock.best_epochs, clock.best_epoch_seconds = network, 10, 0.01
    return clock, x, y


def test_the_k_fold_refits_never_see_the_rows_they_score(monkeypatch) -> None:
    """Each fold's network (the search's architecture, fresh weights) trains on every row
    but its fold's and scores only those; the scores of every row rank the labels as a
    trained network does. Out-of-fold AUC over seeds 0-4 (3 folds): 0.947-0.978 (bound 0.85); a scatter
    of the scores onto the wrong rows gives ~0.5."""
    rows = 120
    clock, x, y = _searched(rows, seed=0)
    fits: list[set[int]] = []
    scored: list[set[int]] = []
    real_fit = autokeras_engine._fit_clone

    def watched_fit(source, optimizer, loss, xs, ys, *args):
        model, last = real_fit(source, optimizer, loss, xs, ys, *args)
        fits.append(set(np.rint(xs[:, 0] * rows).astype(int).tolist()))
        real_predict = model.predict

        def predict(xp, **kwargs):
            scored.append(set(np.rint(xp[:, 0] * rows).astype(int).tolist()))
            return real_predict(xp, **kwargs)

        model.predict = predict
        return model, last

    monkeypatch.setattr(autokeras_engine, "_fit_clone", watched_fit)
    encoding = KerasEncoding(columns=["id", "a", "b"], numeric=["id", "a", "b"],
                             means=[0.0] * 3, scales=[1.0] * 3)
    scores, note = _out_of_fold_scores(clock, x, y, y.astype(int), "binary", encoding, 32, 0,
                                       np.arange(rows), 3, limit_seconds=600)
    assert scores is not None, note
    assert note.startswith("out of fold: 3-fold refits"), note
    assert len(fits) == len(scored) == 3
    for trained, seen in zip(fits, scored):
        assert not trained & seen
        assert trained | seen == set(range(rows))
    assert sorted(row for seen in scored for row in seen) == list(range(rows))
    assert scores.shape == (rows, 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    assert roc_auc_score(y, scores[:, 1]) > 0.85


def _searched_with_slow_epochs(monkeypatch):
    """A searched network whose best trial's epochs took 1 s (5 folds x (1 s + 10 epochs x
    4/5 of the rows): 45 s estimated), with any fold's fit an error: (clock, x, y, encoding)."""
    clock, x, y = _searched(100, seed=1)
    clock.best_epoch_seconds = 1.0

    def no_fit(*args, **kwargs):
        raise AssertionError("no fold may be trained")

    monkeypatch.setattr(autokeras_engine, "_fit_clone", no_fit)
    encoding = KerasEncoding(columns=["id", "a", "b"], numeric=["id", "a", "b"],
                             means=[0.0] * 3, scales=[1.0] * 3)
    return clock, x, y, encoding


def test_k_fold_refits_over_their_share_of_the_budget_fall_back_to_the_validation_rows(
        monkeypatch) -> None:
    """When the k fits would take longer than out_of_fold_max_share of the budget (by the
    best trial's epoch times) none is run, and the engine says the validation rows are
    what it hands over (selection then compares on the held-out rows alone)."""
    clock, x, y, encoding = _searched_with_slow_epochs(monkeypatch)
    scores, note = _out_of_fold_scores(clock, x, y, y.astype(int), "binary", encoding, 32, 0,
                                       np.arange(100), 5, limit_seconds=30)
    assert scores is None
    assert note.startswith("validation rows: 5-fold refits would take about 45s by the best trial's epochs"), note
    assert _out_of_fold_scores(clock, x, y, y.astype(int), "binary", encoding, 32, 0,
                               np.arange(100), 0, limit_seconds=30)[0] is None


def test_k_fold_refits_that_would_end_past_the_childs_time_limit_are_not_begun(
        monkeypatch) -> None:
    """Within their share of the budget, but the engine's child would be killed before they
    ended (a long budget: search + refit + folds past isolation.engine_timeout): none is run
    and the validation rows are handed over, so the candidate is not lost with the child."""
    clock, x, y, encoding = _searched_with_slow_epochs(monkeypatch)
    scores, note = _out_of_fold_scores(clock, x, y, y.astype(int), "binary", encoding, 32, 0,
                                       np.arange(100), 5, limit_seconds=1000,
                                       stop_by=time.monotonic() + 30)
    assert scores is None
    assert note == ("validation rows: 5-fold refits would take about 45s by the best "
                    "trial's epochs, past the training child's time limit"), note

