"""The ``kubernetes`` target: KServe InferenceServices through ``kserve.KServeClient``.

``deploy.mode`` picks how a new version reaches users (``auto``: what the serving
InferenceService already uses, else Serverless when the cluster serves Knative's API,
else Standard):

* **serverless** (Knative): a version that replaces a serving one is a canary. It is
  applied with ``canaryTrafficPercent: 0``; the step waits for the generation it wrote (the
  new revision created and ready), gives it ``deploy.canary_traffic_percent``, smoke-tests the new revision alone through its ``latest`` tagged
  route, checks every answer carries the new ``model_version``, and only then promotes it
  to 100 %; otherwise the canary share goes to 0 % and the previous revision, which served
  throughout, keeps all traffic. With ``deploy.strategy: ab`` the verified revision then
  keeps ``deploy.ab_percent`` of live traffic for ``deploy.ab_minutes`` (the step samples
  which version answers users, and that the new revision still answers as itself), is
  verified alone again, and only then gets 100 % (else 0 %). With ``deploy.strategy:
  shadow``, before the canary share, live traffic is mirrored to the new revision for
  ``deploy.shadow_minutes``: the serving version's requests, as the prediction log captures
  them, are replayed to its own route and its answers compared with what users got.
* **standard** (RawDeployment, no traffic split): blue-green. The new version first runs as
  a second InferenceService ``<name>-candidate`` that no user calls; once verified (and,
  with ``deploy.strategy: shadow``, once live traffic mirrored to it for
  ``deploy.shadow_minutes`` got the answers users got), the serving InferenceService is
  switched to it (and checked to answer with the new version) and the candidate is
  removed. A candidate that fails is removed and the serving one is never touched.
  With ``deploy.strategy: ab`` the verified candidate then answers ``deploy.ab_percent``
  of users for ``deploy.ab_minutes``: Standard mode has no traffic split, so the serving
  predictors split it themselves. The serving InferenceService gets ``AUTOKFP_AB_TARGET``
  (the candidate's address) and ``AUTOKFP_AB_PERCENT`` (a rolling update of the same
  version), and each of its predictors sends that share of the JSON v1 and v2 predictions it gets to
  the candidate and passes its answer back (``serving.v1_route.ABSplit``). The split is
  sampled, the arms' outcomes tested and the candidate verified alone again, as in
  Serverless mode; then the switch, or the serving InferenceService's previous spec back
  (the split off) and the candidate removed.
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
AB_SAMPLE = 10  # requests to the service URL per check of an A/B split


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
        if canary and settled.ready and deploy.strategy == "shadow" \
                and settled.latest_url is not None:
            self._shadow(release, _serving_version(release, serving),
                         f"revision {settled.revision}", settled.latest_url, rows, token, result)
        if canary and settled.ready and result.passed:
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
        if passed and canary and deploy.strategy == "ab":
            assert settled.latest_url is not None and settled.service_url is not None
            passed = self._ab_split(cluster, release, _serving_version(release, serving),
                                    settled.revision,
                                    settled.service_url, settled.latest_url, rows, expected,
                                    token, result)
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

    def _shadow(self, release: Release, serving_version: str, target: str,
                latest_url: str, rows: pd.DataFrame, token: str | None,
                result: Verification) -> None:
        """Mirror live traffic to the new version while no user reaches it (``target``: its
        revision at 0 % in serverless mode, the candidate InferenceService in standard mode,
        at ``latest_url``): for ``deploy.shadow_minutes``, the requests users send (as the
        prediction log captures them: the predictor's own log, or KServe's payload logger
        through its receiver) are replayed to it, and its answers compared with the answers
        users got. No user ever sees the shadow's answers. A shadow that errors on a live
        request, or (a classifier) gives another prediction than users got for more than
        ``1 - deploy.shadow_min_agreement`` of the rows, fails the ``shadow`` check (the
        rollout stops: 0 %)."""
        from datetime import datetime, timedelta, timezone

        from autokfp.serving.prediction_log import read_new_batches
        from autokfp.serving.predictor_client import PredictorClient
        from autokfp.settings import Settings

        deploy, service = self.cfg.deploy, release.service
        root = Settings.from_env().artifact_root
        columns = list(rows.columns)
        started = datetime.now(timezone.utc) - timedelta(seconds=5)
        deadline = time.monotonic() + deploy.shadow_minutes * 60
        poll = max(1.0, min(30.0, deploy.shadow_minutes * 6))
        read: set[str] = set()
        mirrored = agreed = compared = failed = 0
        gaps: list[float] = []
        log.info("shadow of %s v%s: mirroring live traffic for %g min", service,
                 release.version, deploy.shadow_minutes)
        with PredictorClient(latest_url, token=token, timeout=30) as shadow:
            while True:
                last = time.monotonic() >= deadline
                # the serving version's logged requests (verification requests left out)
                live = read_new_batches(root, service, serving_version, started, read)
                if not live.empty and "output_prediction" not in live.columns:
                    live = live.iloc[0:0]
                for column in columns:
                    if column not in live.columns:
                        live[column] = None
                for start in range(0, len(live), 50):
                    batch = live.iloc[start:start + 50]
                    try:
                        status, body = shadow.predict(
                            service, deployment.to_records(batch[columns]), timeout=30)
                    except httpx.TransportError:  # refused, reset, timed out: an error too
                        status, body = 0, None
                    mirrored += len(batch)
                    if status != 200 or not isinstance(body, dict):
                        failed += len(batch)
                        continue
                    for answer, (_, logged) in zip(body["predictions"], batch.iterrows()):
                        keys = [k for k in answer if k.startswith("probability_")]
                        if keys:  # a classifier: the decision users got, or another one
                            compared += 1
                            agreed += str(answer.get("prediction")) == \
                                str(logged["output_prediction"])
                        if keys and f"output_{keys[-1]}" in logged:
                            gaps.append(abs(float(answer[keys[-1]])
                                            - float(logged[f"output_{keys[-1]}"])))
                if last:
                    break
                time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        share = f"{100 * agreed / compared:.1f}%" if compared else "n/a"
        gap = f"{sum(gaps) / len(gaps):.4f}" if gaps else "n/a"
        detail = (f"{mirrored} live requests' rows mirrored to {target} "
                  f"(v{release.version}) over {deploy.shadow_minutes:g} min: {failed} failed, "
                  f"same prediction as users got for {share}, mean probability gap {gap}")
        agreeing = not compared or agreed / compared >= deploy.shadow_min_agreement
        if failed:
            detail += (f"; the shadow answered {failed} live row(s) with an error: the rollout "
                       "stops at 0 %")
        if not agreeing:
            detail += (f"; below deploy.shadow_min_agreement ({deploy.shadow_min_agreement:.0%}): "
                       f"v{release.version} would change the prediction of {compared - agreed} "
                       f"of {compared} users' rows, so the rollout stops at 0 %")
        if not mirrored:
            detail += "; no live traffic was captured (is the prediction log on?)"
        result.add("shadow", failed == 0 and agreeing, detail)

    def _ab_split(self, cluster: KServeCluster, release: Release, serving_version: str,
                  revision: str | None, service_url: str, latest_url: str, rows: pd.DataFrame,
                  expected: pd.DataFrame | None, token: str | None,
                  result: Verification) -> bool:
        """Keep ``deploy.ab_percent`` of live traffic on the verified new revision for
        ``deploy.ab_minutes``: sample which version answers users (the split must be real and
        error-free), stop at once if the new revision stops being ready, test the two arms'
        outcomes on the labelled rows each answered (``serving.ab_test``), then verify it
        alone again. Whether it passed; every finding is a check (and so in the audit trail)."""
        deploy, service = self.cfg.deploy, release.service
        cluster.set_traffic(service, deploy.ab_percent)
        if not cluster.wait_traffic(service, revision, deploy.ab_percent, deploy.ready_timeout_secs):
            result.add("ab_split", False, f"revision {revision} was set to {deploy.ab_percent}% "
                                          "but the status does not show it")
            return False
        return self._ab_run(release, serving_version, f"revision {revision}", service_url,
                            latest_url, rows, expected, token, result)

    def _ab_run(self, release: Release, serving_version: str, target: str, service_url: str,
                latest_url: str, rows: pd.DataFrame, expected: pd.DataFrame | None,
                token: str | None, result: Verification) -> bool:
        """A split in place (``target``, at ``latest_url``, answers ``deploy.ab_percent`` of
        the users at ``service_url``): sample it for ``deploy.ab_minutes``, test the arms'
        outcomes, verify ``target`` alone again. Whether it passed."""
        from collections import Counter
        from datetime import datetime, timezone

        from autokfp.serving.predictor_client import PredictorClient

        deploy, service = self.cfg.deploy, release.service
        seconds = deploy.ab_minutes * 60
        poll = max(1.0, min(30.0, seconds / 10))
        records = deployment.to_records(rows.head(1))
        answered: Counter[str] = Counter()
        started = time.monotonic()
        since = datetime.now(timezone.utc)
        log.info("A/B split of %s: %d%% to v%s for %g min", service, deploy.ab_percent,
                 release.version, deploy.ab_minutes)
        with PredictorClient(service_url, token=token, timeout=10) as users, \
                PredictorClient(latest_url, token=token, timeout=10) as new:
            while True:
                for _ in range(AB_SAMPLE):
                    try:
                        status, body = users.predict(service, records, timeout=10)
                    except httpx.TransportError as exc:
                        status, body = 0, str(exc)
                    answered[f"v{body.get('model_version')}" if status == 200
                             and isinstance(body, dict) else f"HTTP {status}"] += 1
                elapsed = time.monotonic() - started
                alive = _answers_as(new, service, records, release.version)
                if alive is not True:
                    result.add("ab_split", False, f"{target} (v{release.version}) stopped "
                               f"answering {elapsed:.0f} s into the A/B split ({alive}); users' "
                               "sampled answers: " + _shares(answered))
                    return False
                if elapsed >= seconds:
                    break
                time.sleep(min(poll, seconds - elapsed))
        errors = sum(n for key, n in answered.items() if not key.startswith("v"))
        split = answered[f"v{release.version}"] > 0 and errors == 0
        result.add("ab_split", split, f"{deploy.ab_percent}% of traffic to v{release.version} for "
                                      f"{deploy.ab_minutes:g} min; sampled answers: " + _shares(answered))
        if not split:
            return False
        if not self._ab_outcome(release, serving_version, since, result):
            return False
        if expected is not None:
            checked = deployment.verify_endpoint(latest_url.rstrip("/"), service, rows, expected,
                                                 deploy.latency_budget_ms, deploy.ready_timeout_secs,
                                                 version=release.version, token=token)
            for check in checked.checks:
                result.add(f"after_ab_{check['check']}", check["passed"], check["detail"])
        return result.passed

    def _ab_outcome(self, release: Release, serving_version: str, since: Any,
                    result: Verification) -> bool:
        """The ``ab_outcome`` check: each arm's outcome on the labelled rows it answered
        during the split, the interval of the difference and the decision (``ab_test``)."""
        from autokfp.serving import ab_test

        deploy = self.cfg.deploy
        notes: list[str] = []
        frames = {}
        for version in (serving_version, release.version):
            if release.outcomes is None:
                frames[version] = pd.DataFrame()
                continue
            try:
                frames[version], note = release.outcomes(version, since)
            except Exception as exc:  # noqa: BLE001 - unreadable logs or labels: no evidence
                frames[version], note = pd.DataFrame(), f"{type(exc).__name__}: {exc}"
            notes.append(f"v{version}: {note}")
        ids = self.cfg.monitoring.labels.id_column or self.cfg.training.id_column
        metric, old = ab_test.build_arm(serving_version, frames[serving_version],
                                        ab_test.LABEL_COLUMN, ids)
        _, new = ab_test.build_arm(release.version, frames[release.version], ab_test.LABEL_COLUMN,
                                   ids)
        outcome = ab_test.compare_arms(metric, old, new, deploy.ab_confidence, deploy.ab_margin,
                                       deploy.ab_min_rows, deploy.ab_inconclusive)
        if release.outcomes is None:
            notes.append("no outcome source (the deploy step passes the prediction log and "
                         "monitoring.labels)")
        result.add("ab_outcome", outcome.promote, outcome.detail
                   + (f" ({'; '.join(notes)})" if notes else ""))
        result.checks[-1]["ab_test"] = outcome.to_dict()
        return outcome.promote

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
        candidate_url = self._start_and_check(cluster, candidate_manifest, release, rows,
                                              expected, token, result, role="candidate")
        if deploy.strategy == "shadow" and result.passed and expected is not None \
                and candidate_url:
            # no user calls the candidate: mirror live traffic to it before the switch
            self._shadow(release, _serving_version(release, serving), f"candidate {candidate}",
                         candidate_url, rows, token, result)
        split = False
        if deploy.strategy == "ab" and result.passed and expected is not None and candidate_url:
            split = True
            self._ab_standard(cluster, release, serving, candidate, candidate_url, rows,
                              expected, token, result)
        if not (result.passed and expected is not None):
            if split:  # the serving predictors split users with the candidate: stop that first
                restored, obj = cluster.apply(_restorable(serving))
                settled = cluster.wait_settled(service, int(obj["metadata"].get("generation") or 1),
                                               None, deploy.ready_timeout_secs, serverless=False)
                result.add("restore", settled.ready, f"{service} patched back to its previous "
                           "spec (no split): " + settled.detail)
            cluster.delete(candidate)
            result.add("cleanup", True, f"candidate {candidate} removed; {service} " + (
                "serves the previous version again (its previous spec, above)" if split else
                "was not touched and keeps serving the previous version"))
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

    def _ab_standard(self, cluster: KServeCluster, release: Release, serving: dict,
                     candidate: str, candidate_url: str, rows: pd.DataFrame,
                     expected: pd.DataFrame | None, token: str | None,
                     result: Verification) -> bool:
        """Standard mode's A/B split: the serving InferenceService's predictors send
        ``deploy.ab_percent`` of their JSON v1/v2 predictions to the verified candidate (a rolling
        update of the same version with ``AUTOKFP_AB_TARGET``/``AUTOKFP_AB_PERCENT``), then
        the split runs as in Serverless mode (``_ab_run``)."""
        deploy, service = self.cfg.deploy, release.service
        applied, obj = cluster.apply(_with_split(serving, candidate_url, deploy.ab_percent))
        generation = int(obj["metadata"].get("generation") or 1)
        settled = cluster.wait_settled(service, generation, None, deploy.ready_timeout_secs,
                                       serverless=False)
        if not settled.ready or settled.service_url is None:
            result.add("ab_split", False, f"{service}'s predictors did not start splitting "
                                          f"with candidate {candidate}: {settled.detail}")
            return False
        return self._ab_run(release, _serving_version(release, serving), f"candidate {candidate}",
                            settled.service_url, candidate_url, rows, expected, token, result)

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


def _answers_as(client: Any, service: str, records: list[dict], version: str) -> bool | str:
    """True if the route answers with ``version``, else what it did instead."""
    try:
        status, body = client.predict(service, records, timeout=10)
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}"
    served = str(body.get("model_version")) if isinstance(body, dict) else "?"
    return True if served == str(version) else f"its route answered as v{served}"


def _shares(answered: dict[str, int]) -> str:
    total = sum(answered.values()) or 1
    return ", ".join(f"{key} {n} ({100 * n / total:.0f}%)" for key, n in sorted(answered.items()))


def _merge(result: Verification, checked: Verification) -> None:
    for check in checked.checks:
        result.add(check["check"], check["passed"], check["detail"])


def _serving_version(release: Release, serving: dict | None) -> str:
    """The model version users get now: the champion the release replaces. (The serving
    InferenceService's annotation is only a fallback: after a rolled-back canary its spec
    names the rejected version, at 0 % of traffic.)"""
    if release.previous_version:
        return str(release.previous_version)
    return str(((serving or {}).get("metadata") or {}).get("annotations", {}).get(
        "autokfp/model-version", ""))


def _service_url(obj: dict | None) -> str | None:
    status = (obj or {}).get("status") or {}
    return (status.get("address") or {}).get("url") or status.get("url")


def _with_split(serving: dict, candidate_url: str, percent: int) -> dict:
    """The serving InferenceService's spec with its predictors splitting JSON predictions:
    ``percent`` % to the candidate at ``candidate_url`` (``serving.v1_route.ABSplit``)."""
    import json

    from autokfp.serving.v1_route import AB_PERCENT_ENV, AB_TARGET_ENV

    routed = json.loads(json.dumps(_restorable(serving)))
    model = routed["spec"]["predictor"].setdefault("model", {})
    env = [e for e in model.get("env") or [] if e.get("name") not in (AB_TARGET_ENV, AB_PERCENT_ENV)]
    model["env"] = env + [{"name": AB_TARGET_ENV, "value": candidate_url.rstrip("/")},
                          {"name": AB_PERCENT_ENV, "value": str(percent)}]
    return routed


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
