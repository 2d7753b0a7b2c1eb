"""The `decide_retraining` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.monitoring.runs import record_once
from autokfp.monitoring.window import NO_CHAMPION
from autokfp.settings import Settings
from autokfp.steps.io import read_config, read_json, write_stored_json
from autokfp.steps.results import Publication, StepResult

if TYPE_CHECKING:
    from autokfp.monitoring.triggers import RetrainDecision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainingDecided(StepResult):
    """Whether to retrain, and the summary of why."""

    retrain: bool
    summary: str
    status: str
    record: dict[str, Any]
    """Everything the step wrote to ``decision_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RetrainingDecided:
        return cls(retrain=bool(record["retrain"]), summary=record["summary"],
                   status=record.get("status", ""), record=record)

    def publication(self) -> Publication:
        return Publication(metadata={"decision": {"retrain": self.retrain,
                                                  "summary": self.summary}},
                           returns=(self.retrain,))



@batched
def decide_retraining(
    config: dict[str, Any] | RunConfig,
    collection_path: str,
    drift_path: str,
    performance_path: str,
    anomalies_path: str,
    decision_path: str,
    run_id: str = "",
) -> RetrainingDecided:
    """Apply the retraining triggers; record the decision and its reasons in the audit trail."""
    record = _decide_retraining(
        config=config, collection_path=collection_path, drift_path=drift_path,
        performance_path=performance_path, anomalies_path=anomalies_path,
        decision_path=decision_path, run_id=run_id
    )
    return RetrainingDecided.from_record(record)


# what the audit event of the decision carries
AUDITED = ("summary", "reasons", "blockers", "checks", "window", "rows", "status", "reference",
           "notes", "anomalies")


def _decide_retraining(
    config: dict[str, Any] | RunConfig,
    collection_path: str,
    drift_path: str,
    performance_path: str,
    anomalies_path: str,
    decision_path: str,
    run_id: str = "",
) -> dict[str, Any]:
    """Apply the retraining triggers; record the decision and its reasons in the audit trail."""
    cfg = read_config(config)
    settings = Settings.from_env()
    collection = read_json(collection_path)
    drift = read_json(drift_path)
    performance = read_json(performance_path)
    anomalies = read_json(anomalies_path)
    decision = _decide(cfg, collection, drift, performance)
    result = decision.to_dict()
    result.update(
        model=cfg.model_name,
        champion=(collection.get("champion") or {}).get("version"),
        window=collection["window"],
        rows=collection.get("rows", 0),
        status=collection["status"],
        notes=collection.get("notes", []),
        reference=(collection.get("reference") or {}).get("source"),
        anomalies=[a["summary"] for a in anomalies.get("anomalies", [])],
    )
    kind = "retrain.triggered" if decision.retrain else "retrain.skipped"
    record_once(kind, {k: result[k] for k in AUDITED}, cfg.model_name, result["champion"],
                run_id, key="decision", settings=settings)
    write_stored_json(decision_path, result)
    log.info("%s: %s", cfg.model_name, decision.summary)
    return result


def _decide(cfg: RunConfig, collection: dict[str, Any], drift: dict[str, Any],
            performance: dict[str, Any]) -> RetrainDecision:
    """The triggers applied to this window's collection, drift and performance."""
    from autokfp.monitoring.triggers import decide

    has_champion = collection["status"] != NO_CHAMPION
    quality = collection.get("quality") or {}
    failed = [c["detail"] for c in quality.get("checks", []) if c["status"] == "fail"]
    return decide(
        cfg.monitoring,
        has_champion=has_champion,
        window_rows=int(collection.get("rows", 0)),
        quality_usable=bool(quality.get("usable", False)),
        quality_detail="; ".join(failed),
        drift=drift,
        performance=performance,
        new_labelled_rows=int(collection.get("labelled_rows", 0)),
        champion_age_days=_champion_age_days(collection) if has_champion else None,
    )


def _champion_age_days(collection: dict[str, Any]) -> float:
    """Days from the champion's registration to the end of the window."""
    registered = datetime.fromisoformat(collection["champion"]["registered_at"])
    end = datetime.fromisoformat(collection["window"]["end"])
    return (end - registered).total_seconds() / 86400
