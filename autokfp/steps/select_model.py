"""The `select_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.steps.evaluation import evaluate_candidates
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
    return Selected.from_record(evaluate_candidates(config, candidate_paths, test_path,
                                                    evaluation_path, model_path, report_path))
