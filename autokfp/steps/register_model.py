"""The `register_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched
from autokfp.steps.io import read_config, read_json, write_json
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered(StepResult):
    """The registered version, its aliases and why."""

    name: str
    version: str
    run_id: str
    aliases: list[str]
    promoted: bool
    decision: str
    source: str
    reused: bool = False
    replaced_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    target: str = ""
    """The column the model predicts (what ``deploy_model``'s smoke test drops)."""

    def publication(self) -> Publication:
        return Publication(metadata={"registration": {
            "model": self.name, "version": self.version, "aliases": ",".join(self.aliases),
            "decision": self.decision}}, returns=(self.version,))


@batched
def register_model(config: dict[str, Any] | RunConfig, model_path: str, evaluation_path: str,
                   schema_path: str, registration_path: str,
                   extra_artifacts: dict[str, str] | None = None, kfp_run_id: str = "",
                   pipeline_name: str = "") -> Registered:
    """Register the candidate in MLflow; alias ``champion`` only if it won the comparison.

    ``kfp_run_id`` and ``pipeline_name`` (what KFP substituted for the run; an unsubstituted
    placeholder is dropped) become the version's ``kfp.run_id``/``kfp.pipeline_name`` tags,
    so a version leads back to the run that made it.
    """
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.modeling import registry

    cfg = read_config(config)
    evaluation = read_json(evaluation_path)
    schema = DatasetSchema.from_json(Path(schema_path).read_text())
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    comparison = evaluation["comparison"]
    metrics = _run_metrics(evaluation, meta)
    params = _run_params(cfg, meta, schema)
    tags = _version_tags(meta, schema, kfp_run_id=kfp_run_id, pipeline_name=pipeline_name)
    with tempfile.TemporaryDirectory(prefix="autokfp-register-") as scratch:
        evidence = Path(scratch, "evaluation.json")
        shutil.copyfile(evaluation_path, evidence)
        artifacts = {"evaluation": str(evidence), **(extra_artifacts or {})}
        registered = registry.register_model(
            model_path, cfg.model_name, metrics, params, tags, promote=bool(comparison["promote"]),
            decision=comparison["reason"], compared_champion=comparison.get("champion_version"),
            artifacts=artifacts,
        )
    result = {**registered.to_dict(), "target": str(meta["target"])}
    if not registered.reused or _unrecorded(cfg.model_name, registered.version):
        _record_registration(cfg.model_name, registered, meta["engine"],
                             comparison.get("champion_version"))
    write_json(registration_path, result)
    _record_model_lineage(cfg, registered, schema, model_path, meta, evaluation)
    return Registered(**result)


def _run_metrics(evaluation: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The run's metrics: test_*, the CV metrics, the honest estimate with its interval, and
    the champion's test value it was compared with."""
    comparison = evaluation["comparison"]
    metrics = {f"test_{k}": v for k, v in evaluation["metrics"].items()}
    metrics.update({k: v for k, v in meta.get("cv_metrics", {}).items()})
    estimate = evaluation.get("estimate") or {}
    for key in ("value", "ci_low", "ci_high", "rows"):  # the honest estimate, next to test_*
        if estimate.get(key) is not None:
            suffix = "" if key == "value" else f"_{key}"
            metrics[f"estimate_{estimate['metric']}{suffix}"] = float(estimate[key])
    if comparison.get("champion") is not None:
        metrics["champion_test_" + comparison["metric"]] = comparison["champion"]
    return metrics


def _run_params(cfg: RunConfig, meta: dict[str, Any], schema: Any) -> dict[str, Any]:
    """The run's parameters: engine, task, target, dataset, the budget, the engine's
    settings and the parameters of the model it chose."""
    return {"engine": meta["engine"], "task": meta["task"], "target": meta["target"],
            "dataset": schema.dataset_id, **{f"budget.{k}": v for k, v in cfg.budget.model_dump().items()},
            **{f"engines.{meta['engine']}.{k}": v
               for k, v in cfg.to_dict()["engines"].get(meta["engine"], {}).items()},
            **{f"engine.{k}": v for k, v in meta.get("params", {}).items()}}


def _version_tags(meta: dict[str, Any], schema: Any, *, kfp_run_id: str,
                  pipeline_name: str) -> dict[str, str]:
    """The version's tags: what made it, from which dataset, and the KFP run (an
    unsubstituted ``{{...}}`` placeholder is dropped)."""
    from autokfp.catalog.datahub import dataset_urn

    tags = {"engine": meta["engine"], "task": meta["task"], "dataset": schema.dataset_id,
            "dataset_urn": dataset_urn(schema), "dataset_fingerprint": schema.fingerprint,
            "primary_metric": meta["primary_metric"], "leader": meta.get("leader", "")}
    for key, value in (("kfp.run_id", kfp_run_id), ("kfp.pipeline_name", pipeline_name)):
        if value and not value.startswith("{{"):
            tags[key] = value
    if schema.catalog.get("schema_version"):
        tags["dataset_schema_version"] = str(schema.catalog["schema_version"])
    return tags


def _record_registration(model: str, registered: Any, engine: str,
                         champion_version: Any) -> None:
    """The audit events of the registration (and of a challenger kept as such)."""
    from autokfp.steps.io import record_event

    details = {"decision": registered.decision, "aliases": registered.aliases,
               "promoted": registered.promoted, "run_id": registered.run_id,
               "engine": engine, "metrics": registered.metrics}
    if registered.reused:  # the run that registered it was killed before this event
        details["recorded_by_rerun"] = True
    record_event("model.registered", details, model, registered.version)
    if not registered.promoted:
        record_event("model.challenger_kept", {
            "reason": registered.decision,
            "champion": champion_version}, model,
            registered.version)


def _unrecorded(model: str, version: str) -> bool:
    """A reused version whose registration was never recorded in the audit trail: the run
    that registered it was killed before its event (the rerun records it)."""
    from autokfp.governance import audit

    return not audit.events_for(model, version, kind="model.registered")


def _record_model_lineage(cfg: RunConfig, registered: Any, schema: Any, model_path: str,
                          meta: dict[str, Any], evaluation: dict[str, Any]) -> None:
    """Dataset -> feature set -> model version (-> deployment) in the catalog.

    The model is registered by then: a catalog that cannot be written costs a warning,
    never the registration.
    """
    try:
        from autokfp.catalog.lineage import record_model_lineage
        from autokfp.serving.inference_service import service_name

        metrics = {}
        for key, value in evaluation.get("metrics", {}).items():
            try:
                metrics[f"test_{key}"] = float(value)
            except (TypeError, ValueError):
                continue
        deployment = ((cfg.deploy.target_namespace(), service_name(cfg.model_name))
                      if registered.promoted else None)
        record_model_lineage(
            cfg.model_name, registered.version, schema,
            Path(model_path, "artifacts", "plan.json"), aliases=list(registered.aliases),
            metrics={k: v for k, v in metrics.items() if v == v},
            properties={"engine": meta.get("engine", ""), "task": meta.get("task", ""),
                        "run_id": registered.run_id, "decision": registered.decision,
                        "storage_uri": registered.source},
            deployment=deployment, replaced_version=registered.replaced_version)
    except Exception as exc:  # noqa: BLE001 - lineage must never undo a registration
        log.warning("registered %s v%s, but its lineage could not be recorded in the catalog: "
                    "%s: %s", cfg.model_name, registered.version, type(exc).__name__, exc)
