"""The ``kubernetes`` target: KServe InferenceServices through ``kserve.KServeClient``.

``deploy.mode`` picks how a new version reaches users (``auto``: what the serving
InferenceService already uses, else Serverless when the cluster serves Knative's API,
else Standard):

* **serverless** (Knative): a version that replaces a serving one is a canary. It is
  applied with ``canaryTrafficPercent: 0``; the step waits for the generation it wrote (the
  new revision created and ready), gives it ``deploy.canary_traffic_percent``, smoke-tests the new revision alone through its ``latest`` tagged
  route, checks every answer carries the new ``model_version``, and only then promotes it
  to 100 %; otherwise the canary share goes to 0 % and the previous revision, which served
  throughout, keeps all traffic.
* **standard** (RawDeployment, no traffic split): blue-green. The new version first runs as
  a second InferenceService ``<name>-candidate`` that no user calls; once verified, the
  serving InferenceService is switched to it (and checked to answer with the new version)
  and the candidate is removed. A candidate that fails is removed and the serving one is
  never touched.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pandas as pd

from autokfp.config import RunConfig
from autokfp.serving import deployment
from autokfp.serving.cluster import KServeCluster, current_revision
from autokfp.serving.deployment import Verification
from autokfp.serving.targets.base import Release, register_target

log = logging.getLogger(__name__)

KNATIVE_GROUP = "serving.knative.dev"
CANDIDATE_SUFFIX = "-candidate"
SWITCH_SECONDS = 120  # after a Standard switch, how long old pods may still answer


@register_target("kubernetes")
class KubernetesTarget:
    rolls_out = True

    def __init__(self, cfg: RunConfig, settings: Any):
        self.cfg = cfg

    def roll_out(self, release: Release, rows: pd.DataFrame,
                 expected: pd.DataFrame | None) -> Verification:
        deploy = self.cfg.deploy
        cluster = KServeCluster(deploy.target_namespace())
        serving = cluster.get(release.service)
        mode = resolve_mode(deploy.mode, cluster, serving)
        token = deployment.smoke_token(deploy.token_env)
        log.info("deploying %s v%s in %s mode", release.service, release.version, mode)
        if mode == "serverless":
            return self._canary(cluster, release, serving, rows, expected, token)
        return self._blue_green(cluster, release, serving, rows, expected, token)

    # ------------------------------------------------------------------------ serverless

    def _canary(self, cluster: KServeCluster, release: Release, serving: dict | None,
                rows: pd.DataFrame, expected: pd.DataFrame | None,
                token: str | None) -> Verification:
        deploy, service = self.cfg.deploy, release.service
        canary = serving is not None and release.canary
        manifest = release.rebuild(mode="serverless", canary=canary)
        if serving is not None and not canary:  # a merge patch keeps an old share: reset it
            manifest["spec"]["predictor"]["canaryTrafficPercent"] = 100
        if canary:
            # 0 % until the new revision is ready: Knative gives the canary share to the latest
            # *ready* revision, which until then may be a previously rejected one
            manifest["spec"]["predictor"]["canaryTrafficPercent"] = 0
        release.manifest = manifest
        previous_revision = current_revision(serving)
        applied, obj = cluster.apply(manifest)
        generation = int(obj["metadata"].get("generation") or 1)
        result = Verification(passed=True)
        result.add("apply", True, f"InferenceService {deploy.target_namespace()}/{service} {applied} "
                                  f"(generation {generation}, serverless"
                                  + (f", canary {deploy.canary_traffic_percent}%)" if canary else ")"))
        settled = cluster.wait_settled(service, generation, previous_revision,
                                       deploy.ready_timeout_secs, serverless=True)
        result.add("rollout", settled.ready, settled.detail)
        result.endpoint = settled.service_url
        if canary and settled.ready:
            cluster.set_traffic(service, deploy.canary_traffic_percent)
        if settled.ready and expected is not None:
            if settled.latest_url is None:
                result.add("revision_route", False, (
                    f"no route reaches revision {settled.revision} alone: the status lists no "
                    "'latest' tagged route. The InferenceService needs the annotation "
                    "serving.kserve.io/enable-tag-routing: \"true\" (autokfp sets it) and a "
                    "KServe/Knative install that honours it"))
            else:
                checked = deployment.verify_endpoint(
                    settled.latest_url.rstrip("/"), service, rows, expected,
                    deploy.latency_budget_ms, deploy.ready_timeout_secs,
                    version=release.version, token=token)
                _merge(result, checked)
        passed = result.passed and expected is not None
        if serving is not None:
            percent = 100 if passed else 0
            cluster.set_traffic(service, percent)
            if passed:
                moved = cluster.wait_traffic(service, settled.revision, 100, deploy.ready_timeout_secs)
                result.add("promote", moved, f"revision {settled.revision} "
                           + ("serves 100% of traffic" if moved else
                              "was set to 100% but the status does not show it yet"))
            else:
                log.warning("canary of %s v%s set to 0%%: revision %s keeps all traffic",
                            service, release.version, previous_revision)
        return result

    # -------------------------------------------------------------------------- standard

    def _blue_green(self, cluster: KServeCluster, release: Release, serving: dict | None,
                    rows: pd.DataFrame, expected: pd.DataFrame | None,
                    token: str | None) -> Verification:
        deploy, service = self.cfg.deploy, release.service
        result = Verification(passed=True)
        if serving is None:  # a first version: nothing to protect, verify it in place
            release.manifest = release.rebuild(mode="standard", canary=False)
            url = self._start_and_check(cluster, release.manifest, release, rows, expected,
                                        token, result, role="service")
            result.endpoint = url
            if not (result.passed and expected is not None):
                cluster.delete(service)
                result.add("cleanup", True, f"{service} removed: nothing serves a failed first version")
            return result
        candidate = f"{service}{CANDIDATE_SUFFIX}"
        candidate_manifest = release.rebuild(mode="standard", canary=False, name=candidate)
        candidate_manifest["metadata"]["labels"]["autokfp/role"] = "candidate"
        self._start_and_check(cluster, candidate_manifest, release, rows, expected, token,
                              result, role="candidate")
        if not (result.passed and expected is not None):
            cluster.delete(candidate)
            result.add("cleanup", True, f"candidate {candidate} removed; {service} was not touched "
                                        "and keeps serving the previous version")
            result.endpoint = _service_url(serving)
            return result
        # switch: the serving InferenceService takes the verified version (a rolling update;
        # its old pods answer until the new ones are ready)
        release.manifest = release.rebuild(mode="standard", canary=False)
        applied, obj = cluster.apply(release.manifest)
        generation = int(obj["metadata"].get("generation") or 1)
        settled = cluster.wait_settled(service, generation, None, deploy.ready_timeout_secs,
                                       serverless=False)
        switched = settled.ready and settled.service_url is not None and _answers_only(
            settled.service_url, service, rows, release.version, token)
        result.add("switch", switched, f"{service} {applied} to v{release.version}: " + (
            "every answer comes from the new version" if switched else settled.detail))
        result.endpoint = settled.service_url
        if not switched:  # put the previous spec back
            cluster.apply(_restorable(serving))
            result.add("restore", True, f"{service} patched back to its previous spec")
        cluster.delete(candidate)
        return result

    def _start_and_check(self, cluster: KServeCluster, manifest: dict, release: Release,
                         rows: pd.DataFrame, expected: pd.DataFrame | None, token: str | None,
                         result: Verification, role: str) -> str | None:
        deploy, name = self.cfg.deploy, manifest["metadata"]["name"]
        applied, obj = cluster.apply(manifest)
        generation = int(obj["metadata"].get("generation") or 1)
        result.add("apply", True, f"{role} InferenceService {deploy.target_namespace()}/{name} {applied} "
                                  "(standard)")
        settled = cluster.wait_settled(name, generation, None, deploy.ready_timeout_secs,
                                       serverless=False)
        result.add("rollout", settled.ready, f"{role}: {settled.detail}")
        if settled.ready and expected is not None and settled.service_url:
            checked = deployment.verify_endpoint(
                settled.service_url.rstrip("/"), release.service, rows, expected,
                deploy.latency_budget_ms, deploy.ready_timeout_secs, version=release.version,
                token=token)
            _merge(result, checked)
        return settled.service_url


def resolve_mode(configured: str, cluster: KServeCluster, serving: dict | None) -> str:
    """``deploy.mode`` with ``auto`` resolved (see the module docstring)."""
    if configured != "auto":
        return configured
    if serving is not None:
        annotations = (serving.get("metadata") or {}).get("annotations") or {}
        found = ((serving.get("status") or {}).get("deploymentMode")
                 or annotations.get("serving.kserve.io/deploymentMode") or "")
        if found:
            return "serverless" if found.lower() == "serverless" else "standard"
    return "serverless" if cluster.has_api_group(KNATIVE_GROUP) else "standard"


def _merge(result: Verification, checked: Verification) -> None:
    for check in checked.checks:
        result.add(check["check"], check["passed"], check["detail"])


def _service_url(obj: dict | None) -> str | None:
    status = (obj or {}).get("status") or {}
    return (status.get("address") or {}).get("url") or status.get("url")


def _restorable(obj: dict) -> dict:
    """What was serving, as a patch: its spec, labels and annotations (no status)."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                         "labels": meta.get("labels") or {},
                         "annotations": meta.get("annotations") or {}},
            "spec": obj["spec"]}


def _answers_only(url: str, service: str, rows: pd.DataFrame, version: str,
                  token: str | None) -> bool:
    """Whether the service answers with ``version`` only (old pods drain during a switch)."""
    from autokfp.serving.predictor_client import PredictorClient

    records = deployment.to_records(rows.head(1))
    deadline = time.monotonic() + SWITCH_SECONDS
    streak = 0
    with PredictorClient(url, token=token, timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                status, body = client.predict(service, records, timeout=10)
            except httpx.TransportError:  # a pod going away mid-switch
                status, body = 0, None
            fresh = (status == 200 and isinstance(body, dict)
                     and str(body.get("model_version")) == str(version))
            streak = streak + 1 if fresh else 0
            if streak >= 10:
                return True
            time.sleep(0.05 if fresh else 0.5)
    return False
