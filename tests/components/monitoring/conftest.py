"""A registered champion with logged predictions and their labels, and the monitoring
components run on it in pipeline order (collect → drift, performance → anomalies → decide)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from kfp.dsl import HTML, Artifact, Dataset, Metrics

from autokfp.components import (
    collect_predictions,
    decide_retraining,
    detect_anomalies,
    detect_drift,
    measure_performance,
)
from autokfp.modeling import registry
from autokfp.modeling.model_package import load_model_package
from autokfp.serving.prediction_log import PredictionLogger
from tests.components import artifact
from tests.conftest import small_config

SERVICE = "churn-test"
ROWS = 300


@pytest.fixture
def champion(trained_package, autokfp_home):
    """The session's trained package registered as churn-test v1 (champion)."""
    registered = registry.register_model(
        trained_package.paths.model, "churn-test", {"test_auc": 0.8}, {},
        {"dataset": "files/customers.parquet"}, promote=True, decision="first",
        compared_champion=None, settings=autokfp_home)
    assert registered.version == "1"
    return trained_package


@pytest.fixture
def monitored(champion, autokfp_home, tmp_path):
    """300 logged predictions of v1 with their labels, then the monitoring chain."""
    labels = tmp_path / "labels"
    labels.mkdir()
    test = pd.read_parquet(champion.paths.test).head(ROWS)
    rows = test.drop(columns=["churned"])
    outputs = load_model_package(str(champion.paths.model)).predict(rows)
    logger = PredictionLogger(autokfp_home.artifact_root, SERVICE, "1", flush_seconds=0.1)
    logger.log(rows.reset_index(drop=True), outputs.reset_index(drop=True), request_id="req-1")
    logger.close()
    test[["customer_id", "churned"]].to_csv(labels / "labels.csv", index=False)
    config = small_config(champion.folder, monitoring={
        "min_window_rows": 50, "min_labelled_rows": 50, "labels": {"path": str(labels)}}).to_dict()

    out = tmp_path / "run"
    a = SimpleNamespace(
        current=artifact(Dataset, out, "current"), reference=artifact(Dataset, out, "reference"),
        collection=artifact(Artifact, out, "collection"), drift=artifact(Artifact, out, "drift"),
        report=artifact(HTML, out, "report"), drift_metrics=artifact(Metrics, out, "dm"),
        performance=artifact(Artifact, out, "performance"),
        performance_metrics=artifact(Metrics, out, "pm"),
        anomalies=artifact(Artifact, out, "anomalies"), decision=artifact(Artifact, out, "decision"))
    returned = SimpleNamespace()
    returned.status = collect_predictions.python_func(
        config=config, run_id="run-1", window_end="", current=a.current, reference=a.reference,
        collection=a.collection)
    returned.drift_share = detect_drift.python_func(
        config=config, current=a.current, reference=a.reference, collection=a.collection,
        drift=a.drift, report=a.report, metrics=a.drift_metrics)
    returned.drop = measure_performance.python_func(
        config=config, current=a.current, collection=a.collection, performance=a.performance,
        metrics=a.performance_metrics)
    returned.anomalies = detect_anomalies.python_func(
        config=config, run_id="run-1", current=a.current, collection=a.collection, drift=a.drift,
        performance=a.performance, anomalies=a.anomalies)
    returned.retrain = decide_retraining.python_func(
        config=config, run_id="run-1", collection=a.collection, drift=a.drift,
        performance=a.performance, anomalies=a.anomalies, decision=a.decision)
    return SimpleNamespace(config=config, artifacts=a, returned=returned, rows=len(rows),
                           settings=autokfp_home, champion=champion)


def read(artifact_: object) -> str:
    return Path(artifact_.path).read_text()  # type: ignore[attr-defined]
