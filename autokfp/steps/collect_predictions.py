"""The `collect_predictions` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.monitoring.runs import remember_run_start
from autokfp.monitoring.window import NO_CHAMPION
from autokfp.settings import Settings
from autokfp.steps.io import read_config, write_stored_json, write_stored_parquet
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collected(StepResult):
    """The window's status (ok, empty, too-few-rows, no-champion) and its row counts."""

    status: str
    rows: int
    labelled_rows: int
    record: dict[str, Any]
    """Everything the step wrote to ``collection_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Collected:
        return cls(status=record["status"], rows=int(record.get("rows", 0)),
                   labelled_rows=int(record.get("labelled_rows", 0)), record=record)

    def publication(self) -> Publication:
        return Publication(metadata={"collection": {"status": self.status, "rows": self.rows,
                                                    "labelled_rows": self.labelled_rows}},
                           returns=(self.status,))



def collect_predictions(
    config: dict[str, Any] | RunConfig,
    current_path: str,
    reference_path: str,
    collection_path: str,
    run_id: str = "",
    window_end: str = "",
    scheduled_time: str = "",
    reference_frame: pd.DataFrame | None = None,
    standalone: bool = False,
) -> Collected:
    """The champion's logged predictions for the window (with labels), its reference and
    the quality of the live inputs.

    ``reference_frame``: the reference rows given as an input (a component used alone: the
    user's training data), taken instead of the stored reference or the training dataset
    (at most ``monitoring.reference_rows`` of them, sampled). ``standalone``: the config is a
    component's own (no run config): the labels' target column defaults to the champion's
    target, not ``training.target``."""
    from autokfp.monitoring.window import load_champion, window_end_time

    cfg = read_config(config)
    spec = cfg.monitoring
    settings = Settings.from_env()
    end = window_end_time(window_end, scheduled_time)
    start = end - timedelta(days=spec.window_days)
    collection: dict[str, Any] = {
        "model": cfg.model_name,
        "run_id": run_id,
        "notes": [],
        "window": {"start": start.isoformat(), "end": end.isoformat(), "days": spec.window_days},
    }
    champion = load_champion(cfg.model_name, settings)
    if champion is None:
        return Collected.from_record(_no_champion(cfg.model_name, collection, current_path,
                                                  reference_path, collection_path))
    remember_run_start(settings, cfg.model_name, run_id, champion.version)
    current, reference = _gather(cfg, settings, champion, start, end, collection,
                                 reference_frame, standalone)
    write_stored_parquet(current_path, current)
    write_stored_parquet(
        reference_path, reference.frame if reference.frame is not None else pd.DataFrame()
    )
    write_stored_json(collection_path, collection)
    log.info("monitoring %s v%s: %s; labels: %s; reference: %s", cfg.model_name,
             champion.version, collection["reason"], collection["labels"], reference.note)
    return Collected.from_record(collection)


def _gather(cfg: RunConfig, settings: Settings, champion: Any, start: datetime, end: datetime,
            collection: dict[str, Any], reference_frame: pd.DataFrame | None = None,
            standalone: bool = False) -> tuple[pd.DataFrame, Any]:
    """Read the champion's window, join the labels, resolve the reference and check the live
    inputs; what was found goes into ``collection``. Returns the window and the reference."""
    from autokfp.monitoring.quality import check_inputs
    from autokfp.monitoring.window import (
        LABEL_COLUMN,
        join_labels,
        other_version_notes,
        read_labels,
        read_window,
        resolve_reference,
        window_status,
    )

    spec = cfg.monitoring
    window = read_window(settings.artifact_root, champion.service, champion.version, start, end)
    collection["notes"] += window.notes
    collection["notes"] += other_version_notes(window.other_versions, champion)
    required = list(champion.plan.input_columns)
    id_column = spec.labels.id_column or cfg.training.id_column
    target = spec.labels.target or (champion.meta["target"] if standalone
                                    else cfg.training.target)
    labels = read_labels(spec.labels.path, id_column, target)
    current, label_note = join_labels(window.frame, labels, id_column, target)
    reference = (given_reference(reference_frame, spec.reference_rows)
                 if reference_frame is not None else resolve_reference(cfg, champion, settings))
    quality = check_inputs(
        current, required, champion.kinds, reference.frame, spec.max_bad_input_fraction
    )
    rows = len(current)
    status, reason = window_status(rows, spec.min_window_rows, cfg.model_name, champion.version,
                                   start, end)
    labelled = int(current[LABEL_COLUMN].notna().sum()) if rows else 0
    collection.update(
        status=status,
        reason=reason,
        rows=rows,
        files=window.files,
        labelled_rows=labelled,
        labels=label_note,
        other_versions=window.other_versions,
        champion=champion.summary(),
        task=champion.meta["task"],
        primary_metric=champion.meta["primary_metric"],
        class_labels=champion.meta.get("class_labels"),
        kinds=champion.kinds,
        prediction_kinds=champion.prediction_kinds,
        reference={"source": reference.source, "note": reference.note,
                   "rows": 0 if reference.frame is None else len(reference.frame)},
        quality=quality.to_dict(),
    )
    return current, reference


def given_reference(frame: pd.DataFrame, max_rows: int) -> Any:
    """Reference rows given as an input, sampled down to ``max_rows`` (a fixed seed)."""
    from autokfp.monitoring.window import Reference

    rows = len(frame)
    if rows > max_rows:
        frame = frame.sample(n=max_rows, random_state=0).reset_index(drop=True)
    note = f"the reference_data input ({rows} rows" + (
        f", {max_rows} sampled)" if rows > max_rows else ")")
    return Reference(frame, "input", note)


def _no_champion(model: str, collection: dict[str, Any], current_path: str,
                 reference_path: str, collection_path: str) -> dict[str, Any]:
    collection.update(
        status=NO_CHAMPION,
        rows=0,
        labelled_rows=0,
        reason=f"no version of '{model}' holds alias 'champion': there is "
        "nothing to monitor; train one first (autokfp run CONFIG)",
    )
    write_stored_parquet(current_path, pd.DataFrame())
    write_stored_parquet(reference_path, pd.DataFrame())
    write_stored_json(collection_path, collection)
    return collection
