"""The ``deploy_model`` component: a manifest-only deploy, and no champion to deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp.dsl import Artifact, Dataset

from autokfp.components import deploy_model
from autokfp.errors import DeploymentError
from tests.components import artifact
from tests.conftest import small_config


def test_deploy_model_writes_the_manifest_of_the_champion(registered, tmp_path) -> None:
    config = registered["config"]
    manifest = artifact(Artifact, tmp_path, "manifest")
    decision = artifact(Artifact, tmp_path, "decision")
    manifest_only = {**config, "deploy": {**config["deploy"], "target": "manifest"}}
    outcome = deploy_model.python_func(config=manifest_only,
                                       registration=registered["registration"],
                                       test=registered["test"], manifest=manifest,
                                       decision=decision)
    assert outcome == "skipped"  # target manifest: written, not rolled out
    assert decision.metadata["action"] == "initial"
    service = yaml.safe_load(Path(manifest.path).read_text())
    assert service["kind"] == "InferenceService"
    assert service["spec"]["predictor"]["model"]["storageUri"]
    assert manifest.metadata["version"] == "1"
    assert json.loads(Path(decision.path).read_text())["target"] == "manifest"


def test_deploy_without_a_champion_says_so(autokfp_home, churn_folder, tmp_path) -> None:
    registration = artifact(Artifact, tmp_path, "registration")
    Path(registration.path).write_text(json.dumps({"promoted": False}))
    manifest = artifact(Artifact, tmp_path, "manifest")
    decision = artifact(Artifact, tmp_path, "decision")
    test = artifact(Dataset, tmp_path, "test")
    with pytest.raises(DeploymentError, match="no champion"):
        deploy_model.python_func(config=small_config(churn_folder).to_dict(),
                                 registration=registration, test=test, manifest=manifest,
                                 decision=decision)
    assert not Path(manifest.path).exists()
    assert not Path(decision.path).exists()


def test_deploy_model_alone_takes_the_model_and_target_from_the_registration(
    registered, tmp_path, monkeypatch
) -> None:
    """No run config (someone else's pipeline): the registration names the model and its
    target; approval can be required from the typed input."""
    monkeypatch.setenv("AUTOKFP_DEPLOY_TARGET", "manifest")
    record = json.loads(Path(registered["registration"].path).read_text())
    assert (record["name"], record["target"]) == ("churn-test", "churned")
    manifest = artifact(Artifact, tmp_path, "manifest")
    decision = artifact(Artifact, tmp_path, "decision")
    outcome = deploy_model.python_func(registration=registered["registration"],
                                       test=registered["test"], manifest=manifest,
                                       decision=decision)
    assert outcome == "skipped" and manifest.metadata["version"] == "1"
    service = yaml.safe_load(Path(manifest.path).read_text())
    assert service["metadata"]["name"].startswith("churn-test")
    awaiting = deploy_model.python_func(registration=registered["registration"],
                                        test=registered["test"], require_approval=True,
                                        manifest=artifact(Artifact, tmp_path, "manifest-2"),
                                        decision=artifact(Artifact, tmp_path, "decision-2"))
    assert awaiting == "awaiting-approval"


def test_deploy_model_alone_names_a_registration_without_a_target(tmp_path) -> None:
    """A registration written before register_model recorded the target (a cached task of an
    older autokfp) cannot be deployed without a config: the error names the registration and
    what to do, instead of a config error about a setting deploy_model has no input for."""
    from autokfp.errors import ConfigError

    registration = artifact(Artifact, tmp_path, "registration")
    Path(registration.path).write_text(json.dumps({"name": "churn", "version": "3",
                                                  "promoted": True}))
    with pytest.raises(ConfigError) as raised:
        deploy_model.python_func(registration=registration,
                                 test=artifact(Dataset, tmp_path, "test"),
                                 manifest=artifact(Artifact, tmp_path, "manifest"),
                                 decision=artifact(Artifact, tmp_path, "decision"))
    message = str(raised.value)
    assert registration.path in message and "names no target" in message
    assert "pass config" in message
