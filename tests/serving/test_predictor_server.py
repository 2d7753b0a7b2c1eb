"""The serving image's entry point, run for real: ``python -m autokfp.serving`` over HTTP.

One server (the session's trained H2O model) answers every test in this module; the last
test stops it with SIGTERM, as Kubernetes does, and reads the prediction log it flushed.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autokfp.modeling.features import FeaturePlan
from autokfp.serving.prediction_log import read_prediction_log
from tests.serving import servers

MODEL = "churn"
MAX_BYTES = 256 * 1024  # the module's server runs with this body limit


@pytest.fixture(scope="module")
def server(trained_package, tmp_path_factory):
    server = servers.start(Path(trained_package.paths.model), tmp_path_factory.mktemp("server"),
                           env={"AUTOKFP_MAX_REQUEST_BYTES": str(MAX_BYTES)})
    try:
        servers.wait_ready(server)
        yield server
    finally:
        servers.stop(server)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def plan(trained_package) -> FeaturePlan:
    return servers.feature_plan(Path(trained_package.paths.model))


@pytest.fixture(scope="module")
def held_out(trained_package) -> pd.DataFrame:
    """100 held-out rows as stored (with the id and PII columns, which the model ignores)."""
    return pd.read_parquet(trained_package.paths.test).drop(columns=["churned"]).head(100)


@pytest.fixture(scope="module")
def offline(trained_package, held_out) -> pd.DataFrame:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(trained_package.paths.model)).predict(held_out)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: servers.json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _predict(client: httpx.Client, body: Any, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return client.post(f"/v1/models/{MODEL}:predict", content=content,
                       headers={"Content-Type": "application/json", **(headers or {})})


def _assert_matches_offline(predictions: list[dict], expected: pd.DataFrame) -> None:
    served = pd.DataFrame(predictions)
    assert served["prediction"].tolist() == expected["prediction"].tolist()
    probabilities = [c for c in expected.columns if c.startswith("probability_")]
    assert probabilities and set(probabilities) <= set(served.columns)
    np.testing.assert_allclose(served[probabilities].to_numpy(dtype=float),
                               expected[probabilities].to_numpy(dtype=float), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------ answers


def test_health_and_model_endpoints_answer(client) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    ready = client.get(f"/v2/models/{MODEL}/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    model = client.get(f"/v1/models/{MODEL}")
    assert model.status_code == 200 and model.json() == {"name": MODEL, "ready": True}


def test_single_row_requests_equal_the_offline_model(client, held_out, offline) -> None:
    rows = _records(held_out.head(20))
    predictions = []
    for row in rows:  # one instance per request: the fast path
        response = _predict(client, {"instances": [row]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == "1"
        predictions += body["predictions"]
    _assert_matches_offline(predictions, offline.head(20))


def test_a_100_row_request_equals_the_offline_model(client, held_out, offline) -> None:
    response = _predict(client, {"instances": _records(held_out)})  # the frame path
    assert response.status_code == 200, response.text
    _assert_matches_offline(response.json()["predictions"], offline)


def _v2_inputs(frame: pd.DataFrame, plan: FeaturePlan) -> list[dict[str, Any]]:
    inputs = []
    for column in plan.input_columns:
        values = [servers.json_value(v) for v in frame[column]]
        if column in plan.numeric:
            datatype = "FP64"
            values = [None if v is None else float(v) for v in values]
        else:
            datatype = "BYTES"
            values = [None if v is None else str(v) for v in values]
        inputs.append({"name": column, "datatype": datatype, "shape": [len(values)],
                       "data": values})
    return inputs


def test_v2_infer_with_one_tensor_per_column_gives_the_same_probabilities(
        client, held_out, offline, plan) -> None:
    rows = held_out.head(20)
    inputs = _v2_inputs(rows, plan)
    assert any(None in i["data"] for i in inputs), "the held-out rows should include nulls"
    response = client.post(f"/v2/models/{MODEL}/infer", json={"id": "v2-test", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "v2-test" and body["model_version"] == "1"
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    _assert_matches_offline([dict(zip(outputs, values)) for values in zip(*outputs.values())],
                            offline.head(20))


# ------------------------------------------------------------------------------ bad requests


def _bad_request(case: str, rows: int, held_out: pd.DataFrame, plan: FeaturePlan
                 ) -> tuple[str, bytes, str]:
    """(path, body, a word the error must contain) for one kind of bad request."""
    records = _records(held_out.head(rows))
    number, date = plan.numeric[0], plan.datetime[0]
    v1 = f"/v1/models/{MODEL}:predict"
    if case == "malformed JSON":
        return v1, b'{"instances": [{"a": 1,', "request"
    if case == "no instances":
        return v1, json.dumps({"rows": records}).encode(), "instances"
    if case == "empty instances":
        return v1, b'{"instances": []}', "no rows"
    if case == "missing column":
        del records[-1][number]  # only the last instance lacks it
        return v1, json.dumps({"instances": records}).encode(), number
    if case == "unknown column":
        records[-1]["favourite_colour"] = "blue"
        return v1, json.dumps({"instances": records}).encode(), "favourite_colour"
    if case == "text in a number column":
        records[-1][number] = "forty"
        return v1, json.dumps({"instances": records}).encode(), number
    if case == "bad date":
        records[-1][date] = "31/31/2024 25:99"
        return v1, json.dumps({"instances": records}).encode(), date
    if case == "v2 tensors of different lengths":
        inputs = _v2_inputs(held_out.head(max(rows, 2)), plan)
        inputs[0]["data"] = inputs[0]["data"][:-1]
        inputs[0]["shape"] = [len(inputs[0]["data"])]
        return f"/v2/models/{MODEL}/infer", json.dumps({"inputs": inputs}).encode(), "length"
    raise AssertionError(case)


BAD_REQUESTS = ["malformed JSON", "no instances", "empty instances", "missing column",
                "unknown column", "text in a number column", "bad date",
                "v2 tensors of different lengths"]


@pytest.mark.parametrize("rows", [1, 70], ids=["fast-path", "frame-path"])
@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_get_a_4xx_naming_the_problem(client, held_out, plan, case, rows) -> None:
    path, body, word = _bad_request(case, rows, held_out, plan)
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert word in response.json()["error"]


# ------------------------------------------------------------------------------ metrics


def _metric(client: httpx.Client, family: str, sample: str, **labels: str) -> float:
    """Sum of the samples of ``family`` named ``sample`` whose labels include ``labels``."""
    text = client.get("/metrics").text
    total = 0.0
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        for s in metric.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _counts(client: httpx.Client) -> dict[str, float]:
    labels = {"model": MODEL, "version": "1"}
    return {
        "requests": _metric(client, "autokfp_requests", "autokfp_requests_total",
                            protocol="v1", **labels),
        "scored": _metric(client, "autokfp_predict_seconds", "autokfp_predict_seconds_count",
                          **labels),
        "classes": _metric(client, "autokfp_predicted_class", "autokfp_predicted_class_total",
                           **labels),
        "errors": _metric(client, "autokfp_request_errors", "autokfp_request_errors_total",
                          kind="invalid_input", **labels),
    }


def test_metrics_count_requests_latency_classes_and_rejections(client, held_out, plan) -> None:
    families = {m.name: m.type for m in text_string_to_metric_families(client.get("/metrics").text)}
    assert families.get("autokfp_predict_seconds") == "histogram"
    before = _counts(client)
    good = _predict(client, {"instances": _records(held_out.head(7))})
    assert good.status_code == 200
    rejected = 0
    for case in ("missing column", "text in a number column", "bad date",
                 "v2 tensors of different lengths"):
        path, body, _ = _bad_request(case, 3, held_out, plan)
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        rejected += 1
    after = _counts(client)
    assert after["requests"] - before["requests"] == 4  # the good one and three v1 rejections
    assert after["scored"] - before["scored"] == 1  # only scored requests are timed
    assert after["classes"] - before["classes"] == 7  # one predicted class per row
    assert after["errors"] - before["errors"] == rejected


def _errors(client: httpx.Client, kind: str) -> float:
    return _metric(client, "autokfp_request_errors", "autokfp_request_errors_total",
                   kind=kind, model=MODEL, version="1")


def _oversized_body(held_out: pd.DataFrame) -> bytes:
    """A well-formed v1 body just over the server's byte limit (but far under its row cap)."""
    rows = _records(held_out)
    body = json.dumps({"instances": rows}).encode()
    body = json.dumps({"instances": rows * (MAX_BYTES // len(body) + 1)}).encode()
    assert MAX_BYTES < len(body) < 2 * MAX_BYTES
    return body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_body_gets_413_and_the_server_keeps_answering(
        client, server, held_out, framing) -> None:
    body = _oversized_body(held_out)
    before = _errors(client, "http_413")
    if framing == "chunked":  # no Content-Length: the limit is enforced while reading
        def chunks():
            for start in range(0, len(body), 8192):
                yield body[start:start + 8192]
        content: Any = chunks()
    else:
        content = body
    with httpx.Client(base_url=server.url, timeout=30) as fresh:  # 413 closes the connection
        response = fresh.post(f"/v1/models/{MODEL}:predict", content=content,
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert str(MAX_BYTES) in response.json()["error"]
    assert "AUTOKFP_MAX_REQUEST_BYTES" in response.json()["error"]
    assert _errors(client, "http_413") - before == 1
    good = _predict(client, {"instances": _records(held_out.head(2))})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 2


def test_a_body_under_the_limit_is_scored_whole(client, held_out, offline) -> None:
    rows = _records(held_out)
    body = json.dumps({"instances": rows}).encode()
    assert len(body) < MAX_BYTES
    response = _predict(client, None, raw=body)
    assert response.status_code == 200
    _assert_matches_offline(response.json()["predictions"], offline)


def test_rejections_before_the_model_are_counted_once(client, held_out, plan) -> None:
    """Malformed JSON never reaches the predictor: the guard counts it; a rejection the
    predictor counted (a missing column) is not counted again by the guard."""
    before = {kind: _errors(client, kind) for kind in ("http_400", "invalid_input")}
    path, body, _ = _bad_request("malformed JSON", 1, held_out, plan)
    assert client.post(path, content=body,
                       headers={"Content-Type": "application/json"}).status_code == 400
    path, body, _ = _bad_request("missing column", 1, held_out, plan)
    assert client.post(path, content=body,
                       headers={"Content-Type": "application/json"}).status_code == 400
    after = {kind: _errors(client, kind) for kind in ("http_400", "invalid_input")}
    assert after["http_400"] - before["http_400"] == 1
    assert after["invalid_input"] - before["invalid_input"] == 1
    unknown = client.post("/v1/models/no-such-model:predict", content=b'{"instances": []}',
                          headers={"Content-Type": "application/json"})
    assert unknown.status_code == 404
    assert _errors(client, "http_404") >= 1


# ------------------------------------------------------------------------------ prediction log


def test_sigterm_flushes_the_prediction_log(server, client, held_out, plan) -> None:
    """Runs last: it stops the module's server."""
    request_id = f"log-test-{uuid.uuid4().hex[:8]}"
    rows = held_out.head(3)
    response = _predict(client, {"instances": _records(rows)}, headers={"x-request-id": request_id})
    assert response.status_code == 200
    expected = response.json()["predictions"]

    assert servers.stop(server) == 0, server.output_tail()

    folder = server.log_root / "predictions" / MODEL / "v1"
    batches = sorted(folder.glob("date=*/*.parquet"))
    assert batches, f"no prediction log under {folder}:\n{server.output_tail()}"
    logged = pd.concat([pd.read_parquet(b) for b in batches], ignore_index=True)
    mine = logged[logged["request_id"] == request_id].reset_index(drop=True)
    assert len(mine) == 3
    for column in plan.input_columns:
        assert column in mine.columns
    number = plan.numeric[1]
    np.testing.assert_allclose(mine[number].astype(float), rows[number].astype(float))
    served = [str(p["prediction"]) for p in expected]
    assert mine["output_prediction"].astype(str).tolist() == served
    assert set(mine["model_version"]) == {"1"}
    assert len(logged) > 3  # the earlier tests' requests were logged too

    read_back = read_prediction_log(str(server.log_root), MODEL)
    assert len(read_back) == len(logged)
    assert request_id in set(read_back["request_id"])


# ------------------------------------------------------------------------------ broken model


@pytest.mark.parametrize("breakage", ["empty folder", "engine files missing"])
def test_a_broken_model_folder_never_becomes_ready_and_exits_non_zero(
        trained_package, tmp_path, breakage) -> None:
    model_dir = tmp_path / "model"
    if breakage == "empty folder":
        model_dir.mkdir()
    else:
        shutil.copytree(trained_package.paths.model, model_dir)
        engine = model_dir / "artifacts" / "engine"
        shutil.rmtree(engine)
        engine.mkdir()
    broken = servers.start(model_dir, tmp_path)
    try:
        deadline = time.monotonic() + servers.READY_TIMEOUT
        while broken.process.poll() is None and time.monotonic() < deadline:
            assert not servers.ready(broken), "a server with a broken model reported ready"
            time.sleep(0.3)
        assert broken.process.poll() is not None, "the server neither became ready nor exited"
        assert broken.process.returncode != 0
    finally:
        servers.stop(broken)
