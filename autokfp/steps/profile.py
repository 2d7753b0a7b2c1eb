"""The `profile` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.steps.io import read_config, write_json, write_text
from autokfp.steps.results import Publication, StepResult, finite_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profiled(StepResult):
    """The quality gate's counts (a failed gate raises instead)."""

    rows: int
    columns: int
    checks_passed: int
    checks_warned: int
    checks_failed: int
    # what Evidently's data summary left out (its bounds are quality.summary_*)
    summary_columns_left_out: int = 0
    summary_rows_left_out: int = 0

    def publication(self) -> Publication:
        return Publication(metrics=finite_metrics(vars(self)))


def profile(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
            report_path: str, summary_path: str | None = None,
            data_summary_path: str | None = None) -> Profiled:
    """Run the data-quality gate; write the HTML report, then fail if any check failed.

    ``summary_path`` receives the gate's report as JSON; ``data_summary_path`` Evidently's
    data summary as HTML, written first so it is there even when the gate fails, bounded
    in columns, rows and time by ``quality.summary_*`` (the page and the result say what it
    left out).
    """
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.quality import raise_for_failures, run_quality_gate, write_data_summary

    cfg = read_config(config)
    left_out = {"summary_columns_left_out": 0, "summary_rows_left_out": 0}
    if data_summary_path:
        summary = write_data_summary(dataset_path, schema_path, data_summary_path,
                                     limits=cfg.quality, keep_first=[cfg.training.target])
        left_out = {"summary_columns_left_out": len(summary.columns_left_out),
                    "summary_rows_left_out": summary.rows - summary.rows_summarised}
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    # the gate reads the Parquet file in Arrow batches and one column at a time, never whole
    report = run_quality_gate(dataset_path, schema, cfg)
    write_text(report_path, report.to_html())
    if summary_path:
        write_json(summary_path, report.to_dict())
    raise_for_failures(report)
    counts = {"pass": 0, "warn": 0, "fail": 0}
    for check in report.checks:
        counts[check.status] = counts.get(check.status, 0) + 1
    return Profiled(rows=report.rows, columns=report.columns, checks_passed=counts["pass"],
                    checks_warned=counts["warn"], checks_failed=counts["fail"], **left_out)
