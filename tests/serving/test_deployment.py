"""Autonomous deployment: verify, promote, roll back — locally and through a Kubernetes API.

The local tests start real predictor processes. The Kubernetes API cannot run here, so a
small HTTP server on 127.0.0.1 plays it: it checks the paths, verbs and bodies the
deployer sends (bodies are validated against KServe's own API models) and answers with an
InferenceService whose status URL points at a real local predictor.
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from autokfp.modeling import registry
from autokfp.serving import deployment
from autokfp.serving.inference_service import validate_manifest
from autokfp.steps import deploy_model as deploy_model_step
from tests.conftest import small_config

pytestmark = pytest.mark.slow


def _register(model_dir: Path, config, promote: bool, compared: str | None, tmp_path: Path) -> Path:
    registered = registry.register_model(model_dir, config.model_name, {"test_auc": 0.8}, {}, {},
                                         promote=promote, decision="test", compared_champion=compared)
    path = tmp_path / f"registration-v{registered.version}.json"
    path.write_text(json.dumps(registered.to_dict()))
    return path


def _broken_copy(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target)
    (target / "artifacts" / "engine" / "model.zip").write_bytes(b"this is not a MOJO")
    return target


def _predict(url: str, service: str, rows: list[dict]) -> dict:
    request = urllib.request.Request(f"{url}/v1/models/{service}:predict",
                                     data=json.dumps({"instances": rows}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_local_deploy_promotes_then_broken_version_rolls_back(tmp_path, autokfp_home, trained_package):
    config = small_config(trained_package.folder, deploy={
        "target": "local", "keep_local_server": True, "latency_budget_ms": 1000,
        "ready_timeout_secs": 90, "local_port": deployment.free_port(), "smoke_rows": 20})
    test_path = trained_package.paths.test
    serving = deployment.LocalServing(autokfp_home.home / "serving")
    try:
        first = _register(trained_package.paths.model, config, True, None, tmp_path)
        result = deploy_model_step.deploy_model(config, first, test_path, tmp_path / "m1.yaml", tmp_path / "d1.json")
        assert result["outcome"] == "promoted", result
        decision = json.loads((tmp_path / "d1.json").read_text())
        assert [c["check"] for c in decision["verification"]] == ["ready", "smoke_test", "latency"]
        server = serving.current("churn-test")
        assert server is not None and server.version == "1"

        broken = _broken_copy(trained_package.paths.model, tmp_path / "broken-model")
        second = _register(broken, config, True, "1", tmp_path)
        assert str(registry.champion_version(registry.configure(), "churn-test").version) == "2"
        result = deploy_model_step.deploy_model(config, second, test_path, tmp_path / "m2.yaml", tmp_path / "d2.json")

        assert result["outcome"] == "rolled-back"
        decision = json.loads((tmp_path / "d2.json").read_text())
        failed = [c for c in decision["verification"] if not c["passed"]]
        assert failed, decision
        assert "v1 keeps serving" in decision["reason"]
        client = registry.configure()
        assert str(registry.champion_version(client, "churn-test").version) == "1"
        assert str(client.get_model_version_by_alias("churn-test", "rejected").version) == "2"
        # the old server was never replaced and still answers with v1
        still = serving.current("churn-test")
        assert still is not None and still.pid == server.pid
        rows = deployment.to_records(pd.read_parquet(test_path).drop(columns=["churned"]).head(3))
        answer = _predict(still.url, "churn-test", rows)
        assert answer["model_version"] == "1" and len(answer["predictions"]) == 3
    finally:
        current = serving.current("churn-test")
        if current is not None:
            serving.stop(current)
            serving.record(None, "churn-test")


def test_first_version_failing_verification_raises_and_leaves_no_champion(tmp_path, autokfp_home,
                                                                           trained_package):
    config = small_config(trained_package.folder, deploy={"target": "local", "ready_timeout_secs": 60})
    broken = _broken_copy(trained_package.paths.model, tmp_path / "broken")
    registration = _register(broken, config, True, None, tmp_path)
    from autokfp.errors import DeploymentError

    with pytest.raises(DeploymentError, match="no previous version"):
        deploy_model_step.deploy_model(config, registration, trained_package.paths.test, tmp_path / "m.yaml",
                            tmp_path / "d.json")
    assert registry.champion_version(registry.configure(), "churn-test") is None
    assert json.loads((tmp_path / "d.json").read_text())["outcome"] == "rolled-back"
    assert not deployment.LocalServing(autokfp_home.home / "serving").current("churn-test")


# ------------------------------------------------------------------ a fake Kubernetes API


class FakeKubernetes:
    """Plays the Kubernetes API for InferenceServices and records every call."""

    def __init__(self, predictor_url: str):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict | None]] = []
        self.predictor_url = predictor_url
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                fake.calls.append(("GET", self.path, None))
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                if name in fake.objects:
                    return self._send(200, fake.objects[name])
                return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

            def do_POST(self):  # noqa: N802
                body = self._body()
                fake.calls.append(("POST", self.path, body))
                body["status"] = {"conditions": [{"type": "Ready", "status": "True"}],
                                  "url": fake.predictor_url}
                fake.objects[body["metadata"]["name"]] = body
                return self._send(201, body)

            def do_PATCH(self):  # noqa: N802
                body = self._body()
                fake.calls.append(("PATCH", self.path, body))
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                current = fake.objects[name]
                _merge(current, body)
                return self._send(200, current)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def test_kubernetes_deploy_creates_then_canaries_and_promotes(tmp_path, autokfp_home, trained_package,
                                                              monkeypatch):
    serving = deployment.LocalServing(tmp_path / "serving")
    server, process = serving.start("churn-test", "1", str(trained_package.paths.model))
    try:
        with FakeKubernetes(server.url) as kube:
            kubeconfig = {
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            }
            path = tmp_path / "kubeconfig"
            path.write_text(yaml.safe_dump(kubeconfig))
            monkeypatch.setenv("KUBECONFIG", str(path))
            config = small_config(trained_package.folder, deploy={
                "target": "kubernetes", "namespace": "ml", "latency_budget_ms": 1000,
                "ready_timeout_secs": 90, "smoke_rows": 10})

            first = _register(trained_package.paths.model, config, True, None, tmp_path)
            result = deploy_model_step.deploy_model(config, first, trained_package.paths.test,
                                         tmp_path / "m1.yaml", tmp_path / "d1.json")
            assert result["outcome"] == "promoted", json.loads((tmp_path / "d1.json").read_text())
            posts = [c for c in kube.calls if c[0] == "POST"]
            assert len(posts) == 1
            assert posts[0][1] == "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices"
            created = dict(posts[0][2])
            created.pop("status", None)
            validate_manifest(created)  # what was sent is a valid InferenceService
            assert "canaryTrafficPercent" not in created["spec"]["predictor"]

            copy = tmp_path / "model-v2"
            shutil.copytree(trained_package.paths.model, copy)
            (copy / "extra.txt").write_text("a different package")
            second = _register(copy, config, True, "1", tmp_path)
            kube.calls.clear()
            result = deploy_model_step.deploy_model(config, second, trained_package.paths.test,
                                         tmp_path / "m2.yaml", tmp_path / "d2.json")
            assert result["action"] == "canary" and result["outcome"] == "promoted"
            patches = [c[2] for c in kube.calls if c[0] == "PATCH"]
            assert patches[0]["spec"]["predictor"]["canaryTrafficPercent"] == 10
            assert patches[0]["metadata"]["annotations"]["autokfp/model-version"] == "2"
            assert patches[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 100}}}
            # the token from the kubeconfig was sent, and no secret appears in the manifest
            assert "fake-token" not in (tmp_path / "m2.yaml").read_text()
    finally:
        serving.stop(server)
        assert process.poll() is not None
