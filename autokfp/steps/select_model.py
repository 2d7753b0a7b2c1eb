"""The `select_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.steps.io import read_config, write_json, write_text
from autokfp.steps.results import Curves, Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selected(StepResult):
    """The selected candidate, its test metrics and curves, and the decision against the
    champion."""

    engine: str
    reason: str
    """Why this candidate was selected."""
    metrics: dict[str, float]
    curves: Curves
    promote: bool
    primary_metric: float
    decision: str
    """Why it is (or is not) promoted over the champion."""
    record: dict[str, Any]
    """The evaluation document the step wrote to ``evaluation_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Selected:
        comparison = record["comparison"]
        return cls(engine=record["selected"]["engine"], reason=record["selected"]["reason"],
                   metrics=dict(record["metrics"]), curves=Curves.from_details(record["details"]),
                   promote=bool(comparison["promote"]),
                   primary_metric=float(comparison["challenger"]), decision=comparison["reason"],
                   record=record)

    def publication(self) -> Publication:
        return Publication(
            # every test metric but NaN, which the UI cannot show
            metrics={f"test_{k}": v for k, v in self.metrics.items() if v == v},
            metadata={"model": {"engine": self.engine, "framework": "mlflow-pyfunc"},
                      "evaluation": {"decision": self.decision, "promote": self.promote,
                                     "selected_engine": self.engine,
                                     "selection": self.reason[:1000]}},
            curves=self.curves, returns=(self.engine, self.promote, self.primary_metric))


@batched
def select_model(config: dict[str, Any] | RunConfig, candidate_paths: dict[str, str],
                 test_path: str, evaluation_path: str, model_path: str,
                 report_path: str | None = None) -> Selected:
    """Score every engine's leader and the champion on the same test rows; keep the best.

    ``candidate_paths`` maps each engine to its training output: a model folder, or a
    ``candidate.json`` marker of an engine that failed or was skipped (the fallback: the
    remaining leaders compete without it). The best candidate by the primary metric is
    copied to ``model_path``; the paired bootstrap against the champion decides whether
    it is promoted. Writes the evaluation JSON and, with ``report_path``, an HTML report
    with the leaderboard, robustness checks and plots. Raises TrainingError when no
    candidate is usable.
    """
    return Selected.from_record(
        _evaluate(config, candidate_paths, test_path, evaluation_path, model_path, report_path))


def _evaluate(config: dict[str, Any] | RunConfig, candidate_paths: dict[str, str], test_path: str,
              evaluation_path: str, model_path: str | None = None,
              report_path: str | None = None) -> dict[str, Any]:
    from autokfp.modeling import registry
    from autokfp.modeling.model_package import load_model_package
    from autokfp.modeling.plots import write_plots
    from autokfp.modeling.selection import (
        copy_selected,
        evaluation_document,
        load_candidates,
        log_evaluation_run,
        report_html,
        select_model,
    )

    cfg = read_config(config)
    test = pd.read_parquet(test_path)
    candidates = load_candidates(candidate_paths)
    client = registry.configure()
    current = registry.champion_version(client, cfg.model_name)
    champion = None
    champion_error = None
    if current is not None:
        try:
            champion = load_model_package(registry.model_uri(cfg.model_name))
        except Exception as exc:  # noqa: BLE001 - an unusable champion must not block a new model
            champion_error = (f"champion v{current.version} cannot be loaded ({exc}); it is "
                              "replaced by a model that can")
            log.warning(champion_error)
    selection = select_model(candidates, test, cfg.selection, cfg.split.seed, champion=champion,
                             champion_version=None if current is None else str(current.version))
    if champion_error:
        selection.comparison["reason"] = f"{champion_error}; {selection.comparison['reason']}"
    document = evaluation_document(selection, len(test))
    target = selection.selected.meta["target"]
    with tempfile.TemporaryDirectory(prefix="autokfp-plots-") as scratch:
        curves = {c.engine: c.predictions for c in selection.candidates if c.predictions is not None}
        if selection.champion_predictions is not None:
            curves[f"champion v{current.version}"] = selection.champion_predictions
        try:
            plots = write_plots(test[target], curves, selection.selected.meta, scratch,
                                selected=selection.selected.engine)
        except Exception as exc:  # noqa: BLE001 - a plot must never cost the evaluation
            log.warning("evaluation plots failed: %s: %s", type(exc).__name__, exc)
            plots = {}
        page = report_html(document, plots)
        document["mlflow_run_id"] = log_evaluation_run(cfg.model_name, selection, document, plots,
                                                       page)
        if report_path:
            write_text(report_path, page)
    if model_path:
        copy_selected(selection, model_path)
    write_json(evaluation_path, document)
    from autokfp.steps.io import record_event

    record_event("model.selected", {
        "engine": selection.selected.engine, "reason": selection.reason,
        "metric": selection.metric,
        "value": document["metrics"].get(selection.metric),
        "promote": bool(selection.comparison.get("promote")),
        "decision": selection.comparison.get("reason"),
        "candidates": {c.engine: c.status for c in selection.candidates}}, cfg.model_name)
    log.info("selected %s: %s; %s", selection.selected.engine, selection.reason,
             selection.comparison.get("reason"))
    return document
