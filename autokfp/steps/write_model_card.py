"""The `write_model_card` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.steps.io import (
    read_config,
    read_json,
    read_package,
    read_schema,
    record_event,
    write_text,
)
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Documented(StepResult):
    """The compliance verdict of the version and whether it may be deployed."""

    compliance: str
    summary: str
    fairness: str | None
    approval_required: bool
    approved: bool
    deployable: bool
    version: str

    def publication(self) -> Publication:
        return Publication(metadata={"compliance_summary": {"verdict": self.compliance,
                                                            "summary": self.summary}},
                           returns=(self.compliance, self.deployable))


@dataclass(frozen=True)
class _Inputs:
    """What the card is written from: the upstream tasks' files, read once."""

    registration: dict[str, Any]
    evaluation: dict[str, Any]
    fairness: dict[str, Any]
    explanation: dict[str, Any]
    schema: Any
    plan: Any
    meta: Any

    @property
    def name(self) -> str:
        return self.registration["name"]

    @property
    def version(self) -> str:
        return str(self.registration["version"])

    @property
    def run_id(self) -> str:
        return self.registration["run_id"]


@batched
def write_model_card(config: dict[str, Any] | RunConfig, model_path: str, registration_path: str,
                   evaluation_path: str, schema_path: str, fairness_path: str,
                   explanation_path: str, card_path: str, compliance_path: str,
                   compliance_summary_path: str,
                   evidence: dict[str, str] | None = None,
                   card_metadata_path: str | None = None) -> Documented:
    """The model card and compliance report of the registered version.

    Both are logged to the version's MLflow run (``governance/``) and the version is tagged
    ``governance.fairness`` and ``governance.compliance``. ``card_metadata_path`` gets the
    card in Hugging Face form (metadata as YAML front matter, then the Markdown), logged as
    ``governance/README.md``. ``evidence`` maps names
    (schema, plan, evaluation, fairness_report, explanation, ...) to artifact URIs.
    """
    from autokfp.governance import compliance
    from autokfp.governance.model_card import build_model_card
    from autokfp.modeling import registry
    from autokfp.settings import Settings

    cfg = read_config(config)
    settings = Settings.from_env()
    inputs = _read_inputs(model_path, registration_path, evaluation_path, fairness_path,
                          explanation_path, schema_path)
    name, version = inputs.name, inputs.version
    client = registry.configure(settings)
    tags = dict(client.get_model_version(name, version).tags or {})
    lineage = _lineage(name, version, settings)
    evidence = _evidence(evidence, schema=schema_path,
                         plan=str(Path(model_path, "artifacts", "plan.json")),
                         evaluation=evaluation_path, fairness_report=fairness_path,
                         explanation=explanation_path, model_card=card_path,
                         compliance_report=compliance_path,
                         registration=f"models:/{name}/{version}")
    evidence.update(_run_evidence(inputs.run_id, settings))
    items = _checklist(cfg, inputs, tags, evidence, settings)
    result, summary = compliance.verdict(items)
    card = build_model_card(name=name, version=version, registration=inputs.registration,
                            tags=tags, meta=inputs.meta, plan=inputs.plan, schema=inputs.schema,
                            evaluation=inputs.evaluation, fairness=inputs.fairness,
                            explanation=inputs.explanation, config=cfg, lineage=lineage,
                            evidence=evidence, compliance={"verdict": result, "summary": summary})
    _write_and_log(client, inputs, tags, card, items, card_path=card_path,
                   card_metadata_path=card_metadata_path, compliance_path=compliance_path,
                   compliance_summary_path=compliance_summary_path,
                   fairness_path=fairness_path, explanation_path=explanation_path)
    _tag_version(client, name, version, fairness=inputs.fairness.get("verdict", "not_run"),
                 compliance=result, model_card=evidence["model_card_mlflow"])
    return _documented(cfg, name, version, result, summary, inputs.fairness, card, settings)


def _read_inputs(model_path: str, registration_path: str, evaluation_path: str,
                 fairness_path: str, explanation_path: str, schema_path: str) -> _Inputs:
    registration = read_json(registration_path)
    evaluation = read_json(evaluation_path)
    fairness = read_json(fairness_path)
    explanation = read_json(explanation_path)
    schema = read_schema(schema_path)
    _, plan, meta = read_package(model_path)
    return _Inputs(registration=registration, evaluation=evaluation, fairness=fairness,
                   explanation=explanation, schema=schema, plan=plan, meta=meta)


def _run_evidence(run_id: str, settings: Any) -> dict[str, str]:
    """Where the audit trail and the copies logged to the version's MLflow run live."""
    from autokfp.governance import audit

    return {"audit_trail": audit.trail_uri(settings),
            "model_card_mlflow": f"runs:/{run_id}/governance/model_card.md",
            "compliance_mlflow": f"runs:/{run_id}/governance/compliance.md"}


def _checklist(cfg: RunConfig, inputs: _Inputs, tags: dict[str, str],
               evidence: dict[str, str], settings: Any) -> list[Any]:
    """The compliance checklist of the version, the audit trail verified first."""
    from autokfp.governance import approval, audit, compliance

    verification = audit.verify_trail(settings)
    return compliance.build_checklist(
        name=inputs.name, version=inputs.version, plan=inputs.plan, schema=inputs.schema,
        tags=tags, evaluation=inputs.evaluation, fairness=inputs.fairness,
        explanation=inputs.explanation, audit_ok=verification.ok,
        audit_problems=verification.problems, audit_events=verification.events,
        approved=approval.is_approved(inputs.name, inputs.version, settings),
        require_approval=cfg.governance.require_approval, drop_pii=cfg.features.drop_pii,
        evidence=evidence)


def _write_and_log(client: Any, inputs: _Inputs, tags: dict[str, str], card: str,
                   items: list[Any], *, card_path: str, card_metadata_path: str | None,
                   compliance_path: str, compliance_summary_path: str, fairness_path: str,
                   explanation_path: str) -> None:
    """Write the card (and its Hugging Face form), the compliance report and summary, and log
    them with the fairness report and the explanation to the version's run."""
    from autokfp.governance import compliance

    name, version = inputs.name, inputs.version
    write_text(card_path, card)
    governance_files = [(card_path, "model_card.md")]
    if card_metadata_path:
        _write_card_metadata(card_metadata_path, card, name=name, version=version, tags=tags,
                             meta=inputs.meta, schema=inputs.schema, evaluation=inputs.evaluation)
        governance_files.append((card_metadata_path, "README.md"))
    write_text(compliance_path, compliance.render_markdown(name, version, items))
    write_text(compliance_summary_path, compliance.to_json(name, version, items))
    _log_to_run(client, inputs.run_id, [*governance_files, (compliance_path, "compliance.md"),
                                        (compliance_summary_path, "compliance.json"),
                                        (fairness_path, "fairness.json"),
                                        (explanation_path, "explanation.json")])


def _tag_version(client: Any, name: str, version: str, **values: str) -> None:
    """Tag the version ``governance.<key>`` for each value, in the order given."""
    for key, value in values.items():
        client.set_model_version_tag(name, version, f"governance.{key}", value)


def _documented(cfg: RunConfig, name: str, version: str, result: str, summary: str,
                fairness_report: dict[str, Any], card: str, settings: Any) -> Documented:
    """Audit the documentation (with the card's hash) and say whether it may be deployed."""
    from autokfp.governance import approval

    approved = approval.is_approved(name, version, settings)
    record_event("model.documented",
            {"compliance": result, "summary": summary,
             "fairness": fairness_report.get("verdict"),
             "mitigation": (fairness_report.get("mitigation") or {}).get("method"),
             "require_approval": cfg.governance.require_approval, "approved": approved,
             "card_sha256": _sha256(card)}, name, version)
    deployable = not cfg.governance.require_approval or approved
    return Documented(compliance=result, summary=summary, fairness=fairness_report.get("verdict"),
                      approval_required=cfg.governance.require_approval, approved=approved,
                      deployable=bool(deployable), version=str(version))


def _write_card_metadata(path: str, card: str, **facts: Any) -> None:
    """The card in Hugging Face form: its metadata as YAML front matter, then the Markdown."""
    from autokfp.governance.model_card import card_metadata, card_with_metadata

    write_text(path, card_with_metadata(card, card_metadata(**facts)))


def _evidence(given: dict[str, str] | None, **defaults: str) -> dict[str, str]:
    """The evidence the caller named, and where it did not, the step's own files."""
    evidence = dict(given or {})
    for key, path in defaults.items():
        evidence.setdefault(key, str(path))
    return evidence


def _log_to_run(client: Any, run_id: str, files: list[tuple[str, str]]) -> None:
    """Log each (path, name) to the MLflow run under ``governance/``, under that name."""
    with tempfile.TemporaryDirectory(prefix="autokfp-governance-") as scratch:
        for source, target in files:
            copy = Path(scratch, target)
            shutil.copyfile(source, copy)
            client.log_artifact(run_id, str(copy), artifact_path="governance")


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _lineage(name: str, version: str, settings: Any) -> list[dict[str, Any]] | None:
    try:
        from autokfp.catalog.lineage import lineage

        return lineage(f"{name} v{version}", settings)
    except Exception as exc:  # noqa: BLE001 - a card without lineage says so; it is still a card
        log.info("no catalog lineage for %s v%s: %s", name, version, exc)
        return None
