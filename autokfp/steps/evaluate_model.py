"""The `evaluate_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.steps.evaluation import evaluate_candidates
from autokfp.steps.results import Curves, Publication, StepResult, finite_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluated(StepResult):
    """Test metrics, the curves for the UI, and the decision against the champion."""

    metrics: dict[str, float]
    curves: Curves
    comparison: dict[str, Any]
    """The champion comparison (metric, champion, challenger, improvement, promote, reason)."""
    promote: bool
    primary_metric: float
    decision: str

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Evaluated:
        comparison = record["comparison"]
        return cls(metrics=dict(record["metrics"]), curves=Curves.from_details(record["details"]),
                   comparison=dict(comparison), promote=bool(comparison["promote"]),
                   primary_metric=float(comparison["challenger"]), decision=comparison["reason"])

    def publication(self) -> Publication:
        return Publication(metrics=finite_metrics(self.metrics, prefix="test_"),
                           metadata={"evaluation": {"decision": self.decision,
                                                    "promote": self.promote}},
                           curves=self.curves, returns=(self.promote, self.primary_metric))


def evaluate_model(config: dict[str, Any] | RunConfig, model_path: str, test_path: str,
                   evaluation_path: str) -> Evaluated:
    """Score the candidate and the current champion on the same test rows and decide.

    The single-candidate case of ``select_model``: the same metrics, validation reports
    (calibration, robustness, CV spread), MLflow evaluation run and champion comparison.
    """
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    return Evaluated.from_record(
        evaluate_candidates(config, {meta["engine"]: model_path}, test_path, evaluation_path))
