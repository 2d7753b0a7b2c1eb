"""The `engineer_features` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.steps.io import (
    read_config,
    record_data_changes,
    record_event,
    write_parquet,
    write_text,
)
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engineered(StepResult):
    """The split and the feature plan, in numbers."""

    task: str
    train_rows: int
    test_rows: int
    features: int
    dropped: int
    id_column: str
    unlabelled_rows: int
    """Training rows without a label, left out."""

    def publication(self) -> Publication:
        return Publication(metadata={"train": {"rows": self.train_rows},
                                     "test": {"rows": self.test_rows}},
                           returns=(self.task, self.features))


@batched
def engineer_features(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
                   train_path: str, test_path: str, plan_path: str,
                   report_path: str | None = None) -> Engineered:
    """Fix the held-out split, infer the task and learn the feature plan from training rows."""
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.modeling.features import plan_features
    from autokfp.modeling.partition import split_holdout
    from autokfp.modeling.tasks import infer_task

    cfg = read_config(config)
    frame = pd.read_parquet(dataset_path)
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    target = cfg.training.target
    _require_target(frame, target, schema.dataset_id)
    id_column = cfg.training.id_column or next(
        (c.name for c in schema.columns if c.semantic_type == "id"), None)
    task = infer_task(frame[target], cfg.training.task)
    unlabelled = _record_unlabelled(cfg, frame, target, schema.dataset_id)
    train, test = split_holdout(frame, cfg.split.test_fraction, cfg.split.seed, id_column, target)
    classes = (None if task == "regression"
               else _class_order(train[target], target, task, cfg.training.positive_class))
    plan = plan_features(train, schema, target, task, cfg.features, id_column=id_column, classes=classes)
    if cfg.selection.feature_selection != "off" or cfg.budget.max_features:
        from autokfp.modeling.features import select_features

        select_features(plan, train, max_features=cfg.budget.max_features,
                        drop_useless=cfg.selection.feature_selection == "importance",
                        seed=cfg.split.seed)
    if plan.dropped:
        # one event for the step (a wide table can drop thousands of columns)
        record_event("feature.dropped", {"dataset": schema.dataset_id,
                                         "columns": {str(c): str(r) for c, r in plan.dropped.items()}},
                     cfg.model_name)
    _audit_plan(cfg.model_name, plan)
    write_parquet(train_path, train)
    write_parquet(test_path, test)
    write_text(plan_path, plan.to_json())
    if report_path:
        write_text(report_path, _feature_report(plan, schema.dataset_id, len(train), len(test)))
    return Engineered(task=task, train_rows=len(train), test_rows=len(test),
                      features=len(plan.feature_columns), dropped=len(plan.dropped),
                      id_column=id_column or "", unlabelled_rows=unlabelled)


def _require_target(frame: pd.DataFrame, target: str, dataset_id: str) -> None:
    from autokfp.errors import SchemaError

    if target not in frame.columns:
        raise SchemaError(
            f"target column '{target}' is not in dataset '{dataset_id}'; its columns are "
            f"{sorted(frame.columns)}; set training.target to one of them"
        )


def _record_unlabelled(cfg: RunConfig, frame: pd.DataFrame, target: str, dataset_id: str) -> int:
    """The rows without a label (left out by the split): counted and recorded as a data change."""
    unlabelled = int(frame[target].isna().sum())
    if unlabelled:
        record_data_changes(cfg.model_name, "engineer-features", [
            f"{unlabelled} of {len(frame)} rows have no value in target '{target}' and were "
            "left out of training and testing"], dataset=dataset_id,
            rows_dropped=unlabelled)
    return unlabelled


def _class_order(labels: pd.Series, target: str, task: str,
                 positive_class: str | None) -> list[Any]:
    """A classifier's classes in the plan's order: sorted as text, a binary task's configured
    positive class last."""
    from autokfp.errors import DataError

    classes = sorted(labels.dropna().unique().tolist(), key=lambda v: str(v))
    if positive_class is not None and task == "binary":
        positive = [c for c in classes if str(c) == positive_class]
        if not positive:
            raise DataError(f"training.positive_class '{positive_class}' is not a value "
                            f"of '{target}' (values: {classes})")
        classes = [c for c in classes if c is not positive[0]] + positive
    if len(classes) < 2:
        raise DataError(f"target '{target}' has a single class {classes} in the training rows; "
                        "a classifier needs at least two")
    return classes


def _audit_plan(model: str, plan: Any) -> None:
    """Every strong predictor kept by the leakage screen: a warning in the run summary and an
    audit event (the columns dropped, leaks included, are the step's feature.dropped event)."""
    from autokfp.governance.audit import record_warning

    for name, reason in plan.strong_predictors.items():
        record_warning("feature.strong_predictor_kept", f"column '{name}' kept: {reason}",
                       {"column": name, "reason": reason,
                        "score": plan.leakage_scores.get(name)}, model=model)


def _feature_report(plan: Any, dataset_id: str, train_rows: int, test_rows: int) -> str:
    lines = [f"# Features for `{dataset_id}`", "",
             f"Task **{plan.task}**, target `{plan.target}`; {train_rows} training rows, "
             f"{test_rows} held-out test rows.", "",
             "| group | columns |", "| --- | --- |"]
    for group in ("numeric", "categorical", "boolean", "datetime", "text"):
        columns = getattr(plan, group)
        lines.append(f"| {group} | {', '.join(f'`{c}`' for c in columns) or '-'} |")
    lines += ["", "## Dropped columns", "", "| column | reason |", "| --- | --- |"]
    lines += [f"| `{c}` | {r} |" for c, r in plan.dropped.items()] or ["| - | - |"]
    lines += ["", "## Single-column predictive power (leakage screen)", "", "| column | score |",
              "| --- | --- |"]
    ranked = sorted(plan.leakage_scores.items(), key=lambda item: -item[1])
    lines += [f"| `{c}` | {s:.3f} |" for c, s in ranked]
    selection = getattr(plan, "selection", None) or {}
    if selection:
        lines += ["", "## Feature selection by importance", ""]
        if selection.get("status") == "done":
            lines.append(
                f"{selection['method']}: {selection.get('rows')} rows, quick model "
                f"{selection.get('quick_model_metric')} {selection.get('quick_model_score')}; "
                f"{selection.get('features_before')} features before, "
                f"{selection.get('features_after')} kept"
                + (f" (budget.max_features {selection['max_features']})"
                   if selection.get("max_features") else "") + ".")
            if selection.get("reason"):
                lines += ["", selection["reason"]]
            excluded = selection.get("excluded") or {}
            lines += ["", "| feature | importance | kept |", "| --- | --- | --- |"]
            for name, value in sorted(plan.feature_importance.items(), key=lambda kv: -kv[1]):
                kept = "no: " + excluded[name] if name in excluded else "yes"
                lines.append(f"| `{name}` | {value:+.5f} | {kept} |")
        else:
            lines.append(f"Skipped: {selection.get('reason', 'not needed')}.")
    return "\n".join(lines) + "\n"
