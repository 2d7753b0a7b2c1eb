"""Quality checks that use what the catalog knows (freshness, row count against the last
crawl) and the Evidently data summary the profile step shows in the Kubeflow UI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kfp.dsl import HTML, Artifact, Dataset, Metrics

from autokfp.catalog.profiling import profile_frame
from autokfp.components import profile
from autokfp.config import QualitySpec
from autokfp.errors import QualityGateError
from autokfp.quality import run_quality_gate, write_data_summary
from autokfp.steps.profile import profile as profile_step
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
    outcome = write_data_summary(tmp_path / "bad.parquet", None, tmp_path / "bad.html")
    assert "Data summary unavailable" in outcome.path.read_text()
    assert outcome.problem


def _wide(rows: int, columns: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, columns)),
                         columns=[f"x{i}" for i in range(columns)])
    frame["churned"] = rng.integers(0, 2, size=rows)  # the target comes last in the file
    return frame


def test_a_wide_table_gets_a_bounded_summary_and_the_gate_still_decides(tmp_path) -> None:
    # issue 14 item 5: 60 rows x 2,001 columns kept Evidently busy for over 590 s
    frame = _wide(60, 2000)
    dataset = tmp_path / "wide.parquet"
    frame.to_parquet(dataset, index=False)
    schema = tmp_path / "schema.json"
    schema.write_text(profile_frame(frame, "files/wide.parquet", "file", str(tmp_path)).to_json())
    config = small_config(tmp_path, dataset="files/wide.parquet",
                          training={"dataset": "files/wide.parquet", "target": "churned"},
                          quality={"min_rows": 100, "summary_max_columns": 4,
                                   "summary_max_rows": 100})
    page = tmp_path / "summary.html"
    with pytest.raises(QualityGateError, match="min_rows|rows"):
        profile_step(config, str(dataset), str(schema), str(tmp_path / "report.html"),
                     data_summary_path=str(page))
    text = page.read_text()
    # Evidently ran on the target and the first three columns, and the page says what it left out
    assert "Data summary unavailable" not in text
    assert "4 of 2001 columns" in text and "quality.summary_max_columns" in text
    assert "left out: x3, x4, x5" in text and "and 1967 more" in text
    assert "churned" in text and "x2" in text



def test_the_summary_samples_rows_and_stops_at_its_time_limit(tmp_path) -> None:
    import time

    frame = _wide(500, 3)
    dataset = tmp_path / "rows.parquet"
    frame.to_parquet(dataset, index=False)
    outcome = write_data_summary(dataset, None, tmp_path / "rows.html", limits=QualitySpec(
        summary_max_rows=100), keep_first=["churned"])
    assert not outcome.problem and outcome.rows_summarised == 100 and outcome.rows == 500
    assert not outcome.complete
    assert "a uniform sample of 100 of 500 rows" in outcome.path.read_text()

    started = time.monotonic()
    outcome = write_data_summary(dataset, None, tmp_path / "slow.html", limits=QualitySpec(
        summary_time_limit_secs=0.5))
    took = time.monotonic() - started
    assert "did not finish within 0.5 s" in outcome.problem
    text = outcome.path.read_text()
    assert "Data summary unavailable" in text and "summary_time_limit_secs" in text
    assert took < 15, took  # stopped, not waited for


# OpenMP's thread pool runs (scikit-learn's HistGradientBoosting), then the summary is built
AFTER_OPENMP = """
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

rng = np.random.default_rng(0)
rows = rng.normal(size=(2000, 5))
HistGradientBoostingClassifier(max_iter=20).fit(rows, (rows[:, 0] > 0).astype(int))

from autokfp.quality import write_data_summary

outcome = write_data_summary(sys.argv[1], None, sys.argv[2])
print("problem:", outcome.problem or "none", flush=True)
"""


def test_the_summary_child_is_a_new_interpreter_even_after_openmp_ran(tmp_path) -> None:
    """A child forked from a process whose OpenMP or TensorFlow thread pools had run can
    hang (an engine's child did in CI); Evidently's child is started as the engine's is
    (``lifeline.start_child``): a new interpreter unless AUTOKFP_ENGINE_FORK=1."""
    import os
    import subprocess
    import sys
    import time

    from autokfp.edge.interrupts import descendants

    dataset = tmp_path / "rows.parquet"
    _wide(200, 3).to_parquet(dataset, index=False)
    env = {key: value for key, value in os.environ.items() if key != "AUTOKFP_ENGINE_FORK"}
    command = [sys.executable, "-c", AFTER_OPENMP, str(dataset), str(tmp_path / "summary.html")]
    script = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    # the script's own command line, as /proc shows it (read from /proc at once it was b''
    # once in CI, which a zombie child's empty cmdline then matched)
    own = b"\0".join(part.encode() for part in command) + b"\0"
    seen: set[bytes] = set()
    polls_as_own: dict[int, int] = {}  # polls in which a child showed the script's cmdline
    deadline = time.monotonic() + 300
    while script.poll() is None and time.monotonic() < deadline:
        for pid in descendants(script.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            seen.add(cmdline)
            if cmdline == own:
                polls_as_own[pid] = polls_as_own.get(pid, 0) + 1
        time.sleep(0.02)
    output, _ = script.communicate(timeout=10)
    assert output.decode().strip() == "problem: none"
    assert "Summary" in (tmp_path / "summary.html").read_text()
    children = [command.split(b"\0") for command in seen if command]
    assert any(b"autokfp.quality:_summary_child_main" in parts for parts in children), seen
    # a fork that does the work carries the script's own command line for seconds; a child
    # caught between its fork and its exec (microseconds) may show it in one poll
    assert all(polls < 3 for polls in polls_as_own.values()), polls_as_own
