"""Build the KServe InferenceService that serves a registered model version.

The predictor declares model format ``autokfp``, served by our ServingRuntime (the
``autokfp-serving:<version>-<code>`` image running ``python -m autokfp.serving``); KServe's storage
initializer downloads the model folder from ``storageUri`` into ``/mnt/models`` before the
container starts. When a champion is already serving, the new version is rolled out as a
canary with ``canaryTrafficPercent``; the deploy step promotes or rolls back after
verification.
"""

from __future__ import annotations

from typing import Any

from autokfp.config import DeploySpec
from autokfp.settings import image

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
MODEL_FORMAT = "autokfp"
RUNTIME_NAME = "autokfp"
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
# deploy.mode -> KServe's deploymentMode annotation (Standard is called RawDeployment up to
# KServe 0.14 and still accepted under that name by newer controllers)
# the predictor's /metrics (autokfp_* and KServe's own), on the container port
PAYLOAD_LOG_SERVICE = "autokfp-payload-log"  # manifests/serving/payload-log.yaml
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                      "prometheus.io/path": "/metrics"}
DEPLOYMENT_MODES = {"serverless": "Serverless", "standard": "RawDeployment"}


def service_name(model_name: str) -> str:
    """A DNS-1035 name for the InferenceService (lowercase, '-', at most 45 characters)."""
    cleaned = "".join(ch if ch.isascii() and ch.isalnum() else "-"
                      for ch in model_name.lower()).strip("-")
    if not cleaned[:1].isalpha():  # DNS-1035 names start with a letter ("2024-churn" is valid config)
        cleaned = f"model-{cleaned}" if cleaned else "model"
    return cleaned[:45].rstrip("-")


def payload_log_url(deploy: DeploySpec) -> str:
    """Where KServe's payload logger sends its CloudEvents: ``deploy.payload_log_url``, else
    the receiver of ``manifests/serving/payload-log.yaml`` in the service's namespace."""
    if deploy.payload_log_url:
        return deploy.payload_log_url
    return (f"http://{PAYLOAD_LOG_SERVICE}.{deploy.target_namespace()}.svc.cluster.local"
            "/v1/models/payload-log:predict")


def _predictor_env_and_logger(deploy: DeploySpec, version: str) -> tuple[list[Any], Any]:
    """The predictor's environment and KServe's payload logger (``None`` unless
    ``deploy.payload_log`` is ``kserve``)."""
    from kserve import V1beta1LoggerSpec
    from kubernetes.client import V1EnvVar, V1EnvVarSource, V1SecretKeySelector

    env = [V1EnvVar(name="MODEL_VERSION", value=str(version))]
    logger = None
    if deploy.payload_log == "kserve":  # KServe's agent captures requests (payload_log.py)
        logger = V1beta1LoggerSpec(mode="all", url=payload_log_url(deploy))
    if deploy.payload_log != "predictor":  # then the pods need no write access to the store
        env.append(V1EnvVar(name="AUTOKFP_PREDICTION_LOG", value="off"))
    else:  # the predictor writes the log itself: S3/MinIO keys (optional: gs:// needs none)
        env += [V1EnvVar(name=key, value_from=V1EnvVarSource(secret_key_ref=V1SecretKeySelector(
                    name="autokfp-credentials", key=key, optional=True)))
                for key in PREDICTOR_SECRET_KEYS]
    return env, logger


def build_inference_service(
    model_name: str,
    version: str,
    storage_uri: str,
    deploy: DeploySpec,
    canary: bool,
    serving_image: str | None = None,
    mode: str = "serverless",
    name: str | None = None,
) -> dict[str, Any]:
    """The InferenceService as a plain dict (camelCase, ready for YAML or the Kubernetes API).

    The predictor names model format ``autokfp``, served by the ``autokfp`` ServingRuntime
    (``manifests/serving``); KServe's storage initializer downloads ``storageUri`` into
    ``/mnt/models``. ``serving_image`` overrides the runtime's image for this service only.
    ``mode`` is the resolved ``deploy.mode`` (``serverless``: Knative revisions, a canary
    share and tagged routes, so the ``latest`` revision can be smoke-tested alone;
    ``standard``: KServe's RawDeployment, no traffic split). ``name`` overrides the service
    name (the blue-green candidate).
    """
    from kserve import (
        ApiClient,
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )
    from kubernetes.client import V1ObjectMeta, V1ResourceRequirements

    name = name or service_name(model_name)
    serverless = mode == "serverless"
    env, logger = _predictor_env_and_logger(deploy, version)
    model = V1beta1ModelSpec(
        name="kserve-container",
        model_format=V1beta1ModelFormat(name=MODEL_FORMAT, version="1"),
        runtime=RUNTIME_NAME,
        storage_uri=storage_uri,
        protocol_version="v2",
        image=serving_image,
        env=env,
        resources=V1ResourceRequirements(
            requests={"cpu": deploy.cpu, "memory": deploy.memory},
            limits={"cpu": deploy.cpu, "memory": deploy.memory},
        ),
    )
    predictor = V1beta1PredictorSpec(
        model=model,
        min_replicas=deploy.min_replicas,
        max_replicas=deploy.max_replicas,
        service_account_name=deploy.service_account,
        canary_traffic_percent=deploy.canary_traffic_percent if canary and serverless else None,
        annotations=dict(SCRAPE_ANNOTATIONS),
        labels={"app.kubernetes.io/managed-by": "autokfp"},  # pods (AuthorizationPolicy selector)
        logger=logger,
    )
    annotations = {"autokfp/model-name": model_name, "autokfp/model-version": str(version),
                   "serving.kserve.io/deploymentMode": DEPLOYMENT_MODES[mode],
                   "serving.kserve.io/enable-prometheus-scraping": "true"}
    if serverless:  # latest-/prev- routes: each revision reachable alone (see serving.cluster)
        annotations[TAG_ROUTING] = "true"
    isvc = V1beta1InferenceService(
        api_version=KSERVE_API_VERSION,
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=name,
            namespace=deploy.target_namespace(),
            labels={"app.kubernetes.io/managed-by": "autokfp", "autokfp/model": name},
            annotations=annotations,
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    manifest = ApiClient().sanitize_for_serialization(isvc)
    validate_manifest(manifest)
    return manifest


# What every predictor reads from the namespace's ConfigMap: the artifact store and, for
# S3/MinIO, its endpoint (optional: a gs:// namespace has none).
PREDICTOR_CONFIG_KEYS = ("AUTOKFP_ARTIFACT_ROOT", "AWS_ENDPOINT_URL")
# The S3 keys from the Secret, given only to a predictor that writes its own prediction log
# (deploy.payload_log: predictor): KServe hands its S3 credentials to the storage initializer
# alone, and with the payload logger (the default) only the receiver writes to the store.
PREDICTOR_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _predictor_env() -> list[dict[str, Any]]:
    return [{"name": key, "valueFrom": {"configMapKeyRef": {"name": "autokfp-config", "key": key,
                                                            "optional": True}}}
            for key in PREDICTOR_CONFIG_KEYS]


def build_serving_runtime(serving_image: str | None = None) -> dict[str, Any]:
    """The ``autokfp`` ServingRuntime: our predictor image for model format ``autokfp``."""
    manifest = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": RUNTIME_NAME, "labels": {"app.kubernetes.io/part-of": "autokfp"}},
        "spec": {
            "annotations": dict(SCRAPE_ANNOTATIONS),
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v1", "v2"],
            "containers": [{
                "name": "kserve-container",
                "image": serving_image or image("serving"),
                "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"],
                "env": _predictor_env(),
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080},
                                   "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8080},
                                  "periodSeconds": 10, "initialDelaySeconds": 30},
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                              "limits": {"cpu": "1", "memory": "2Gi"}},
            }],
        },
    }
    validate_serving_runtime(manifest)
    return manifest


def validate_serving_runtime(manifest: dict[str, Any]) -> None:
    """Check a ServingRuntime against KServe's own API models (see ``validate_manifest``)."""
    from kserve import V1alpha1ServingRuntime

    from autokfp.errors import DeploymentError

    problems: list[str] = []
    _check_model(manifest, V1alpha1ServingRuntime, "", problems)
    if problems:
        raise DeploymentError("invalid ServingRuntime: " + "; ".join(problems))


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Check every field of an InferenceService against KServe's own API models.

    The kserve SDK's models are generated from the InferenceService CRD's OpenAPI schema;
    walking them rejects unknown or misspelt fields (``canaryTrafficPercnt``) and values of
    the wrong JSON type before anything is sent to a cluster.
    """
    from kserve import V1beta1InferenceService

    from autokfp.errors import DeploymentError

    problems: list[str] = []
    _check_model(manifest, V1beta1InferenceService, "", problems)
    if manifest.get("apiVersion") != KSERVE_API_VERSION or manifest.get("kind") != "InferenceService":
        problems.append(f"apiVersion/kind must be {KSERVE_API_VERSION}/InferenceService")
    if problems:
        raise DeploymentError("invalid InferenceService: " + "; ".join(problems))


def to_model(manifest: dict[str, Any]) -> Any:
    """The InferenceService dict as KServe's ``V1beta1InferenceService`` (what
    ``KServeClient`` sends); unknown fields raise, as in ``validate_manifest``."""
    from kserve import V1beta1InferenceService

    return _deserialize(manifest, V1beta1InferenceService.__name__)


def _deserialize(value: Any, type_name: str) -> Any:
    if value is None:
        return None
    if type_name.startswith("list["):
        return [_deserialize(v, type_name[5:-1]) for v in value]
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return {k: _deserialize(v, inner) for k, v in value.items()}
    cls = _model_class(type_name)
    if cls is None or not isinstance(value, dict):
        return value
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    if unknown:
        from autokfp.errors import DeploymentError

        raise DeploymentError(f"invalid InferenceService: {type_name} has no field(s) {unknown}")
    return cls(**{by_json[k]: _deserialize(v, cls.openapi_types[by_json[k]])
                  for k, v in value.items()})


_PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object,
               "datetime": str, "date": str}


def _model_class(name: str) -> Any:
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def _check_value(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _check_value(item, type_name[5:-1], f"{path}[{i}]", problems)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping")
            return
        inner = type_name[5:-1].split(",", 1)[1].strip()
        for key, item in value.items():
            _check_value(item, inner, f"{path}.{key}", problems)
        return
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        if type_name == "int" and isinstance(value, bool) or not isinstance(value, expected):
            problems.append(f"{path}: expected {type_name}, got {type(value).__name__}")
        return
    cls = _model_class(type_name)
    if cls is None:  # e.g. IntOrString / Quantity: any scalar is accepted by the API
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object ({type_name})")
        return
    _check_model(value, cls, path, problems)


def _check_model(value: dict[str, Any], cls: Any, path: str, problems: list[str]) -> None:
    by_json_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        attr = by_json_name.get(key)
        where = f"{path}.{key}" if path else key
        if attr is None:
            problems.append(f"{where}: not a field of {cls.__name__} (fields: {sorted(by_json_name)})")
            continue
        _check_value(item, cls.openapi_types[attr], where, problems)
