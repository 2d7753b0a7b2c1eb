"""Where a deployment goes: the local predictor process or a Kubernetes InferenceService."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from autokfp.config import RunConfig

log = logging.getLogger(__name__)


def _deploy_local(cfg: RunConfig, settings: Any, service: str, version: str, model_dir: str,
                  rows: pd.DataFrame, expected: pd.DataFrame | None) -> dict[str, Any]:
    from autokfp.serving import deployment

    serving = deployment.LocalServing(settings.home / "serving", settings.artifact_root)
    old = serving.current(service)
    port = None
    if cfg.deploy.keep_local_server and old is None:
        port = cfg.deploy.local_port if _port_free(cfg.deploy.local_port) else None
    log_file = settings.home / "logs" / f"serve-{service}-v{version}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    server, process = serving.start(service, version, model_dir, port=port, log_file=log_file)
    try:
        if expected is None:
            result = deployment.Verification(passed=False)
        else:
            result = deployment.verify_endpoint(server.url, service, rows, expected,
                                                cfg.deploy.latency_budget_ms,
                                                cfg.deploy.ready_timeout_secs, process)
    except Exception:
        serving.stop(server)
        raise
    if result.passed and cfg.deploy.keep_local_server:
        if old is not None:
            serving.stop(old)
        serving.record(server, service)
    else:  # a verification-only server, or a failed one: the old server (if any) keeps serving
        serving.stop(server)
    return {"passed": result.passed, "checks": result.checks, "endpoint": server.url}


def _deploy_kubernetes(cfg: RunConfig, manifest: dict[str, Any], service: str, canary: bool,
                       rows: pd.DataFrame, expected: pd.DataFrame | None) -> dict[str, Any]:
    from autokfp.serving import deployment

    cluster = deployment.KubernetesServing(cfg.deploy.namespace)
    applied = cluster.apply(manifest)
    result = deployment.Verification(passed=True)
    result.add("apply", True, f"InferenceService {cfg.deploy.namespace}/{service} {applied}")
    url = cluster.wait_ready(service, cfg.deploy.ready_timeout_secs)
    if url is None:
        result.add("ready", False, f"not Ready within {cfg.deploy.ready_timeout_secs}s")
    elif expected is not None:
        checked = deployment.verify_endpoint(url.rstrip("/"), service, rows, expected,
                                             cfg.deploy.latency_budget_ms, cfg.deploy.ready_timeout_secs)
        for check in checked.checks:
            result.add(check["check"], check["passed"], check["detail"])
    if canary:
        cluster.set_traffic(service, 100 if (result.passed and expected is not None) else 0)
    return {"passed": result.passed, "checks": result.checks, "endpoint": url}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
