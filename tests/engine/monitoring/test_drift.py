"""Our drift verdicts are Evidently's, column by column, and cheap where Evidently is not."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from autokfp.monitoring.drift import (
    CATEGORICAL,
    NUMERICAL,
    column_drift,
    detect_drift,
    infer_kind,
    jensen_shannon_distance,
    wasserstein_distance_sorted,
)


def _frame(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0 + 0.1 * shift, n),
            "skewed": rng.lognormal(1.0 + 0.3 * shift, 0.7, n),
            "few": rng.integers(0, 4, n).astype(float) + (rng.random(n) < 0.3 * shift),
            "binary": (rng.random(n) < 0.3 + 0.1 * shift).astype(float),
            "small_int": rng.integers(0, 5 + int(shift > 0.5), n),
            "category": pd.Categorical(rng.choice(list("abcdefg"), n)),
            "strings": rng.choice(
                ["x", "y", "z"], n, p=[0.5 - 0.2 * shift, 0.3, 0.2 + 0.2 * shift]
            ),
            "two": rng.choice(["u", "v"], n, p=[0.5 + 0.05 * shift, 0.5 - 0.05 * shift]),
        }
    )
    frame.loc[rng.random(n) < 0.05, "normal"] = np.nan
    frame.loc[rng.random(n) < 0.01, "skewed"] = np.inf
    return frame


def _evidently(
    reference: pd.DataFrame, current: pd.DataFrame
) -> dict[str, tuple[str, float, bool]]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = (
            Report([DataDriftPreset()], include_tests=True)
            .run(current_data=current, reference_data=reference)
            .dict()
        )
    values = {
        m["config"]["column"]: (m["config"]["method"], m["value"])
        for m in result["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    return {
        t["metric_config"]["params"]["column"]: (
            *values[t["metric_config"]["params"]["column"]],
            t["status"] == "FAIL",
        )
        for t in result["tests"]
        if t["id"] == "drift"
    }


@pytest.mark.parametrize("rows", [300, 900, 1500, 6000], ids=lambda n: f"{n}rows")
@pytest.mark.parametrize("shift", [0.0, 0.3, 0.8])
def test_every_verdict_and_score_matches_evidently(rows, shift):
    reference, current = _frame(rows, 1, 0.0), _frame(int(rows * 1.2), 2, shift)
    theirs = _evidently(reference, current)
    ours = detect_drift(reference, current)
    assert {c.column for c in ours.columns} == set(theirs)
    for column in ours.columns:
        method, score, drifted = theirs[column.column]
        assert column.drifted == drifted, (column, method, score)
        assert column.score == pytest.approx(score, rel=1e-6, abs=1e-9), (column, method)


def test_methods_follow_evidently_defaults_by_kind_and_size():
    small = detect_drift(_frame(500, 1, 0), _frame(500, 2, 0))
    large = detect_drift(_frame(5000, 1, 0), _frame(5000, 2, 0))
    assert {c.column: c.method for c in small.columns} == {
        "normal": "ks",
        "skewed": "ks",
        "few": "chisquare",
        "binary": "z",
        "small_int": "chisquare",
        "category": "chisquare",
        "strings": "chisquare",
        "two": "z",
    }
    assert {c.column: c.method for c in large.columns} == {
        "normal": "wasserstein",
        "skewed": "wasserstein",
        "few": "jensenshannon",
        "binary": "jensenshannon",
        "small_int": "jensenshannon",
        "category": "jensenshannon",
        "strings": "jensenshannon",
        "two": "jensenshannon",
    }


def test_wasserstein_from_sorted_samples_equals_scipy():
    rng = np.random.default_rng(0)
    for a, b in [
        (rng.normal(0, 1, 5000), rng.normal(0.2, 1.3, 7000)),
        (rng.integers(0, 50, 3000).astype(float), rng.integers(5, 60, 2000).astype(float)),
        (np.array([1.0, 1.0, 2.0]), np.array([1.0, 3.0])),
    ]:
        ours = wasserstein_distance_sorted(np.sort(a), np.sort(b))
        assert ours == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_jensen_shannon_equals_scipy():
    p, q = np.array([10.0, 0.0, 5.0, 1.0]), np.array([3.0, 4.0, 5.0, 0.0])
    assert jensen_shannon_distance(p, q) == pytest.approx(
        distance.jensenshannon(p / p.sum(), q / q.sum())
    )


def test_kinds_follow_evidentlys_inference():
    from evidently.core.datasets import infer_column_type
    from evidently.legacy.core import ColumnType

    names = {ColumnType.Numerical: NUMERICAL, ColumnType.Categorical: CATEGORICAL}

    rng = np.random.default_rng(0)
    columns = {
        "float": pd.Series(rng.normal(size=100)),
        "int_few": pd.Series(rng.integers(0, 5, 100)),
        "int_many": pd.Series(rng.integers(0, 1000, 100)),
        "strings": pd.Series(rng.choice(["a", "b"], 100)),
        "text": pd.Series([f"note {i}" for i in range(100)]),
        "bool": pd.Series(rng.random(100) < 0.5),
        "category": pd.Series(pd.Categorical(rng.choice(["a", "b"], 100))),
        "dates": pd.Series(pd.date_range("2025-01-01", periods=100)),
    }
    for name, series in columns.items():
        assert infer_kind(series) == names.get(infer_column_type(series)), name


def test_an_unseen_category_in_a_small_sample_is_drift():
    reference = pd.Series(["a", "b", "c"] * 100)
    current = pd.Series(["a", "b", "c", "d"] * 75)
    result = column_drift(reference, current, CATEGORICAL)
    assert result.method == "chisquare" and result.score == 0.0 and result.drifted


def test_columns_that_cannot_be_tested_are_skipped_with_a_reason():
    reference = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0] * 10,
            "y": ["a"] * 30,
            "z": [np.nan] * 30,
            "notes": [f"free text {i}" for i in range(30)],
        }
    )
    current = pd.DataFrame(
        {
            "x": [1.0, 2.0, 4.0] * 10,
            "z": [1.0] * 30,
            "notes": [f"other text {i}" for i in range(30)],
        }
    )
    report = detect_drift(reference, current)
    assert [c.column for c in report.columns] == ["x"]
    assert report.skipped["y"] == "missing from the current window"
    assert report.skipped["z"] == "no non-missing values in the reference"
    assert "text" in report.skipped["notes"]


def test_identical_samples_do_not_drift_and_thresholds_can_be_changed():
    frame = _frame(3000, 1, 0.0)
    report = detect_drift(frame, frame.copy())
    assert report.drifted_columns == [] and report.share == 0.0 and not report.dataset_drift
    shifted = frame.assign(normal=frame["normal"] + 0.15)
    assert detect_drift(frame, shifted).column("normal").drifted
    assert (
        not detect_drift(frame, shifted, thresholds={"wasserstein": 0.5}).column("normal").drifted
    )
    with pytest.raises(ValueError, match="unknown drift method"):
        detect_drift(frame, shifted, thresholds={"psi": 0.1})


def test_parallel_and_serial_runs_agree():
    reference, current = _frame(120_000, 1, 0.0), _frame(110_000, 2, 0.3)
    serial = detect_drift(reference, current, workers=1).to_dict()
    parallel = detect_drift(reference, current, workers=2).to_dict()
    assert serial == parallel
