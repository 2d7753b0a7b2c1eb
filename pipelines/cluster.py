"""Cluster-only task settings: GPU requests, scheduling, configuration and secrets.

They compile into the pipeline YAML (the Kubernetes platform spec) and are ignored by
kfp.local. Secrets are referenced by name only: their values never enter the YAML.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kfp import kubernetes

# environment variables every task reads from the autokfp-config ConfigMap (all its keys;
# AUTOKFP_IMAGE_REGISTRY names the image an AutoKeras champion's InferenceService gets)
CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AUTOKFP_MLFLOW_ARTIFACT_ROOT",
               "DATAHUB_GMS_URL", "AWS_ENDPOINT_URL", "AUTOKFP_H2O_CLUSTER_URL",
               "AUTOKFP_H2O_IMPORT_ROOT", "AUTOKFP_IMAGE_REGISTRY")
# and from the autokfp-credentials Secret
SECRET_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
               "DATAHUB_GMS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "AUTOKFP_AUDIT_KEY")  # signs the audit trail's anchor (governance/audit.py)
# where a GCP service-account key Secret is mounted (its key ``key.json``)
GCP_KEY_DIR = "/var/secrets/gcp"
GCP_KEY_FILE = "key.json"


@dataclass
class ClusterOptions:
    """How compiled tasks are scheduled and configured in the cluster."""

    gpu_resource: str = "nvidia.com/gpu"
    gpus_per_training_task: int = 1
    gpu_node_selector: dict[str, str] = field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_tolerations: list[dict[str, str]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    # engines trained at once (dsl.ParallelFor parallelism); 0: all of them. kfp.local is
    # given 1: on one machine the engines would only take CPU and memory from each other
    training_parallelism: int = 0
    # drift-monitoring passes the run's scheduled time (dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_
    # PLACEHOLDER) to its window; kfp.local 2.17 cannot resolve that placeholder (IndexError
    # in placeholder_utils), so local runs leave it out and the window ends now
    schedule_time: bool = True
    training_cpu: str = "4"
    training_memory: str = "16G"
    task_cpu: str = "1"
    task_memory: str = "4G"
    config_map: str = "autokfp-config"
    secret: str = "autokfp-credentials"
    # A Secret whose key ``key.json`` is a GCP service-account key, mounted as a file for
    # gs:// (GOOGLE_APPLICATION_CREDENTIALS points at it). None: Workload Identity.
    gcp_secret: str | None = None
    # Mark the ConfigMap/Secret references ``optional``. KFP backends before 2.5 (Kubeflow
    # 1.9) reject that field ("unknown field optional"), so it is off: the ConfigMap and the
    # Secret must then exist and hold every key (an empty value is fine).
    optional_env: bool = False

    @classmethod
    def from_env(cls) -> ClusterOptions:
        """Defaults, overridden by AUTOKFP_GPU_NODE_SELECTOR ("k=v,k2=v2"), AUTOKFP_GPU_COUNT,
        AUTOKFP_GPU_TOLERATION ("key:effect", or "none"), AUTOKFP_CONFIG_MAP, AUTOKFP_SECRET,
        AUTOKFP_GCP_SECRET (mount a service-account key) and AUTOKFP_OPTIONAL_ENV=true (KFP
        backend 2.5 or later only)."""
        options = cls()
        if selector := os.environ.get("AUTOKFP_GPU_NODE_SELECTOR"):
            options.gpu_node_selector = dict(
                pair.split("=", 1) for pair in selector.split(",") if "=" in pair)
        if count := os.environ.get("AUTOKFP_GPU_COUNT"):
            options.gpus_per_training_task = int(count)
        if toleration := os.environ.get("AUTOKFP_GPU_TOLERATION"):
            if toleration == "none":
                options.gpu_tolerations = []
            else:
                key, _, effect = toleration.partition(":")
                options.gpu_tolerations = [{"key": key, "operator": "Exists",
                                            "effect": effect or "NoSchedule"}]
        options.config_map = os.environ.get("AUTOKFP_CONFIG_MAP", options.config_map)
        options.secret = os.environ.get("AUTOKFP_SECRET", options.secret)
        options.gcp_secret = os.environ.get("AUTOKFP_GCP_SECRET") or options.gcp_secret
        flag = os.environ.get("AUTOKFP_OPTIONAL_ENV", "").strip().lower()
        if flag:
            options.optional_env = flag in ("1", "true", "yes")
        return options


def configure_task(task, options: ClusterOptions, caching: bool = False, name: str | None = None):
    """Resources, configuration and credentials for any task (and its display name)."""
    if name:
        task.set_display_name(name)
    task.set_cpu_request(options.task_cpu).set_memory_request(options.task_memory)
    task.set_caching_options(caching)
    # Without ``optional`` kfp-kubernetes leaves the field out of the spec entirely.
    optional = {"optional": True} if options.optional_env else {}
    kubernetes.use_config_map_as_env(
        task, config_map_name=options.config_map,
        config_map_key_to_env={key: key for key in CONFIG_KEYS}, **optional)
    kubernetes.use_secret_as_env(
        task, secret_name=options.secret,
        secret_key_to_env={key: key for key in SECRET_KEYS}, **optional)
    if options.gcp_secret:
        kubernetes.use_secret_as_volume(task, secret_name=options.gcp_secret, mount_path=GCP_KEY_DIR)
        task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCP_KEY_DIR}/{GCP_KEY_FILE}")
    return task


def configure_training_task(task, options: ClusterOptions, name: str | None = None):
    """A GPU training task: accelerator request, GPU node selector and tolerations."""
    configure_task(task, options, caching=True, name=name)
    task.set_cpu_request(options.training_cpu).set_memory_request(options.training_memory)
    if options.gpus_per_training_task > 0:
        task.set_accelerator_type(options.gpu_resource).set_accelerator_limit(
            options.gpus_per_training_task)
        for key, value in options.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in options.gpu_tolerations:
            kubernetes.add_toleration(task, key=toleration["key"], operator=toleration["operator"],
                                      effect=toleration.get("effect"))
    return task


def configure_refit_task(task, options: ClusterOptions, name: str | None = None):
    """A task that trains again on the CPU (``refit_model``: the gated configuration fitted
    on every labelled row, twice): the training task's CPU and memory, no GPU. On an
    ordinary task's 1 CPU and 4G the H2O JVM (4G heap by default, on top of Python) would be
    killed for memory or start and fit several times slower than the search did."""
    configure_task(task, options, name=name)
    task.set_cpu_request(options.training_cpu).set_memory_request(options.training_memory)
    return task


def built_on_first_use(namespace: dict[str, Any], name: str,
                       build: Callable[[], Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A pipeline module's ``__getattr__`` and ``__dir__`` (PEP 562) that build its pipeline
    object ``name`` (default options) when it is first read, not when the module is
    imported: kfp looks at the caller's whole stack (``inspect.stack()``) for each task it
    configures, and under an import that stack is deep, so building the four pipelines at
    import took ~15 s of ``autokfp run``'s start on an idle core. ``kfp dsl compile --py``
    still finds the object (it reads ``dir(module)``)."""

    def __getattr__(attribute: str) -> Any:  # noqa: N807 - PEP 562
        if attribute != name:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {attribute!r}")
        namespace[name] = build()
        return namespace[name]

    def __dir__() -> list[str]:  # noqa: N807 - PEP 562
        return sorted({*namespace, name})

    return __getattr__, __dir__
