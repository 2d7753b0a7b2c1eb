"""The ``train_h2o_automl`` component: an engine left out of ``engines`` is a skipped candidate.

Training itself runs once per session (``trained_package``) and in tests/engine/training/.
"""

from __future__ import annotations

from pathlib import Path

from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from autokfp.training.isolation import read_candidate_marker
from components import train_h2o_automl
from tests.components import artifact
from tests.conftest import small_config


def test_train_h2o_automl_left_out_of_engines_is_skipped(tmp_path) -> None:
    config = small_config(tmp_path, engines=["autokeras"]).to_dict()
    model = artifact(Model, tmp_path, "model")
    status = train_h2o_automl.python_func(
        config=config, train=artifact(Dataset, tmp_path, "train"),
        plan=artifact(Artifact, tmp_path, "plan"), model=model,
        leaderboard=artifact(HTML, tmp_path, "leaderboard"),
        metrics=artifact(Metrics, tmp_path, "metrics"))
    assert status == "skipped"
    assert model.metadata["status"] == "skipped"
    assert read_candidate_marker(model.path)["engine"] == "h2o"
    assert "skipped" in Path(tmp_path / "leaderboard").read_text()
