"""A third engine, added as one module, goes through the real pipeline under kfp.local.

The test engine (scikit-learn HistGradientBoosting, tests/engine/training/
hist_gradient_boosting_engine.py) is installed like a plugin package (an ``autokfp.engines``
entry point) and named in the config: ``list_engines`` reads it, the one ``train_model``
component trains it in its own task, ``select_model`` ranks it, and it is registered,
explained, documented and deployed (the local predictor loads it) like a shipped engine.
No other file of autokfp knows it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest
import yaml

from autokfp.config import load_config, password_env_name
from autokfp.edge.local import run_training
from autokfp.examples.churn import write_example_data
from autokfp.modeling import registry

pytestmark = pytest.mark.slow

FRESH_PROCESS_SCORE = """
import sys
import pandas as pd
from sklearn.metrics import roc_auc_score
from autokfp.modeling import registry
from autokfp.modeling.model_package import load_model_package
from autokfp.settings import Settings

home, name, test_path = sys.argv[1:4]
registry.configure(Settings.from_env(home))
model = load_model_package(f"models:/{name}@champion")
rows = pd.read_parquet(test_path)
predictions = model.predict(rows.drop(columns=["churned"]))
print(roc_auc_score(rows["churned"].astype(str) == "1", predictions["probability_1"]))
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens


def test_a_plugin_engine_is_trained_selected_and_registered(engine_plugin, tmp_path,
                                                            autokfp_home, monkeypatch) -> None:
    data = write_example_data(tmp_path / "data", n_rows=3000, seed=7)
    path = tmp_path / "run.yaml"
    # a second source whose URL holds a literal password (issue 14 item 11): it is moved
    # out of the config when read, so no task's command line, log or artifact holds it
    secret = "lit-" + uuid.uuid4().hex
    monkeypatch.setenv(password_env_name("crm"), "placeholder")  # unset again afterwards
    path.write_text(yaml.safe_dump({
        "name": "churn-plugin",
        "sources": [{"name": "warehouse", "kind": "sql", "url": f"sqlite:///{data.warehouse_db}"},
                    {"name": "crm", "kind": "sql",
                     "url": f"postgresql+pg8000://app:{secret}@127.0.0.1:{_closed_port()}/crm"}],
        "training": {"dataset": "warehouse/customers", "target": "churned",
                     "id_column": "customer_id"},
        "budget": {"max_runtime_secs": 10},
        "engines": {"hgb": {"max_iter": 200}},
        "quality": {"min_rows": 500},
        "governance": {"shap_rows": 0, "explain_rows": 50, "sensitive_columns": ["gender"]},
        # the local predictor serves it too; latency is the fast path's subject, not this
        # test's (the shared 2-core test machine is busy)
        "deploy": {"latency_budget_ms": 1000},
    }))
    config = load_config(path)
    run = run_training(config, autokfp_home, log_path=autokfp_home.home / "logs" / "run.log")

    assert run.registration["name"] == "churn-plugin"
    client = registry.configure(autokfp_home)
    champion = registry.champion_version(client, "churn-plugin")
    assert champion is not None and champion.tags["engine"] == "hgb"
    auc = float(champion.tags["metric.test_auc"])
    assert auc > 0.78, auc  # the data's oracle is ~0.86; a broken model scores ~0.5
    # the engine's own settings are recorded with the registered version
    run_params = client.get_run(champion.run_id).data.params
    assert run_params["engines.hgb.max_iter"] == "200"

    # the fan-out trained it in the one train_model task, and selection ranked it
    evaluations = [p for p in run.run_dir.rglob("select-model*/evaluation") if p.is_file()]
    assert evaluations, "select-model wrote no evaluation"
    evaluation = json.loads(evaluations[0].read_text())
    assert [c["engine"] for c in evaluation["candidates"]] == ["hgb"]
    assert evaluation["candidates"][0]["status"] == "trained"
    assert evaluation["selected"]["engine"] == "hgb"

    # a fresh process with the plugin installed loads the champion from the registry and
    # reproduces the logged test AUC on the pipeline's held-out rows
    held_out = [p for p in run.run_dir.rglob("engineer-features*/test") if p.is_file()]
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCORE, str(autokfp_home.home), "churn-plugin",
         str(held_out[0])], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(auc, abs=1e-6)

    # the literal password is nowhere: run log, pipeline root, artifacts, registry, MLflow
    # params and tags (the crawl of the unreachable crm source failed and said so, masked)
    log_text = (autokfp_home.home / "logs" / "run.log").read_text()
    # the config is in the log (each task's input), with the reference instead of the value
    assert "${" + password_env_name("crm") + "}" in log_text and secret not in log_text
    needle = secret.encode()
    holding = [str(p) for p in autokfp_home.home.rglob("*")
               if p.is_file() and needle in p.read_bytes()]
    assert holding == []
    mlflow_run = client.get_run(champion.run_id).data
    assert secret not in json.dumps({**mlflow_run.params, **mlflow_run.tags})
