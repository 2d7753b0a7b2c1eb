"""KServe's payload logger, end to end on real servers: the predictor (``python -m
autokfp.serving``) answers real requests, and this test plays KServe's agent, posting
each request and response to the receiver (``python -m autokfp.serving.payload_log``, in
KServe's own model server) as the binary-mode CloudEvents the agent sends.

What the receiver writes must be what the predictor writes itself in local mode: the same
rows, inputs and answers in the same Parquet layout, read by monitoring's ``read_window``
(a deploy's own checks left out). Events that are not the logger's get a 4xx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from autokfp.monitoring.window import read_window
from autokfp.serving.payload_log import REQUEST_TYPE, RESPONSE_TYPE
from tests.conftest import _free_port
from tests.serving import servers

SERVICE = "churn"
PAYLOAD_LOG = Path(__file__).resolve().parents[2] / "manifests" / "serving" / "payload-log.yaml"
NAMESPACE = "kubeflow-user"


@pytest.fixture(scope="module")
def plan(trained_package):
    return servers.feature_plan(Path(trained_package.paths.model))


@pytest.fixture(scope="module")
def rows(trained_package, plan) -> list[dict]:
    frame = pd.read_parquet(trained_package.paths.test).head(12)
    return [{c: servers.json_value(r[c]) for c in plan.input_columns} for _, r in frame.iterrows()]


@pytest.fixture(scope="module")
def predictor(trained_package, tmp_path_factory):
    """The predictor, logging its own predictions (local mode) under ``log_root``."""
    server = servers.start(Path(trained_package.paths.model), tmp_path_factory.mktemp("predictor"),
                           model=SERVICE)
    try:
        servers.wait_ready(server)
        yield server
    finally:
        servers.stop(server)


def _pod_env(items: list[dict], config_maps: dict[str, dict[str, str]],
             secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """A container's ``env`` as the kubelet resolves it: ``value``, or ``valueFrom`` a
    ConfigMap's / Secret's key; a missing key that is not ``optional`` stops the pod."""
    env = {}
    for item in items:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ((kind, ref),) = item["valueFrom"].items()
        source = (config_maps if kind == "configMapKeyRef" else secrets).get(ref["name"], {})
        if ref["key"] in source:
            env[item["name"]] = source[ref["key"]]
        else:
            assert ref.get("optional"), f"{item['name']}: {kind} {ref} would stop the pod"
    return env


def _start_receiver(workdir: Path) -> servers.Server:
    """The receiver as ``manifests/serving/payload-log.yaml`` deploys it: the Deployment's
    command and environment (resolved from an ``autokfp-config`` ConfigMap naming a store;
    no Secret, as on gs:// with Workload Identity), on a free port of 127.0.0.1 instead of
    the pod's 8080, ready when its readiness probe's path answers."""
    docs = list(yaml.safe_load_all(PAYLOAD_LOG.read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    template = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = _pod_env(container["env"], {"autokfp-config": {
        "AUTOKFP_ARTIFACT_ROOT": str(workdir / "store")}}, secrets={})
    # the Service's port 80 reaches the port the receiver listens on
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["containerPort"] \
        == int(env["PORT"]) == container["readinessProbe"]["httpGet"]["port"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert set(env) == {"PORT", "AUTOKFP_ARTIFACT_ROOT"}
    port = _free_port()
    command = container["command"]
    assert command[0] == "python"  # the image's interpreter: here, this one
    env.update(PORT=str(port), HOST="127.0.0.1", PYTHONWARNINGS="ignore",
               AUTOKFP_PAYLOAD_LOG_FLUSH_SECONDS="0.5")
    output = workdir / "receiver.log"
    with open(output, "wb") as sink:
        process = subprocess.Popen([sys.executable, *command[1:], *container.get("args", [])],
                                   env={**os.environ, **env}, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    receiver = servers.Server(process, f"http://127.0.0.1:{port}", workdir / "store", output)
    probe = container["readinessProbe"]["httpGet"]["path"]
    deadline = time.monotonic() + servers.READY_TIMEOUT
    while True:
        try:
            if httpx.get(f"{receiver.url}{probe}", timeout=2).status_code == 200:
                return receiver
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            servers.stop(receiver)
            pytest.fail(f"the receiver was not ready:\n{receiver.output_tail()}")
        time.sleep(0.3)


def _event(receiver: httpx.Client, kind: str, event_id: str, body: bytes) -> httpx.Response:
    """One CloudEvent as KServe's agent posts it (binary mode; pkg/logger/worker.go)."""
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": kind,
               "ce-source": "http://localhost:9081/", "ce-inferenceservicename": SERVICE,
               "ce-namespace": NAMESPACE, "ce-component": "predictor",
               "ce-endpoint": "", "content-type": "application/json"}
    return receiver.post("/v1/models/payload-log:predict", content=body, headers=headers)


def test_the_receiver_writes_what_the_predictor_logs_itself(predictor, plan, rows,
                                                             tmp_path) -> None:
    receiver = _start_receiver(tmp_path)
    v2_inputs = [{"name": c, "datatype": "FP64" if c in plan.numeric else "BYTES",
                  "shape": [2], "data": [r[c] for r in rows[8:10]]} for c in rows[0]]
    requests = [  # (path, body, id): what users send, as the agent sees it
        (f"/v1/models/{SERVICE}:predict", {"instances": rows[:5]}, uuid.uuid4().hex),
        *[(f"/v1/models/{SERVICE}:predict", {"instances": [r]}, uuid.uuid4().hex)
          for r in rows[5:8]],
        (f"/v2/models/{SERVICE}/infer", {"inputs": v2_inputs}, uuid.uuid4().hex),
        (f"/v1/models/{SERVICE}:predict", {"instances": rows[10:12]},
         f"autokfp-verify-{uuid.uuid4().hex}"),
    ]
    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    try:
        with httpx.Client(base_url=predictor.url, timeout=30) as client, \
                httpx.Client(base_url=receiver.url, timeout=30) as sink:
            for index, (path, body, event_id) in enumerate(requests):
                sent = json.dumps(body).encode()
                answer = client.post(path, content=sent, headers={
                    "content-type": "application/json", "x-request-id": event_id})
                assert answer.status_code == 200, answer.text
                events = [(REQUEST_TYPE, sent), (RESPONSE_TYPE, answer.content)]
                if index % 2:  # the agent sends both halves independently: any order
                    events.reverse()
                statuses = [_event(sink, kind, event_id, data) for kind, data in events]
                assert [s.status_code for s in statuses] == [200, 200], statuses[-1].text
                assert statuses[0].json()["status"] == "pending"
                assert statuses[1].json() == {"status": "logged",
                                              "rows": len(body.get("instances") or rows[8:10])}
            # what the agent never sends, or sends broken, is a 4xx naming the problem
            bare = sink.post("/v1/models/payload-log:predict", json={"instances": rows[:1]})
            assert bare.status_code == 400 and "ce-inferenceservicename" in bare.text
            odd = _event(sink, REQUEST_TYPE, "x1", b"[1, 2]")
            assert odd.status_code == 400, odd.text
            ragged_id = uuid.uuid4().hex
            _event(sink, REQUEST_TYPE, ragged_id, json.dumps({"instances": rows[:2]}).encode())
            ragged = _event(sink, RESPONSE_TYPE, ragged_id,
                            json.dumps({"predictions": [{"prediction": 1}]}).encode())
            assert ragged.status_code == 400 and "2 rows but its response 1" in ragged.text
    finally:
        servers.stop(receiver)  # SIGTERM: the receiver flushes what it holds
        servers.stop(predictor)  # the module's predictor flushes too (this is its last test)
    receiver_log = receiver.output.read_text()
    assert "Traceback" not in receiver_log
    assert receiver_log.count("autokfp.serving.payload_log: rejected event") == 3  # one line each

    ended = datetime.now(timezone.utc) + timedelta(minutes=1)
    received = read_window(str(tmp_path / "store"), SERVICE, "1", started, ended)
    logged = read_window(str(predictor.log_root), SERVICE, "1", started, ended)
    assert len(received.frame) == 5 + 3 + 2  # the verification request is left out
    assert any("verification" in note for note in received.notes)
    assert sorted(received.frame.columns) == sorted(logged.frame.columns)
    key = ["request_id"]
    compare = [c for c in logged.frame.columns if c != "logged_at"]
    ours = received.frame[compare].sort_values(key, kind="stable").reset_index(drop=True)
    theirs = logged.frame[compare].sort_values(key, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    sent_ids = {event_id for _, _, event_id in requests[:-1]}
    assert set(received.frame["request_id"]) == sent_ids
    assert (received.frame["model_version"] == "1").all()
