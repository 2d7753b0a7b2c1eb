"""The training and selection component faces, called as plain Python (``.python_func``)."""

from __future__ import annotations

import json
from pathlib import Path

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

from autokfp.training.isolation import read_candidate_marker, write_candidate_marker
from components import select_model, train_autokeras
from tests.conftest import small_config


def _artifact(cls, folder: Path, name: str, uri: Path | None = None):
    artifact = cls(name=name, uri=str(uri or folder / name))
    return artifact


def test_train_autokeras_left_out_of_engines_is_skipped(tmp_path) -> None:
    config = small_config(tmp_path, engines=["h2o"]).to_dict()
    model = _artifact(Model, tmp_path, "model")
    status = train_autokeras.python_func(
        config=config, train=_artifact(Dataset, tmp_path, "train"),
        plan=_artifact(Artifact, tmp_path, "plan"), model=model,
        leaderboard=_artifact(HTML, tmp_path, "leaderboard"),
        metrics=_artifact(Metrics, tmp_path, "metrics"))
    assert status == "skipped"
    assert model.metadata["status"] == "skipped"
    assert read_candidate_marker(model.path)["engine"] == "autokeras"
    assert "skipped" in Path(tmp_path / "leaderboard").read_text()


def test_select_model_passes_on_the_usable_candidate(trained_package, autokfp_home,
                                                     tmp_path) -> None:
    config = trained_package.config.to_dict()
    failed = tmp_path / "keras-out"
    write_candidate_marker(failed, "autokeras", "failed", "ResourceExhaustedError: OOM")
    h2o_model = _artifact(Model, tmp_path, "h2o", uri=trained_package.paths.model)
    keras_model = _artifact(Model, tmp_path, "keras", uri=failed)
    test = _artifact(Dataset, tmp_path, "test", uri=trained_package.paths.test)
    model = _artifact(Model, tmp_path, "selected")
    evaluation = _artifact(Artifact, tmp_path, "evaluation")
    report = _artifact(HTML, tmp_path, "report")
    metrics = _artifact(Metrics, tmp_path, "metrics")
    classification = _artifact(ClassificationMetrics, tmp_path, "classification")
    engine, promote, primary = select_model.python_func(
        config=config, h2o_model=h2o_model, autokeras_model=keras_model, test=test, model=model,
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
