"""``publish``: a step's typed result onto real KFP artifacts (no string keys in components)."""

from __future__ import annotations

import math

import pytest
from kfp.dsl import Artifact, ClassificationMetrics, Metrics

from autokfp.steps.catalog_sources import Catalogued
from autokfp.steps.evaluate_model import Evaluated
from autokfp.steps.results import publish
from tests.components import artifact

RECORD = {
    "metrics": {"auc": 0.81, "logloss": 0.42, "ece": math.nan},
    "details": {"roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0],
                        "thresholds": [1.0, 0.5, 0.0]},
                "labels": ["0", "1"], "confusion_matrix": [[50, 10], [5, 35]]},
    "comparison": {"metric": "auc", "challenger": 0.81, "champion": None, "promote": True,
                   "reason": "no champion yet"},
}


def test_an_evaluation_becomes_metrics_curves_metadata_and_outputs(tmp_path) -> None:
    metrics = artifact(Metrics, tmp_path, "metrics")
    classification = artifact(ClassificationMetrics, tmp_path, "classification")
    evaluation = artifact(Artifact, tmp_path, "evaluation")
    promote, primary = publish(Evaluated.from_record(RECORD), metrics=metrics,
                               classification=classification, evaluation=evaluation)
    assert (promote, primary) == (True, 0.81)
    # NaN cannot be shown in the UI: left out, the rest prefixed as the UI shows them
    assert metrics.metadata == {"test_auc": 0.81, "test_logloss": 0.42}
    assert evaluation.metadata == {"decision": "no champion yet", "promote": True}
    assert len(classification.metadata["confidenceMetrics"]) == 3
    assert classification.metadata["confusionMatrix"]["rows"] == [{"row": [50, 10]},
                                                                 {"row": [5, 35]}]


def test_counts_stay_integers_and_one_output_comes_back_alone(tmp_path) -> None:
    counts = Catalogued(catalogued=3, new=1, changed=1, breaking=1, reused=1, failed=0,
                        missing=0, sources_failed=0)
    metrics = artifact(Metrics, tmp_path, "metrics")
    catalog = artifact(Artifact, tmp_path, "catalog")
    assert publish(counts, metrics=metrics, catalog=catalog) == 1
    assert catalog.metadata["catalogued"] == 3 and isinstance(catalog.metadata["new"], int)
    assert metrics.metadata["breaking"] == 1


def test_a_missing_artifact_is_named(tmp_path) -> None:
    counts = Catalogued(catalogued=0, new=0, changed=0, breaking=0, reused=0, failed=0,
                        missing=0, sources_failed=0)
    with pytest.raises(TypeError, match="pass catalog="):
        publish(counts, metrics=artifact(Metrics, tmp_path, "metrics"))
    with pytest.raises(TypeError, match="pass metrics="):
        publish(counts, catalog=artifact(Artifact, tmp_path, "catalog"))
