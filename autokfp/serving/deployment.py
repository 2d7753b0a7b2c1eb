"""Deploy a registered version, verify it, then promote it or roll back, on its own.

Targets:

* ``kubernetes``: the InferenceService is applied with ``kserve.KServeClient``
  (``serving.cluster``); Serverless: a canary verified on its own revision, then promoted
  (100 %) or rolled back (0 %); Standard: a verified blue-green candidate (see
  ``serving.targets.kubernetes`` and docs/serving.md).
* ``local``: the predictor (``python -m autokfp.serving``) is started on 127.0.0.1 for the
  new version and verified there; the previous local server, if any, keeps serving until
  the new one has passed.
* ``manifest``: only the InferenceService YAML is written.

Verification = the server becomes ready, a smoke test on held-out rows returns the same
predictions as the model scored offline, and single-row latency (p95) is within budget.
A failed verification rolls back: traffic and the registry's ``champion`` alias return to
the previous version, the failed version gets alias ``rejected``, and the decision with
every check is returned (and written by the deploy step) for the audit trail.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from autokfp.errors import DeploymentError
from autokfp.lifeline import SERVING_PARENT_ENV, SERVING_STATE_ENV, pid_alive
from autokfp.serving.predictor_client import (  # monitoring leaves verify requests out
    VERIFY_REQUEST_PREFIX,  # noqa: F401 - re-exported: tests and callers name it here
    PredictorClient,
)

log = logging.getLogger(__name__)

REJECTED = "rejected"


# ------------------------------------------------------------------------- verification


@dataclass
class Verification:
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)
    endpoint: str | None = None  # where the verified version answered, if it was served

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append({"check": name, "passed": passed, "detail": detail})
        self.passed = self.passed and passed


FORBIDDEN_HINT = (
    "the mesh refused the smoke test (HTTP {status}): in an Istio-secured (Kubeflow profile) "
    "namespace apply manifests/serving/authorization-policy.yaml so the pipeline's service "
    "account may call the predictor, or set deploy.token_env to the name of an environment "
    "variable that holds a bearer token the namespace accepts")


def smoke_token(token_env: str | None) -> str | None:
    """The bearer token named by ``deploy.token_env`` (never logged or written anywhere)."""
    if not token_env:
        return None
    token = os.environ.get(token_env)
    if not token:
        raise DeploymentError(f"deploy.token_env names {token_env}, but that environment "
                              "variable is empty or unset; set it (e.g. from a Secret with "
                              "kubernetes.use_secret_as_env) or remove deploy.token_env")
    return token


READY_ASK_SECS = 2.0  # the longest one readiness request may wait
LAST_ASK_SECS = 0.5  # ... and the shortest, when the deadline has (nearly) passed


def wait_ready(base_url: str, service: str, timeout: float, process: subprocess.Popen | None = None,
               token: str | None = None, client: PredictorClient | None = None) -> bool:
    """Poll the v2 model-ready endpoint until it answers 200 (or the process dies); a 401/403
    from the mesh raises at once, naming the fix."""
    if client is None:
        with PredictorClient(base_url, token=token) as own:
            return wait_ready(base_url, service, timeout, process, client=own)
    deadline = time.monotonic() + timeout
    while True:  # asked at least once, also with no time left
        if process is not None and process.poll() is not None:
            return False
        # one ask waits at most what is left of the deadline (2 s at most, 0.5 s at least:
        # the last ask of a caller whose share is spent is short, not another 2 s on a
        # server that accepts the connection and never answers)
        ask = min(READY_ASK_SECS, max(LAST_ASK_SECS, deadline - time.monotonic()))
        if client.model_ready(service, timeout=ask):
            return True
        if client.refused:
            raise DeploymentError(FORBIDDEN_HINT.format(status=client.refused))
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.5, left))


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (ISO dates, None for missing)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def verify_endpoint(base_url: str, service: str, rows: pd.DataFrame, expected: pd.DataFrame,
                    latency_budget_ms: float, ready_timeout: float,
                    process: subprocess.Popen | None = None, version: str | None = None,
                    token: str | None = None,
                    ready_deadline: float | None = None) -> Verification:
    """Readiness, smoke test against offline predictions, and single-row latency.

    With ``version``, every answer must carry that ``model_version``: an answer from any
    other version (a previous revision behind a traffic split, a stale pod) fails the
    ``model_version`` check, whatever its predictions. ``ready_deadline`` (a
    ``time.monotonic()`` value): when readiness must be reached by, for a caller that
    already waited part of ``ready_timeout`` (default: ``ready_timeout`` from now).
    """
    if ready_deadline is None:
        ready_deadline = time.monotonic() + ready_timeout
    with PredictorClient(base_url, token=token) as client:
        return _verify(client, base_url, service, rows, expected, latency_budget_ms,
                       ready_timeout, ready_deadline, process, version)


def _verify(client: PredictorClient, base_url: str, service: str, rows: pd.DataFrame,
            expected: pd.DataFrame, latency_budget_ms: float, ready_timeout: float,
            ready_deadline: float, process: subprocess.Popen | None,
            version: str | None) -> Verification:
    result = Verification(passed=True)
    try:
        ready = wait_ready(base_url, service, max(0.0, ready_deadline - time.monotonic()),
                           process, client=client)
    except DeploymentError as exc:
        result.add("ready", False, str(exc))
        return result
    result.add("ready", ready, f"{base_url}/v2/models/{service}/ready "
               + ("answered 200" if ready else f"not ready within {ready_timeout:.0f}s"))
    if not ready:
        return result
    records = to_records(rows)
    versions: list[str] = []
    try:
        status, body = client.predict(service, records, timeout=60)
    except httpx.TransportError as exc:
        result.add("smoke_test", False, f"{base_url} did not answer the smoke test: "
                   f"{type(exc).__name__}: {exc}")
        return result
    if status != 200:
        hint = FORBIDDEN_HINT.format(status=status) + ": " if status in (401, 403) else ""
        result.add("smoke_test", False, f"{hint}HTTP {status}: {str(body)[:300]}")
        return result
    versions.append(str(body.get("model_version")) if isinstance(body, dict) else "?")
    served = pd.DataFrame(body["predictions"])
    columns = [c for c in expected.columns if c.startswith("probability_")] or ["prediction"]
    try:
        served_values = served[columns].to_numpy(dtype="float64")
        expected_values = expected[columns].to_numpy(dtype="float64")
        gap = float(np.nanmax(np.abs(served_values - expected_values))) if len(served) else 0.0
        same_labels = list(served["prediction"].astype(str)) == list(expected["prediction"].astype(str))
        ok = len(served) == len(expected) and gap <= 1e-6 and same_labels
        result.add("smoke_test", ok, f"{len(served)} held-out rows; largest difference from offline "
                   f"predictions {gap:.2e}; labels {'match' if same_labels else 'differ'}")
    except (KeyError, ValueError) as exc:
        result.add("smoke_test", False, f"unexpected response shape: {exc}")
        return result
    latencies = []
    for record in records[: min(len(records), 50)]:
        started = time.perf_counter()
        try:
            status, body = client.predict(service, [record], timeout=10)
        except httpx.TransportError as exc:
            status, body = 0, f"{type(exc).__name__}: {exc}"
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            result.add("latency", False, f"single-row request failed with HTTP {status}")
            return result
        versions.append(str(body.get("model_version")) if isinstance(body, dict) else "?")
    p95 = float(np.percentile(latencies, 95))
    result.add("latency", p95 <= latency_budget_ms,
               f"single-row p95 {p95:.1f} ms over {len(latencies)} requests (budget {latency_budget_ms:.0f} ms)")
    if version is not None:
        others = sorted({v for v in versions if v != str(version)})
        result.add("model_version", not others,
                   f"all {len(versions)} answers came from v{version}" if not others else
                   f"{sum(v != str(version) for v in versions)} of {len(versions)} answers came "
                   f"from {', '.join('v' + v for v in others)}, not v{version}: the smoke test "
                   "did not reach the new version alone")
    return result


# ------------------------------------------------------------------------ local target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalServer:
    """A predictor process on this machine."""

    name: str
    version: str
    port: int
    pid: int
    model_dir: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LocalServing:
    """Starts, tracks and stops local predictor processes (state in AUTOKFP_HOME/serving)."""

    def __init__(self, state_dir: Path, artifact_root: str | None = None):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_root = artifact_root
        self._processes: dict[int, Any] = {}  # Popen, or warm_predictor.ForkedPredictor

    def _state_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def current(self, name: str) -> LocalServer | None:
        path = self._state_file(name)
        if not path.exists():
            return None
        server = LocalServer(**json.loads(path.read_text()))
        return server if pid_alive(server.pid) else None

    def record(self, server: LocalServer | None, name: str) -> None:
        path = self._state_file(name)
        if server is None:
            path.unlink(missing_ok=True)
            return
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(asdict(server)))
        os.replace(temp, path)

    def start(self, name: str, version: str, model_dir: str, port: int | None = None,
              log_file: Path | None = None, warm: bool = True) -> tuple[LocalServer, Any]:
        port = port or free_port()
        # the predictor outlives this process only while the serving state names it: a
        # candidate left behind by a killed deploy step, or a server another one replaced,
        # stops on its own (``autokfp.serving.__main__.watch_serving_state``)
        env = {**os.environ, "MODEL_DIR": str(model_dir), "MODEL_NAME": name, "MODEL_VERSION": str(version),
               "PORT": str(port), "HOST": "127.0.0.1", SERVING_STATE_ENV: str(self._state_file(name)),
               SERVING_PARENT_ENV: str(os.getpid())}
        if self.artifact_root:
            env["AUTOKFP_ARTIFACT_ROOT"] = self.artifact_root
        else:
            env["AUTOKFP_PREDICTION_LOG"] = "off"
        # in a local run, forked by the run's warm process, which imported the serving stack
        # while the tasks after training ran (``warm_predictor``); else a new interpreter
        from autokfp.serving.warm_predictor import fork_predictor

        process: Any = fork_predictor(env, log_file) if warm else None
        if process is None:
            output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
            process = subprocess.Popen([sys.executable, "-m", "autokfp.serving"], env=env,
                                       stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self._processes[process.pid] = process
        return LocalServer(name=name, version=str(version), port=port, pid=process.pid,
                           model_dir=str(model_dir)), process

    def ready_or_restarted(self, server: LocalServer, process: Any, timeout: float,
                           log_file: Path | None = None) -> tuple[LocalServer, Any]:
        """``server`` and ``process`` as ``start`` returned them, or, when the warm process
        forked the predictor (``ForkedPredictor``) and it made no progress before it was
        ready (no CPU time for ``settings.child_stall_secs``: a fork waiting for good on
        something another thread held at the fork, as a forked DataHub source did in CI),
        the same version started again as a new interpreter on the same port. Waits at most
        ``timeout`` seconds, and only for a forked predictor; readiness itself is
        ``verify_endpoint``'s to judge."""
        from autokfp.lifeline import Stall
        from autokfp.serving.warm_predictor import ForkedPredictor
        from autokfp.settings import child_stall_secs

        if not isinstance(process, ForkedPredictor):
            return server, process
        stall = Stall(process.pid, child_stall_secs())
        deadline = time.monotonic() + timeout
        with PredictorClient(server.url) as client:
            while time.monotonic() < deadline and process.poll() is None:
                if client.model_ready(server.name, timeout=2):
                    return server, process
                if stall.stalled():
                    break
                time.sleep(0.2)
            else:
                return server, process  # it ended, or the time is up: verify_endpoint says
        log.warning("the predictor the warm process forked (pid %d) made no progress for %g s "
                    "before it was ready: stopped, and started again as a new interpreter",
                    process.pid, stall.seconds)
        self.stop(server, timeout=2.0)
        return self.start(server.name, server.version, server.model_dir, port=server.port,
                          log_file=log_file, warm=False)

    def stop(self, server: LocalServer, timeout: float = 15.0) -> None:
        process = self._processes.pop(server.pid, None)
        try:
            os.kill(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return
            if process is None and not pid_alive(server.pid):
                return
            time.sleep(0.2)
        try:
            os.kill(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if process is not None:
            process.wait(timeout=5)


# ------------------------------------------------------------------------- decisions


@dataclass
class DeploymentDecision:
    target: str
    model: str
    version: str
    previous_version: str | None
    action: str  # initial | canary | unchanged | manifest-only
    outcome: str  # promoted | rolled-back | skipped
    verification: list[dict[str, Any]]
    endpoint: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_champion(client: Any, name: str, failed_version: str, previous_version: str | None) -> None:
    """Registry side of a rollback: champion back to ``previous``, the failed one rejected."""
    from autokfp.modeling import registry

    client.set_registered_model_alias(name, REJECTED, failed_version)
    client.set_model_version_tag(name, failed_version, "deployment", "rolled-back")
    if previous_version is not None:
        client.set_registered_model_alias(name, registry.CHAMPION, previous_version)
        client.set_model_version_tag(name, previous_version, "deployment", "serving")
    else:
        client.delete_registered_model_alias(name, registry.CHAMPION)
