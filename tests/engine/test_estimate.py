"""Pooling the candidates' out-of-sample rows with the test rows (``pool_rows``): the rows
every candidate scored, each candidate's scores and the labels of exactly those rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from autokfp.modeling.estimate import pool_rows, save_holdout


def _candidate(folder: Path, engine: str, positions, scores, truth, meta, predictions):
    engine_dir = folder / engine / "artifacts" / "engine"
    engine_dir.mkdir(parents=True)
    save_holdout(engine_dir, positions, scores, truth)
    return SimpleNamespace(path=folder / engine, meta=meta, engine=engine,
                           predictions=predictions)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_the_common_rows_keep_each_candidates_own_scores(tmp_path: Path, task: str) -> None:
    rng = np.random.default_rng(3)
    rows = 500
    truth_all = rng.integers(0, 2, rows).astype(float)  # a label per training row
    classes = task == "binary"
    meta = ({"task": "binary", "class_labels": ["no", "yes"]} if classes
            else {"task": "regression"})
    test_truth = pd.Series(rng.integers(0, 2, 40), name="y")
    candidates, expected_scores = [], {}
    # out of order, and overlapping only in part: a's rows 0..399, b's 100..499
    for engine, first in (("a", 0), ("b", 100)):
        positions = rng.permutation(np.arange(first, first + 400))
        scores = rng.random((400, 2)) if classes else rng.random(400)
        if classes:
            scores = scores / scores.sum(axis=1, keepdims=True)
            test = pd.DataFrame(rng.random((40, 2)), columns=["probability_no", "probability_yes"])
        else:
            test = pd.DataFrame({"prediction": rng.random(40)})
        candidates.append(_candidate(tmp_path, engine, positions, scores, truth_all[positions],
                                     meta, test))
        expected_scores[engine] = (dict(zip(positions.tolist(), scores)), test)
    pooled = pool_rows(candidates, test_truth, meta)
    assert pooled is not None and (pooled.holdout_rows, pooled.test_rows) == (300, 40)
    common = list(range(100, 400))
    if classes:
        assert pooled.truth.tolist() == ([["no", "yes"][int(truth_all[r])] for r in common]
                                         + test_truth.astype(str).tolist())
    else:
        assert pooled.truth.tolist() == [*truth_all[common], *test_truth.astype(float)]
    for engine, (by_position, test) in expected_scores.items():
        frame = pooled.predictions[engine]
        held = np.array([by_position[r] for r in common])
        np.testing.assert_array_equal(frame.to_numpy()[:300], held.reshape(300, -1))
        np.testing.assert_array_equal(frame.to_numpy()[300:], test.to_numpy())


def test_no_common_row_pools_nothing(tmp_path: Path) -> None:
    meta = {"task": "regression"}
    test = pd.DataFrame({"prediction": [0.5]})
    a = _candidate(tmp_path, "a", [0, 1], [0.1, 0.2], [0, 1], meta, test)
    b = _candidate(tmp_path, "b", [2, 3], [0.1, 0.2], [0, 1], meta, test)
    assert pool_rows([a, b], pd.Series([1.0]), meta) is None


def test_a_sampled_engines_rows_are_pooled_by_their_file_positions(tmp_path: Path) -> None:
    """An engine that trained on a sample of the file (a frame engine above
    FRAME_ENGINE_MAX_ROWS) names its out-of-sample rows by their position in the sample; the
    train step stores them by their position in the file, as an engine that read the whole
    file names them, so pooling compares both on the same rows with their own labels."""
    from autokfp.modeling.feature_file import sampled_positions
    from autokfp.steps.train_model import _keep_holdout

    total, kept = 1_000, 300
    values = np.arange(total, dtype=float) * 10  # a row's value says which row it is
    in_file = sampled_positions(total, kept, seed=4)
    sample_target = pd.Series(values[in_file])
    held = np.arange(0, kept, 3)  # the sampled engine's validation rows, sample positions
    engine_dir = tmp_path / "sampled" / "artifacts" / "engine"
    engine_dir.mkdir(parents=True)
    # (an engine that says its rows are out of fold: unstated ones are never pooled)
    result = SimpleNamespace(holdout=(held, values[in_file[held]] + 1.0),
                             artifact_dir=engine_dir, holdout_kind="out_of_fold")
    meta = {"task": "regression"}
    _keep_holdout(result, sample_target, meta, in_file)
    sampled = SimpleNamespace(path=tmp_path / "sampled", meta=meta, engine="sampled",
                              predictions=pd.DataFrame({"prediction": [0.0]}))
    whole = _candidate(tmp_path, "whole", np.arange(total), values + 2.0, values, meta,
                       pd.DataFrame({"prediction": [0.0]}))
    pooled = pool_rows([sampled, whole], pd.Series([0.0]), meta)
    assert pooled is not None and pooled.holdout_rows == len(held)
    truth = pooled.truth.to_numpy()[:-1]
    np.testing.assert_array_equal(np.sort(truth), np.sort(values[in_file[held]]))
    for engine, offset in (("sampled", 1.0), ("whole", 2.0)):
        np.testing.assert_array_equal(pooled.predictions[engine]["prediction"].to_numpy()[:-1],
                                      truth + offset)


def test_an_engine_that_does_not_say_what_its_rows_are_is_compared_on_the_test_rows(
        tmp_path: Path) -> None:
    """The train step stores the engine's ``holdout_kind``; a plugin that states none
    ("unstated"), or rows that also chose the model ("validation"), pool nothing, whatever
    the rows: selection then compares on the test rows alone."""
    from autokfp.modeling.estimate import holdout_kind
    from autokfp.steps.train_model import _keep_holdout

    meta = {"task": "regression"}
    values = np.arange(50, dtype=float)
    whole = _candidate(tmp_path, "whole", np.arange(50), values, values, meta,
                       pd.DataFrame({"prediction": [0.0]}))
    for kind in ("unstated", "validation", "out_of_fold"):
        engine_dir = tmp_path / kind / "artifacts" / "engine"
        engine_dir.mkdir(parents=True)
        result = SimpleNamespace(holdout=(np.arange(50), values), artifact_dir=engine_dir,
                                 **({} if kind == "unstated" else {"holdout_kind": kind}))
        stored = {"task": "regression"}
        _keep_holdout(result, pd.Series(values), stored, None)
        assert stored["holdout_kind"] == kind == holdout_kind(tmp_path / kind)
        other = SimpleNamespace(path=tmp_path / kind, meta=stored, engine=kind,
                                predictions=pd.DataFrame({"prediction": [0.0]}))
        pooled = pool_rows([other, whole], pd.Series([0.0]), meta)
        assert (pooled is not None) == (kind == "out_of_fold"), kind
