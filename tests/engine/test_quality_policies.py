"""Policy checks of the quality gate: value ranges and allowed categories per column."""

from __future__ import annotations

import pandas as pd
import pytest

from autokfp.config import parse_config
from autokfp.errors import QualityGateError
from autokfp.quality import raise_for_failures, run_quality_gate


def _config(**quality):
    return parse_config({
        "name": "q", "sources": [{"name": "files", "kind": "folder", "path": "."}],
        "training": {"dataset": "files/t.csv", "target": "y"},
        "quality": {"min_rows": 10, **quality},
    })


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [20 + i % 50 for i in range(200)],
                         "plan": ["basic", "pro"] * 100,
                         "y": [0, 1] * 100})


def _by_name(report, name):
    return [c for c in report.checks if c.name == name]


def test_values_inside_ranges_and_allowed_categories_pass(frame) -> None:
    config = _config(ranges={"age": [18, 99]}, allowed_categories={"plan": ["basic", "pro"]})
    report = run_quality_gate(frame, None, config)
    assert [c.status for c in _by_name(report, "range")] == ["pass"]
    assert [c.status for c in _by_name(report, "allowed_categories")] == ["pass"]
    raise_for_failures(report)


def test_out_of_range_and_unknown_category_fail_naming_the_column_and_values(frame) -> None:
    frame.loc[3, "age"] = 240
    frame.loc[7, "age"] = -1
    frame.loc[5, "plan"] = "enterprise"
    config = _config(ranges={"age": [0, 120]}, allowed_categories={"plan": ["basic", "pro"]})
    report = run_quality_gate(frame, None, config)
    (age,) = _by_name(report, "range")
    assert age.status == "fail" and "'age'" in age.message and "240" in age.message
    assert age.details == {"below": 1, "above": 1, "not_numeric": 0}
    (plan,) = _by_name(report, "allowed_categories")
    assert plan.status == "fail" and "'enterprise'" in plan.message
    with pytest.raises(QualityGateError) as error:
        raise_for_failures(report)
    assert "age" in str(error.value) and "plan" in str(error.value)


def test_a_tolerated_share_warns_instead_of_failing(frame) -> None:
    frame.loc[0, "age"] = 500
    config = _config(ranges={"age": [None, 120]}, max_out_of_policy_fraction=0.01)
    (age,) = _by_name(run_quality_gate(frame, None, config), "range")
    assert age.status == "warn"


def test_a_policy_naming_a_missing_column_fails(frame) -> None:
    config = _config(ranges={"height": [0, 3]}, allowed_categories={"colour": ["red"]})
    report = run_quality_gate(frame, None, config)
    assert {c.status for c in _by_name(report, "range")} == {"fail"}
    assert "height" in _by_name(report, "range")[0].message
    assert "colour" in _by_name(report, "allowed_categories")[0].message


def test_ranges_must_be_pairs() -> None:
    from autokfp.errors import ConfigError

    with pytest.raises(ConfigError, match="quality.ranges"):
        _config(ranges={"age": [1, 2, 3]})


# ------------------------------------------------------------------ from Parquet, in batches

def _awkward_frame() -> pd.DataFrame:
    """Every check with something to find, in values that cross batch boundaries."""
    import numpy as np

    rng = np.random.default_rng(3)
    n = 1000
    frame = pd.DataFrame({
        "id": np.arange(n), "age": rng.integers(15, 130, n).astype(float),
        "plan": rng.choice(["basic", "pro", "gold"], n), "visits": rng.integers(0, 9, n),
        "sparse": np.where(rng.random(n) < 0.7, np.nan, 1.0), "y": rng.integers(0, 2, n)})
    frame.loc[990, "id"] = 5  # a repeated id, far from its twin
    frame.loc[[10, 600], "id"] = np.nan
    frame.loc[700:720] = frame.loc[100:120].to_numpy()  # duplicate rows in another batch
    frame.loc[999, "visits"] = np.nan  # an int column with one missing value, last batch only
    frame.loc[998] = frame.loc[30].to_numpy()  # a duplicate in that batch: int there, float here
    frame.loc[[3, 800], "y"] = np.nan
    return frame.astype({"id": "Int64", "visits": "Int64"})  # Arrow int64 with nulls


def test_the_gate_on_a_parquet_file_gives_the_verdicts_it_gives_on_the_frame(
        tmp_path, monkeypatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.catalog import batches
    from autokfp.catalog.profiling import profile_frame

    monkeypatch.setattr(batches, "BATCH_ROWS", 64)  # many batches
    frame = _awkward_frame()
    path = tmp_path / "t.parquet"
    # no pandas metadata (as Spark writes it): the int column with a missing value is float
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None),
                   path)
    whole = pd.read_parquet(path)
    assert whole["visits"].dtype == "float64"
    config = _config(ranges={"age": [18, 99]}, allowed_categories={"plan": ["basic", "pro"]},
                     max_target_missing_fraction=0.01, max_out_of_policy_fraction=0.5)
    config.training.id_column = "id"
    schema = profile_frame(whole, "files/t.parquet", "file", "")
    on_frame = run_quality_gate(whole, schema, config)
    on_file = run_quality_gate(str(path), schema, config)

    def verdicts(report):
        return [(c.name, c.status, c.message, c.details) for c in report.checks]

    assert verdicts(on_file) == verdicts(on_frame)
    assert (on_file.rows, on_file.columns) == (1000, 6)
    found = {c.name: c for c in on_file.checks}
    assert found["duplicate_rows"].details["duplicate_rows"] == 22
    assert found["id_unique:id"].status == "fail"
    assert {found["range"].status, found["allowed_categories"].status} == {"warn"}
    assert "sparse" in found["missing_values"].details["columns"]
