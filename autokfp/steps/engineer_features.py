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
    parquet_column_names,
    parquet_rows,
    read_config,
    read_parquet_sample,
    record_data_changes,
    record_event,
    write_text,
)
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)

PLAN_MAX_ROWS = 1_000_000
"""Training rows the feature plan is learnt on (a fixed-seed uniform sample above it)."""


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
    training_data: str = ""
    """The content-addressed folder holding the train rows and the plan (``store_training_data``),
    or "" when they were not stored."""

    def publication(self) -> Publication:
        return Publication(metadata={"train": {"rows": self.train_rows},
                                     "test": {"rows": self.test_rows}},
                           returns=(self.task, self.features, self.training_data))


@batched
def engineer_features(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
                   train_path: str, test_path: str, plan_path: str,
                   report_path: str | None = None, store_training_data: bool = False) -> Engineered:
    """Fix the held-out split, infer the task and learn the feature plan from training rows.

    The table is never read whole: the split streams it in Arrow batches into the train and
    test files (``split_holdout_parquet``), the task comes from the target column, and the
    feature plan (and feature selection) is learnt on a uniform sample of at most
    ``PLAN_MAX_ROWS`` training rows; below that, on every training row.

    With ``store_training_data``, the train rows and the plan (what training reads) are also
    stored in the artifact store under a URI that names their digest
    (``training_data_uri``), returned as ``training_data``.
    """
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.modeling.partition import held_out_fraction
    from autokfp.modeling.tasks import infer_task

    cfg = read_config(config)
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    target = cfg.training.target
    _require_target(parquet_column_names(dataset_path), target, schema.dataset_id)
    id_column = cfg.training.id_column or next(
        (c.name for c in schema.columns if c.semantic_type == "id"), None)
    # the task from the target column alone, before any row is split
    labels = pd.read_parquet(dataset_path, columns=[target])[target]
    task = infer_task(labels, cfg.training.task)
    test_fraction = held_out_fraction(labels, task, cfg.split.test_fraction,
                                      cfg.split.max_test_rows)
    if test_fraction < cfg.split.test_fraction:
        log.info("%d labelled rows: the test split holds %.2f%% of them (split.max_test_rows "
                 "%d), not split.test_fraction %.0f%%; the rest train the models",
                 labels.notna().sum(), 100 * test_fraction, cfg.split.max_test_rows,
                 100 * cfg.split.test_fraction)
    del labels
    try:  # a failed step leaves no train or test file behind
        split, plan, planned_rows = _split_and_plan(cfg, schema, dataset_path, train_path,
                                                    test_path, task, id_column, test_fraction)
    except BaseException:
        for written in (train_path, test_path):
            Path(written).unlink(missing_ok=True)
        raise
    write_text(plan_path, plan.to_json())
    if report_path:
        write_text(report_path, _feature_report(plan, schema.dataset_id, split.train_rows,
                                                split.test_rows, planned_rows))
    return Engineered(task=task, train_rows=split.train_rows, test_rows=split.test_rows,
                      features=len(plan.feature_columns), dropped=len(plan.dropped),
                      id_column=id_column or "", unlabelled_rows=split.unlabelled_rows,
                      training_data=(training_data_uri(train_path, plan_path)
                                     if store_training_data else ""))


TRAINING_DATA_FOLDER = "training-data"
"""Where, under the artifact root, the content-addressed training inputs are kept."""


def training_data_uri(train_path: str, plan_path: str) -> str:
    """Store the train rows and the feature plan under
    ``<AUTOKFP_ARTIFACT_ROOT>/training-data/sha256-<digest of both>/`` and return that URI.

    Why: KFP's cache key of a task holds the ids of its input artifacts, new in every run
    (discover is never cached), so the GPU training tasks fed ``train``/``plan`` directly
    never hit the cache. Handed this URI as a parameter, ``load_training_data`` (cached) has
    the same key in every run on the same rows and plan, KFP reuses its output artifacts, and
    the training tasks' keys are equal too (docs/kubeflow-ui.md, item 1).
    """
    from autokfp.settings import Settings
    from autokfp.storage.content import put_content_addressed
    from autokfp.storage.uris import child

    root = child(Settings.from_env().artifact_root, TRAINING_DATA_FOLDER)
    uri = put_content_addressed(root, {TRAIN_FILE: train_path, PLAN_FILE: plan_path})
    log.info("training data (train rows + plan) stored at %s", uri)
    return uri


TRAIN_FILE = "train.parquet"
PLAN_FILE = "plan.json"


def _split_and_plan(cfg: RunConfig, schema: Any, dataset_path: str, train_path: str,
                    test_path: str, task: str, id_column: str | None,
                    test_fraction: float) -> tuple[Any, Any, int]:
    """(the streamed split, the feature plan, the training rows it was learnt on)."""
    from autokfp.modeling.features import latest_time, plan_features
    from autokfp.modeling.partition import split_holdout_parquet

    target = cfg.training.target
    sampled = parquet_rows(dataset_path) > PLAN_MAX_ROWS
    times = [c.name for c in schema.columns if c.semantic_type == "datetime"] if sampled else []
    newest: dict[str, list[Any]] = {name: [] for name in times}

    def note_times(rows: pd.DataFrame) -> None:  # the plan's reference time, from every row
        for name in times:
            newest[name].append(latest_time(rows[name]))

    split = split_holdout_parquet(dataset_path, train_path, test_path, test_fraction,
                                  cfg.split.seed, id_column, target, on_batch=note_times)
    _record_unlabelled(cfg, split, target, schema.dataset_id)
    classes = (None if task == "regression"
               else _class_order(pd.Series(split.train_target_values), target, task,
                                 cfg.training.positive_class))
    # the plan is learnt on a uniform sample of the training rows (all of them up to
    # PLAN_MAX_ROWS); which numeric columns have a missing value is known for every row
    train, _ = read_parquet_sample(train_path, PLAN_MAX_ROWS, seed=cfg.split.seed)
    plan = plan_features(train, schema, target, task, cfg.features, id_column=id_column, classes=classes)
    plan.missing_indicators = [c for c in plan.numeric if split.train_missing.get(c)]
    if sampled and plan.datetime:
        latest = pd.Series([t for c in plan.datetime for t in newest[c]], dtype="datetime64[ns]").max()
        plan.reference_time = None if pd.isna(latest) else pd.Timestamp(latest).isoformat()
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
    return split, plan, len(train)


def _require_target(columns: list[str], target: str, dataset_id: str) -> None:
    from autokfp.errors import SchemaError

    if target not in columns:
        raise SchemaError(
            f"target column '{target}' is not in dataset '{dataset_id}'; its columns are "
            f"{sorted(columns)}; set training.target to one of them"
        )


def _record_unlabelled(cfg: RunConfig, split: Any, target: str, dataset_id: str) -> None:
    """The rows without a label (left out by the split): recorded as a data change."""
    unlabelled = split.unlabelled_rows
    if unlabelled:
        record_data_changes(cfg.model_name, "engineer-features", [
            f"{unlabelled} of {unlabelled + split.train_rows + split.test_rows} rows have no "
            f"value in target '{target}' and were left out of training and testing"],
            dataset=dataset_id, rows_dropped=unlabelled)


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
    """Every strong predictor kept by the leakage screen, and every group key read as
    categories: a warning in the run summary and an audit event (the columns dropped, leaks
    included, are the step's feature.dropped event)."""
    from autokfp.governance.audit import record_warning

    for name, reason in plan.strong_predictors.items():
        record_warning("feature.strong_predictor_kept", f"column '{name}' kept: {reason}",
                       {"column": name, "reason": reason,
                        "score": plan.leakage_scores.get(name)}, model=model)
    for name, evidence in (getattr(plan, "group_keys", None) or {}).items():
        record_warning("feature.group_key", f"column '{name}' read as a group key: {evidence}",
                       {"column": name, "evidence": evidence,
                        "levels": len(plan.categorical_levels.get(name, []))}, model=model)


def _feature_report(plan: Any, dataset_id: str, train_rows: int, test_rows: int,
                    planned_rows: int) -> str:
    sampled = (f" The plan was learnt on a uniform sample of {planned_rows} training rows."
               if planned_rows < train_rows else "")
    lines = [f"# Features for `{dataset_id}`", "",
             f"Task **{plan.task}**, target `{plan.target}`; {train_rows} training rows, "
             f"{test_rows} held-out test rows.{sampled}", "",
             "| group | columns |", "| --- | --- |"]
    for group in ("numeric", "categorical", "boolean", "datetime", "text"):
        columns = getattr(plan, group)
        lines.append(f"| {group} | {', '.join(f'`{c}`' for c in columns) or '-'} |")
    lines += ["", "## Dropped columns", "", "| column | reason |", "| --- | --- |"]
    lines += [f"| `{c}` | {r} |" for c, r in plan.dropped.items()] or ["| - | - |"]
    group_keys = getattr(plan, "group_keys", None) or {}
    if group_keys:
        lines += ["", "## Group keys (integer codes read as categories)", "",
                  "| column | evidence |", "| --- | --- |"]
        lines += [f"| `{c}` | {e} |" for c, e in group_keys.items()]
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
