"""Drift streamed from Parquet gives the verdicts of the whole frames, and codes stored as
text are tested as categories, as Evidently does."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_drift import _evidently, _frame

from autokfp.monitoring.drift import CATEGORICAL, METHODS, NUMERICAL, detect_drift
from autokfp.monitoring.drift_stream import (
    binned_wasserstein,
    detect_drift_parquet,
    numerical_verdict,
    sample_rows,
)


def _write(frame: pd.DataFrame, path) -> str:
    frame.to_parquet(path, row_group_size=700)  # several row groups: batches really stream
    return str(path)


@pytest.mark.parametrize("rows", [600, 4000], ids=lambda n: f"{n}rows")
@pytest.mark.parametrize("shift", [0.0, 0.3, 0.8])
def test_streamed_verdicts_equal_the_whole_frames(tmp_path, rows, shift):
    reference, current = _frame(rows, 1, 0.0), _frame(int(rows * 1.2), 2, shift)
    frames = detect_drift(reference, current)
    streamed = detect_drift_parquet(
        _write(reference, tmp_path / "ref.parquet"), _write(current, tmp_path / "cur.parquet"),
        batch_rows=500,
    )
    assert [c.column for c in streamed.columns] == [c.column for c in frames.columns]
    assert streamed.skipped == frames.skipped
    for ours, whole in zip(streamed.columns, frames.columns):
        assert (ours.kind, ours.method, ours.drifted) == (whole.kind, whole.method, whole.drifted)
        assert (ours.reference_rows, ours.current_rows) == (whole.reference_rows,
                                                            whole.current_rows)
        # the binned Wasserstein score is within its bound of the sorted one
        assert ours.score == pytest.approx(whole.score, rel=2e-3, abs=1e-9), ours.column
    assert streamed.dataset_drift == frames.dataset_drift
    if shift == 0.8:
        assert streamed.drifted_columns  # the test data really drifts


def test_binned_wasserstein_brackets_scipy_and_is_tight():
    rng = np.random.default_rng(3)
    for a, b in [
        (rng.normal(0, 1, 50_000), rng.normal(0.05, 1.1, 40_000)),
        (rng.lognormal(1, 0.9, 30_000), rng.lognormal(1.1, 0.9, 30_000)),
        (rng.integers(0, 40, 20_000).astype(float), rng.integers(3, 45, 25_000).astype(float)),
    ]:
        exact = stats.wasserstein_distance(a, b)
        estimate, lower, upper = binned_wasserstein(a, b)
        assert lower <= exact <= upper
        assert lower <= estimate <= upper
        assert upper - lower < 0.01 * exact


def test_a_score_on_the_threshold_falls_back_to_the_exact_distance(caplog):
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, 20_000)
    current = reference + 0.1 * np.std(reference)  # a pure shift: W / std is the threshold
    with caplog.at_level(logging.INFO, logger="autokfp.monitoring.drift_stream"):
        method, score = numerical_verdict(reference, current)
    assert "straddles the threshold" in caplog.text
    frames = detect_drift(pd.DataFrame({"x": reference}), pd.DataFrame({"x": current}))
    assert method == "wasserstein" and score == frames.column("x").score


def test_categories_and_text_numbers_follow_the_monitoring_spelling(tmp_path):
    # the prediction log may hold 2, 2.0 or "2" for one category; normalise_kinds spells
    # them alike on frames, category_key does it while counting
    from autokfp.modeling.features import category_text
    from autokfp.monitoring.window import normalise_kinds

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"plan": rng.integers(0, 3, 3000).astype(float),
                              "amount": rng.normal(10, 2, 3000).astype(str)})
    current = pd.DataFrame({"plan": rng.choice(["0", "1", "2", None], 2500),
                            "amount": rng.normal(10.5, 2, 2500).astype(str)})
    kinds = {"plan": CATEGORICAL, "amount": NUMERICAL}
    frames = detect_drift(normalise_kinds(reference, kinds), normalise_kinds(current, kinds),
                          kinds=kinds)
    streamed = detect_drift_parquet(
        _write(reference, tmp_path / "r.parquet"), _write(current, tmp_path / "c.parquet"),
        kinds=kinds, category_key=category_text, coerce_numbers=True,
    )
    assert len(frames.columns) == 2
    for ours, whole in zip(streamed.columns, frames.columns):
        assert (ours.method, ours.drifted) == (whole.method, whole.drifted)
        assert ours.current_rows == whole.current_rows
        assert ours.score == pytest.approx(whole.score, rel=2e-3)
    assert streamed.column("amount").drifted  # a shift of a quarter of a std


def test_kinds_inferred_from_the_files_are_evidentlys(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "codes": rng.choice([str(v) for v in range(10, 40)], 2000),  # numbers stored as text
        "category": pd.Categorical(rng.choice(list("abc"), 2000)),
        "int_few": rng.integers(0, 5, 2000),
        "int_many": rng.integers(0, 1000, 2000),
        "note": [f"free text {i}" for i in range(2000)],
    })
    path = _write(frame, tmp_path / "f.parquet")
    streamed = detect_drift_parquet(path, path)
    assert {c.column: c.kind for c in streamed.columns} == {
        c.column: c.kind for c in detect_drift(frame, frame).columns}
    assert streamed.column("codes").kind == CATEGORICAL
    assert "text" in streamed.skipped["note"]


def test_sample_rows_reads_a_uniform_sample_in_batches(tmp_path):
    frame = pd.DataFrame({"i": np.arange(10_000), "x": np.arange(10_000) * 0.5})
    path = _write(frame, tmp_path / "s.parquet")
    sample = sample_rows(path, ["x", "i"], 2000, batch_rows=900)
    assert len(sample) == 2000 and sample["i"].is_unique
    assert (sample["x"] == sample["i"] * 0.5).all()
    assert 4000 < sample["i"].mean() < 6000  # drawn from the whole file, not its head


@pytest.mark.parametrize("rows", [2000, 20_000], ids=["sampled", "whole"])
def test_sample_rows_gives_the_dtypes_read_parquet_gives(tmp_path, rows):
    """A step that swaps pd.read_parquet for a sample sees the same frame kinds: text as
    object (not the dictionary the drift counts read), categories, nullable ints, bools."""
    rng = np.random.default_rng(3)
    n = 10_000
    frame = pd.DataFrame({
        "i": np.arange(n),
        "text": rng.choice(["female", "male", "nonbinary"], n),
        "grade": pd.Categorical(np.sort(rng.choice(["a", "b", "c"], n))),  # row groups differ
        "flag": rng.random(n) < 0.5,
        "count": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 5, n)),
                          dtype="Int64"),
    })
    path = _write(frame, tmp_path / "d.parquet")
    sample = sample_rows(path, list(frame.columns), rows, batch_rows=900)
    whole = pd.read_parquet(path)
    assert sample.dtypes.to_dict() == whole.dtypes.to_dict()
    assert list(sample["grade"].cat.categories) == ["a", "b", "c"]
    assert len(sample) == min(rows, n)
    picked = whole.set_index("i").loc[sample["i"]].reset_index()
    pd.testing.assert_frame_equal(sample, picked[list(sample.columns)])


def _survey(rows: int, seed: int, shift: float) -> pd.DataFrame:
    """A survey-like table: education as 25 numeric-looking codes stored as strings."""
    rng = np.random.default_rng(seed)
    levels = np.arange(8, 33)
    weights = np.exp(-0.5 * ((levels - 18 - shift) / 8.0) ** 2)
    return pd.DataFrame({
        "education": rng.choice(levels, rows, p=weights / weights.sum()).astype(str),
        "age": rng.normal(45, 12, rows),
        "income": rng.lognormal(10, 0.5, rows),
        "voted": rng.integers(0, 2, rows),
    })


def test_codes_stored_as_strings_are_tested_as_categories_as_evidently_does(tmp_path):
    from autokfp.catalog.profiling import profile_frame
    from autokfp.config import FeatureSpec
    from autokfp.modeling.features import FeaturePlan, plan_features
    from autokfp.monitoring.window import Champion, normalise_kinds

    train = _survey(400, 0, 0.0)
    schema = profile_frame(train, "survey", "file", "survey.parquet")
    plan = plan_features(train, schema, "voted", "binary", FeatureSpec())
    # the profiler reads 25 numeric-looking codes as a number, and the model uses it so
    assert "education" in plan.numeric
    assert plan.category_coded == ["education"]
    plan = FeaturePlan.from_json(plan.to_json())  # as the registered model carries it
    champion = Champion(name="survey", version="1", model_dir=tmp_path, plan=plan,
                        meta={"task": "binary", "class_labels": [0, 1]}, tags={},
                        registered_at=pd.Timestamp.now(tz="UTC").to_pydatetime())
    kinds = champion.kinds
    assert kinds["education"] == CATEGORICAL and kinds["age"] == NUMERICAL

    # 800-row windows, drifted and not: Evidently, left to choose on the raw frames, uses a
    # categorical test (chi-square) for education, and so do we, with its verdict
    for seed, shift in [(1, 0.0), (3, 1.5), (4, 3.0)]:
        reference, current = _survey(800, 10 + seed, 0.0), _survey(800, 20 + seed, shift)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = _evidently(reference, current)["education"]
        columns = [c for c in kinds if c in reference]
        ours = detect_drift(normalise_kinds(reference, kinds), normalise_kinds(current, kinds),
                            columns=columns, kinds=kinds).column("education")
        assert ours.method == "chisquare"
        assert METHODS[ours.method].display_name == theirs[0]
        # read as the number the model sees, it would get K-S: the disagreement of issue 16
        numbers = {"education": NUMERICAL}
        as_number = detect_drift(normalise_kinds(reference, numbers),
                                 normalise_kinds(current, numbers), columns=["education"],
                                 kinds=numbers).column("education")
        assert as_number.method == "ks"
        assert ours.drifted == theirs[2]
        assert ours.score == pytest.approx(theirs[1], rel=1e-6, abs=1e-12)
        streamed = detect_drift_parquet(
            _write(reference, tmp_path / f"r{seed}.parquet"),
            _write(current, tmp_path / f"c{seed}.parquet"), columns=["education"], kinds=kinds,
        ).column("education")
        assert (streamed.method, streamed.drifted) == (ours.method, ours.drifted)
    assert ours.drifted  # the largest shift is found


def test_codes_as_category_dtype_and_few_integers_are_category_coded():
    from autokfp.catalog.profiling import profile_frame
    from autokfp.config import FeatureSpec
    from autokfp.modeling.features import plan_features

    rng = np.random.default_rng(2)
    train = pd.DataFrame({
        "grade": pd.Categorical(rng.choice([str(v) for v in range(30)], 300)),
        "rating": rng.integers(1, 9, 300),  # 8 integer values: Evidently says categorical
        "amount": rng.normal(0, 1, 300),
        "y": rng.integers(0, 2, 300),
    })
    plan = plan_features(train, profile_frame(train, "t", "file", "t.parquet"), "y", "binary", FeatureSpec())
    assert set(plan.category_coded) == {c for c in ("grade", "rating") if c in plan.numeric}
    assert "amount" in plan.numeric and "amount" not in plan.category_coded
