"""The governance stages the KFP components call: files in, files out, one call each.

* ``data_bias_stage``: before training, group representation and label balance per
  sensitive attribute (warns, never blocks).
* ``bias_check_stage``: after evaluation, per-group metrics and the policy; mitigation by
  per-group score repair and/or thresholds; writes the model package to register (mitigation and an
  explanation background inside). **Gate**: when a limit stays broken and
  ``governance.block_deploy_on_bias`` is true it raises ``PolicyError`` after writing its
  reports, so nothing is registered or deployed; it never returns a verdict to branch on.
* ``explain_stage``: permutation importance, Kernel SHAP, plots.
* ``document_stage``: after registration, the model card and compliance report of the
  version, logged to its MLflow run and tagged on the version.

Every decision taken here is an audit event (``bias.*``, ``model.documented``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.governance import PolicyError
from autokfp.stages import _config, _read_json, _write_json, _write_text

log = logging.getLogger(__name__)


def _schema(schema_path: str | None) -> Any:
    from autokfp.catalog.schema import DatasetSchema

    if not schema_path or not Path(schema_path).exists():
        return None
    return DatasetSchema.from_json(Path(schema_path).read_text())


def _package(model_path: str) -> tuple[Any, Any, dict[str, Any]]:
    """(AutokfpModel, plan, meta) of a packaged model folder."""
    from autokfp.serving.predictor import load_package

    model = load_package(model_path)
    return model, model.plan, dict(model.meta)


def _record(kind: str, details: dict[str, Any], model: str, version: str | None = None) -> None:
    from autokfp.governance import audit

    audit.record_event(kind, details, model=model, version=version)


# ------------------------------------------------------------------------- before training


def data_bias_stage(config: dict[str, Any] | RunConfig, train_path: str, plan_path: str,
                    schema_path: str, report_path: str, summary_path: str) -> dict[str, Any]:
    """Group representation and label balance of each sensitive attribute in the training rows."""
    from autokfp.features import FeaturePlan
    from autokfp.governance import fairness

    cfg = _config(config)
    train = pd.read_parquet(train_path)
    plan = FeaturePlan.from_json(Path(plan_path).read_text())
    columns, source, problems = fairness.resolve_sensitive_columns(_schema(schema_path),
                                                                   cfg.governance, list(train.columns))
    report: dict[str, Any] = {"model": cfg.model_name, "sensitive_columns": columns,
                              "sensitive_source": source, "policy": cfg.governance.model_dump(),
                              "checks": [p.to_dict() for p in problems],
                              "notes": [p.detail for p in problems], "data": {}}
    if not columns:
        check = fairness.no_sensitive_attribute(source)
        report["checks"].append(check.to_dict())
        report["notes"].append(check.detail)
    if columns:
        positive = plan.classes[-1] if plan.task == "binary" else None
        report["data"] = fairness.check_training_data(train, plan.target, positive, columns,
                                                      cfg.governance)
    statuses = [c["status"] for d in report["data"].values() for c in d["checks"]]
    report["verdict"] = ("not_run" if not columns else "warn" if "warn" in statuses else "pass")
    report["verdict_reason"] = ("; ".join(report["notes"]) if not columns else
                                f"{statuses.count('warn')} warning(s), {statuses.count('pass')} passed")
    _write_json(summary_path, report)
    _write_text(report_path, _data_markdown(report))
    return {"verdict": report["verdict"], "sensitive_columns": ",".join(columns),
            "warnings": statuses.count("warn")}


def _data_markdown(report: dict[str, Any]) -> str:
    from autokfp.governance.fairness import render_markdown

    text = render_markdown({**report, "before": {}, "after": {}, "mitigation": {}})
    return text.replace("# Fairness report:", "# Training data fairness check:", 1)


# -------------------------------------------------------------------------- after training


def bias_check_stage(config: dict[str, Any] | RunConfig, model_path: str, train_path: str,
                     test_path: str, schema_path: str, out_model_path: str, report_path: str,
                     summary_path: str) -> dict[str, Any]:
    """Check the model's decisions per group; mitigate; write the package to register.

    Raises:
        PolicyError: a fairness limit is broken after mitigation (or mitigation is off) and
            ``governance.block_deploy_on_bias`` is true. The reports and the audit event
            are written first.
    """
    from autokfp.governance import fairness
    from autokfp.governance.explain import background_records
    from autokfp.model_package import save_model_package

    cfg = _config(config)
    policy = cfg.governance
    model, plan, meta = _package(model_path)
    train = pd.read_parquet(train_path)
    test = pd.read_parquet(test_path)
    target = meta["target"]
    columns, source, problems = fairness.resolve_sensitive_columns(_schema(schema_path), policy,
                                                                   list(test.columns))
    test_predictions = model.predict(None, test.drop(columns=[target]))
    train_predictions = model.predict(None, train.drop(columns=[target]))
    report, mitigation = fairness.assess_fairness(test, test_predictions, meta, columns, source, policy,
                                                  fit=train, fit_predictions=train_predictions,
                                                  problems=problems)
    report["model"] = cfg.model_name
    if columns:
        positive = meta["classes"][-1] if meta["task"] == "binary" else None
        report["data"] = fairness.check_training_data(train, target, positive, columns, policy)

    new_meta = dict(meta)
    new_meta.pop("fairness_mitigation", None)
    if mitigation:
        new_meta["fairness_mitigation"] = mitigation
    new_meta["fairness"] = {"verdict": report["verdict"], "sensitive_columns": columns}
    new_meta["explain_background"] = background_records(train, list(plan.input_columns),
                                                        seed=cfg.split.seed)
    save_model_package(out_model_path, plan, Path(model_path, "artifacts", "engine"), new_meta,
                       train.drop(columns=[target]))
    _write_json(summary_path, report)
    _write_text(report_path, fairness.render_markdown(report))

    verdict = report["verdict"]
    blocked = verdict == "fail" and policy.block_deploy_on_bias
    details = {"verdict": verdict, "reason": report["verdict_reason"],
               "sensitive_columns": columns, "blocked": blocked}
    if verdict == "mitigated":
        mitigation = report["mitigation"]
        applied = report["mitigation"]
        details.update({"column": applied["column"], "method": applied["method"],
                        "thresholds": applied["thresholds"],
                        "score_repair_strength": applied["score_repair_strength"],
                        "accuracy_before": report["overall_before"]["accuracy"],
                        "accuracy_after": report["overall_after"]["accuracy"],
                        "accuracy_cost": report["accuracy_cost"], "auc_cost": report["auc_cost"]})
    kind = {"mitigated": "bias.mitigated", "pass": "bias.passed", "not_run": "bias.not_run"}.get(
        verdict, "bias.blocked" if blocked else "bias.accepted_despite_failure")
    _record(kind, details, cfg.model_name)
    if blocked:
        raise PolicyError(
            f"{cfg.model_name}: fairness policy not met, nothing registered or deployed: "
            f"{report['verdict_reason']}. See the fairness report; relax governance limits, "
            "fix the data, or set governance.block_deploy_on_bias: false to deploy anyway")
    summary: dict[str, Any] = {"verdict": verdict, "reason": report["verdict_reason"],
                               "mitigated": verdict == "mitigated",
                               "accuracy_cost": float(report.get("accuracy_cost", 0.0)),
                               "auc_cost": float(report.get("auc_cost", 0.0))}
    for stage in ("before", "after"):
        for column, data in (report.get(stage) or {}).items():
            for key in ("demographic_parity_difference", "demographic_parity_ratio",
                        "ranking_parity_difference", "ranking_parity_ratio",
                        "equalized_odds_difference"):
                value = data["disparities"].get(key)
                if value is not None:
                    summary[f"{stage}_{column}_{key}"] = float(value)
    return summary


def explain_stage(config: dict[str, Any] | RunConfig, model_path: str, train_path: str,
                  test_path: str, explanation_path: str, report_path: str,
                  plots_dir: str) -> dict[str, Any]:
    """Permutation importance and Kernel SHAP for the package; JSON, HTML and PNG plots."""
    from autokfp.governance import explain

    cfg = _config(config)
    model, plan, meta = _package(model_path)
    train = pd.read_parquet(train_path)
    test = pd.read_parquet(test_path)
    result = explain.explain_model(model, plan, meta, train, test, plots_dir,
                                   rows=cfg.governance.explain_rows,
                                   shap_rows=cfg.governance.shap_rows, seed=cfg.split.seed)
    result["model"] = cfg.model_name
    _write_json(explanation_path, result)
    _write_text(report_path, explain.html_report(result, [Path(plots_dir, p) for p in result["plots"]]))
    top = result["permutation_importance"]["columns"][:5]
    return {"top_features": [i["column"] for i in top], "shap": result["shap"]["status"],
            "metric": result["permutation_importance"]["metric"]}


# ---------------------------------------------------------------------- after registration


def document_stage(config: dict[str, Any] | RunConfig, model_path: str, registration_path: str,
                   evaluation_path: str, schema_path: str, fairness_path: str,
                   explanation_path: str, card_path: str, compliance_path: str,
                   compliance_summary_path: str,
                   evidence: dict[str, str] | None = None) -> dict[str, Any]:
    """The model card and compliance report of the registered version.

    Both are logged to the version's MLflow run (``governance/``) and the version is tagged
    ``governance.fairness`` and ``governance.compliance``. ``evidence`` maps names
    (schema, plan, evaluation, fairness_report, explanation, ...) to artifact URIs.
    """
    from autokfp import registry
    from autokfp.governance import approval, audit, compliance
    from autokfp.governance.model_card import build_model_card
    from autokfp.settings import Settings

    cfg = _config(config)
    settings = Settings.from_env()
    registration = _read_json(registration_path)
    evaluation = _read_json(evaluation_path)
    fairness_report = _read_json(fairness_path)
    explanation = _read_json(explanation_path)
    schema = _schema(schema_path)
    _, plan, meta = _package(model_path)
    name, version, run_id = registration["name"], str(registration["version"]), registration["run_id"]
    client = registry.configure(settings)
    tags = dict(client.get_model_version(name, version).tags or {})
    lineage = _lineage(name, version, settings)
    evidence = dict(evidence or {})
    for key, path in (("schema", schema_path), ("plan", str(Path(model_path, "artifacts", "plan.json"))),
                      ("evaluation", evaluation_path), ("fairness_report", fairness_path),
                      ("explanation", explanation_path), ("model_card", card_path),
                      ("compliance_report", compliance_path)):
        evidence.setdefault(key, str(path))
    evidence.setdefault("registration", f"models:/{name}/{version}")
    evidence["audit_trail"] = audit.trail_uri(settings)
    evidence["model_card_mlflow"] = f"runs:/{run_id}/governance/model_card.md"
    evidence["compliance_mlflow"] = f"runs:/{run_id}/governance/compliance.md"

    verification = audit.verify_trail(settings)
    items = compliance.build_checklist(
        name=name, version=version, plan=plan, schema=schema, tags=tags, evaluation=evaluation,
        fairness=fairness_report, explanation=explanation, audit_ok=verification.ok,
        audit_problems=verification.problems, audit_events=verification.events,
        approved=approval.is_approved(name, version, settings),
        require_approval=cfg.governance.require_approval, drop_pii=cfg.features.drop_pii,
        evidence=evidence)
    result, summary = compliance.verdict(items)
    card = build_model_card(name=name, version=version, registration=registration, tags=tags,
                            meta=meta, plan=plan, schema=schema, evaluation=evaluation,
                            fairness=fairness_report, explanation=explanation, config=cfg,
                            lineage=lineage, evidence=evidence,
                            compliance={"verdict": result, "summary": summary})
    _write_text(card_path, card)
    _write_text(compliance_path, compliance.render_markdown(name, version, items))
    _write_text(compliance_summary_path, compliance.to_json(name, version, items))
    with tempfile.TemporaryDirectory(prefix="autokfp-governance-") as scratch:
        for source, target in ((card_path, "model_card.md"), (compliance_path, "compliance.md"),
                               (compliance_summary_path, "compliance.json"),
                               (fairness_path, "fairness.json"), (explanation_path, "explanation.json")):
            copy = Path(scratch, target)
            shutil.copyfile(source, copy)
            client.log_artifact(run_id, str(copy), artifact_path="governance")
    for key, value in {"governance.fairness": fairness_report.get("verdict", "not_run"),
                       "governance.compliance": result,
                       "governance.model_card": evidence["model_card_mlflow"]}.items():
        client.set_model_version_tag(name, version, key, value)
    approved = approval.is_approved(name, version, settings)
    _record("model.documented",
            {"compliance": result, "summary": summary,
             "fairness": fairness_report.get("verdict"),
             "mitigation": (fairness_report.get("mitigation") or {}).get("method"),
             "require_approval": cfg.governance.require_approval, "approved": approved,
             "card_sha256": _sha256(card)}, name, version)
    deployable = not cfg.governance.require_approval or approved
    return {"compliance": result, "summary": summary, "fairness": fairness_report.get("verdict"),
            "approval_required": cfg.governance.require_approval, "approved": approved,
            "deployable": deployable, "version": version}


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
