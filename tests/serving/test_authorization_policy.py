"""manifests/serving/authorization-policy.yaml lets the deploy step's verification through.

Istio cannot run here, so a small HTTP gate on 127.0.0.1 enforces the policy's ``to``
operations the way Istio matches them (methods exactly; paths exact, ``prefix*``,
``*suffix`` or ``*``) and answers 403 "RBAC: access denied" otherwise, in front of a
stand-in predictor. The deploy step's own verification (``verify_endpoint``: readiness,
smoke test, latency, model_version) must pass through it; with a narrower policy it gets
the 403 and the hint. The selector and the principals are checked against what autokfp
deploys: the labels on its predictor pods and the pipeline runner's service account.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from autokfp.config.serving import DeploySpec
from autokfp.serving import deployment
from autokfp.serving.inference_service import build_inference_service

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "manifests" / "serving" / "authorization-policy.yaml"
RBAC = ROOT / "manifests" / "base" / "rbac.yaml"
ROWS = pd.DataFrame({"age": [30, 41, 52]})
EXPECTED = pd.DataFrame({"prediction": ["0", "1", "0"], "probability_0": [0.9, 0.2, 0.7],
                         "probability_1": [0.1, 0.8, 0.3]})


def _policy() -> dict[str, Any]:
    return yaml.safe_load(POLICY.read_text())


def _matches(pattern: str, path: str) -> bool:
    """Istio's string match for AuthorizationPolicy paths."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def _allows(policy: dict[str, Any], method: str, path: str) -> bool:
    path = path.split("?", 1)[0]
    for rule in policy["spec"]["rules"]:
        for to in rule.get("to", [{}]):
            operation = to.get("operation", {})
            if method in operation.get("methods", [method]) and any(
                    _matches(p, path) for p in operation.get("paths", ["*"])):
                return True
    return False


@contextmanager
def _gate(policy: dict[str, Any]) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """The policy enforced in front of a predictor answering EXPECTED for any rows."""
    seen: list[tuple[str, str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, method: str, body: dict[str, Any] | None) -> None:
            allowed = _allows(policy, method, self.path)
            seen.append((method, self.path, 200 if allowed else 403))
            data = json.dumps(body).encode() if allowed else b"RBAC: access denied"
            self.send_response(200 if allowed else 403)
            self.send_header("Content-Type", "application/json" if allowed else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._reply("GET", {"name": "churn", "ready": True})

        def do_POST(self) -> None:  # noqa: N802
            rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["instances"]
            answers = EXPECTED.head(len(rows)).to_dict("records")
            self._reply("POST", {"predictions": answers, "model_version": "7"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_policy_lets_the_deploy_steps_verification_through() -> None:
    with _gate(_policy()) as (url, seen):
        checked = deployment.verify_endpoint(url, "churn", ROWS, EXPECTED, 1000, 10, version="7")
    assert checked.passed, checked.checks
    assert [c["check"] for c in checked.checks] == ["ready", "smoke_test", "latency",
                                                     "model_version"]
    assert {(method, status) for method, _, status in seen} == {("GET", 200), ("POST", 200)}
    assert any(path.endswith(":predict") for _, path, _ in seen)


def test_a_policy_without_the_readiness_path_gets_the_403_hint() -> None:
    narrow = _policy()
    for rule in narrow["spec"]["rules"]:
        for to in rule["to"]:
            to["operation"]["paths"] = [p for p in to["operation"]["paths"]
                                        if not p.startswith("/v2/")]
    with _gate(narrow) as (url, seen):
        checked = deployment.verify_endpoint(url, "churn", ROWS, EXPECTED, 1000, 10, version="7")
    assert not checked.passed
    assert "HTTP 403" in checked.checks[0]["detail"]
    assert "authorization-policy.yaml" in checked.checks[0]["detail"]
    assert seen and all(status == 403 for _, _, status in seen)


def test_the_policy_selects_autokfp_predictors_and_admits_the_pipeline_runner() -> None:
    policy = _policy()
    assert policy["spec"]["action"] == "ALLOW"
    for mode in ("serverless", "standard"):
        manifest = build_inference_service("churn", "3", "s3://b/m", DeploySpec(), canary=False,
                                           mode=mode)
        pod_labels = manifest["spec"]["predictor"]["labels"]  # KServe copies them to the pods
        selector = policy["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), (selector, pod_labels)
    runner = next(d for d in yaml.safe_load_all(RBAC.read_text())
                  if d and d["kind"] == "ServiceAccount"
                  and d["metadata"]["name"].endswith("pipeline-runner"))
    principals = [p for rule in policy["spec"]["rules"] for source in rule["from"]
                  for p in source["source"].get("principals", [])]
    assert (f"cluster.local/ns/<pipeline-namespace>/sa/{runner['metadata']['name']}"
            in principals)
    # and the serving predictors' own account: they call the candidate in a Standard A/B split
    assert f"cluster.local/ns/<serving-namespace>/sa/{DeploySpec().service_account}" in principals
    # Serverless: requests the activator proxies come from its namespace, not the caller's,
    # and must reach the same routes
    activator = [rule for rule in policy["spec"]["rules"]
                 if any("knative-serving" in s["source"].get("namespaces", []) for s in rule["from"])]
    assert activator, "no rule admits Knative's activator (knative-serving)"
    assert [r.get("to") for r in activator] == [policy["spec"]["rules"][0]["to"]]
    # the policy opens the prediction and health routes, nothing else
    assert not _allows(policy, "DELETE", "/v1/models/churn")
    assert not _allows(policy, "GET", "/metrics")
