"""The rollout decision: serve the registry's champion on a target, verify it, then promote
it or roll back (see ``serving.deployment`` for the checks, ``serving.targets`` for where).

``plan_rollout`` settles what would be deployed (the champion, canary or not, the
InferenceService); ``carry_out`` decides whether to roll it out and does: a version awaiting
approval, a manifest-only target, ``deploy.verify: false`` or an unchanged champion is
recorded as skipped; otherwise the version is scored offline on held-out rows, served on
its target and verified, and the registry follows the outcome.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.config.serving import resolve_target
from autokfp.errors import DeploymentError
from autokfp.serving import deployment
from autokfp.serving.deployment import DeploymentDecision
from autokfp.serving.targets import Release, open_target, rolls_out

log = logging.getLogger(__name__)


@dataclass
class Rollout:
    """One deployment of the champion: what is released, and the decision taken so far."""

    decision: DeploymentDecision
    manifest: dict[str, Any]
    service: str
    storage_uri: str
    client: Any  # the MLflow client of the registry
    builder: Any = None  # the InferenceService for another mode/name (Release.rebuild)

    @property
    def canary(self) -> bool:
        return self.decision.action == "canary"


def serving_image_for(tags: dict[str, str] | None) -> str | None:
    """The predictor image a model version needs, from its ``engine`` tag: None (the
    runtime's lean image) unless the engine names a serving extra (AutoKeras: TensorFlow)."""
    from autokfp.engine_registry import engine_specs
    from autokfp.settings import image

    spec = engine_specs().get((tags or {}).get("engine", ""))
    if spec is None or not spec.serving_extra:
        return None
    return image(f"serving-{spec.serving_extra}")


def plan_rollout(cfg: RunConfig, settings: Any, registration: dict[str, Any]) -> Rollout:
    """The champion to deploy and its InferenceService; the decision starts as ``skipped``.

    Raises:
        DeploymentError: no champion is registered.
    """
    from autokfp.modeling import registry
    from autokfp.serving.inference_service import build_inference_service, service_name

    client = registry.configure(settings)
    champion = registry.champion_version(client, cfg.model_name)
    if champion is None:
        raise DeploymentError(
            f"{cfg.model_name}: no champion is registered, so there is nothing to deploy. "
            f"v{registration.get('version')} was registered as "
            f"{', '.join(registration.get('aliases') or []) or 'a plain version'}: "
            f"{registration.get('decision') or 'see the register step'}")
    version = str(champion.version)
    new_version = bool(registration["promoted"]) and not registration.get("reused")
    previous = registration.get("replaced_version") if new_version else None
    storage_uri = registry.serving_uri(client, cfg.model_name, version, settings)
    canary = bool(new_version and previous)
    builder = functools.partial(build_inference_service, cfg.model_name, version, storage_uri,
                                cfg.deploy, serving_image=serving_image_for(champion.tags))
    # the written manifest: deploy.mode, or Serverless (KServe's default) until a cluster says
    mode = cfg.deploy.mode if cfg.deploy.mode != "auto" else "serverless"
    manifest = builder(canary=canary, mode=mode)
    action = "canary" if canary else ("initial" if new_version else "unchanged")
    decision = DeploymentDecision(target=resolve_target(cfg.deploy.target),
                                  model=cfg.model_name, version=version,
                                  previous_version=previous, action=action, outcome="skipped",
                                  verification=[])
    return Rollout(decision, manifest, service_name(cfg.model_name), storage_uri, client, builder)


def carry_out(rollout: Rollout, cfg: RunConfig, settings: Any, registration: dict[str, Any],
              test_path: str, outcomes: Any = None) -> DeploymentDecision:
    """Roll the planned version out, or record why not (see the module docstring).
    ``outcomes``: the labelled rows a version answered (``Release.outcomes``), for an A/B
    split's outcome test."""
    decision = rollout.decision
    held = _hold_reason(cfg, settings, decision)
    if held is not None:
        decision.outcome, decision.reason = held
        return decision
    import mlflow.artifacts

    from autokfp.modeling.model_package import load_model_package

    rows = _smoke_rows(cfg, registration, test_path)
    model_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{cfg.model_name}/{decision.version}")
    target = open_target(decision.target, cfg, settings)
    release = Release(service=rollout.service, version=decision.version, model_dir=model_dir,
                      manifest=rollout.manifest, canary=rollout.canary, builder=rollout.builder,
                      outcomes=outcomes, previous_version=decision.previous_version)
    # a target that can (the local one) starts the version's server now, so that it boots
    # while the model scores the smoke rows here
    start, abandon = getattr(target, "start", None), getattr(target, "abandon", None)
    if start is not None:
        start(release)
    try:
        try:
            expected = load_model_package(model_dir).predict(rows)
        except Exception as exc:  # noqa: BLE001 - a model that cannot score offline is broken
            expected = None
            decision.verification.append({"check": "offline_scoring", "passed": False,
                                          "detail": f"the model cannot score held-out rows: {exc}"})
        verification = target.roll_out(release, rows, expected)
    except BaseException:
        if abandon is not None:
            abandon()
        raise
    rollout.manifest = release.manifest  # what the target applied (mode resolved)
    decision.endpoint = verification.endpoint
    decision.verification += verification.checks
    _conclude(rollout, passed=expected is not None and verification.passed)
    return decision


def _hold_reason(cfg: RunConfig, settings: Any,
                 decision: DeploymentDecision) -> tuple[str, str] | None:
    """(outcome, reason) when the version is not rolled out, else None."""
    from autokfp.governance.approval import is_approved

    version = decision.version
    if cfg.governance.require_approval and not is_approved(cfg.model_name, version, settings):
        return "awaiting-approval", (
            f"governance.require_approval is true and v{version} has no approval yet: review "
            f"its model card, then run 'autokfp approve {cfg.model_name} {version}' and rerun "
            "the pipeline")
    if not rolls_out(decision.target) or not cfg.deploy.verify:
        return "skipped", "manifest only: deploy.target is 'manifest' or deploy.verify is false"
    if decision.action == "unchanged":
        return "skipped", f"the champion (v{version}) did not change; nothing to roll out"
    return None


def _smoke_rows(cfg: RunConfig, registration: dict[str, Any], test_path: str) -> pd.DataFrame:
    """The first ``deploy.smoke_rows`` held-out rows, without the target column (only the
    batches that hold them are read, not the whole file)."""
    from autokfp.modeling.feature_file import head_file, parquet_columns

    targets = (registration.get("target"), cfg.training.target)
    columns = [c for c in parquet_columns(test_path) if c not in targets]
    return head_file(test_path, columns, cfg.deploy.smoke_rows)


def _conclude(rollout: Rollout, passed: bool) -> None:
    """Promote a passed version in the registry, or roll the registry back."""
    decision, client = rollout.decision, rollout.client
    version, previous = decision.version, decision.previous_version
    if passed:
        decision.outcome = "promoted"
        decision.reason = f"v{version} passed every check and serves 100% of traffic"
        client.set_model_version_tag(decision.model, version, "deployment", "serving")
        return
    decision.outcome = "rolled-back"
    deployment.restore_champion(client, decision.model, version, previous)
    failed = [c["check"] for c in decision.verification if not c["passed"]]
    decision.reason = (f"v{version} failed {', '.join(failed)}; "
                       + (f"rolled back: v{previous} keeps serving and is champion again"
                          if previous else "no previous version to fall back to"))
