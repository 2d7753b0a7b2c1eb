"""The serving image's MODEL_URI: the predictor fetches its model itself (outside KServe)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp import storage
from autokfp.serving import __main__ as entry
from autokfp.serving.fetch import fetch_model


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory):
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    folder = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(x, (x["a"] > 0).astype(int)), str(folder))
    return folder


def _serve_calls(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    from autokfp.serving import predictor

    monkeypatch.setattr(predictor, "serve", lambda model_dir, *a, **k: calls.append((model_dir, a)))
    return calls


def test_model_uri_on_s3_is_fetched_and_served(s3_server, sklearn_model, monkeypatch):
    uri = f"{s3_server.base_uri}/{uuid.uuid4().hex}/model"
    storage.upload_dir(sklearn_model, uri)
    calls = _serve_calls(monkeypatch)
    monkeypatch.setenv("MODEL_URI", uri)
    assert entry.main(["--model_name", "churn"]) == 0
    (served, _), = calls
    assert served != "/mnt/models"
    assert sorted(p.name for p in Path(served).iterdir()) == sorted(
        p.name for p in sklearn_model.iterdir())


def test_model_uri_from_the_registry(autokfp_home, sklearn_model, tmp_path):
    from autokfp.modeling import registry

    registry.register_model(sklearn_model, "uri-test", {"test_auc": 0.8}, {}, {}, promote=True,
                            decision="first", compared_champion=None)
    local = fetch_model("models:/uri-test@champion", tmp_path / "fetched")
    assert (local / "MLmodel").is_file()


def test_a_bad_model_uri_is_one_clear_error(monkeypatch, tmp_path, caplog):
    _serve_calls(monkeypatch)
    monkeypatch.setenv("MODEL_URI", str(tmp_path / "nothing-here"))
    with caplog.at_level(logging.ERROR):
        assert entry.main([]) == 2
    assert "holds no model package" in caplog.text and "nothing-here" in caplog.text
