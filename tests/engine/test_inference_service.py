"""The KServe InferenceService (and ServingRuntime) the deploy step writes."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import kserve
import kubernetes.client
import pytest
import yaml

from autokfp import __version__
from autokfp.config import DeploySpec
from autokfp.errors import DeploymentError
from autokfp.serving.inference_service import (
    KSERVE_API_VERSION,
    build_inference_service,
    build_serving_runtime,
    service_name,
    to_model,
    validate_manifest,
)
from autokfp.settings import code_fingerprint, image, image_tag

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
STORAGE = "gs://autokfp-models/mlartifacts/churn/abc123/artifacts/model"


def _deploy(**overrides: Any) -> DeploySpec:
    return DeploySpec(**{"namespace": "team-a", "service_account": "sa-serve", "cpu": "2",
                         "memory": "3Gi", "min_replicas": 2, "max_replicas": 5,
                         "canary_traffic_percent": 20, **overrides})


def _build(canary: bool = False, name: str = "churn", **kwargs: Any) -> dict[str, Any]:
    return build_inference_service(name, "7", STORAGE, _deploy(), canary=canary, **kwargs)


# A deserialiser over KServe's generated models (attribute_map / openapi_types), falling back
# to the Kubernetes models for the core types; kserve.ApiClient().deserialize stops at
# V1ObjectMeta because it only looks in kserve.models.
def _model_class(name: str) -> Any:
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def _deserialize(value: Any, type_name: str) -> Any:
    if value is None:
        return None
    if type_name.startswith("list["):
        return [_deserialize(v, type_name[5:-1]) for v in value]
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return {k: _deserialize(v, inner) for k, v in value.items()}
    cls = _model_class(type_name)
    if cls is None:
        return value
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    assert not unknown, f"{type_name} has no field(s) {unknown}"
    kwargs = {by_json[k]: _deserialize(v, cls.openapi_types[by_json[k]]) for k, v in value.items()}
    return cls(**kwargs)


# ------------------------------------------------------------------------------ shape


def test_manifest_is_a_kserve_inference_service() -> None:
    manifest = _build()
    assert manifest["apiVersion"] == KSERVE_API_VERSION == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == "churn"
    assert manifest["metadata"]["namespace"] == "team-a"
    assert manifest["metadata"]["annotations"]["autokfp/model-version"] == "7"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "autokfp"


def test_predictor_carries_storage_resources_replicas_and_account() -> None:
    predictor = _build()["spec"]["predictor"]
    assert predictor["minReplicas"] == 2
    assert predictor["maxReplicas"] == 5
    assert predictor["serviceAccountName"] == "sa-serve"
    model = predictor["model"]
    assert model["storageUri"] == STORAGE
    assert model["modelFormat"]["name"] == "autokfp"
    assert model["resources"] == {"requests": {"cpu": "2", "memory": "3Gi"},
                                  "limits": {"cpu": "2", "memory": "3Gi"}}
    env = {e["name"]: e["value"] for e in model["env"]}
    assert env["MODEL_VERSION"] == "7"


def test_canary_only_when_asked() -> None:
    assert "canaryTrafficPercent" not in _build(canary=False)["spec"]["predictor"]
    assert _build(canary=True)["spec"]["predictor"]["canaryTrafficPercent"] == 20
    zero = build_inference_service("churn", "7", STORAGE, _deploy(canary_traffic_percent=0),
                                   canary=True)
    assert zero["spec"]["predictor"]["canaryTrafficPercent"] == 0


@pytest.mark.parametrize("name", ["churn", "Churn_Model v2!!", "2024-churn", "---", "ÄÖÜ model",
                                  "x" * 80, "a." * 40, "model-", "UPPER.case/with:colons"])
def test_service_name_is_dns_1035(name: str) -> None:
    built = service_name(name)
    assert DNS_1035.match(built), built
    assert len(built) <= 45
    manifest = build_inference_service(name, "1", STORAGE, _deploy(), canary=False)
    assert manifest["metadata"]["name"] == built
    assert manifest["metadata"]["annotations"]["autokfp/model-name"] == name  # original kept


def test_service_name_keeps_readable_names() -> None:
    assert service_name("churn-model") == "churn-model"
    assert service_name("Churn_Model v2") == "churn-model-v2"
    assert service_name("x" * 80) == "x" * 45


def test_image_tag_follows_the_package_version_and_the_code(monkeypatch) -> None:
    monkeypatch.delenv("AUTOKFP_IMAGE_REGISTRY", raising=False)
    expected = image("serving")
    assert expected.endswith(":" + __version__.replace("+", "-") + "-" + code_fingerprint())
    assert "/autokfp-serving:" in expected
    runtime = build_serving_runtime()
    assert runtime["kind"] == "ServingRuntime"
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == expected
    formats = [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    model = _build()["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] in formats
    assert model["runtime"] == runtime["metadata"]["name"]
    # without an override the service uses the runtime's (versioned) image
    assert "image" not in model


def test_image_registry_and_override(monkeypatch) -> None:
    monkeypatch.setenv("AUTOKFP_IMAGE_REGISTRY", "registry.example.com/ml/")
    assert image("serving") == f"registry.example.com/ml/autokfp-serving:{image_tag()}"
    assert build_serving_runtime()["spec"]["containers"][0]["image"] == image("serving")
    custom = _build(serving_image="registry.example.com/ml/autokfp-serving:dev")
    assert custom["spec"]["predictor"]["model"]["image"] == (
        "registry.example.com/ml/autokfp-serving:dev")


# ----------------------------------------------------------------- against the KServe API


def test_every_predictor_key_is_a_predictor_spec_field() -> None:
    predictor = _build(canary=True)["spec"]["predictor"]
    fields = set(kserve.V1beta1PredictorSpec.attribute_map.values())
    assert set(predictor) <= fields, sorted(set(predictor) - fields)
    model_fields = set(kserve.V1beta1ModelSpec.attribute_map.values())
    assert set(predictor["model"]) <= model_fields, sorted(set(predictor["model"]) - model_fields)


@pytest.mark.parametrize("canary", [False, True])
def test_round_trips_through_kserve_models(canary: bool) -> None:
    manifest = _build(canary=canary)
    isvc = _deserialize(manifest, "V1beta1InferenceService")
    assert isinstance(isvc, kserve.V1beta1InferenceService)
    assert isinstance(isvc.spec.predictor, kserve.V1beta1PredictorSpec)
    assert isvc.spec.predictor.model.storage_uri == STORAGE
    assert isvc.spec.predictor.canary_traffic_percent == (20 if canary else None)
    assert kserve.ApiClient().sanitize_for_serialization(isvc) == manifest
    # and through YAML, as the deploy step writes it
    assert yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False)) == manifest


def test_validation_rejects_misspelt_and_mistyped_fields() -> None:
    manifest = _build()
    validate_manifest(manifest)  # the built one is valid

    misspelt = copy.deepcopy(manifest)
    misspelt["spec"]["predictor"]["canaryTrafficPercnt"] = 10
    with pytest.raises(DeploymentError, match="canaryTrafficPercnt"):
        validate_manifest(misspelt)

    mistyped = copy.deepcopy(manifest)
    mistyped["spec"]["predictor"]["minReplicas"] = "two"
    with pytest.raises(DeploymentError, match="minReplicas"):
        validate_manifest(mistyped)

    wrong_kind = copy.deepcopy(manifest)
    wrong_kind["kind"] = "Deployment"
    with pytest.raises(DeploymentError, match="InferenceService"):
        validate_manifest(wrong_kind)


def test_the_checked_in_serving_runtime_is_the_built_one() -> None:
    checked_in = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests" / "serving"
                                 / "servingruntime.yaml").read_text())
    built = build_serving_runtime()
    for runtime in (checked_in, built):  # the tag follows the version; kustomize may pin it
        runtime["spec"]["containers"][0].pop("image")
    assert checked_in == built


def test_serverless_has_tagged_routes_and_a_canary_standard_has_neither() -> None:
    serverless = build_inference_service("churn", "7", STORAGE, _deploy(), canary=True,
                                         mode="serverless")
    annotations = serverless["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    assert annotations["serving.kserve.io/enable-tag-routing"] == "true"
    assert serverless["spec"]["predictor"]["canaryTrafficPercent"] == 20
    standard = build_inference_service("churn", "7", STORAGE, _deploy(), canary=True,
                                       mode="standard", name="churn-candidate")
    annotations = standard["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert "serving.kserve.io/enable-tag-routing" not in annotations
    assert "canaryTrafficPercent" not in standard["spec"]["predictor"]  # no split without Knative
    assert standard["metadata"]["name"] == "churn-candidate"
    for manifest in (serverless, standard):
        validate_manifest(manifest)
        assert kserve.ApiClient().sanitize_for_serialization(to_model(manifest)) == manifest


def test_to_model_refuses_unknown_fields() -> None:
    manifest = _build()
    manifest["spec"]["predictor"]["canaryTrafficPercnt"] = 1
    with pytest.raises(DeploymentError, match="canaryTrafficPercnt"):
        to_model(manifest)


def test_kserve_payload_logger_captures_requests_by_default() -> None:
    """deploy.payload_log kserve (default): KServe's agent posts requests and responses to the
    receiver of manifests/serving/payload-log.yaml, and the predictor writes no log (its pods
    need no write access to the store)."""
    spec = _build()["spec"]["predictor"]
    assert spec["logger"] == {
        "mode": "all",
        "url": "http://autokfp-payload-log.team-a.svc.cluster.local/v1/models/payload-log:predict"}
    assert {"name": "AUTOKFP_PREDICTION_LOG", "value": "off"} in spec["model"]["env"]
    to_model(build_inference_service("churn", "7", STORAGE, _deploy(), canary=False))

    own = build_inference_service("churn", "7", STORAGE, _deploy(payload_log_url="http://sink/x"),
                                  canary=False)["spec"]["predictor"]
    assert own["logger"]["url"] == "http://sink/x"
    predictor = build_inference_service("churn", "7", STORAGE, _deploy(payload_log="predictor"),
                                        canary=False)["spec"]["predictor"]
    assert "logger" not in predictor
    assert all(e["name"] != "AUTOKFP_PREDICTION_LOG" for e in predictor["model"]["env"])
    off = build_inference_service("churn", "7", STORAGE, _deploy(payload_log="off"),
                                  canary=False)["spec"]["predictor"]
    assert "logger" not in off
    assert {"name": "AUTOKFP_PREDICTION_LOG", "value": "off"} in off["model"]["env"]


def test_the_payload_log_receiver_manifest_serves_the_default_url() -> None:
    """The receiver's Service is the host of the default logger URL, on port 80 → 8080."""
    root = Path(__file__).resolve().parents[2] / "manifests" / "serving"
    docs = list(yaml.safe_load_all((root / "payload-log.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert service["metadata"]["name"] == "autokfp-payload-log"
    assert service["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 8080}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "autokfp.serving.payload_log"]
    # the serving image, its tag set with kustomize (test_manifests.py)
    assert container["image"].rsplit(":", 1)[0] == image("serving").rsplit(":", 1)[0]
    assert "payload-log.yaml" in (root / "kustomization.yaml").read_text()


def test_the_predictor_gets_what_it_needs_to_log_to_minio() -> None:
    """KServe gives S3 credentials to the storage initializer only. Every predictor gets the
    ConfigMap's store and endpoint; only one that writes its own prediction log
    (payload_log: predictor) gets the Secret's keys, and the payload-log receiver, which
    writes for all the others, gets the endpoint and keys too (all optional: gs:// has none)."""
    (container,) = build_serving_runtime()["spec"]["containers"]
    refs = {item["name"]: item["valueFrom"] for item in container["env"]}
    assert set(refs) == {"AUTOKFP_ARTIFACT_ROOT", "AWS_ENDPOINT_URL"}  # no keys by default
    for key in refs:
        assert refs[key]["configMapKeyRef"] == {"name": "autokfp-config", "key": key,
                                                "optional": True}

    def secrets(payload_log: str) -> dict[str, Any]:
        env = _build_with(payload_log)["spec"]["predictor"]["model"]["env"]
        return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env
                if "secretKeyRef" in e.get("valueFrom", {})}

    for key, ref in secrets("predictor").items():
        assert ref == {"name": "autokfp-credentials", "key": key, "optional": True}
    assert set(secrets("predictor")) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secrets("kserve") == {} and secrets("off") == {}
    validate_manifest(_build_with("predictor"))

    root = Path(__file__).resolve().parents[2] / "manifests" / "serving"
    docs = list(yaml.safe_load_all((root / "payload-log.yaml").read_text()))
    receiver = next(d for d in docs if d["kind"] == "Deployment")
    env = receiver["spec"]["template"]["spec"]["containers"][0]["env"]
    names = {e["name"]: e.get("valueFrom", {}) for e in env}
    assert names["AWS_ENDPOINT_URL"]["configMapKeyRef"]["key"] == "AWS_ENDPOINT_URL"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(names)


def _build_with(payload_log: str) -> dict[str, Any]:
    return build_inference_service("churn", "7", STORAGE, _deploy(payload_log=payload_log),
                                   canary=False)


def test_an_autokeras_champion_is_served_by_the_image_with_tensorflow(monkeypatch) -> None:
    """The lean serving image has no TensorFlow: the InferenceService of a model version
    whose engine needs it names serving-keras (built by scripts/build_images.sh)."""
    import subprocess

    from autokfp.serving.rollout import serving_image_for

    monkeypatch.setenv("AUTOKFP_IMAGE_REGISTRY", "registry.example.com/ml")
    keras_image = f"registry.example.com/ml/autokfp-serving-keras:{image_tag()}"
    assert serving_image_for({"engine": "autokeras", "task": "binary"}) == keras_image
    assert serving_image_for({"engine": "h2o"}) is None  # the runtime's lean image
    assert serving_image_for({}) is None and serving_image_for(None) is None
    service = _build(serving_image=serving_image_for({"engine": "autokeras"}))
    assert service["spec"]["predictor"]["model"]["image"] == keras_image
    tags = subprocess.run(["bash", "scripts/build_images.sh", "--print-tags"], check=True,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ}).stdout.split("\n")
    assert f"serving-keras {keras_image}" in tags
