"""The fake Kubernetes API behaves as a real one would where the deploy step depends on it.

Fast checks of the fake itself (tests/serving/fake_kserve.py), with stand-in predictors that
only answer health and which version they are: bodies are checked against KServe's schema
with the API server's semantics, a spec change is observed late and its revision ready
later still, and the tagged route is reached by its cluster-local name only.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from autokfp.config import DeploySpec
from autokfp.serving.cluster import KServeCluster, read_settled
from autokfp.serving.inference_service import build_inference_service
from tests.serving.fake_kserve import API_PREFIX, FakeKServe

PATH = f"{API_PREFIX}ml/inferenceservices"


def _stand_in(version: str) -> ThreadingHTTPServer:
    """A predictor that is ready and says which version it is."""

    class Answer(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self):
            data = json.dumps({"model_version": version, "predictions": [0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._send()

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def stand_ins():
    servers = {v: _stand_in(v) for v in ("1", "2")}
    yield {v: f"http://127.0.0.1:{s.server_address[1]}" for v, s in servers.items()}
    for server in servers.values():
        server.shutdown()


def _isvc(version: str, mode: str = "serverless") -> dict:
    return build_inference_service("churn", version, "gs://b/churn/v" + version,
                                   DeploySpec(namespace="ml"), canary=False, mode=mode)


def _send(kube: FakeKServe, method: str, path: str, body: dict,
          content_type: str = "application/json") -> tuple[int, dict, list[str]]:
    request = urllib.request.Request(kube.url + path, data=json.dumps(body).encode(),
                                     method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers.get_all("Warning") or []
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), []


def test_bodies_are_checked_against_kserves_schema_as_the_api_server_does(stand_ins):
    kube = FakeKServe(stand_ins, observe_delay=0, ready_delay=0)
    with pytest.raises(AssertionError, match=r"spec\.predictor\.canaryTrafficPercnt"):
        with kube:
            body = _isvc("1")
            body["spec"]["predictor"]["canaryTrafficPercnt"] = 10  # misspelt
            status, stored, warnings = _send(kube, "POST", PATH, body)
            # the API server's default (fieldValidation Warn) drops it and says so in a header
            assert status == 201 and "canaryTrafficPercnt" not in stored["spec"]["predictor"]
            assert warnings and "canaryTrafficPercnt" in warnings[0]
            wrong = _isvc("2")
            wrong["metadata"]["name"] = "other"
            wrong["spec"]["predictor"]["minReplicas"] = "one"
            status, answer, _ = _send(kube, "POST", PATH, wrong)
            assert status == 422 and "minReplicas" in answer["message"], answer
            assert "other" not in kube.services
            status, _, _ = _send(kube, "PATCH", f"{PATH}/churn",
                                 {"spec": {"predictor": {"minReplicas": 2}}},
                                 "application/strategic-merge-patch+json")
            assert status == 415  # custom resources take no strategic merge patch
    assert kube.dropped == ["spec.predictor.canaryTrafficPercnt"]
    assert len(kube.refused) == 2


def test_what_autokfp_sends_through_kserve_client_passes_the_schema(tmp_path, monkeypatch,
                                                                    stand_ins):
    """Both modes, the payload logger, the traffic patch: nothing dropped or refused (the
    fake fails the test on leaving otherwise)."""
    with FakeKServe(stand_ins, observe_delay=0, ready_delay=0) as kube:
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kube.kubeconfig()))
        monkeypatch.setenv("KUBECONFIG", str(path))
        cluster = KServeCluster("ml")
        assert cluster.apply(_isvc("1"))[0] == "created"
        assert cluster.apply(_isvc("2"))[0] == "patched"
        cluster.set_traffic("churn", 10)
        raw = _isvc("1", mode="standard")
        raw["metadata"]["name"] = "churn-candidate"
        assert cluster.apply(raw)[0] == "created"
        assert cluster.delete("churn-candidate") and not cluster.delete("churn-candidate")
        patches = [c for c in kube.calls if c[0] == "PATCH"]
        assert patches[-1][2]["spec"]["predictor"] == {"canaryTrafficPercent": 10}
        logger = kube.services["churn"].obj["spec"]["predictor"].get("logger")
        assert logger and logger["mode"] == "all", kube.services["churn"].obj["spec"]["predictor"]
    assert not kube.dropped and not kube.refused


def test_a_new_revision_is_observed_late_ready_later_and_reached_by_its_cluster_name(stand_ins):
    with FakeKServe(stand_ins, observe_delay=0.4, ready_delay=0.6) as kube:
        assert _send(kube, "POST", PATH, _isvc("1"))[0] == 201
        obj = kube.reconcile("churn")
        assert obj["status"]["observedGeneration"] == 0  # not even observed yet
        assert not read_settled(obj, 1, None, serverless=True).ready
        time.sleep(1.2)
        first = read_settled(kube.reconcile("churn"), 1, None, serverless=True)
        assert first.ready and first.revision == "churn-predictor-00001", first

        patch = {"metadata": {"annotations": {"autokfp/model-version": "2"}},
                 "spec": {"predictor": {"canaryTrafficPercent": 0,
                                        "model": {"storageUri": "gs://b/churn/v2"}}}}
        status, patched, _ = _send(kube, "PATCH", f"{PATH}/churn", patch,
                                   "application/merge-patch+json")
        assert status == 200 and patched["metadata"]["generation"] == 2
        # right after the patch the old status is still Ready=True: not settled
        assert patched["status"]["observedGeneration"] == 1
        assert patched["status"]["conditions"][-1]["status"] == "True"
        assert not read_settled(patched, 2, first.revision, serverless=True).ready
        time.sleep(0.5)  # observed, the revision created but not ready yet
        seen = read_settled(kube.reconcile("churn"), 2, first.revision, serverless=True)
        assert not seen.ready and "not ready" in seen.detail, seen
        time.sleep(0.8)
        settled = read_settled(kube.reconcile("churn"), 2, first.revision, serverless=True)
        assert settled.ready and settled.revision == "churn-predictor-00002", settled
        assert settled.latest_url == "http://latest-churn-predictor.ml.svc.cluster.local"
        traffic = kube.reconcile("churn")["status"]["components"]["predictor"]["traffic"]
        assert {t["tag"]: t["percent"] for t in traffic} == {"prev": 100, "latest": 0}
        external = next(t["url"] for t in traffic if t["tag"] == "latest")
        assert external.endswith(".example.com")

        with httpx.Client(proxy=kube.proxy_env()["HTTP_PROXY"], timeout=10) as client:
            # the tag's cluster-local Service reaches revision 2 alone, the service revision 1
            for _ in range(5):
                tagged = client.post(f"{settled.latest_url}/v1/models/churn:predict", json={})
                assert tagged.json()["model_version"] == "2"
                users = client.post(f"http://{kube.cluster_host('churn', 'service')}"
                                    "/v1/models/churn:predict", json={})
                assert users.json()["model_version"] == "1"
            assert client.post(f"{external}/v1/models/churn:predict", json={}).status_code == 502
        assert kube.unresolved == ["latest-churn-predictor.ml.example.com"]
