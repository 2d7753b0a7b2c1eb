"""InferenceServices on a cluster through KServe's own client (``kserve.KServeClient``).

Apply, patch, get and delete go through ``KServeClient`` (which reads the kubeconfig, or the
pod's service account inside a cluster). Waiting is our own, because ``KServeClient``'s
``wait_isvc_ready`` only looks at the Ready condition, and Ready stays True on the *old*
status for a while after a patch: a rollout is only settled when

* ``status.observedGeneration`` has reached the generation the patch wrote, and
* (Serverless) a revision newer than the one serving before the patch was created
  (``latestCreatedRevision``) and is ready (``latestReadyRevision`` equals it), and
* the InferenceService's ``Ready`` condition is True.

The new revision's own address is the ``latest`` tagged route (KServe adds tagged routes
with the ``serving.kserve.io/enable-tag-routing: "true"`` annotation, see
``inference_service``): smoke tests sent there reach the new revision alone, while the
service URL splits traffic between the previous and the new revision. The status gives a
tagged route's URL on the cluster's *external* domain (``latest-<name>-predictor.<ns>.
example.com`` on a default Kubeflow install), which a pipeline pod usually cannot resolve,
and which, when it can, goes through the ingress gateway and its login (Dex). Knative also
makes a Kubernetes Service ``<tag>-<route>`` for every tag, so the step calls the tag
cluster-locally, like the service itself: ``latest-`` before the host of the predictor's
cluster-local ``address.url`` (``tag_address``). Only a status without a cluster-local
predictor address falls back to the URL the traffic entry gives.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from autokfp.errors import DeploymentError

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


@dataclass
class Settled:
    """Where a rollout ended up once the cluster reported the generation it was given."""

    ready: bool
    detail: str
    revision: str | None = None  # Serverless: the new revision's name
    latest_url: str | None = None  # the new revision alone (tagged route), when there is one
    service_url: str | None = None  # what users call


def _not_found(exc: Exception) -> bool:
    text = str(exc)
    return "(404)" in text or "Not Found" in text


class KServeCluster:
    """InferenceServices in one namespace, through ``kserve.KServeClient``."""

    def __init__(self, namespace: str, kserve_client: Any | None = None):
        if kserve_client is None:
            from kserve import KServeClient
            from kubernetes.config import ConfigException

            try:
                kserve_client = KServeClient(config_file=os.environ.get("KUBECONFIG") or None)
            except (ConfigException, FileNotFoundError, TypeError) as exc:
                raise DeploymentError(
                    f"no Kubernetes cluster is configured ({exc}); set deploy.target: local or "
                    "manifest, or provide a kubeconfig (KUBECONFIG) or run inside the cluster"
                ) from None
        self.namespace = namespace
        self.client = kserve_client

    # ------------------------------------------------------------------ reads and writes

    def get(self, name: str) -> dict | None:
        try:
            return self.client.get(name, namespace=self.namespace)
        except RuntimeError as exc:
            if _not_found(exc):
                return None
            raise DeploymentError(f"cannot read InferenceService {self.namespace}/{name}: "
                                  f"{_short(exc)}") from None

    def apply(self, manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Create or (merge-)patch ``manifest``; returns ("created"|"patched", the object)."""
        from autokfp.serving.inference_service import to_model, validate_manifest

        validate_manifest(manifest)
        name = manifest["metadata"]["name"]
        isvc = to_model(manifest)
        try:
            if self.get(name) is None:
                return "created", self.client.create(isvc, namespace=self.namespace)
            return "patched", self.client.patch(name, isvc, namespace=self.namespace)
        except RuntimeError as exc:
            raise DeploymentError(f"Kubernetes refused InferenceService {self.namespace}/{name}: "
                                  f"{_short(exc)}") from None

    def set_traffic(self, name: str, percent: int) -> None:
        """Serverless canary share of the latest revision (0: all on the previous one)."""
        current = self.get(name)
        if current is None:
            raise DeploymentError(f"cannot set traffic of {self.namespace}/{name}: it does not exist")
        patch = {"apiVersion": current["apiVersion"], "kind": current["kind"],
                 "metadata": {"name": name, "namespace": self.namespace},
                 "spec": {"predictor": {"canaryTrafficPercent": percent}}}
        from autokfp.serving.inference_service import to_model

        try:
            self.client.patch(name, to_model(patch), namespace=self.namespace)
        except RuntimeError as exc:
            raise DeploymentError(f"cannot set traffic of {self.namespace}/{name} to {percent}%: "
                                  f"{_short(exc)}") from None

    def delete(self, name: str) -> bool:
        try:
            self.client.delete(name, namespace=self.namespace)
            return True
        except RuntimeError as exc:
            if _not_found(exc):
                return False
            raise DeploymentError(f"cannot delete InferenceService {self.namespace}/{name}: "
                                  f"{_short(exc)}") from None

    def has_api_group(self, group: str) -> bool:
        """Whether the cluster serves API ``group`` (``serving.knative.dev``: Knative)."""
        from kubernetes.client import ApisApi
        from kubernetes.client.exceptions import ApiException

        try:
            groups = ApisApi(self.client.api_instance.api_client).get_api_versions().groups
        except (ApiException, OSError) as exc:
            raise DeploymentError(f"cannot list the cluster's API groups to choose deploy.mode "
                                  f"({_short(exc)}); set deploy.mode: serverless or standard") from None
        return any(g.name == group for g in groups or [])

    # --------------------------------------------------------------------------- waiting

    def wait_settled(self, name: str, generation: int, previous_revision: str | None,
                     timeout: float, serverless: bool = True) -> Settled:
        """Wait until the cluster serves ``generation`` (see the module docstring)."""
        deadline = time.monotonic() + timeout
        last = "no status yet"
        while True:
            obj = self.get(name) or {}
            settled = read_settled(obj, generation, previous_revision, serverless)
            if settled.ready:
                return settled
            last = settled.detail
            if time.monotonic() >= deadline:
                return Settled(False, f"not settled within {timeout:.0f}s: {last}")
            time.sleep(POLL_SECONDS)

    def wait_traffic(self, name: str, revision: str | None, percent: int, timeout: float) -> bool:
        """Whether ``revision`` gets ``percent`` % of the service's traffic within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            predictor = _predictor_status(self.get(name) or {})
            shares = {t.get("revisionName"): t.get("percent") or 0
                      for t in predictor.get("traffic") or [] if t.get("percent") is not None}
            if revision is None or shares.get(revision) == percent:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)


def _predictor_status(obj: dict[str, Any]) -> dict[str, Any]:
    return ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}


def current_revision(obj: dict[str, Any] | None) -> str | None:
    """The revision serving before a patch: the rolled-out one, else the latest ready."""
    predictor = _predictor_status(obj or {})
    return predictor.get("latestRolledoutRevision") or predictor.get("latestReadyRevision")


def tag_address(predictor_status: dict[str, Any], tag: str) -> str | None:
    """The cluster-local address of Knative's ``tag`` route of a predictor: the Kubernetes
    Service ``<tag>-<route>`` Knative makes for it, i.e. ``<tag>-`` before the host of the
    predictor's cluster-local ``address.url``; None when that address is not cluster-local."""
    from urllib.parse import urlsplit

    address = urlsplit((predictor_status.get("address") or {}).get("url") or "")
    host = address.hostname or ""
    if address.scheme not in ("http", "https") or ".svc" not in host:
        return None
    port = f":{address.port}" if address.port else ""
    return f"{address.scheme}://{tag}-{host}{port}"


def read_settled(obj: dict[str, Any], generation: int, previous_revision: str | None,
                 serverless: bool) -> Settled:
    """Whether ``obj``'s status reports ``generation`` served and ready (a pure function)."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None or int(observed) < generation:
        return Settled(False, f"the controller has not observed generation {generation} yet "
                              f"(observedGeneration {observed})")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    predictor = _predictor_status(obj)
    service_url = (status.get("address") or {}).get("url") or status.get("url")
    revision = None
    latest_url = None
    if serverless:
        created = predictor.get("latestCreatedRevision")
        ready_revision = predictor.get("latestReadyRevision")
        if not created or created == previous_revision:
            return Settled(False, f"no new revision yet (latest created {created})")
        if ready_revision != created:
            reason = conditions.get("PredictorReady") or conditions.get("Ready") or {}
            return Settled(False, f"revision {created} is not ready yet (latest ready "
                                  f"{ready_revision}; {reason.get('reason') or ''} "
                                  f"{reason.get('message') or ''})".rstrip())
        revision = created
        for target in predictor.get("traffic") or []:
            if target.get("tag") == "latest" and target.get("revisionName") in (None, created):
                latest_url = tag_address(predictor, "latest") or target.get("url")
        if latest_url is None and previous_revision is None:
            latest_url = service_url  # a first revision: the service reaches nothing else
    else:
        latest_url = service_url
    ready = conditions.get("Ready") or {}
    if ready.get("status") != "True":
        return Settled(False, f"Ready is {ready.get('status')}: {ready.get('reason') or ''} "
                              f"{ready.get('message') or ''}".rstrip())
    return Settled(True, f"generation {generation} observed" +
                   (f", revision {revision} created and ready" if revision else "") +
                   ", Ready", revision=revision, latest_url=latest_url, service_url=service_url)


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:400]
