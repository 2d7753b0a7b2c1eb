"""The `deploy_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.steps.io import read_config, read_json, write_json, write_text
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployed(StepResult):
    """What the rollout did and what serves now."""

    action: str
    outcome: str
    version: str
    target: str
    storage_uri: str
    service: str
    namespace: str
    reason: str

    def publication(self) -> Publication:
        return Publication(
            metadata={"manifest": {"service": self.service, "namespace": self.namespace,
                                   "version": self.version, "storage_uri": self.storage_uri},
                      "decision": {"action": self.action, "outcome": self.outcome,
                                   "target": self.target, "reason": self.reason}},
            returns=(self.outcome,))


@batched
def deploy_model(config: dict[str, Any] | RunConfig, registration_path: str, test_path: str,
                 manifest_path: str, decision_path: str) -> Deployed:
    """Deploy the champion, verify it, and promote it or roll back (see serving.rollout).

    Always writes the InferenceService YAML (``manifest_path``) and the decision with every
    verification check (``decision_path``). A rolled-back canary is a recorded outcome, not
    a failure: the previous version keeps serving. A first version that fails verification
    raises DeploymentError (nothing would be serving).
    """
    import yaml

    from autokfp.errors import DeploymentError
    from autokfp.serving.rollout import carry_out, plan_rollout
    from autokfp.settings import Settings

    cfg = read_config(config)
    settings = Settings.from_env()
    registration = read_json(registration_path)
    rollout = plan_rollout(cfg, settings, registration)
    write_text(manifest_path, yaml.safe_dump(rollout.manifest, sort_keys=False))
    outcomes = _ab_outcomes(cfg, settings, rollout.service) if cfg.deploy.strategy == "ab" else None
    decision = carry_out(rollout, cfg, settings, registration, test_path, outcomes=outcomes)
    write_text(manifest_path, yaml.safe_dump(rollout.manifest, sort_keys=False))  # as applied
    version, previous = decision.version, decision.previous_version
    write_json(decision_path, decision.to_dict())
    log.info("deploy %s v%s: %s (%s)", cfg.model_name, version, decision.outcome, decision.reason)
    _record_deployment(cfg, settings, decision, rollout.service)
    if decision.outcome == "rolled-back" and not previous:
        raise DeploymentError(f"{cfg.model_name} v{version} failed verification and there is no "
                              f"previous version to serve: {decision.reason}")
    return Deployed(action=decision.action, outcome=decision.outcome, version=version,
                    target=decision.target, storage_uri=rollout.storage_uri,
                    service=rollout.manifest["metadata"]["name"],
                    namespace=cfg.deploy.target_namespace(), reason=decision.reason)


def _ab_outcomes(cfg: RunConfig, settings: Any, service: str) -> Any:
    """What an A/B split's outcome test reads (``serving.ab_test``): the rows a version
    answered since the split began, from the prediction log (the predictor's own or KServe's
    payload logger's, without verification requests), joined by id to the ground truth in
    ``monitoring.labels``."""

    def outcomes(version: str, since: Any) -> tuple[Any, str]:
        from autokfp.monitoring.window import LABEL_COLUMN, join_labels, read_labels
        from autokfp.serving import ab_test
        from autokfp.serving.prediction_log import read_new_batches

        rows = read_new_batches(settings.artifact_root, service, version, since, set())
        spec = cfg.monitoring.labels
        id_column = spec.id_column or cfg.training.id_column
        target = spec.target or cfg.training.target
        joined, note = join_labels(rows, read_labels(spec.path, id_column, target), id_column,
                                   target)
        return joined.rename(columns={LABEL_COLUMN: ab_test.LABEL_COLUMN}), \
            f"{len(rows)} rows logged; {note}"

    return outcomes


def _record_deployment(cfg: RunConfig, settings: Any, decision: Any, service: str) -> None:
    """Audit trail and lineage for a rollout; neither may fail the deploy step."""
    if decision.outcome not in ("promoted", "rolled-back"):
        return
    kind = "deploy.promoted" if decision.outcome == "promoted" else "deploy.rolled_back"
    try:
        from autokfp.governance.audit import record_event

        record_event(kind, {"target": decision.target, "action": decision.action,
                            "strategy": cfg.deploy.strategy,
                            "previous_version": decision.previous_version, "reason": decision.reason,
                            "checks": decision.verification},
                     model=cfg.model_name, version=decision.version, settings=settings)
    except Exception as exc:  # noqa: BLE001
        log.warning("deployment not recorded in the audit trail: %s", exc)
    if decision.outcome == "promoted":
        try:
            from autokfp.catalog.lineage import record_deployment

            record_deployment(cfg.model_name, decision.version, cfg.deploy.target_namespace(), service, settings)
        except Exception as exc:  # noqa: BLE001
            log.warning("deployment lineage not recorded: %s", exc)
