"""The ``evaluate_model`` component: test metrics, the ROC and confusion matrix for the UI,
and the promote decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_evaluate_model_logs_metrics_and_decides_to_promote(evaluated) -> None:
    metrics, classification = evaluated["metrics"], evaluated["classification"]
    assert metrics.metadata["test_auc"] >= 0.78
    assert {"test_logloss", "test_accuracy", "test_f1"} <= set(metrics.metadata)
    assert evaluated["promote"] is True  # no champion yet
    assert evaluated["primary"] == pytest.approx(metrics.metadata["test_auc"])
    roc = classification.metadata["confidenceMetrics"]
    assert len(roc) > 2
    assert {"falsePositiveRate", "recall", "confidenceThreshold"} <= set(roc[0])
    matrix = classification.metadata["confusionMatrix"]
    assert len(matrix["annotationSpecs"]) == 2 and len(matrix["rows"]) == 2
    assert evaluated["evaluation"].metadata["promote"] is True
    assert json.loads(Path(evaluated["evaluation"].path).read_text())["metrics"]["auc"] >= 0.78
