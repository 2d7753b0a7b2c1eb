"""The monitoring stages on a real registered champion: bad input is reported, never retrained on.

Covers: an empty window, rows logged by an older version with other columns, labels that
never arrive, a missing reference, inputs that fail the checks, nothing deleted, each
decision recorded once per run, and the exit handler restoring the last good champion.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from autokfp import storage
from autokfp.governance.audit import read_events, verify_trail
from autokfp.modeling import registry
from autokfp.serving.prediction_log import PredictionLogger
from autokfp.steps import collect_predictions as collect_predictions_step
from autokfp.steps import decide_retraining as decide_retraining_step
from autokfp.steps import detect_anomalies as detect_anomalies_step
from autokfp.steps import detect_drift as detect_drift_step
from autokfp.steps import finalize_monitoring as finalize_monitoring_step
from autokfp.steps import measure_performance as measure_performance_step
from tests.conftest import small_config

SERVICE = "churn-test"


@pytest.fixture
def champion(trained_package, autokfp_home):
    """The session's trained package registered as churn-test v1 (champion)."""
    registered = registry.register_model(
        trained_package.paths.model,
        "churn-test",
        {"test_auc": 0.8},
        {},
        {"dataset": "files/customers.parquet"},
        promote=True,
        decision="first",
        compared_champion=None,
        settings=autokfp_home,
    )
    assert registered.version == "1"
    return trained_package


def _config(trained, **monitoring):
    settings = {"min_window_rows": 50, "min_labelled_rows": 50, **monitoring}
    return small_config(trained.folder, monitoring=settings)


def _log(settings, version: str, rows: pd.DataFrame, model_dir: Path | None) -> None:
    from autokfp.modeling.model_package import load_model_package

    if model_dir is not None:
        outputs = load_model_package(str(model_dir)).predict(rows)
    else:
        outputs = pd.DataFrame({"prediction": [0] * len(rows), "probability_1": [0.1] * len(rows)})
    logger = PredictionLogger(settings.artifact_root, SERVICE, version, flush_seconds=0.1)
    logger.log(
        rows.reset_index(drop=True), outputs.reset_index(drop=True), request_id=f"req-{version}"
    )
    logger.close()


def _run(config, tmp_path: Path, run_id: str = "run-1") -> dict:
    """collect → drift → performance → anomalies → decide, as the pipeline chains them."""
    paths = {
        name: str(tmp_path / run_id / name)
        for name in (
            "current",
            "reference",
            "collection",
            "drift",
            "report",
            "performance",
            "anomalies",
            "decision",
        )
    }
    collect_predictions_step.collect_predictions(
        config, paths["current"], paths["reference"], paths["collection"], run_id=run_id
    )
    detect_drift_step.detect_drift(
        config,
        paths["current"],
        paths["reference"],
        paths["collection"],
        paths["drift"],
        paths["report"],
    )
    measure_performance_step.measure_performance(config, paths["current"], paths["collection"], paths["performance"])
    detect_anomalies_step.detect_anomalies(
        config,
        paths["current"],
        paths["collection"],
        paths["drift"],
        paths["performance"],
        paths["anomalies"],
        run_id=run_id,
    )
    decision = decide_retraining_step.decide_retraining(
        config,
        paths["collection"],
        paths["drift"],
        paths["performance"],
        paths["anomalies"],
        paths["decision"],
        run_id=run_id,
    )
    return {**{k: Path(v) for k, v in paths.items()}, "decision": decision.record}


def _inputs(trained, rows: int = 300) -> pd.DataFrame:
    return pd.read_parquet(trained.paths.test).drop(columns=["churned"]).head(rows)


def test_an_empty_window_is_reported_and_recorded_once(champion, autokfp_home, tmp_path):
    config = _config(champion)
    result = _run(config, tmp_path)
    decision = result["decision"]
    assert decision["retrain"] is False and decision["status"] == "empty"
    assert "window is empty" in decision["summary"]
    assert (
        "no predictions of churn-test v1 were logged"
        in json.loads(result["collection"].read_text())["reason"]
    )
    assert "drift not measured" in result["report"].read_text()
    _run(config, tmp_path)  # the same run again (a retried task): no second decision event
    skipped = [e for e in read_events(autokfp_home) if e["kind"] == "retrain.skipped"]
    assert len(skipped) == 1 and skipped[0]["run_id"] == "run-1" and skipped[0]["version"] == "1"
    assert verify_trail(autokfp_home).ok


def test_older_versions_missing_labels_and_stable_inputs(champion, autokfp_home, tmp_path):
    labels = tmp_path / "labels"
    config = _config(champion, labels={"path": str(labels)})
    rows = _inputs(champion)
    _log(autokfp_home, "1", rows, champion.paths.model)
    older = pd.DataFrame({"customer_id": ["x1", "x2"], "legacy_score": [1.0, 2.0]})
    _log(autokfp_home, "0", older, None)
    before = sorted(storage.list_uris(autokfp_home.artifact_root))
    result = _run(config, tmp_path)
    decision = result["decision"]
    assert decision["status"] == "ok" and decision["rows"] == len(rows)
    assert decision["reference"] == "training-data"
    note = next(n for n in decision["notes"] if "logged by v0" in n)
    assert "extra ['legacy_score']" in note and "not compared" in note
    performance = json.loads(result["performance"].read_text())
    assert not performance["available"] and "no labels have arrived" in performance["reason"]
    drift = json.loads(result["drift"].read_text())
    assert drift["available"] and drift["features"]["number_of_columns"] >= 5
    assert drift["predictions"]["number_of_columns"] == 2
    assert decision["retrain"] is False  # held-out rows of the training data do not drift
    assert "monthly_charges" in result["report"].read_text()  # Evidently's report
    after = sorted(storage.list_uris(autokfp_home.artifact_root))
    assert set(before) <= set(after)  # nothing deleted

    # the labels arrive: performance is measured against the champion's test metric
    labels.mkdir()
    truth = pd.read_parquet(champion.paths.test).head(len(rows))[["customer_id", "churned"]]
    truth.to_csv(labels / "labels.csv", index=False)
    second = _run(config, tmp_path, run_id="run-2")
    performance = json.loads(second["performance"].read_text())
    assert performance["available"] and performance["labelled_rows"] == len(rows)
    assert performance["metric"] == "auc" and performance["champion_test"] == pytest.approx(0.8)
    assert second["decision"]["reference"] == "stored"


def test_no_reference_means_no_drift_verdict_and_no_retraining(champion, autokfp_home, tmp_path):
    config = _config(champion, reference="stored")
    rows = _inputs(champion)
    rows["monthly_charges"] = rows["monthly_charges"] * 3  # would drift, if it could be judged
    _log(autokfp_home, "1", rows, champion.paths.model)
    result = _run(config, tmp_path)
    drift = json.loads(result["drift"].read_text())
    assert not drift["available"] and "the reference is missing" in drift["reason"]
    assert result["decision"]["retrain"] is False
    assert not next(c for c in result["decision"]["checks"] if c["trigger"] == "drift")["evaluated"]


def test_garbage_inputs_are_not_a_reason_to_retrain(champion, autokfp_home, tmp_path):
    config = _config(champion)
    rows = _inputs(champion).drop(columns=["monthly_charges", "contract_type"])
    rows["tenure_months"] = rows["tenure_months"] * 50  # drifted, but the rows are unusable anyway
    _log(autokfp_home, "1", rows, None)
    decision = _run(config, tmp_path)["decision"]
    assert decision["retrain"] is False
    assert (
        "fail the quality checks" in decision["summary"]
        and "monthly_charges" in decision["summary"]
    )


def test_no_champion_is_reported_plainly(trained_package, autokfp_home, tmp_path):
    decision = _run(_config(trained_package), tmp_path)["decision"]
    assert decision["status"] == "no-champion" and decision["retrain"] is False
    assert "train one first" in decision["summary"]


def test_the_exit_handler_restores_the_champion_when_a_deploy_broke(
    champion, autokfp_home, tmp_path
):
    config = _config(champion)
    _run(config, tmp_path, run_id="run-9")  # remembers v1 as the champion at the start
    broken = tmp_path / "broken-model"
    shutil.copytree(champion.paths.model, broken)
    (broken / "artifacts" / "extra.txt").write_text("a different package")
    registered = registry.register_model(
        broken,
        "churn-test",
        {"test_auc": 0.9},
        {},
        {},
        promote=True,
        decision="better",
        compared_champion="1",
        settings=autokfp_home,
    )
    assert registered.version == "2"  # champion now, but its deploy never finished

    assert finalize_monitoring_step.finalize_monitoring(config, "SUCCEEDED", run_id="run-9").restored is None
    result = finalize_monitoring_step.finalize_monitoring(
        config, "FAILED", run_id="run-9", error="deploy-model crashed", task="deploy-model"
    )
    assert result.restored == "1" and result.record["failed_version"] == "2"
    client = registry.configure(autokfp_home)
    assert str(registry.champion_version(client, "churn-test").version) == "1"
    assert str(client.get_model_version_by_alias("churn-test", "rejected").version) == "2"
    kinds = [e["kind"] for e in read_events(autokfp_home)]
    assert kinds[-2:] == ["monitoring.run_failed", "deploy.rolled_back"]
    # a second call (the exit task retried) changes nothing and records nothing twice
    assert finalize_monitoring_step.finalize_monitoring(config, "FAILED", run_id="run-9").restored is None
    assert [e["kind"] for e in read_events(autokfp_home)] == kinds
    assert verify_trail(autokfp_home).ok
