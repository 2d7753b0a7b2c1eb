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
