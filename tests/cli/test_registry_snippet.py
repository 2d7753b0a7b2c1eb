"""``load_model``, the README's way to load a champion in a new session, never creates a
registry and names a malformed reference. (The README's snippets themselves, run as written
in a new Python session, are tests/pipelines/test_local_training_pipeline.py's: its one
pipeline run is started by the README's run snippet.)"""

from __future__ import annotations

import pytest

from autokfp.errors import RegistryError
from autokfp.modeling.registry import load_model
from tests.conftest import use_home


def test_load_model_never_creates_a_registry(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = use_home(monkeypatch, tmp_path / "nowhere")
    with pytest.raises(RegistryError, match="no model registry at .*mlflow.db: run `autokfp demo`"):
        load_model("churn@champion", settings)
    assert not (tmp_path / "nowhere" / "mlflow.db").exists()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("ref", ["@champion", "churn@", "churn/v1", ""])
def test_load_model_refuses_a_malformed_reference(ref, tmp_path, monkeypatch) -> None:
    settings = use_home(monkeypatch, tmp_path / "home")
    with pytest.raises(RegistryError, match=r"write NAME@ALIAS \(e.g. churn@champion\), NAME/VERSION"):
        load_model(ref, settings)
