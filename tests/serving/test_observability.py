"""Every metric the alert rules and the dashboard query is one a running predictor exports.

A real predictor (``python -m autokfp.serving``) is started in a subprocess on the example
champion, answers a few requests (so labelled series exist), and its ``/metrics`` is
scraped; the PromQL expressions in manifests/monitoring are parsed for metric names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from autokfp.config import DeploySpec
from autokfp.lifeline import stop_process
from autokfp.serving.deployment import to_records
from autokfp.serving.inference_service import build_inference_service, build_serving_runtime
from tests.conftest import _free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
# PromQL words that look like metric names but are functions, keywords or label names
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "clamp_min", "ignoring", "group_left",
    "offset", "abs", "le", "model", "version", "label", "kind", "protocol", "label_values",
}


def _expressions() -> list[str]:
    rule = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return exprs


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_braces = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_braces)
    without_numbers = re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?", "", without_ranges)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_numbers))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d*[smhdw]", w)}


def test_the_expressions_name_the_metrics_they_are_about() -> None:
    names = set().union(*map(_metric_names, _expressions()))
    # the parser finds what the panels are meant to show, and nothing else
    assert names == {"autokfp_requests_total", "autokfp_request_errors_total",
                     "autokfp_predicted_rows_total", "autokfp_predict_seconds_bucket",
                     "autokfp_predicted_class_total", "autokfp_prediction_score_bucket",
                     "autokfp_prediction_score_sum", "autokfp_prediction_score_count"}, names
    titles = {p["title"] for p in json.loads((MONITORING / "grafana-dashboard.json").read_text())["panels"]}
    assert {"Requests per second", "Latency percentiles", "Errors by kind",
            "Predicted-class share", "Score distribution"} <= titles


@pytest.fixture(scope="module")
def scraped(trained_package, tmp_path_factory) -> str:
    """/metrics of a real predictor after good and bad requests."""
    workdir = tmp_path_factory.mktemp("observed")
    port = _free_port()
    env = {**os.environ, "MODEL_DIR": str(trained_package.paths.model), "MODEL_NAME": "churn",
           "MODEL_VERSION": "1", "PORT": str(port), "HOST": "127.0.0.1",
           "AUTOKFP_PREDICTION_LOG": "off", "PYTHONWARNINGS": "ignore"}
    with open(workdir / "server.log", "wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "autokfp.serving"], env=env,
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (workdir / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the predictor was not ready within 90 s"
            time.sleep(0.3)
        rows = pd.read_parquet(trained_package.paths.test).drop(columns=["churned"]).head(5)
        good = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": to_records(rows)},
                          timeout=30)
        assert good.status_code == 200, good.text
        bad = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": [{"nope": 1}]},
                         timeout=30)
        assert bad.status_code == 400, bad.text
        return httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        stop_process(process, grace=30, group=True)


@pytest.mark.slow
def test_every_metric_a_rule_or_panel_queries_is_exported(scraped) -> None:
    exported = {sample.name for family in text_string_to_metric_families(scraped)
                for sample in family.samples}
    missing = {expr.split()[0][:60]: sorted(_metric_names(expr) - exported)
               for expr in _expressions() if _metric_names(expr) - exported}
    assert not missing, f"queried but not exported by the predictor: {missing}"
    # the labels the rules group by are the ones the predictor sets
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    error_kinds = {s.labels.get("kind") for s in families["autokfp_request_errors"].samples}
    assert "invalid_input" in error_kinds
    classes = families["autokfp_predicted_class"].samples
    assert classes and all({"model", "version", "label"} <= set(s.labels) for s in classes)


def test_predictor_pods_are_annotated_for_prometheus() -> None:
    deploy = DeploySpec(namespace="ns")
    for mode in ("serverless", "standard"):
        isvc = build_inference_service("churn", "3", "gs://b/m", deploy, canary=False, mode=mode)
        pod = isvc["spec"]["predictor"]["annotations"]
        assert pod["prometheus.io/scrape"] == "true"
        assert pod["prometheus.io/port"] == "8080" and pod["prometheus.io/path"] == "/metrics"
        assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    runtime = build_serving_runtime()
    assert runtime["spec"]["annotations"]["prometheus.io/port"] == "8080"
    assert runtime["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
