"""The drift-monitoring loop end to end under kfp.local, on the example churn data.

Train on period A → a monitoring run on an empty window (no retraining; the champion's
reference is kept) → period-B traffic whose distribution and churn behaviour shifted,
labels arriving, the training table refreshed → monitoring finds drift and a performance
drop, re-enters the training graph, the retrained model becomes champion and its canary
deploy is verified and promoted → period-C traffic like B, no labels → no retraining.
Every decision is in the audit trail, and the trail verifies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp import registry, storage
from autokfp.config import RunConfig, parse_config
from autokfp.examples.churn import generate_churn
from autokfp.governance.audit import read_events, verify_trail
from autokfp.local import run_monitoring, run_training
from autokfp.monitoring.window import reference_uri
from tests.conftest import SMALL_BUDGET

pytestmark = pytest.mark.slow

MODEL = "churn-mon"


def shift_period(frame: pd.DataFrame, seed: int, id_prefix: str) -> pd.DataFrame:
    """A later period: prices up, contracts and internet mix changed, and churn now driven by
    other things (so a model of period A is worse on it and retraining pays off)."""
    rng = np.random.default_rng(seed)
    shifted = frame.copy()
    shifted["customer_id"] = id_prefix + shifted["customer_id"].str[1:]
    shifted["monthly_charges"] = (shifted["monthly_charges"] + 25.0).round(2)
    shifted["total_charges"] = (shifted["monthly_charges"].fillna(60.0) * shifted["tenure_months"]).round(2)
    long_contract = shifted["contract_type"] != "month-to-month"
    shifted.loc[long_contract & (rng.random(len(shifted)) < 0.6), "contract_type"] = "month-to-month"
    slow = shifted["internet_service"] != "fiber"
    shifted.loc[slow & (rng.random(len(shifted)) < 0.5), "internet_service"] = "fiber"
    logit = (-1.6 + 2.2 * (shifted["payment_method"] == "mailed-check") + 1.8 * (shifted["region"] == "north")
             - 1.4 * (shifted["internet_service"] == "fiber") + 0.03 * (shifted["age"].fillna(44) - 44))
    churned = (rng.random(len(shifted)) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(np.int64)
    shifted["churned"] = churned
    outcome = np.where(churned == 1, np.where(rng.random(len(shifted)) < 0.35, "accepted-then-left", "declined"),
                       np.where(rng.random(len(shifted)) < 0.12, "accepted-stayed", "not-offered"))
    shifted["retention_offer_outcome"] = outcome.astype(object)
    return shifted


def log_traffic(settings, version: str, rows: pd.DataFrame) -> None:
    """What the predictor logs: the requests and the champion's predictions, in batches."""
    from autokfp.model_package import load_model_package
    from autokfp.serving.inference_service import service_name
    from autokfp.serving.prediction_log import PredictionLogger

    model = load_model_package(f"models:/{MODEL}/{version}").unwrap_python_model()
    requests = rows.drop(columns=["churned"]).reset_index(drop=True)
    logger = PredictionLogger(settings.artifact_root, service_name(MODEL), version, flush_rows=500,
                              flush_seconds=0.2)
    for start in range(0, len(requests), 100):
        chunk = requests.iloc[start:start + 100].reset_index(drop=True)
        logger.log(chunk, model.predict(None, chunk), request_id=f"req-{version}-{start}")
    logger.close()
    assert logger.written_rows == len(requests) and logger.dropped == 0


def make_config(folder: Path, labels: Path, deploy_target: str = "local") -> RunConfig:
    data = {
        "name": MODEL,
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/customers.parquet", "target": "churned", "id_column": "customer_id"},
        "budget": {**SMALL_BUDGET, "max_runtime_secs": 10, "max_models": 2, "nfolds": 2},
        "quality": {"min_rows": 100},
        "deploy": {"target": deploy_target, "smoke_rows": 20, "latency_budget_ms": 500},
        "monitoring": {"window_days": 1, "min_window_rows": 300, "drift_share": 0.25,
                       "min_labelled_rows": 200, "labels": {"path": str(labels)}},
    }
    if "engines" in RunConfig.model_fields:  # H2O only: the small budget is for one engine
        data["engines"] = ["h2o"]
    return parse_config(data)


def check(decision: dict, trigger: str) -> dict:
    return next(c for c in decision["checks"] if c["trigger"] == trigger)


def test_drift_retrains_a_new_champion_and_stable_traffic_does_not(tmp_path, autokfp_home):
    settings = autokfp_home
    logs = settings.home / "logs"
    folder, labels = tmp_path / "data", tmp_path / "labels"
    folder.mkdir()
    labels.mkdir()
    generate_churn(1500, seed=3).to_parquet(folder / "customers.parquet", index=False)
    config = make_config(folder, labels)

    # the first model only writes its manifest (saves a predictor start); retrained ones are
    # deployed locally as a canary, verified and promoted
    trained = run_training(make_config(folder, labels, deploy_target="manifest"), settings,
                           log_path=logs / "train-a.log")
    assert trained.registration["version"] == "1" and trained.registration["aliases"] == ["champion"]

    # no traffic yet: nothing to judge, no retraining; the champion's reference is kept
    first = run_monitoring(config, settings, log_path=logs / "monitor-1.log")
    assert first.decision["retrain"] is False
    assert first.decision["status"] == "empty"
    assert "window is empty" in first.decision["summary"]
    assert first.decision["reference"] == "training-data"
    assert storage.exists(reference_uri(settings.artifact_root, MODEL, "1"))

    # period B: shifted traffic served by v1, its labels arrive, the training table is refreshed
    period_b = shift_period(generate_churn(1500, seed=4), seed=5, id_prefix="B")
    log_traffic(settings, "1", period_b)
    period_b[["customer_id", "churned"]].to_parquet(labels / "period-b.parquet", index=False)
    period_b.to_parquet(folder / "customers.parquet", index=False)

    second = run_monitoring(config, settings, log_path=logs / "monitor-2.log")
    decision = second.decision
    assert decision["retrain"] is True, decision["summary"]
    assert decision["reference"] == "stored"
    drift = check(decision, "drift")
    assert drift["fired"] and drift["value"] >= 0.25
    assert "monthly_charges" in drift["detail"] and "contract_type" in drift["detail"]
    assert check(decision, "performance")["fired"]
    retraining = second.retraining
    assert retraining is not None and retraining["registered_version"] == "2"
    assert retraining["promoted"] is True and retraining["champion"] == "2"
    assert retraining["deployment"] == "serving"  # canary verified and promoted
    client = registry.configure(settings)
    assert str(registry.champion_version(client, MODEL).version) == "2"
    assert str(client.get_model_version_by_alias(MODEL, registry.PREVIOUS).version) == "1"
    reports = list(second.run_dir.rglob("detect-drift/report"))  # Evidently's HTML
    assert reports and "monthly_charges" in reports[0].read_text()

    # period C: like B, served by v2, no labels yet: no drift against v2's reference, no retraining
    period_c = shift_period(generate_churn(1000, seed=6), seed=7, id_prefix="C")
    log_traffic(settings, "2", period_c)
    third = run_monitoring(config, settings, log_path=logs / "monitor-3.log")
    decision = third.decision
    assert decision["retrain"] is False, decision["summary"]
    # period C plus the deploy's own smoke-test requests (held-out period-B rows)
    assert decision["champion"] == "2" and decision["rows"] >= len(period_c)
    drift = check(decision, "drift")
    assert drift["evaluated"] and not drift["fired"]
    assert not check(decision, "performance")["evaluated"]  # labels never arrived for period C
    assert any("logged by v1" in note for note in decision["notes"])
    assert third.retraining is None
    assert str(registry.champion_version(client, MODEL).version) == "2"

    kinds = [e["kind"] for e in read_events(settings) if e["model"] == MODEL]
    assert [k for k in kinds if k.startswith("retrain.")] == [
        "retrain.skipped", "retrain.triggered", "retrain.completed", "retrain.skipped"]
    trail = verify_trail(settings)
    assert trail.ok, trail.problems
