"""Pipeline stages end to end on files: discover, profile, evaluate, register, deploy."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from autokfp.catalog.profiling import profile_frame
from autokfp.errors import QualityGateError
from autokfp.modeling import registry
from autokfp.steps import deploy_model as deploy_model_step
from autokfp.steps import discover as discover_step
from autokfp.steps import evaluate_model as evaluate_model_step
from autokfp.steps import profile as profile_step
from autokfp.steps import register_model as register_model_step
from tests.conftest import small_config


def _config(trained_package):
    # manifest only: these tests are about the decisions and files, not a running predictor
    return small_config(trained_package.folder,
                        selection={"bootstrap_samples": 200, "confidence": 0.9},
                        deploy={"target": "manifest"})


def _degraded(model: Path, folder: Path) -> Path:
    """A clearly worse copy of the model: its plan hides the strongest inputs from the MOJO."""
    copy = folder / "degraded-model"
    shutil.copytree(model, copy)
    plan_path = copy / "artifacts" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["categorical_levels"] = {name: [] for name in plan["categorical_levels"]}
    plan["numeric"] = [c for c in plan["numeric"] if c not in ("tenure_months", "monthly_charges")]
    plan["missing_indicators"] = [c for c in plan["missing_indicators"] if c in plan["numeric"]]
    plan_path.write_text(json.dumps(plan))
    return copy


def _env(predictor: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in predictor["model"].get("env", [])}


def _run_release(config, trained_package, model: Path, out: Path) -> tuple[dict, dict, dict]:
    """evaluate -> register -> deploy for one candidate; returns their three summaries."""
    out.mkdir(parents=True, exist_ok=True)
    paths = trained_package.paths
    evaluation = evaluate_model_step.evaluate_model(config, str(model), str(paths.test),
                                       str(out / "evaluation.json"))
    registration = register_model_step.register_model(config, str(model), str(out / "evaluation.json"),
                                         str(paths.schema), str(out / "registration.json"))
    deployment = deploy_model_step.deploy_model(config, str(out / "registration.json"), str(paths.test),
                                     str(out / "isvc.yaml"), str(out / "decision.json"))
    return evaluation, registration, deployment


def test_first_model_is_evaluated_registered_and_deployed(autokfp_home, trained_package,
                                                          tmp_path) -> None:
    config = _config(trained_package)
    model = trained_package.paths.model
    out = tmp_path / "run1"
    evaluation, registration, deployment = _run_release(config, trained_package, model, out)

    written = json.loads((out / "evaluation.json").read_text())
    # what the step returns is what it wrote
    assert written["comparison"] == json.loads(json.dumps(evaluation.comparison, default=str))
    assert evaluation.promote is True and evaluation.metrics["auc"] == written["metrics"]["auc"]
    assert written["task"] == "binary"
    assert written["primary_metric"] == "auc"
    assert written["test_rows"] == trained_package.engineered.test_rows
    metrics = written["metrics"]
    assert {"auc", "logloss", "accuracy", "f1", "precision", "recall"} <= set(metrics)
    assert metrics["auc"] >= 0.78
    comparison = written["comparison"]
    assert comparison["promote"] is True
    assert comparison["champion"] is None
    assert "no current champion" in comparison["reason"]
    assert comparison["challenger"] == pytest.approx(metrics["auc"])
    assert len(written["details"]["confusion_matrix"]) == 2

    reg_file = json.loads((out / "registration.json").read_text())
    assert reg_file == dataclasses.asdict(registration)
    assert registration.version == "1"
    assert registration.aliases == ["champion"]
    assert registration.promoted is True
    assert registration.metrics["test_auc"] == pytest.approx(metrics["auc"])

    assert deployment.action == "initial"
    assert deployment.version == "1"
    decision = json.loads((out / "decision.json").read_text())
    assert decision["action"] == "initial"
    assert decision["version"] == "1"
    manifest = yaml.safe_load((out / "isvc.yaml").read_text())
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == deployment.service == "churn-test"
    predictor = manifest["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert predictor["model"]["storageUri"] == deployment.storage_uri
    assert _env(predictor)["MODEL_VERSION"] == "1"
    assert Path(deployment.storage_uri, "MLmodel").is_file()  # the registered copy exists

    # the same package again: compared with itself it is not better, and it is not re-registered
    again_eval, again_reg, again_deploy = _run_release(config, trained_package, model,
                                                       tmp_path / "run2")
    assert again_eval.comparison["promote"] is False
    assert again_eval.comparison["champion_version"] == "1"
    assert again_eval.comparison["improvement"] == pytest.approx(0.0)
    assert again_reg.reused is True
    assert again_reg.version == "1"
    assert again_deploy.action == "unchanged"
    assert "canaryTrafficPercent" not in yaml.safe_load(
        (tmp_path / "run2" / "isvc.yaml").read_text())["spec"]["predictor"]


def test_better_challenger_replaces_champion_as_canary(autokfp_home, trained_package,
                                                       tmp_path) -> None:
    config = _config(trained_package)
    worse = _degraded(Path(trained_package.paths.model), tmp_path)
    first_eval, first_reg, first_deploy = _run_release(config, trained_package, worse,
                                                       tmp_path / "run1")
    assert first_reg.aliases == ["champion"]
    assert first_deploy.action == "initial"

    evaluation, registration, deployment = _run_release(
        config, trained_package, Path(trained_package.paths.model), tmp_path / "run2")
    comparison = evaluation.comparison
    assert comparison["champion_version"] == "1"
    assert comparison["champion"] == pytest.approx(first_eval.metrics["auc"])
    assert comparison["improvement"] > 0.03
    assert comparison["probability_better"] >= config.selection.confidence
    assert comparison["promote"] is True
    test = pd.read_parquet(trained_package.paths.test)
    assert comparison["challenger"] > roc_auc_score(test["churned"], [0.5] * len(test))

    assert registration.version == "2"
    assert registration.promoted is True
    assert registration.replaced_version == "1"
    assert registration.metrics["champion_test_auc"] == pytest.approx(comparison["champion"])
    client = registry.configure()
    assert str(client.get_model_version_by_alias("churn-test", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("churn-test", "previous").version) == "1"

    assert deployment.action == "canary"
    assert deployment.version == "2"
    predictor = yaml.safe_load((tmp_path / "run2" / "isvc.yaml").read_text())["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == config.deploy.canary_traffic_percent == 10
    assert _env(predictor)["MODEL_VERSION"] == "2"
    assert predictor["model"]["storageUri"] == deployment.storage_uri


def test_deploy_without_a_champion_fails_clearly(autokfp_home, trained_package,
                                                 tmp_path) -> None:
    from autokfp.errors import DeploymentError

    registration = tmp_path / "registration.json"
    registration.write_text(json.dumps({"promoted": False, "reused": False}))
    with pytest.raises(DeploymentError, match="no champion"):
        deploy_model_step.deploy_model(_config(trained_package), str(registration),
                            str(trained_package.paths.test), str(tmp_path / "i.yaml"),
                            str(tmp_path / "decision.json"))
    assert not (tmp_path / "i.yaml").exists()


def test_profile_stage_fails_on_constant_target_but_writes_the_report(tmp_path,
                                                                      churn_frame) -> None:
    frame = churn_frame.head(300).assign(churned=0)
    dataset = tmp_path / "dataset.parquet"
    frame.to_parquet(dataset, index=False)
    schema = tmp_path / "schema.json"
    schema.write_text(profile_frame(frame, "files/customers.parquet", "file", "/d").to_json())
    config = small_config(tmp_path)
    report = tmp_path / "reports" / "quality.html"
    summary = tmp_path / "reports" / "quality.json"
    with pytest.raises(QualityGateError) as info:
        profile_step.profile(config, str(dataset), str(schema), str(report), str(summary))
    assert "churned" in str(info.value)
    assert info.value.failures
    html = report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html.lower()
    assert "churned" in html
    written = json.loads(summary.read_text())
    assert json.dumps(written)  # a JSON summary a UI can show
    assert "fail" in json.dumps(written)


def test_profile_stage_passes_good_data(tmp_path, churn_frame) -> None:
    dataset = tmp_path / "dataset.parquet"
    churn_frame.to_parquet(dataset, index=False)
    schema = tmp_path / "schema.json"
    schema.write_text(profile_frame(churn_frame, "files/customers.parquet", "file",
                                    "/d").to_json())
    result = profile_step.profile(small_config(tmp_path), str(dataset), str(schema),
                                  str(tmp_path / "q.html"))
    assert result.rows == len(churn_frame)
    assert result.checks_failed == 0
    assert result.checks_passed > 0
    assert (tmp_path / "q.html").is_file()


def test_discover_stage_writes_dataset_schema_and_valid_catalog(tmp_path, churn_frame) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    churn_frame.to_parquet(folder / "customers.parquet", index=False)
    churn_frame[["customer_id", "region"]].head(50).to_csv(folder / "regions.csv", index=False)
    good = (folder / "customers.parquet").read_bytes()
    (folder / "broken.parquet").write_bytes(good[: len(good) // 3])  # a truncated upload
    config = small_config(folder)
    out = tmp_path / "out"
    result = discover_step.discover(config, str(out / "dataset.parquet"), str(out / "schema.json"),
                                   str(out / "catalog.json"))

    assert result.datasets_found == 2
    assert result.datasets_failed == 1
    assert result.training_dataset == "files/customers.parquet"
    assert result.rows == len(churn_frame)
    assert result.training_urn.startswith("urn:li:dataset:")

    dataset = pd.read_parquet(out / "dataset.parquet")
    assert len(dataset) == len(churn_frame)
    assert set(dataset.columns) == set(churn_frame.columns)
    schema = json.loads((out / "schema.json").read_text())
    types = {c["name"]: c["semantic_type"] for c in schema["columns"]}
    assert types["email"] == "email"
    assert types["customer_id"] == "id"
    catalog_text = (out / "catalog.json").read_text()
    assert "customers.parquet" in catalog_text
    assert "regions.csv" in catalog_text
    assert "broken.parquet" not in catalog_text

    home = tmp_path / "home"
    home.mkdir()
    cli = Path(sys.executable).with_name("datahub")
    env = {**os.environ, "HOME": str(home), "DATAHUB_TELEMETRY_ENABLED": "false"}
    checked = subprocess.run([str(cli), "check", "metadata-file", str(out / "catalog.json")],
                             env=env, capture_output=True, text=True, timeout=180)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all valid" in checked.stdout + checked.stderr


def test_a_missing_folder_training_does_not_read_is_one_of_the_run_warnings(
        autokfp_home, tmp_path, churn_frame) -> None:
    """The run goes on (training reads another source) and `autokfp run`'s summary lists
    the folder; a folder training reads is an error before any step (tests/cli)."""
    from datetime import datetime, timezone

    from autokfp.governance.audit import warnings_since

    folder = tmp_path / "data"
    folder.mkdir()
    churn_frame.head(300).to_parquet(folder / "customers.parquet", index=False)
    gone = tmp_path / "archive"
    config = small_config(folder, sources=[
        {"name": "files", "kind": "folder", "path": str(folder)},
        {"name": "archive", "kind": "folder", "path": str(gone)}])
    started = datetime.now(timezone.utc).isoformat()
    out = tmp_path / "out"
    result = discover_step.discover(config, str(out / "dataset.parquet"), str(out / "schema.json"),
                                   str(out / "catalog.json"))
    assert result.training_dataset == "files/customers.parquet" and result.rows == 300
    assert result.datasets_failed == 1
    shown = [w["details"]["warning"] for w in warnings_since(started, model=config.name)]
    assert len(shown) == 1, shown
    assert "source 'archive' was not catalogued" in shown[0]
    assert f"folder '{gone}'" in shown[0] and "does not exist" in shown[0]


def test_strong_predictors_kept_and_leaks_dropped_are_warnings_in_the_audit_trail(
        autokfp_home, tmp_path) -> None:
    """Both are automatic decisions about the data: each is audited with a warning that
    `autokfp run` prints in its summary."""
    from datetime import datetime, timezone

    import numpy as np

    from autokfp.governance.audit import read_events, warnings_since

    rng = np.random.default_rng(4)
    n = 500
    label = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "row": np.arange(n),
        "size_a": label * 3.3 + rng.normal(size=n), "size_b": label * 3.3 + rng.normal(size=n),
        "noise": rng.normal(size=n),
        "churned": np.where(label == 1, "yes", "no")})
    started = datetime.now(timezone.utc).isoformat()
    config = _engineered(tmp_path, frame, "customers.parquet", "churned")
    kept = [e for e in read_events() if e["kind"] == "feature.strong_predictor_kept"]
    assert sorted(e["details"]["column"] for e in kept) == ["size_a", "size_b"]
    assert all(e["model"] == config.name and e["details"]["score"] >= 0.97 for e in kept)
    shown = warnings_since(started, model=config.name)
    assert len(shown) == 2 and all("kept" in w["details"]["warning"] for w in shown)
    assert warnings_since("9999", model=config.name) == []  # only the run's own


def _engineered(tmp_path, frame: pd.DataFrame, file: str, target: str):
    """``frame`` as a folder's file ``file`` (id column 'row'), profiled and run through the
    engineer-features step into ``tmp_path`` (plan.json, train/test.parquet): its config."""
    from autokfp.steps.engineer_features import engineer_features

    folder = tmp_path / "data"
    folder.mkdir()
    frame.to_parquet(folder / file, index=False)
    config = small_config(folder, training={"dataset": f"files/{file}", "target": target,
                                            "id_column": "row"})
    schema = profile_frame(frame, f"files/{file}", "file", str(folder))
    (tmp_path / "schema.json").write_text(schema.to_json())
    frame.to_parquet(tmp_path / "dataset.parquet", index=False)
    engineer_features(config, tmp_path / "dataset.parquet", tmp_path / "schema.json",
                      tmp_path / "train.parquet", tmp_path / "test.parquet", tmp_path / "plan.json")
    return config


def test_a_group_key_read_as_categories_is_a_warning_in_the_audit_trail(
        autokfp_home, tmp_path) -> None:
    """Reading a person's code as categories changes what the model relies on: each person's
    level, which a new person does not have. The run summary says so, and the trail keeps it."""
    from datetime import datetime, timezone

    from autokfp.governance.audit import read_events, warnings_since
    from autokfp.modeling.features import FeaturePlan
    from tests.engine.test_group_keys import panel

    frame = panel(1).rename_axis("row").reset_index()
    started = datetime.now(timezone.utc).isoformat()
    config = _engineered(tmp_path, frame, "panel.parquet", "y")
    plan = FeaturePlan.from_json((tmp_path / "plan.json").read_text())
    assert list(plan.group_keys) == ["person"] and "person" in plan.categorical
    events = [e for e in read_events() if e["kind"] == "feature.group_key"]
    assert [e["details"]["column"] for e in events] == ["person"]
    assert events[0]["model"] == config.name and events[0]["details"]["levels"] == 150
    shown = [w["details"]["warning"] for w in warnings_since(started, model=config.name)]
    assert len(shown) == 1 and "'person' read as a group key" in shown[0], shown
    assert "groups it has not seen" in shown[0]
