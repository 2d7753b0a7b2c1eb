"""The ``select_model`` component: a failed candidate is reported, the usable one passed on."""

from __future__ import annotations

import json
from pathlib import Path

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

from autokfp.components import select_model
from autokfp.training.isolation import write_candidate_marker
from tests.components import artifact


def test_select_model_passes_on_the_usable_candidate(trained_package, autokfp_home,
                                                     tmp_path) -> None:
    config = trained_package.config.to_dict()
    failed = tmp_path / "keras-out"
    write_candidate_marker(failed, "autokeras", "failed", "ResourceExhaustedError: OOM")
    h2o_model = artifact(Model, tmp_path, "h2o", trained_package.paths.model)
    keras_model = artifact(Model, tmp_path, "keras", failed)
    # what train_model leaves in each candidate's metadata
    h2o_model.metadata["engine"] = "h2o"
    keras_model.metadata["engine"] = "autokeras"
    test = artifact(Dataset, tmp_path, "test", trained_package.paths.test)
    model = artifact(Model, tmp_path, "selected")
    evaluation = artifact(Artifact, tmp_path, "evaluation")
    report = artifact(HTML, tmp_path, "report")
    metrics = artifact(Metrics, tmp_path, "metrics")
    classification = artifact(ClassificationMetrics, tmp_path, "classification")
    engine, promote, primary = select_model.python_func(
        config=config, candidates=[h2o_model, keras_model], test=test, model=model,
        evaluation=evaluation, report=report, metrics=metrics, classification=classification)
    assert engine == "h2o" and promote is True
    assert primary == metrics.metadata["test_auc"]
    assert {"test_brier", "test_ece"} <= set(metrics.metadata)
    assert (Path(model.path) / "MLmodel").is_file()
    assert model.metadata["engine"] == "h2o"
    assert evaluation.metadata["selected_engine"] == "h2o"
    assert "OOM" in evaluation.metadata["selection"]
    written = json.loads(Path(evaluation.path).read_text())
    assert [c["status"] for c in written["candidates"]] == ["trained", "failed"]
    assert "<img" in Path(report.path).read_text()
    assert classification.metadata["confidenceMetrics"]


def test_select_model_alone_takes_typed_inputs(trained_package, autokfp_home, tmp_path) -> None:
    """No run config (someone else's pipeline): the target is the candidate's, the name
    typed; the candidates are ranked by the metric they were trained for."""
    candidate = artifact(Model, tmp_path, "h2o", trained_package.paths.model)
    candidate.metadata["engine"] = "h2o"
    evaluation = artifact(Artifact, tmp_path, "evaluation")
    metrics = artifact(Metrics, tmp_path, "metrics")
    engine, promote, primary = select_model.python_func(
        candidates=[candidate], test=artifact(Dataset, tmp_path, "test", trained_package.paths.test),
        model=artifact(Model, tmp_path, "selected"), evaluation=evaluation,
        report=artifact(HTML, tmp_path, "report"), metrics=metrics,
        classification=artifact(ClassificationMetrics, tmp_path, "classification"),
        model_name="churn-selected")
    assert engine == "h2o" and promote is True  # no champion of churn-selected
    written = json.loads(Path(evaluation.path).read_text())
    assert written["primary_metric"] == "auc" and written["champion"] is None
    assert primary == metrics.metadata["test_auc"] > 0.7
