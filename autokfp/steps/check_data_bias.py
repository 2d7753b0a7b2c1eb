"""The `check_data_bias` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.steps.io import (
    parquet_column_names,
    read_config,
    read_schema,
    write_json,
    write_text,
)
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataBiasChecked(StepResult):
    """The training data's fairness verdict (pass, warn or not_run)."""

    verdict: str
    sensitive_columns: str
    warnings: int

    def publication(self) -> Publication:
        return Publication(metadata={"summary": {"verdict": self.verdict,
                                                 "sensitive_columns": self.sensitive_columns,
                                                 "warnings": self.warnings}},
                           returns=(self.verdict,))


def check_data_bias(config: dict[str, Any] | RunConfig, train_path: str, plan_path: str,
                    schema_path: str, report_path: str, summary_path: str) -> DataBiasChecked:
    """Group representation and label balance of each sensitive attribute in the training rows."""
    from autokfp.governance import fairness
    from autokfp.modeling.features import FeaturePlan

    cfg = read_config(config)
    plan = FeaturePlan.from_json(Path(plan_path).read_text())
    columns, source, problems = fairness.resolve_sensitive_columns(
        read_schema(schema_path), cfg.governance, parquet_column_names(train_path))
    # every training row, but only the columns the checks read
    train = pd.read_parquet(train_path, columns=list(dict.fromkeys([plan.target, *columns])))
    report: dict[str, Any] = {"model": cfg.model_name, "sensitive_columns": columns,
                              "sensitive_source": source, "policy": cfg.governance.model_dump(),
                              "checks": [p.to_dict() for p in problems],
                              "notes": [p.detail for p in problems], "data": {}}
    if not columns:
        check = fairness.no_sensitive_attribute(source)
        report["checks"].append(check.to_dict())
        report["notes"].append(check.detail)
    if columns:
        positive = plan.classes[-1] if plan.task == "binary" else None
        report["data"] = fairness.check_training_data(train, plan.target, positive, columns,
                                                      cfg.governance)
    statuses = [c["status"] for d in report["data"].values() for c in d["checks"]]
    report["verdict"] = ("not_run" if not columns else "warn" if "warn" in statuses else "pass")
    report["verdict_reason"] = ("; ".join(report["notes"]) if not columns else
                                f"{statuses.count('warn')} warning(s), {statuses.count('pass')} passed")
    write_json(summary_path, report)
    write_text(report_path, _data_markdown(report))
    return DataBiasChecked(verdict=report["verdict"], sensitive_columns=",".join(columns),
                           warnings=statuses.count("warn"))


def _data_markdown(report: dict[str, Any]) -> str:
    from autokfp.governance.fairness import render_markdown

    text = render_markdown({**report, "before": {}, "after": {}, "mitigation": {}})
    return text.replace("# Fairness report:", "# Training data fairness check:", 1)
