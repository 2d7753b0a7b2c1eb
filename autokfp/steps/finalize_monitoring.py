"""The `finalize_monitoring` step: files in, files out, one call into the engine."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from autokfp import storage
from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.monitoring.runs import record_once, run_state_uri
from autokfp.settings import Settings
from autokfp.steps.io import read_config
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitoringFinalized(StepResult):
    """The run's final state and the champion restored after a broken deploy, if any."""

    state: str
    restored: str | None
    record: dict[str, Any]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MonitoringFinalized:
        return cls(state=record["state"], restored=record.get("restored"), record=record)

    def publication(self) -> Publication:
        return Publication(returns=(self.restored or "",))



@batched
def finalize_monitoring(
    config: dict[str, Any] | RunConfig,
    state: str,
    run_id: str = "",
    error: str = "",
    task: str = "",
    form: dict[str, Any] | None = None,
) -> MonitoringFinalized:
    """The exit handler: a failed run is recorded, and a champion promoted during the run
    whose deploy did not finish is replaced by the champion the run started with.

    ``form`` holds the run form's ``model_name``, ``dataset`` and ``target`` (applied over
    ``config`` as the run's first task did). A form that does not resolve failed that first
    task already: nothing started, so nothing is recorded or restored."""
    from autokfp.errors import AutokfpError

    try:
        run_config = _run_config(config, form)
    except AutokfpError as exc:
        if state == "SUCCEEDED":
            raise
        log.warning("monitoring run %s: its run form does not resolve (%s): nothing ran, "
                    "nothing to record or restore", run_id or "-", exc)
        return MonitoringFinalized(state=state, restored=None, record={
            "state": state, "restored": None, "note": f"invalid run form: {exc}"[:1000]})
    record = _finalize_monitoring(
        config=run_config, state=state, run_id=run_id, error=error, task=task
    )
    return MonitoringFinalized.from_record(record)


def _run_config(config: dict[str, Any] | RunConfig,
                form: dict[str, Any] | None) -> RunConfig:
    """The config the run's tasks read: ``form`` over ``config`` (data not read). Without a
    config or a dataset (the component used alone in a user's pipeline), a config that names
    only the form's model (``autokfp.steps.form.monitoring_config``)."""
    from autokfp.config import FROM_CONFIG
    from autokfp.steps.form import monitoring_config
    from autokfp.steps.resolve_config import resolve_config

    if isinstance(config, RunConfig):
        return config
    form = dict(form or {})
    if not config and str(form.get("dataset") or "").strip() in ("", FROM_CONFIG):
        return read_config(monitoring_config(None, what="finalize_monitoring",
                                             model_name=form.get("model_name") or FROM_CONFIG))
    return read_config(resolve_config(config, check_data=False, **(form or {})).config)


def _finalize_monitoring(
    config: dict[str, Any] | RunConfig,
    state: str,
    run_id: str = "",
    error: str = "",
    task: str = "",
) -> dict[str, Any]:
    """The exit handler: a failed run is recorded, and a champion promoted during the run
    whose deploy did not finish is replaced by the champion the run started with."""
    from autokfp.modeling import registry
    from autokfp.serving import deployment

    cfg = read_config(config)
    settings = Settings.from_env()
    result: dict[str, Any] = {"state": state, "restored": None}
    if state == "SUCCEEDED":
        return result
    record_once(
        "monitoring.run_failed",
        {"state": state, "error": error[:2000], "task": task},
        cfg.model_name,
        None,
        run_id,
        key="run",
        settings=settings,
    )
    uri = run_state_uri(settings, cfg.model_name, run_id) if run_id else None
    if not uri or not storage.exists(uri):
        result["note"] = "the run failed before it read the champion: nothing to restore"
        return result
    start = json.loads(storage.read_text(uri)).get("champion_at_start")
    client = registry.configure(settings)
    current = registry.champion_version(client, cfg.model_name)
    if current is None or start is None or str(current.version) == str(start):
        result["note"] = f"the champion is still v{start}: nothing to restore"
        return result
    if current.tags.get("deployment") == "serving":
        result["note"] = f"v{current.version} was deployed and verified before the failure: kept"
        return result
    failed = str(current.version)
    deployment.restore_champion(client, cfg.model_name, failed, str(start))
    traffic = _reset_canary_traffic(cfg)
    reason = (
        f"the monitoring run failed ({state} in {task or 'a task'}: {error[:300]}) after v{failed} "
        f"became champion and before its deploy was verified: v{start} is champion again, "
        f"v{failed} is marked rejected{traffic}"
    )
    record_once(
        "deploy.rolled_back",
        {"failed_version": failed, "restored_version": str(start), "reason": reason},
        cfg.model_name,
        str(start),
        run_id,
        key="restore",
        settings=settings,
    )
    result.update(restored=str(start), failed_version=failed, note=reason)
    log.warning(reason)
    return result


def _reset_canary_traffic(cfg: RunConfig) -> str:
    """On Kubernetes, send every request back to the previous revision (canary 0%); say how
    it went, as the tail of the rollback's reason ("" elsewhere)."""
    from autokfp.config.serving import resolve_target

    if resolve_target(cfg.deploy.target) != "kubernetes":
        return ""
    from autokfp.serving.inference_service import service_name

    try:  # canary 0%: every request goes back to the previous revision
        from autokfp.serving.cluster import KServeCluster

        KServeCluster(cfg.deploy.target_namespace()).set_traffic(service_name(cfg.model_name), 0)
        return "; canary traffic set to 0%"
    except Exception as exc:  # noqa: BLE001 - the registry is restored either way
        return f"; canary traffic could not be reset: {exc}"
