"""The ``collect_predictions`` component: the window, the reference and the status."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.components.monitoring.conftest import read


def test_collect_predictions_reads_the_window_and_the_reference(monitored) -> None:
    a = monitored.artifacts
    assert monitored.returned.status == "ok"
    assert a.collection.metadata == {"status": "ok", "rows": monitored.rows,
                                     "labelled_rows": monitored.rows}
    assert len(pd.read_parquet(a.current.path)) == monitored.rows
    assert len(pd.read_parquet(a.reference.path)) > 0
    assert json.loads(read(a.collection))["status"] == "ok"


def test_collect_predictions_without_a_champion_says_so(trained_package, autokfp_home,
                                                        tmp_path) -> None:
    from kfp.dsl import Artifact, Dataset

    from autokfp.components import collect_predictions
    from tests.components import artifact
    from tests.conftest import small_config

    collection = artifact(Artifact, tmp_path, "collection")
    status = collect_predictions.python_func(
        config=small_config(trained_package.folder).to_dict(), run_id="run-1", window_end="",
        current=artifact(Dataset, tmp_path, "current"),
        reference=artifact(Dataset, tmp_path, "reference"), collection=collection)
    assert status == "no-champion"
    assert collection.metadata["status"] == "no-champion" and collection.metadata["rows"] == 0


# ------------------------------------------------- used alone: typed inputs, no run config


def test_the_monitoring_chain_runs_alone_without_a_config(champion, autokfp_home,
                                                          tmp_path) -> None:
    """collect → drift, performance → anomalies → decide, each with typed inputs only: the
    model named once (collect_predictions' model_name, then the collection), the reference
    given as the user's CSV, the labels with their id column; record_retraining and
    finalize_monitoring read the model from the registration and model_name."""
    from types import SimpleNamespace

    from kfp.dsl import HTML, Artifact, Dataset, Metrics
    from sklearn.metrics import roc_auc_score

    from autokfp.components import (
        collect_predictions,
        decide_retraining,
        detect_anomalies,
        detect_drift,
        finalize_monitoring,
        measure_performance,
        record_retraining,
    )
    from autokfp.governance.audit import read_events
    from autokfp.modeling.model_package import load_model_package
    from autokfp.serving.prediction_log import PredictionLogger
    from tests.components import artifact

    test = pd.read_parquet(champion.paths.test).head(300)
    rows = test.drop(columns=["churned"])
    outputs = load_model_package(str(champion.paths.model)).predict(rows)
    logger = PredictionLogger(autokfp_home.artifact_root, "churn-test", "1", flush_seconds=0.1)
    logger.log(rows.reset_index(drop=True), outputs.reset_index(drop=True), request_id="req-1")
    logger.close()
    (tmp_path / "labels").mkdir()
    test[["customer_id", "churned"]].to_csv(tmp_path / "labels" / "labels.csv", index=False)
    reference_csv = tmp_path / "reference.csv"
    pd.read_parquet(champion.paths.train).to_csv(reference_csv, index=False)

    out = tmp_path / "run"
    a = SimpleNamespace(**{name: artifact(cls, out, name) for name, cls in (
        ("current", Dataset), ("reference", Dataset), ("collection", Artifact),
        ("drift", Artifact), ("report", HTML), ("dm", Metrics), ("performance", Artifact),
        ("pm", Metrics), ("anomalies", Artifact), ("decision", Artifact))})
    given = artifact(Dataset, tmp_path, "reference.csv", uri=reference_csv)
    status = collect_predictions.python_func(
        model_name="churn-test", labels=str(tmp_path / "labels"), id_column="customer_id",
        min_window_rows=50, reference_data=given, current=a.current, reference=a.reference,
        collection=a.collection)
    assert status == "ok"
    collection = json.loads(read(a.collection))
    assert collection["model"] == "churn-test" and collection["rows"] == 300
    # the labels' column is the champion's target (no config names it), joined by the id
    assert collection["labelled_rows"] == 300, collection["labels"]
    assert collection["reference"]["source"] == "input"
    assert collection["reference"]["rows"] == len(pd.read_parquet(champion.paths.train))

    share = detect_drift.python_func(current=a.current, reference=a.reference,
                                     collection=a.collection, drift=a.drift, report=a.report,
                                     metrics=a.dm)
    drift = json.loads(read(a.drift))
    # test rows against the training rows they were split from: no feature drifted much
    assert drift["available"] is True and share < 0.3, drift
    drop = measure_performance.python_func(current=a.current, collection=a.collection,
                                           performance=a.performance, metrics=a.pm,
                                           min_labelled_rows=50)
    performance = json.loads(read(a.performance))
    offline = roc_auc_score(test["churned"].astype(int), outputs["probability_1"])
    assert performance["available"] is True
    assert performance["live"] == pytest.approx(offline, abs=1e-9), performance
    assert drop == pytest.approx(performance["drop"])
    detect_anomalies.python_func(current=a.current, collection=a.collection, drift=a.drift,
                                 performance=a.performance, anomalies=a.anomalies,
                                 run_id="alone-1", season="none")
    # 300 labelled rows reach a min_new_rows of 250: the typed threshold decides
    assert decide_retraining.python_func(collection=a.collection, drift=a.drift,
                                         performance=a.performance, anomalies=a.anomalies,
                                         decision=a.decision, run_id="alone-1",
                                         min_new_rows=250) is True
    decision = json.loads(read(a.decision))
    assert decision["model"] == "churn-test", decision
    assert decide_retraining.python_func(
        collection=a.collection, drift=a.drift, performance=a.performance,
        anomalies=a.anomalies, decision=artifact(Artifact, out, "decision-2"),
        run_id="alone-2") is False  # the default min_new_rows (50,000) is not reached

    (tmp_path / "registration").write_text(json.dumps({"name": "churn-test", "version": "1",
                                                       "promoted": True}))
    assert record_retraining.python_func(
        registration=artifact(Artifact, tmp_path, "registration"),
        outcome=artifact(Artifact, out, "outcome"), run_id="alone-1") == "1"
    before = len(read_events(autokfp_home))
    status_failed = SimpleNamespace(state="FAILED", error_message="boom",
                                    pipeline_task_name="detect-drift")
    assert finalize_monitoring.python_func(status=status_failed, run_id="alone-1",
                                           model_name="churn-test") == ""
    assert [(e["kind"], e["model"]) for e in read_events(autokfp_home)[before:]] == [
        ("monitoring.run_failed", "churn-test")]


def test_a_monitoring_component_alone_names_what_is_missing(autokfp_home, tmp_path) -> None:
    from types import SimpleNamespace

    from kfp.dsl import HTML, Artifact, Dataset, Metrics

    from autokfp.components import collect_predictions, detect_drift, finalize_monitoring
    from autokfp.errors import ConfigError, DataError
    from tests.components import artifact

    outputs = {"current": artifact(Dataset, tmp_path, "current"),
               "reference": artifact(Dataset, tmp_path, "reference"),
               "collection": artifact(Artifact, tmp_path, "collection")}
    with pytest.raises(ConfigError, match="no model name: set model_name"):
        collect_predictions.python_func(**outputs)
    with pytest.raises(ConfigError, match="no id column joins them.*set id_column"):
        collect_predictions.python_func(model_name="churn", labels="s3://b/labels/", **outputs)
    with pytest.raises(ConfigError, match="window_days"):
        collect_predictions.python_func(model_name="churn", window_days=0, **outputs)
    # a reference_data input that is missing, not a table, or has no rows is named
    (tmp_path / "not-a-table.csv").write_bytes(b"")
    (tmp_path / "header-only.csv").write_text("customer_id,churned\n")
    (tmp_path / "empty.parquet").mkdir()
    pd.DataFrame({"customer_id": []}).to_parquet(tmp_path / "empty.parquet" / "part.parquet")
    for name, says in (("missing.csv", "reference_data .*missing.csv does not exist"),
                       ("not-a-table.csv", "reference_data .* is neither Parquet nor CSV"),
                       ("header-only.csv", "reference_data .*header-only.csv has no rows"),
                       ("empty.parquet", "reference_data .*empty.parquet has no rows")):
        with pytest.raises(DataError, match=says):
            collect_predictions.python_func(
                model_name="churn", reference_data=artifact(Dataset, tmp_path, name), **outputs)
    assert not (tmp_path / "collection").exists()  # nothing written before the check
    (tmp_path / "collection").write_text(json.dumps({"status": "ok"}))  # names no model
    with pytest.raises(ConfigError, match="detect_drift: no model name"):
        detect_drift.python_func(current=outputs["current"], reference=outputs["reference"],
                                 collection=outputs["collection"],
                                 drift=artifact(Artifact, tmp_path, "drift"),
                                 report=artifact(HTML, tmp_path, "report"),
                                 metrics=artifact(Metrics, tmp_path, "metrics"))
    succeeded = SimpleNamespace(state="SUCCEEDED", error_message="", pipeline_task_name="")
    with pytest.raises(ConfigError, match="finalize_monitoring: no model name"):
        finalize_monitoring.python_func(status=succeeded, run_id="r")
