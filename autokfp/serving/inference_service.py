"""Build the KServe InferenceService that serves a registered model version.

The predictor runs our serving image (``autokfp-serving:<version>``); KServe's storage
initializer downloads the model folder from ``STORAGE_URI`` into ``/mnt/models`` before the
container starts. When a champion is already serving, the new version is rolled out as a
canary with ``canaryTrafficPercent``; the deploy step promotes or rolls back after
verification.
"""

from __future__ import annotations

from typing import Any

from autokfp.config import DeploySpec
from autokfp.settings import image

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"


def service_name(model_name: str) -> str:
    """A DNS-1035 name for the InferenceService (lowercase, '-', at most 45 characters)."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in model_name.lower()).strip("-")
    return (cleaned or "model")[:45].rstrip("-")


def build_inference_service(
    model_name: str,
    version: str,
    storage_uri: str,
    deploy: DeploySpec,
    canary: bool,
    serving_image: str | None = None,
) -> dict[str, Any]:
    """The InferenceService as a plain dict (camelCase, ready for YAML or the Kubernetes API)."""
    from kserve import (
        ApiClient,
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1PredictorSpec,
    )
    from kubernetes.client import V1Container, V1EnvVar, V1ObjectMeta, V1ResourceRequirements

    container = V1Container(
        name="kserve-container",
        image=serving_image or image("serving"),
        env=[
            V1EnvVar(name="STORAGE_URI", value=storage_uri),
            V1EnvVar(name="MODEL_DIR", value="/mnt/models"),
            V1EnvVar(name="MODEL_NAME", value=service_name(model_name)),
            V1EnvVar(name="MODEL_VERSION", value=str(version)),
        ],
        resources=V1ResourceRequirements(
            requests={"cpu": deploy.cpu, "memory": deploy.memory},
            limits={"cpu": deploy.cpu, "memory": deploy.memory},
        ),
    )
    predictor = V1beta1PredictorSpec(
        containers=[container],
        min_replicas=deploy.min_replicas,
        max_replicas=deploy.max_replicas,
        service_account_name=deploy.service_account,
        canary_traffic_percent=deploy.canary_traffic_percent if canary else None,
    )
    isvc = V1beta1InferenceService(
        api_version=KSERVE_API_VERSION,
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=service_name(model_name),
            namespace=deploy.namespace,
            labels={"app.kubernetes.io/managed-by": "autokfp", "autokfp/model": service_name(model_name)},
            annotations={"autokfp/model-name": model_name, "autokfp/model-version": str(version),
                         "serving.kserve.io/deploymentMode": "Serverless"},
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    return ApiClient().sanitize_for_serialization(isvc)
