"""The served model answers v1 ``:explain`` and applies the bias mitigation it carries.

The real server (``python -m autokfp.serving``) runs in a subprocess on 127.0.0.1 with the
package the bias check wrote (mitigation and explanation background inside).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from autokfp.steps import bias_check as bias_check_step
from tests.conftest import _free_port, small_config

READY_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def checked_model(trained_package, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("checked")
    paths = trained_package.paths
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOKFP_HOME", str(out / "home"))
        for name in ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT"):
            patch.delenv(name, raising=False)
        # gender alone (as test_governance_stages explains: age fails out of fold)
        config = small_config(trained_package.folder,
                              governance={"sensitive_columns": ["gender"]})
        bias_check_step.bias_check(config, str(paths.model),
                                    str(paths.train), str(paths.test), str(paths.schema),
                                    str(out / "model"), str(out / "f.md"), str(out / "f.json"))
    return out / "model"


@pytest.fixture(scope="module")
def server(checked_model, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "MODEL_DIR": str(checked_model), "MODEL_NAME": "churn",
           "MODEL_VERSION": "3", "PORT": str(port), "HOST": "127.0.0.1",
           "AUTOKFP_PREDICTION_LOG": "off", "PYTHONWARNINGS": "ignore",
           # queued explanations wait their turn: on a loaded machine 10 s may not be enough
           "AUTOKFP_REQUEST_TIMEOUT": "120"}
    with open(log, "wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "autokfp.serving"], env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server not ready: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _instances(trained_package, n: int) -> list[dict]:
    test = pd.read_parquet(trained_package.paths.test).drop(columns=["churned"]).head(n)
    test["signup_date"] = test["signup_date"].astype(str)
    return test.astype(object).where(test.notna(), None).to_dict("records")


def test_explain_returns_contributions_that_add_up_to_the_prediction(server, trained_package) -> None:
    instances = _instances(trained_package, 2)
    response = server.post("/v1/models/churn:explain", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "kernel-shap" and body["model_version"] == "3"
    assert body["background_rows"] == 25
    predicted = server.post("/v1/models/churn:predict", json={"instances": instances}).json()
    for explanation, prediction in zip(body["explanations"], predicted["predictions"]):
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(explanation["value"], abs=1e-6)
        assert explanation["value"] == pytest.approx(prediction["probability_1"], abs=1e-9)
        assert explanation["prediction"] == prediction["prediction"]
        assert "gender" in explanation["contributions"] and "email" not in explanation["contributions"]


def test_served_predictions_apply_the_mitigation(server, trained_package, checked_model) -> None:
    instances = _instances(trained_package, 40)
    served = pd.DataFrame(server.post("/v1/models/churn:predict",
                                      json={"instances": instances}).json()["predictions"])
    frame = pd.read_parquet(trained_package.paths.test).drop(columns=["churned"]).head(40)
    local = mlflow.pyfunc.load_model(str(checked_model)).predict(frame)
    original = mlflow.pyfunc.load_model(str(trained_package.paths.model)).predict(frame)
    assert served["prediction"].tolist() == local["prediction"].tolist()
    assert served["probability_1"].to_numpy() == pytest.approx(local["probability_1"].to_numpy())
    # the mitigation changed something for the groups it names, nothing for the others
    moved = ~np.isclose(local["probability_1"].to_numpy(), original["probability_1"].to_numpy())
    moved |= local["prediction"].to_numpy() != original["prediction"].to_numpy()
    assert moved.any()
    assert not moved[(frame["gender"] == "nonbinary").to_numpy()].any()


@pytest.mark.parametrize(("body", "message"), [
    ({"instances": [{"age": 40}]}, "missing column"),
    ({"instances": "x"}, "instances"),
    ({"parameters": {"nsamples": 5}}, "nsamples"),
])
def test_bad_explain_requests_are_400_naming_the_problem(server, trained_package, body,
                                                         message) -> None:
    if "parameters" in body:
        body = {**body, "instances": _instances(trained_package, 1)}
    response = server.post("/v1/models/churn:explain", json=body)
    assert response.status_code == 400
    assert message in response.text


def test_explain_rejects_too_many_rows(server, trained_package) -> None:
    response = server.post("/v1/models/churn:explain",
                           json={"instances": _instances(trained_package, 21)})
    assert response.status_code == 400 and "at most 20" in response.text


def test_concurrent_explain_requests_get_the_sequential_answers(server, trained_package) -> None:
    """Kernel SHAP samples from numpy's global generator, seeded per run: explanations
    requested at the same time must not move each other's sample."""
    instances = _instances(trained_package, 6)
    bodies = [{"instances": instances[i:i + 2], "parameters": {"nsamples": 32}}
              for i in (0, 2, 4)]
    url = f"{server.base_url}".rstrip("/") + "/v1/models/churn:explain"

    def explain(body: dict) -> tuple[int, dict]:
        with httpx.Client(timeout=180) as client:  # one connection per concurrent caller
            response = client.post(url, json=body)
        return response.status_code, response.json()

    sequential = [explain(body) for body in bodies]
    assert all(status == 200 for status, _ in sequential), sequential
    assert len({json.dumps(b["explanations"]) for _, b in sequential}) == len(bodies)
    with ThreadPoolExecutor(len(bodies) * 2) as pool:
        concurrent = list(pool.map(explain, bodies * 2))
    assert concurrent == sequential * 2
