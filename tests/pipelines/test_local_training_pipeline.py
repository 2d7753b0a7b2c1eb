"""The whole autonomous-training pipeline under kfp.local, on the example data.

This is the slow test: it really discovers, checks, engineers, trains H2O AutoML (small
budget), evaluates, registers in MLflow and writes the KServe manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autokfp.catalog.discovery import load_dataset  # noqa: F401 - import check of the engine
from autokfp.config import load_config
from autokfp.edge.local import PipelineRunError, run_training
from autokfp.examples.churn import write_example_data
from autokfp.modeling import registry

pytestmark = pytest.mark.slow

FRESH_REGISTRY_SCORE = """
import sys
import pandas as pd
from sklearn.metrics import roc_auc_score
from autokfp.modeling import registry
from autokfp.modeling.model_package import load_gate_model
from autokfp.settings import Settings

home, name, test_path, target = sys.argv[1:5]
registry.configure(Settings.from_env(home))
# the model the gate scored: the champion's kept gate model (the served refit saw these rows)
model, _kept = load_gate_model(f"models:/{name}@champion")
rows = pd.read_parquet(test_path)
predictions = model.predict(rows.drop(columns=[target]))
print(roc_auc_score(rows[target].astype(str) == "1", predictions["probability_1"]))
"""

# A broken model scores ~0.5; the example data's oracle on this split is ~0.856 and a
# 120 s budget reaches ~0.84. With a 30 s budget and 4,000 rows 0.80 is a safe floor.
AUC_FLOOR = 0.80


def _config(tmp_path: Path, rows: int, budget: int, target: str = "churned") -> Path:
    data = write_example_data(tmp_path / "data", n_rows=rows, seed=7)
    config = {
        "name": "churn-e2e",
        "sources": [
            {"name": "files", "kind": "folder", "path": str(data.files_dir)},
            {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{data.warehouse_db}"},
        ],
        "training": {"dataset": "warehouse/customers", "target": target, "id_column": "customer_id"},
        "budget": {"max_runtime_secs": budget},
        "engines": {"h2o": {"max_models": 8, "nfolds": 3, "max_mem_size": "3G"}, "autokeras": {}},
        "quality": {"min_rows": 500},
        "governance": {"sensitive_columns": ["gender"]},  # as the demo's config names it
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pipeline_trains_registers_and_writes_manifest(tmp_path, autokfp_home):
    config = load_config(_config(tmp_path, rows=4000, budget=30))
    run = run_training(config, autokfp_home, log_path=autokfp_home.home / "logs" / "run.log")

    registration = run.registration
    assert registration["name"] == "churn-e2e"
    assert registration["version"] == "1"
    assert registration["aliases"] == ["champion"]

    client = registry.configure(autokfp_home)
    champion = registry.champion_version(client, "churn-e2e")
    assert champion is not None and str(champion.version) == "1"
    auc = float(champion.tags["metric.test_auc"])
    assert auc >= AUC_FLOOR, f"champion test AUC {auc:.3f} is below {AUC_FLOOR}"
    assert champion.tags["dataset"] == "warehouse/customers"

    # the registered model loads from the registry and scores raw rows
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/churn-e2e@champion")
    rows = pd.read_parquet(Path(config.sources[0].path) / "customers.parquet").head(20)
    predictions = model.predict(rows.drop(columns=["churned"]))
    assert list(predictions.columns[:1]) == ["prediction"]
    assert predictions["probability_1"].between(0, 1).all()

    # 4,000 rows: the served model was refitted on every labelled row after the gate, and
    # the gated one travels with it (training.refit_for_serving: auto)
    served = model.unwrap_python_model().meta
    assert served["serving"]["model"] == "refit", served["serving"]
    assert served["fitted_rows"] == served["serving"]["gate_fitted_rows"] + \
        served["serving"]["test_rows"]
    # a fresh process loads the registered champion's gate model and reproduces the logged
    # test AUC on the pipeline's own held-out rows
    held_out = [p for p in run.run_dir.rglob("test") if p.is_file()]
    assert held_out, "engineer step wrote no test split"
    result = subprocess.run(
        [sys.executable, "-c", FRESH_REGISTRY_SCORE, str(autokfp_home.home), "churn-e2e",
         str(held_out[0]), "churned"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(auc, abs=1e-6)

    # every step left its artifact in the run folder; the manifest is a KServe object
    assert run.run_dir is not None and run.run_dir.exists()
    manifests = list(run.run_dir.rglob("manifest"))
    assert manifests, "deploy step wrote no manifest"
    isvc = yaml.safe_load(manifests[0].read_text())
    assert isvc["kind"] == "InferenceService"
    assert isvc["spec"]["predictor"]["model"]["storageUri"].endswith("model")
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == "autokfp"
    catalogs = list(run.run_dir.rglob("catalog"))
    assert catalogs and json.loads(catalogs[0].read_text()), "discover step wrote no catalog"


def test_pipeline_failure_registers_nothing(tmp_path, autokfp_home):
    config = load_config(_config(tmp_path, rows=600, budget=10, target="no_such_column"))
    with pytest.raises(PipelineRunError) as failure:
        run_training(config, autokfp_home, log_path=autokfp_home.home / "logs" / "fail.log")
    assert "no_such_column" in str(failure.value)
    assert registry.list_models(autokfp_home) == []
