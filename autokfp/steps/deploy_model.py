"""The `deploy_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.serving.rollout import _deploy_kubernetes, _deploy_local
from autokfp.steps.io import read_config, read_json, write_json, write_text

log = logging.getLogger(__name__)


def deploy_model(config: dict[str, Any] | RunConfig, registration_path: str, test_path: str,
                 manifest_path: str, decision_path: str) -> dict[str, Any]:
    """Deploy the champion, verify it, and promote it or roll back (see serving.deployment).

    Always writes the InferenceService YAML (``manifest_path``) and the decision with every
    verification check (``decision_path``). A rolled-back canary is a recorded outcome, not
    a failure: the previous version keeps serving. A first version that fails verification
    raises DeploymentError (nothing would be serving).
    """
    import mlflow.artifacts
    import yaml

    from autokfp.errors import DeploymentError
    from autokfp.modeling import registry
    from autokfp.modeling.model_package import load_model_package
    from autokfp.serving import deployment
    from autokfp.serving.inference_service import build_inference_service, service_name
    from autokfp.settings import Settings

    cfg = read_config(config)
    settings = Settings.from_env()
    registration = read_json(registration_path)
    client = registry.configure(settings)
    champion = registry.champion_version(client, cfg.model_name)
    if champion is None:
        raise DeploymentError(f"{cfg.model_name}: no champion is registered, so there is nothing to "
                              "deploy; check the register step's decision")
    version = str(champion.version)
    from autokfp.governance.approval import is_approved

    awaiting_approval = cfg.governance.require_approval and not is_approved(cfg.model_name, version,
                                                                             settings)
    new_version = bool(registration["promoted"]) and not registration.get("reused")
    previous = registration.get("replaced_version") if new_version else None
    storage_uri = client.get_model_version_download_uri(cfg.model_name, version)
    canary = bool(new_version and previous)
    manifest = build_inference_service(cfg.model_name, version, storage_uri, cfg.deploy, canary=canary)
    write_text(manifest_path, yaml.safe_dump(manifest, sort_keys=False))
    service = service_name(cfg.model_name)
    target = deployment.resolve_target(cfg.deploy.target)
    action = "canary" if canary else ("initial" if new_version else "unchanged")
    decision = deployment.DeploymentDecision(target=target, model=cfg.model_name, version=version,
                                             previous_version=previous, action=action,
                                             outcome="skipped", verification=[])

    local_dir = None
    if awaiting_approval:
        decision.outcome = "awaiting-approval"
        decision.reason = (f"governance.require_approval is true and v{version} has no approval yet: "
                           f"review its model card, then run 'autokfp approve {cfg.model_name} "
                           f"{version}' and rerun the pipeline")
    elif target == "manifest" or not cfg.deploy.verify:
        decision.reason = "manifest only: deploy.target is 'manifest' or deploy.verify is false"
    elif not new_version:
        decision.reason = f"the champion (v{version}) did not change; nothing to roll out"
    else:
        test = pd.read_parquet(test_path)
        meta_target = registration.get("target")
        rows = test.drop(columns=[c for c in (meta_target, cfg.training.target) if c and c in test.columns])
        rows = rows.head(cfg.deploy.smoke_rows).reset_index(drop=True)
        local_dir = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{cfg.model_name}/{version}")
        try:
            expected = load_model_package(local_dir).predict(rows)
        except Exception as exc:  # noqa: BLE001 - a model that cannot score offline is broken
            expected = None
            decision.verification.append({"check": "offline_scoring", "passed": False,
                                          "detail": f"the model cannot score held-out rows: {exc}"})
        if target == "local":
            verification = _deploy_local(cfg, settings, service, version, local_dir, rows, expected)
            decision.endpoint = verification.pop("endpoint", None)
        elif target == "kubernetes":
            verification = _deploy_kubernetes(cfg, manifest, service, canary, rows, expected)
            decision.endpoint = verification.pop("endpoint", None)
        else:
            raise DeploymentError(f"unknown deploy target '{target}'; use kubernetes, local or manifest")
        decision.verification += verification["checks"]
        passed = expected is not None and verification["passed"]
        if passed:
            decision.outcome = "promoted"
            decision.reason = f"v{version} passed every check and serves 100% of traffic"
            client.set_model_version_tag(cfg.model_name, version, "deployment", "serving")
        else:
            decision.outcome = "rolled-back"
            deployment.restore_champion(client, cfg.model_name, version, previous)
            failed = [c["check"] for c in decision.verification if not c["passed"]]
            decision.reason = (f"v{version} failed {', '.join(failed)}; "
                               + (f"rolled back: v{previous} keeps serving and is champion again"
                                  if previous else "no previous version to fall back to"))
    write_json(decision_path, decision.to_dict())
    log.info("deploy %s v%s: %s (%s)", cfg.model_name, version, decision.outcome, decision.reason)
    _record_deployment(cfg, settings, decision, service)
    if decision.outcome == "rolled-back" and not previous:
        raise DeploymentError(f"{cfg.model_name} v{version} failed verification and there is no previous "
                              f"version to serve: {decision.reason}")
    return {"action": action, "outcome": decision.outcome, "version": version, "target": target,
            "storage_uri": storage_uri, "service": manifest["metadata"]["name"],
            "namespace": cfg.deploy.namespace, "reason": decision.reason}


def _record_deployment(cfg: RunConfig, settings: Any, decision: Any, service: str) -> None:
    """Audit trail and lineage for a rollout; neither may fail the deploy step."""
    if decision.outcome not in ("promoted", "rolled-back"):
        return
    kind = "deploy.promoted" if decision.outcome == "promoted" else "deploy.rolled_back"
    try:
        from autokfp.governance.audit import record_event

        record_event(kind, {"target": decision.target, "action": decision.action,
                            "previous_version": decision.previous_version, "reason": decision.reason,
                            "checks": decision.verification},
                     model=cfg.model_name, version=decision.version, settings=settings)
    except Exception as exc:  # noqa: BLE001
        log.warning("deployment not recorded in the audit trail: %s", exc)
    if decision.outcome == "promoted":
        try:
            from autokfp.catalog.lineage import record_deployment

            record_deployment(cfg.model_name, decision.version, cfg.deploy.namespace, service, settings)
        except Exception as exc:  # noqa: BLE001
            log.warning("deployment lineage not recorded: %s", exc)
