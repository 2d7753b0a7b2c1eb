"""The Kubernetes manifests, Dockerfiles and image build script hang together."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from autokfp.settings import DEFAULT_IMAGE_REGISTRY, image

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
IMAGES = ("runtime", "training", "serving")
PLACEHOLDERS = {"", "REPLACE_ME"}
KUSTOMIZE_KINDS = {"Kustomization", "Component"}


def _yaml_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml"))


def _docs(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def _objects() -> list[tuple[Path, dict]]:
    return [
        (path, doc)
        for path in _yaml_files()
        for doc in _docs(path)
        if doc.get("kind") not in KUSTOMIZE_KINDS
    ]


def _find(kind: str, name: str) -> dict:
    matches = [d for _, d in _objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert match, "pyproject.toml has no [project] version"
    return str(Version(match.group(1)))


# --------------------------------------------------------------------------- manifests


def test_manifests_exist():
    names = {p.relative_to(MANIFESTS).as_posix() for p in _yaml_files()}
    assert {
        "base/kustomization.yaml",
        "base/namespace-config.yaml",
        "base/secrets-template.yaml",
        "base/rbac.yaml",
    } <= names
    assert (MANIFESTS / "README.md").is_file()
    assert (MANIFESTS / "gpu" / "README.md").is_file()
    assert {"monitoring/prometheus-rule.yaml", "serving/authorization-policy.yaml"} <= names
    assert (MANIFESTS / "monitoring" / "grafana-dashboard.json").is_file()


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_every_object_is_well_formed(path):
    docs = _docs(path)
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion/kind missing"
        if doc["kind"] in KUSTOMIZE_KINDS:
            continue
        name = (doc.get("metadata") or {}).get("name")
        assert name, f"{path}: {doc['kind']} has no metadata.name"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), f"bad name {name!r}"


def _kustomizations() -> list[Path]:
    return sorted(MANIFESTS.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: p.parent.name)
def test_kustomization_lists_files_that_exist(path):
    (doc,) = _docs(path)
    assert doc["kind"] in KUSTOMIZE_KINDS
    listed = list(doc.get("resources", [])) + list(doc.get("components", []))
    listed += [p["path"] for p in doc.get("patches", []) if isinstance(p, dict) and "path" in p]
    assert listed, f"{path} lists nothing"
    for entry in listed:
        assert (path.parent / entry).exists(), f"{path} lists {entry}, which does not exist"


def test_base_does_not_apply_the_secret_template():
    (doc,) = _docs(MANIFESTS / "base" / "kustomization.yaml")
    assert "secrets-template.yaml" not in doc.get("resources", [])
    assert "namespace" not in doc, "the namespace is chosen at apply time (-n) or in an overlay"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: p.parent.name)
def test_kustomize_builds(path):
    result = subprocess.run(
        ["kubectl", "kustomize", str(path.parent)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert all(d.get("kind") for d in yaml.safe_load_all(result.stdout) if d)


def test_no_secret_carries_a_real_value():
    secrets = [(p, d) for p, d in _objects() if d["kind"] == "Secret"]
    assert secrets, "expected the autokfp-credentials template"
    for path, secret in secrets:
        for key, value in (secret.get("stringData") or {}).items():
            assert str(value) in PLACEHOLDERS, f"{path}: stringData.{key} holds a real value"
        for key, value in (secret.get("data") or {}).items():
            decoded = base64.b64decode(str(value)).decode("utf-8", "replace")
            assert decoded in PLACEHOLDERS, f"{path}: data.{key} holds a real value"


def test_secret_template_says_to_use_kubectl():
    text = (MANIFESTS / "base" / "secrets-template.yaml").read_text(encoding="utf-8")
    assert "kubectl create secret generic autokfp-credentials" in text
    keys = set(_find("Secret", "autokfp-credentials")["stringData"])
    assert {"MLFLOW_TRACKING_TOKEN", "DATAHUB_GMS_TOKEN", "AWS_SECRET_ACCESS_KEY"} <= keys
    # a GCP key is a file in a Secret of its own, mounted by the compiled pipeline
    assert "kubectl create secret generic autokfp-gcp-key" in text and "key.json" in text


def test_config_map_holds_the_settings_autokfp_reads():
    data = _find("ConfigMap", "autokfp-config")["data"]
    assert {
        "MLFLOW_TRACKING_URI",
        "AUTOKFP_ARTIFACT_ROOT",
        "AUTOKFP_IMAGE_REGISTRY",
        "DATAHUB_GMS_URL",
    } <= set(data)
    assert data["AUTOKFP_IMAGE_REGISTRY"] == DEFAULT_IMAGE_REGISTRY
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    assert not any(re.search(r"TOKEN|PASSWORD|SECRET", k) for k in data), "secrets go in the Secret"


def test_pipeline_runner_may_manage_inference_services():
    role = _find("Role", "autokfp-pipeline-runner")
    rules = role["rules"]

    def verbs(group: str, resource: str) -> set[str]:
        return {
            verb
            for rule in rules
            if group in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert verbs("serving.kserve.io", "inferenceservices") >= {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
        "delete",  # the Standard-mode blue-green candidate
    }
    assert verbs("", "pods") >= {"get", "list"}
    assert verbs("", "events") >= {"get", "list"}
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)

    binding = _find("RoleBinding", "autokfp-pipeline-runner")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "autokfp-pipeline-runner",
    }
    for subject in binding["subjects"]:
        assert subject["kind"] == "ServiceAccount"
        _find("ServiceAccount", subject["name"])
    assert _find("ServiceAccount", "autokfp-serving")["automountServiceAccountToken"] is False


# What a step's pod does with the API when it runs as this account: the KFP v2 driver and
# launcher read the kfp-launcher ConfigMap and the object store Secret it names; Argo's
# executor watches and annotates its pod, reads its log and reports task results.
LAUNCHER_NEEDS = [
    ("", "configmaps", "get"), ("", "configmaps", "list"), ("", "configmaps", "watch"),
    ("", "secrets", "get"),
    ("", "pods", "get"), ("", "pods", "watch"), ("", "pods", "patch"), ("", "pods/log", "get"),
    ("argoproj.io", "workflowtaskresults", "create"),
    ("argoproj.io", "workflowtaskresults", "patch"),
]


@pytest.mark.parametrize(("group", "resource", "verb"), LAUNCHER_NEEDS)
def test_pipeline_runner_may_do_what_the_kfp_launcher_does(group, resource, verb):
    rules = _find("Role", "autokfp-pipeline-runner")["rules"]
    assert any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               for r in rules), f"the launcher cannot {verb} {resource}"


def test_pipeline_runner_reads_only_the_named_object_store_secret():
    rules = _find("Role", "autokfp-pipeline-runner")["rules"]
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rules and all(r["verbs"] == ["get"] and r.get("resourceNames")
                                for r in secret_rules)
    assert "mlpipeline-minio-artifact" in secret_rules[0]["resourceNames"]


def test_every_key_the_tasks_read_is_in_the_config_map_and_the_secret_template():
    """Without ``optional`` env (KFP 2.2), a key missing from either stops every pod. And
    every key of the ConfigMap reaches the tasks: AUTOKFP_IMAGE_REGISTRY did not, so an
    AutoKeras champion's InferenceService named ghcr.io/autokfp's serving-keras image
    whatever the namespace's registry (found by make test-cluster)."""
    from autokfp.pipelines.cluster import CONFIG_KEYS, SECRET_KEYS

    assert set(CONFIG_KEYS) == set(_find("ConfigMap", "autokfp-config")["data"])
    assert set(SECRET_KEYS) <= set(_find("Secret", "autokfp-credentials")["stringData"])
    text = (MANIFESTS / "base" / "secrets-template.yaml").read_text(encoding="utf-8")
    command = text[text.index("kubectl create secret generic autokfp-credentials"):]
    command = command[:command.index("\n#\n")]
    for key in SECRET_KEYS:
        assert f"--from-literal={key}=" in command, key


def test_gpu_check_uses_the_documented_node_settings():
    job = _find("Job", "autokfp-gpu-check")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {
        "key": "nvidia.com/gpu",
        "operator": "Equal",
        "value": "present",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].startswith(f"{DEFAULT_IMAGE_REGISTRY}/autokfp-training:")
    readme = (MANIFESTS / "gpu" / "README.md").read_text(encoding="utf-8")
    assert "nvidia.com/gpu.present=true" in readme
    assert "nvidia.com/gpu=present:NoSchedule" in readme


def _images_in(value) -> list[str]:
    if isinstance(value, dict):
        found = [value["image"]] if isinstance(value.get("image"), str) else []
        return found + [i for v in value.values() for i in _images_in(v)]
    if isinstance(value, list):
        return [i for v in value for i in _images_in(v)]
    return []


def test_manifest_images_carry_a_placeholder_tag_that_kustomize_sets():
    """Images are tagged <version>-<code fingerprint> (settings.image_tag), which a checked-in
    file cannot follow: every autokfp image in the manifests carries the placeholder tag,
    which no build gives, and each kustomization that deploys one says how to set the built
    tag. A file naming a real tag (0.1.0 used to be named) would run whatever image of other
    code had it."""
    found = {}
    for path, doc in _objects():
        for ref in _images_in(doc):
            if "/autokfp-" in ref:
                found.setdefault(path.relative_to(MANIFESTS).as_posix(), []).append(ref)
    assert set(found) == {"serving/servingruntime.yaml", "serving/payload-log.yaml",
                          "h2o/h2o-cluster.yaml", "gpu/gpu-check-job.yaml"}, found
    for where, refs in found.items():
        for ref in refs:
            repository, tag = ref.rsplit(":", 1)
            assert tag == "set-with-kustomize", (where, ref)
            kind = repository.rsplit("/autokfp-", 1)[1]
            assert image(kind, registry=DEFAULT_IMAGE_REGISTRY).rsplit(":", 1)[0] == repository
            assert tag != image(kind).rsplit(":", 1)[1]
        kustomization = (MANIFESTS / where).with_name("kustomization.yaml").read_text(
            encoding="utf-8")
        assert "kustomize edit set image" in kustomization and "--print-tags" in kustomization


# --------------------------------------------------------------------------- images


# Dockerfile rules: tests/engine/test_images.py


def _print_tags(registry: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AUTOKFP_IMAGE_REGISTRY"}
    if registry is not None:
        env["AUTOKFP_IMAGE_REGISTRY"] = registry
    env["PYTHON"] = sys.executable
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_images.sh"), "--print-tags"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())


@pytest.mark.parametrize("registry", [None, "europe-docker.pkg.dev/proj/ml/"])
def test_build_script_tags_match_settings_image(registry, monkeypatch):
    monkeypatch.delenv("AUTOKFP_IMAGE_REGISTRY", raising=False)
    tags = _print_tags(registry)
    version = _project_version()
    # and serving-keras: the serving target with TensorFlow, for AutoKeras champions
    assert tags == {name: image(name, registry=registry, version=version)
                    for name in (*IMAGES, "serving-keras")}
    script = (ROOT / "scripts" / "build_images.sh").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    # the tag is settings.image_tag's (version and code fingerprint), computed by that function
    assert "image_tag(sys.argv[1])" in script and '--build-arg "IMAGE_TAG=$TAG"' in script
    # every image is a target of one Dockerfile
    dockerfile = ROOT / "images" / "Dockerfile"
    for name in IMAGES:
        assert f"AS {name}" in dockerfile.read_text(encoding="utf-8"), name
        assert f"autokfp-{name}" in tags[name]


def test_build_script_rejects_unknown_options():
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_images.sh"), "--image", "gpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "runtime, training, serving or serving-keras" in result.stderr
