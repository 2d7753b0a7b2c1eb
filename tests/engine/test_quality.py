"""The data quality gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.profiling import profile_frame
from autokfp.config import RunConfig, parse_config
from autokfp.errors import QualityGateError
from autokfp.quality import evidently_summary_html, raise_for_failures, run_quality_gate


def _config(target: str = "churned", **training: Any) -> RunConfig:
    quality = training.pop("quality", {})
    return parse_config(
        {
            "name": "churn",
            "sources": [{"name": "files", "kind": "folder", "path": "/data"}],
            "training": {"dataset": "files/customers.csv", "target": target, **training},
            "quality": quality,
        }
    )


def _good(rows: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "plan": rng.choice(["basic", "pro", "max"], rows),
            "spend": rng.normal(40, 8, rows),
            "tenure": rng.integers(0, 60, rows),
            "churned": rng.choice(["yes", "no"], rows),
        }
    )


def _gate(df: pd.DataFrame, config: RunConfig):
    schema = profile_frame(df, config.training.dataset, "file", "/data/customers.csv")
    return run_quality_gate(df, schema, config)


def _status(report, name: str) -> str:
    (check,) = [c for c in report.checks if c.name == name]
    return check.status


def test_good_data_passes() -> None:
    report = _gate(_good(), _config(id_column="customer_id"))
    assert report.passed, [c.message for c in report.failures]
    assert report.failures == []
    raise_for_failures(report)  # no-op
    names = [c.name for c in report.checks]
    for expected in (
        "min_rows",
        "target_present",
        "target_missing",
        "target_not_constant",
        "class_counts",
        "missing_values",
        "usable_features",
        "id_unique:customer_id",
        "duplicate_rows",
    ):
        assert expected in names
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and data["counts"]["fail"] == 0
    assert data["rows"] == 300


def test_every_failure_is_listed_at_once() -> None:
    df = _good(40).drop(columns=["churned"])
    df.loc[5:7, "customer_id"] = 3  # duplicate ids
    report = _gate(df, _config(id_column="customer_id"))
    assert not report.passed
    assert {c.name for c in report.failures} == {
        "min_rows",
        "target_present",
        "id_unique:customer_id",
    }
    with pytest.raises(QualityGateError) as info:
        raise_for_failures(report)
    message = str(info.value)
    assert "3 check(s)" in message
    assert "40 rows, fewer than quality.min_rows=100" in message
    assert "target column 'churned' is not in files/customers.csv" in message
    assert "customer_id, plan, spend, tenure" in message and "training.target" in message
    assert "'customer_id' has 1 value(s) repeated across 4 rows" in message
    assert len(info.value.failures) == 3


def test_constant_and_missing_target() -> None:
    df = _good()
    df["churned"] = "no"
    df.loc[:9, "churned"] = None
    report = _gate(df, _config())
    assert {c.name for c in report.failures} == {"target_missing", "target_not_constant"}
    with pytest.raises(QualityGateError) as info:
        raise_for_failures(report)
    assert "missing in 10 of 300 rows" in str(info.value)
    assert "is constant ('no')" in str(info.value)

    df["churned"] = 1  # a numeric constant reads as the user wrote it, not np.int64(1)
    constant = {c.name: c for c in _gate(df, _config()).failures}["target_not_constant"]
    assert "is constant (1)" in constant.message and "np." not in constant.message

    df["churned"] = None
    report = _gate(df, _config())
    assert "has no values" in " ".join(c.message for c in report.failures)


def test_rare_class_fails_with_its_count() -> None:
    df = _good()
    df.loc[:2, "churned"] = "maybe"
    report = _gate(df, _config(quality={"min_class_count": 5}))
    assert [c.name for c in report.failures] == ["class_counts"]
    assert "'maybe': 3" in report.failures[0].message
    # a regression target has no classes to count
    report = _gate(_good(), _config(target="spend"))
    assert report.passed and "class_counts" not in [c.name for c in report.checks]


def test_task_that_does_not_fit_the_target_fails() -> None:
    report = _gate(_good(), _config(task="regression"))
    assert [c.name for c in report.failures] == ["target_task"]
    assert "not numeric" in report.failures[0].message


def test_missing_values_warn_and_fail_only_when_no_feature_is_usable() -> None:
    df = _good()
    df.loc[: int(len(df) * 0.6), "spend"] = np.nan
    report = _gate(df, _config())
    assert report.passed
    assert _status(report, "missing_values") == "warn"
    assert "spend (60.3%)" in [c for c in report.checks if c.name == "missing_values"][0].message

    df[["plan", "spend", "tenure"]] = None
    report = _gate(df, _config(id_column="customer_id"))
    assert [c.name for c in report.failures] == ["usable_features"]


def test_id_columns_come_from_the_schema_when_not_configured() -> None:
    df = _good()
    schema = profile_frame(df, "files/customers.csv", "file", "/data/customers.csv")
    assert schema.column("customer_id").semantic_type == "id"
    with_dupes = pd.concat([df, df.head(2).assign(spend=1.0)], ignore_index=True)
    report = run_quality_gate(with_dupes, schema, _config())
    assert [c.name for c in report.failures] == ["id_unique:customer_id"]
    # a configured id column that is not there is named, with the real columns
    report = run_quality_gate(df, schema, _config(id_column="cust_id"))
    assert "'cust_id' (training.id_column) is not in" in report.failures[0].message


def test_duplicate_rows_warn() -> None:
    df = _good()
    df = pd.concat([df, df.head(10)], ignore_index=True).drop(columns="customer_id")
    report = run_quality_gate(df, None, _config())
    assert report.passed
    assert _status(report, "duplicate_rows") == "warn"
    assert "10 rows" in [c for c in report.checks if c.name == "duplicate_rows"][0].message


def test_html_report_is_self_contained() -> None:
    df = _good(40)
    report = _gate(df, _config())
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>")
    assert "FAILED" in page and "#cf222e" in page  # failures shown in red
    assert "fewer than quality.min_rows=100" in page
    for column in df.columns:
        assert f"<td>{column}</td>" in page
    assert "<script" not in page and "http" not in page  # no external resources
    evil = df.rename(columns={"plan": "<b>plan</b>"})
    assert "&lt;b&gt;plan&lt;/b&gt;" in _gate(evil, _config()).to_html()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evidently_summary(tmp_path: Path) -> None:
    df = _good(500)
    schema = profile_frame(df, "files/customers.csv", "file", "/data/customers.csv")
    path = evidently_summary_html(df, tmp_path / "reports" / "summary.html", schema)
    text = path.read_text()
    assert path.stat().st_size > 10_000 and "<html" in text.lower()
    assert "spend" in text
