"""The ``kubernetes`` target: the InferenceService applied through the Kubernetes API.

A version that replaces a serving one is a canary; after verification it gets 100 % of the
traffic, or 0 % (all traffic stays on the previous revision).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.serving import deployment
from autokfp.serving.deployment import Verification
from autokfp.serving.targets.base import Release, register_target


@register_target("kubernetes")
class KubernetesTarget:
    rolls_out = True

    def __init__(self, cfg: RunConfig, settings: Any):
        self.cfg = cfg

    def roll_out(self, release: Release, rows: pd.DataFrame,
                 expected: pd.DataFrame | None) -> Verification:
        deploy, service = self.cfg.deploy, release.service
        cluster = deployment.KubernetesServing(deploy.target_namespace())
        applied = cluster.apply(release.manifest)
        result = Verification(passed=True)
        result.add("apply", True, f"InferenceService {deploy.target_namespace()}/{service} {applied}")
        url = cluster.wait_ready(service, deploy.ready_timeout_secs)
        if url is None:
            result.add("ready", False, f"not Ready within {deploy.ready_timeout_secs}s")
        elif expected is not None:
            checked = deployment.verify_endpoint(url.rstrip("/"), service, rows, expected,
                                                 deploy.latency_budget_ms,
                                                 deploy.ready_timeout_secs)
            for check in checked.checks:
                result.add(check["check"], check["passed"], check["detail"])
        if release.canary:
            cluster.set_traffic(service, 100 if (result.passed and expected is not None) else 0)
        result.endpoint = url
        return result
