"""The ``train_model`` component: one face for every engine; an engine left out of
``engines`` is a skipped candidate.

Training itself runs once per session (``trained_package``, ``keras_package``), in
tests/engine/training/ and through the whole pipeline in tests/pipelines/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from autokfp.components import train_model
from autokfp.training.isolation import read_candidate_marker
from tests.components import artifact
from tests.conftest import small_config


@pytest.mark.parametrize(("engine", "configured"), [("h2o", ["autokeras"]),
                                                    ("autokeras", ["h2o"])])
def test_an_engine_left_out_of_engines_is_skipped(engine, configured, tmp_path) -> None:
    config = small_config(tmp_path, engines=configured).to_dict()
    model = artifact(Model, tmp_path, "model")
    status = train_model.python_func(
        config=config, engine=engine, train=artifact(Dataset, tmp_path, "train"),
        plan=artifact(Artifact, tmp_path, "plan"), model=model,
        leaderboard=artifact(HTML, tmp_path, "leaderboard"),
        metrics=artifact(Metrics, tmp_path, "metrics"))
    assert status == "skipped"
    assert model.metadata["status"] == "skipped" and model.metadata["engine"] == engine
    assert read_candidate_marker(model.path)["engine"] == engine
    assert "skipped" in Path(tmp_path / "leaderboard").read_text()
