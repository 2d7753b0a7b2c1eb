"""The `record_retraining` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.monitoring.runs import record_once
from autokfp.settings import Settings
from autokfp.steps.io import read_config, read_json, write_stored_json
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainingRecorded(StepResult):
    """What serves after the nested training graph."""

    champion: str | None
    deployment: str | None
    record: dict[str, Any]
    """Everything the step wrote to ``outcome_path``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RetrainingRecorded:
        return cls(champion=record.get("champion"), deployment=record.get("deployment"),
                   record=record)

    def publication(self) -> Publication:
        return Publication(metadata={"outcome": {"champion": str(self.champion),
                                                 "deployment": str(self.deployment)}},
                           returns=(str(self.champion),))



@batched
def record_retraining(
    config: dict[str, Any] | RunConfig, registration_path: str, outcome_path: str, run_id: str = ""
) -> RetrainingRecorded:
    """After the nested training graph: what was registered and what serves now (audit event),
    and the new champion's monitoring reference while its training data is unchanged."""
    record = _record_retraining(
        config=config, registration_path=registration_path, outcome_path=outcome_path,
        run_id=run_id
    )
    return RetrainingRecorded.from_record(record)


def _record_retraining(
    config: dict[str, Any] | RunConfig, registration_path: str, outcome_path: str, run_id: str = ""
) -> dict[str, Any]:
    """After the nested training graph: what was registered and what serves now (audit event),
    and the new champion's monitoring reference while its training data is unchanged."""
    from autokfp.modeling import registry
    from autokfp.monitoring.window import load_champion, resolve_reference

    cfg = read_config(config)
    settings = Settings.from_env()
    registration = read_json(registration_path)
    client = registry.configure(settings)
    champion = registry.champion_version(client, cfg.model_name)
    outcome = {
        "registered_version": registration.get("version"),
        "promoted": registration.get("promoted"),
        "aliases": registration.get("aliases"),
        "decision": registration.get("decision"),
        "champion": None if champion is None else str(champion.version),
        "deployment": None if champion is None else champion.tags.get("deployment"),
    }
    if champion is not None and str(champion.version) == str(registration.get("version")):
        try:
            loaded = load_champion(cfg.model_name, settings)
            if loaded is not None:
                outcome["reference"] = resolve_reference(cfg, loaded, settings).note
        except Exception as exc:  # noqa: BLE001 - the next monitoring run tries again
            outcome["reference"] = f"not stored yet: {exc}"
    record_once(
        "retrain.completed",
        outcome,
        cfg.model_name,
        outcome["champion"],
        run_id,
        key="retrain",
        settings=settings,
    )
    write_stored_json(outcome_path, outcome)
    return outcome
