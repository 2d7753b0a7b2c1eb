"""The `decide_retraining` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.monitoring.runs import record_once
from autokfp.monitoring.window import NO_CHAMPION
from autokfp.settings import Settings
from autokfp.steps.io import read_config, read_json, write_stored_json
from autokfp.steps.results import Publication, StepResult

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
    from autokfp.monitoring.triggers import decide

    cfg = read_config(config)
    settings = Settings.from_env()
    collection = read_json(collection_path)
    drift = read_json(drift_path)
    performance = read_json(performance_path)
    anomalies = read_json(anomalies_path)
    has_champion = collection["status"] != NO_CHAMPION
    quality = collection.get("quality") or {}
    failed = [c["detail"] for c in quality.get("checks", []) if c["status"] == "fail"]
    age = None
    if has_champion:
        registered = datetime.fromisoformat(collection["champion"]["registered_at"])
        age = (
            datetime.fromisoformat(collection["window"]["end"]) - registered
        ).total_seconds() / 86400
    decision = decide(
        cfg.monitoring,
        has_champion=has_champion,
        window_rows=int(collection.get("rows", 0)),
        quality_usable=bool(quality.get("usable", False)),
        quality_detail="; ".join(failed),
        drift=drift,
        performance=performance,
        new_labelled_rows=int(collection.get("labelled_rows", 0)),
        champion_age_days=age,
    )
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
    record_once(
        kind,
        {
            k: result[k]
            for k in (
                "summary",
                "reasons",
                "blockers",
                "checks",
                "window",
                "rows",
                "status",
                "reference",
                "notes",
                "anomalies",
            )
        },
        cfg.model_name,
        result["champion"],
        run_id,
        key="decision",
        settings=settings,
    )
    write_stored_json(decision_path, result)
    log.info("%s: %s", cfg.model_name, decision.summary)
    return result
