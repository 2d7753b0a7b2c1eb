"""Quality checks that use what the catalog knows (freshness, row count against the last
crawl) and the Evidently data summary the profile step shows in the Kubeflow UI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from kfp.dsl import HTML, Artifact, Dataset, Metrics

from autokfp.catalog.profiling import profile_frame
from autokfp.quality import run_quality_gate, write_data_summary
from components import profile
from tests.conftest import small_config


def _gate(frame: pd.DataFrame, folder: Path, **catalog):
    schema = profile_frame(frame, "files/customers.parquet", "file", str(folder))
    schema.catalog = catalog
    schema.modified_at = catalog.pop("modified_at", None)
    report = run_quality_gate(frame, schema, small_config(folder))
    return {c.name: c for c in report.checks}, report


def test_row_count_change_against_the_last_crawl(churn_frame, tmp_path) -> None:
    frame = churn_frame.head(1000)
    checks, _ = _gate(frame, tmp_path)
    assert checks["row_count_change"].status == "pass"
    assert "no earlier crawl" in checks["row_count_change"].message

    checks, _ = _gate(frame, tmp_path, previous_row_count=1100)
    assert checks["row_count_change"].status == "pass"
    checks, _ = _gate(frame, tmp_path, previous_row_count=400)
    assert checks["row_count_change"].status == "warn"
    assert "150.0% more than the 400" in checks["row_count_change"].message
    checks, report = _gate(frame, tmp_path, previous_row_count=20_000)
    check = checks["row_count_change"]
    assert check.status == "fail" and "truncated or partial export" in check.message
    assert "row_count_change" in [c.name for c in report.failures]


def test_freshness_uses_the_modification_time_then_the_newest_date(churn_frame,
                                                                   tmp_path) -> None:
    frame = churn_frame.head(500)
    now = pd.Timestamp.now(tz="UTC")
    checks, _ = _gate(frame, tmp_path, modified_at=now.isoformat())
    assert checks["freshness"].status == "pass"
    assert "last modified" in checks["freshness"].message
    checks, _ = _gate(frame, tmp_path, modified_at=(now - pd.Timedelta(days=90)).isoformat())
    assert checks["freshness"].status == "warn" and "90 days old" in checks["freshness"].message

    old = frame.assign(signup_date=pd.Timestamp("2020-01-01"))
    old.loc[old.index[:5], "signup_date"] = now.tz_localize(None) - pd.Timedelta(days=2)
    checks, _ = _gate(old, tmp_path)
    assert checks["freshness"].status == "pass"
    assert "'signup_date'" in checks["freshness"].message
    checks, _ = _gate(frame.drop(columns=["signup_date"]), tmp_path)
    assert checks["freshness"].details == {"measured": False}


def test_profile_component_writes_the_evidently_summary(churn_frame, tmp_path) -> None:
    frame = churn_frame.head(300)
    config = small_config(tmp_path).to_dict()
    dataset = Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    frame.to_parquet(dataset.path, index=False)
    schema = Artifact(name="schema", uri=str(tmp_path / "schema"))
    Path(schema.path).write_text(
        profile_frame(frame, "files/customers.parquet", "file", str(tmp_path)).to_json())
    report = HTML(name="report", uri=str(tmp_path / "report"))
    summary = HTML(name="summary", uri=str(tmp_path / "summary"))
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    profile.python_func(config=config, dataset=dataset, schema=schema, report=report,
                        metrics=metrics, summary=summary)
    page = Path(summary.path).read_text()
    assert "monthly_charges" in page and "Summary" in page and len(page) > 100_000
    assert metrics.metadata["checks_failed"] == 0

    # a dataset Evidently cannot read still gets a page that says why
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    target = write_data_summary(tmp_path / "bad.parquet", None, tmp_path / "bad.html")
    assert "Data summary unavailable" in target.read_text()
