"""The `bias_check` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.governance import PolicyError
from autokfp.governance.audit import batched
from autokfp.steps.io import (
    read_config,
    read_package,
    read_parquet_sample,
    read_schema,
    record_event,
    write_json,
    write_text,
)
from autokfp.steps.results import Publication, StepResult, finite_metrics

log = logging.getLogger(__name__)

# training rows the bias mitigation (group thresholds, score repair) is fitted on: a uniform
# sample above this, so the step's memory does not grow with the training table
MITIGATION_FIT_ROWS = 200_000


@dataclass(frozen=True)
class BiasChecked(StepResult):
    """The model's fairness verdict, whether it was mitigated, and the figures behind it."""

    verdict: str
    reason: str
    mitigated: bool
    accuracy_cost: float
    auc_cost: float
    disparities: dict[str, float]
    """``<before|after>_<column>_<disparity>`` -> value."""

    def publication(self) -> Publication:
        figures = {"accuracy_cost": self.accuracy_cost, "auc_cost": self.auc_cost,
                   **self.disparities}
        return Publication(metrics={k: float(v) for k, v in finite_metrics(figures).items()},
                           metadata={"summary": {"verdict": self.verdict, "reason": self.reason},
                                     "checked_model": {"fairness": self.verdict}},
                           returns=(self.verdict, self.mitigated))


@batched
def bias_check(config: dict[str, Any] | RunConfig, model_path: str, train_path: str,
                     test_path: str, schema_path: str, out_model_path: str, report_path: str,
                     summary_path: str) -> BiasChecked:
    """Check the model's decisions per group; mitigate; write the package to register.

    Raises:
        PolicyError: a fairness limit is broken after mitigation (or mitigation is off) and
            ``governance.block_deploy_on_bias`` is true. The reports and the audit event
            are written first.
    """
    from autokfp.governance import fairness
    from autokfp.governance.explain import background_records
    from autokfp.modeling.model_package import save_model_package

    cfg = read_config(config)
    policy = cfg.governance
    model, plan, meta = read_package(model_path)
    # the test rows whole; of the training rows a bounded sample for fitting the mitigation
    # (and the package's examples), and only the sensitive and target columns of all of them
    train, train_rows = read_parquet_sample(train_path, MITIGATION_FIT_ROWS, seed=cfg.split.seed)
    test = pd.read_parquet(test_path)
    target = meta["target"]
    columns, source, problems = fairness.resolve_sensitive_columns(read_schema(schema_path), policy,
                                                                   list(test.columns))
    if len(train) < train_rows:
        log.info("bias mitigation fitted on %d of %d training rows (a uniform sample)",
                 len(train), train_rows)
    test_predictions = model.predict(None, test.drop(columns=[target]))
    train_predictions = model.predict(None, train.drop(columns=[target]))
    report, mitigation = fairness.assess_fairness(test, test_predictions, meta, columns, source, policy,
                                                  fit=train, fit_predictions=train_predictions,
                                                  problems=problems)
    report["model"] = cfg.model_name
    if columns:
        positive = meta["classes"][-1] if meta["task"] == "binary" else None
        every_train_row = (train if len(train) == train_rows else
                           pd.read_parquet(train_path, columns=list(dict.fromkeys([target, *columns]))))
        report["data"] = fairness.check_training_data(every_train_row, target, positive, columns,
                                                      policy)
    report["mitigation_fit_rows"] = {"used": len(train), "training_rows": train_rows}

    new_meta = dict(meta)
    new_meta.pop("fairness_mitigation", None)
    if mitigation:
        new_meta["fairness_mitigation"] = mitigation
    new_meta["fairness"] = {"verdict": report["verdict"], "sensitive_columns": columns}
    new_meta["explain_background"] = background_records(train, list(plan.input_columns),
                                                        seed=cfg.split.seed)
    save_model_package(out_model_path, plan, Path(model_path, "artifacts", "engine"), new_meta,
                       train.drop(columns=[target]))
    write_json(summary_path, report)
    write_text(report_path, fairness.render_markdown(report))

    verdict = report["verdict"]
    blocked = verdict == "fail" and policy.block_deploy_on_bias
    details = {"verdict": verdict, "reason": report["verdict_reason"],
               "sensitive_columns": columns, "blocked": blocked}
    if verdict == "mitigated":
        mitigation = report["mitigation"]
        applied = report["mitigation"]
        details.update({"column": applied["column"], "method": applied["method"],
                        "thresholds": applied["thresholds"],
                        "score_repair_strength": applied["score_repair_strength"],
                        "accuracy_before": report["overall_before"]["accuracy"],
                        "accuracy_after": report["overall_after"]["accuracy"],
                        "accuracy_cost": report["accuracy_cost"], "auc_cost": report["auc_cost"]})
    kind = {"mitigated": "bias.mitigated", "pass": "bias.passed", "not_run": "bias.not_run"}.get(
        verdict, "bias.blocked" if blocked else "bias.accepted_despite_failure")
    if verdict == "not_run":  # never silent: a warning in the run summary and the trail
        from autokfp.governance.audit import record_warning

        record_warning(kind, f"fairness not checked: {report['verdict_reason']}", details,
                       model=cfg.model_name)
    else:
        record_event(kind, details, cfg.model_name)
    if blocked:
        raise PolicyError(
            f"{cfg.model_name}: fairness policy not met, nothing registered or deployed: "
            f"{report['verdict_reason']}. See the fairness report; relax governance limits, "
            "fix the data, or set governance.block_deploy_on_bias: false to deploy anyway")
    summary: dict[str, Any] = {"verdict": verdict, "reason": report["verdict_reason"],
                               "mitigated": verdict == "mitigated",
                               "accuracy_cost": float(report.get("accuracy_cost", 0.0)),
                               "auc_cost": float(report.get("auc_cost", 0.0))}
    for stage in ("before", "after"):
        for column, data in (report.get(stage) or {}).items():
            for key in ("demographic_parity_difference", "demographic_parity_ratio",
                        "ranking_parity_difference", "ranking_parity_ratio",
                        "equalized_odds_difference"):
                value = data["disparities"].get(key)
                if value is not None:
                    summary[f"{stage}_{column}_{key}"] = float(value)
    headline = ("verdict", "reason", "mitigated", "accuracy_cost", "auc_cost")
    return BiasChecked(verdict=verdict, reason=summary["reason"], mitigated=summary["mitigated"],
                       accuracy_cost=summary["accuracy_cost"], auc_cost=summary["auc_cost"],
                       disparities={k: v for k, v in summary.items() if k not in headline})
