"""Deployment: KServe, the rollout and the payload log."""

from __future__ import annotations

import logging
import os
from typing import Literal

from pydantic import Field, model_validator

from autokfp.config.base import _Strict

# one logger for the whole config package (its messages keep their name)
log = logging.getLogger("autokfp.config")


def resolve_target(configured: str) -> str:
    """Where a deploy with ``deploy.target`` ``configured`` goes: ``auto`` is
    ``AUTOKFP_DEPLOY_TARGET`` when set, else kubernetes inside a cluster, else local."""
    if configured != "auto":
        return configured
    if os.environ.get("AUTOKFP_DEPLOY_TARGET"):
        return os.environ["AUTOKFP_DEPLOY_TARGET"]
    return "kubernetes" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"


class DeploySpec(_Strict):
    namespace: str | None = Field(
        default=None,
        description="where the InferenceService goes; default: the run's own namespace (the "
                    "pod's, or the kubeconfig context's outside a cluster)")
    service_account: str = "autokfp-serving"
    canary_traffic_percent: int = Field(default=10, ge=0, le=100)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=3, ge=1)
    cpu: str = "1"
    memory: str = "2Gi"
    target: Literal["auto", "kubernetes", "local", "manifest"] = Field(
        default="auto",
        description="kubernetes: apply through the Kubernetes API; local: start the predictor on "
                    "this machine and verify it; manifest: only write the InferenceService; "
                    "auto: kubernetes inside a cluster, else local",
    )
    mode: Literal["auto", "serverless", "standard"] = Field(
        default="auto",
        description="KServe deployment mode (target kubernetes). serverless: Knative revisions, "
                    "a canary verified on its own tagged route then promoted; standard: "
                    "RawDeployment, a blue-green switch (a candidate InferenceService verified "
                    "before the serving one is switched); auto: serverless when the cluster "
                    "serves Knative, else standard")
    token_env: str | None = Field(
        default=None,
        description="environment variable holding a bearer token sent with smoke-test requests "
                    "(Istio/Kubeflow profile namespaces answer 403 without one; see "
                    "manifests/serving/authorization-policy.yaml)")
    strategy: Literal["canary", "ab", "shadow"] = Field(
        default="canary",
        description="how a version that replaces a serving one is rolled out. "
                    "canary: the new revision gets canary_traffic_percent while it is verified on "
                    "its own route, then 100 %. ab: after the same verification the split is kept "
                    "at ab_percent for ab_minutes (users are answered by both versions; the step "
                    "samples the split and watches the new revision), then the new revision is "
                    "verified alone again and promoted, or rolled back to 0 %. shadow: before any "
                    "user traffic, for shadow_minutes the live requests the prediction log "
                    "captures are replayed to the new revision (0 % of traffic; in standard mode, to the "
                    "verified candidate) and its answers compared with what users got; then the "
                    "canary (or the standard switch) as usual. In standard mode (no traffic split) "
                    "ab is split by the serving predictors: they send ab_percent of their JSON v1 and v2 "
                    "predictions to the verified candidate (see docs/serving.md)")
    ab_percent: int = Field(default=50, ge=1, le=99,
                            description="share of traffic the new version gets in an A/B split")
    ab_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60,
                              description="how long an A/B split is kept before the decision")
    ab_confidence: float = Field(
        default=0.95, gt=0.5, lt=1,
        description="confidence of the interval of the A/B outcome test (new minus old accuracy, "
                    "or mean absolute error, on the labelled rows each arm answered)")
    ab_margin: float = Field(
        default=0.02, ge=0, le=1,
        description="how much worse the new arm may be and still count as not worse: accuracy "
                    "points for a classifier, a share of the old arm's mean absolute error for a "
                    "regression")
    ab_min_rows: int = Field(
        default=100, ge=2,
        description="labelled ids (customers) each arm needs for the outcome test (labels from "
                    "monitoring.labels, joined by id); fewer: inconclusive")
    ab_inconclusive: Literal["promote", "rollback"] = Field(
        default="promote",
        description="what an inconclusive A/B outcome test (or one without labels) decides; a "
                    "significantly worse new arm is always rolled back")
    shadow_minutes: float = Field(default=30.0, gt=0, le=7 * 24 * 60,
                                  description="how long live traffic is mirrored to a shadow")
    shadow_min_agreement: float = Field(
        default=0.9, ge=0, le=1,
        description="a classifier's shadow must give the prediction users got for at least this "
                    "share of the mirrored rows, else the rollout stops at 0 % (a shadow that "
                    "errors on any live row stops it too)")
    payload_log: Literal["kserve", "predictor", "off"] = Field(
        default="kserve",
        description="how requests are captured for monitoring (target kubernetes). kserve: "
                    "KServe's payload logger (spec.predictor.logger, mode all) posts each request "
                    "and response as CloudEvents to the receiver (manifests/serving/"
                    "payload-log.yaml), which writes the prediction log, so serving pods need no "
                    "write access to the store; predictor: the predictor writes it itself; off: "
                    "nothing is captured. A local predictor always logs itself")
    payload_log_url: str | None = Field(
        default=None,
        description="the payload-log receiver's URL; default http://autokfp-payload-log."
                    "<namespace>.svc.cluster.local/v1/models/payload-log:predict")
    verify: bool = True
    smoke_rows: int = Field(default=50, ge=1, le=10_000)
    latency_budget_ms: float = Field(default=100.0, gt=0)
    ready_timeout_secs: int = Field(default=300, ge=10)
    keep_local_server: bool = Field(
        default=False, description="leave the verified local predictor running after the deploy step")
    local_port: int = Field(default=8080, ge=1024, le=65535)

    def target_namespace(self) -> str:
        """``namespace`` when set, else the namespace this run executes in."""
        from autokfp.settings import run_namespace

        return self.namespace or run_namespace()

    @model_validator(mode="after")
    def _replicas(self) -> DeploySpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self
