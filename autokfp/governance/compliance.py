"""The compliance report of one model version: a checklist mapped to named requirements.

Each item names the requirement (EU AI Act articles 10-15, GDPR articles 5(1)(c) and 25),
what autokfp checked, the status and the evidence (artifact paths, MLflow URIs, the audit
trail). Statuses: ``pass``, ``fail``, ``not_run`` (could not be checked, with why),
``pending`` (waits for a person), ``not_required`` (the policy does not ask for it).

The verdict is ``fail`` if any item failed, ``incomplete`` if any is not run or pending,
otherwise ``pass``. This is an engineering checklist that gathers evidence for a review;
it is not legal advice and does not by itself establish conformity.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, NOT_RUN, PENDING, NOT_REQUIRED = "pass", "fail", "not_run", "pending", "not_required"


@dataclass
class Item:
    requirement: str
    title: str
    status: str
    detail: str
    evidence: list[str] = field(default_factory=list)


def _better_than_chance(evaluation: dict[str, Any]) -> tuple[bool, str]:
    metrics = evaluation.get("metrics", {})
    task = evaluation.get("task")
    if task == "binary":
        auc = metrics.get("auc")
        return (auc is not None and auc == auc and auc > 0.5), f"held-out AUC {_num(auc)}"
    if task == "regression":
        r2 = metrics.get("r2")
        return (r2 is not None and r2 == r2 and r2 > 0.0), f"held-out R² {_num(r2)}"
    accuracy = metrics.get("accuracy")
    return (accuracy is not None and accuracy == accuracy and accuracy > 0.0), \
        f"held-out accuracy {_num(accuracy)}"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def build_checklist(*, name: str, version: str, plan: Any, schema: Any, tags: dict[str, str],
                    evaluation: dict[str, Any], fairness: dict[str, Any],
                    explanation: dict[str, Any], audit_ok: bool, audit_problems: list[str],
                    audit_events: int, approved: bool, require_approval: bool,
                    drop_pii: bool, evidence: dict[str, str]) -> list[Item]:
    """Every checklist item for ``name`` ``version`` with its evidence."""
    def ev(*keys: str) -> list[str]:
        return [f"{k}: {evidence[k]}" for k in keys if evidence.get(k)]

    verdict = fairness.get("verdict", NOT_RUN)
    return [
        _data_item(plan, schema, tags, ev("schema", "plan", "registration")),
        Item("EU AI Act Art. 10(2)(f)-(g)",
             "Examined for possible biases; bias detected and mitigated",
             {"pass": PASS, "mitigated": PASS, "fail": FAIL}.get(verdict, NOT_RUN),
             f"fairness verdict {verdict}: {fairness.get('verdict_reason', '')}",
             ev("data_bias_report", "fairness_report")),
        Item("EU AI Act Art. 11", "Technical documentation (model card)", PASS,
             "model card written for this version and logged to its MLflow run",
             ev("model_card", "model_card_mlflow")),
        _audit_item(audit_ok, audit_problems, audit_events, ev("audit_trail")),
        _transparency_item(explanation, ev("model_card", "explanation")),
        _oversight_item(name, version, approved, require_approval, ev("audit_trail")),
        _accuracy_item(evaluation, ev("evaluation")),
        _minimisation_item(plan, schema, drop_pii, ev("plan", "schema")),
    ]


def _data_item(plan: Any, schema: Any, tags: dict[str, str], evidence: list[str]) -> Item:
    catalogued = bool(tags.get("dataset_urn")) and bool(tags.get("dataset_fingerprint"))
    return Item(
        "EU AI Act Art. 10(2)", "Training data documented: origin, schema, preparation",
        PASS if catalogued else FAIL,
        (f"dataset `{tags.get('dataset')}` catalogued as `{tags.get('dataset_urn')}`, schema "
         f"fingerprint `{tags.get('dataset_fingerprint')}`; {len(schema.columns)} columns profiled "
         f"with semantic types; features learnt on training rows only ({len(plan.dropped)} "
         "columns dropped with reasons)") if catalogued else
        "the registered version carries no dataset URN or fingerprint tag: its training data "
        "cannot be traced; register it through the pipeline's register step",
        evidence)


def _audit_item(audit_ok: bool, audit_problems: list[str], audit_events: int,
                evidence: list[str]) -> Item:
    if audit_ok:
        detail = (f"the audit trail verifies ({audit_events} events, hash-chained); decisions about "
                  "this model are recorded and mirrored to MLflow tags")
    else:
        detail = "the audit trail does NOT verify: " + "; ".join(audit_problems)
    return Item("EU AI Act Art. 12", "Record-keeping: automatic, tamper-evident event log",
                PASS if audit_ok else FAIL, detail, evidence)


def _transparency_item(explanation: dict[str, Any], evidence: list[str]) -> Item:
    importance_ran = bool(explanation.get("permutation_importance"))
    shap_result = explanation.get("shap") or {}
    shap_note = ("per-prediction Kernel SHAP explanations (also served at :explain)"
                 if shap_result.get("status") == "run"
                 else f"local explanations {shap_result.get('reason', 'not run')}")
    return Item(
        "EU AI Act Art. 13", "Transparency: intended use, limitations, how outputs come about",
        PASS if importance_ran else NOT_RUN,
        (f"model card states intended use and limitations; global permutation importance; "
         f"{shap_note}") if importance_ran else "no explanation was produced for this version",
        evidence)


def _oversight_item(name: str, version: str, approved: bool, require_approval: bool,
                    evidence: list[str]) -> Item:
    if require_approval:
        return Item(
            "EU AI Act Art. 14", "Human oversight: a person approves before production",
            PASS if approved else PENDING,
            "approved (audit event approval.granted)" if approved else
            f"governance.require_approval is true and nobody has approved yet: run "
            f"'autokfp approve {name} {version}' after review",
            evidence)
    return Item(
        "EU AI Act Art. 14", "Human oversight: a person approves before production",
        NOT_REQUIRED,
        "governance.require_approval is false: the platform deploys autonomously; every "
        "decision is in the audit trail and a person can require approval by setting it",
        evidence)


def _accuracy_item(evaluation: dict[str, Any], evidence: list[str]) -> Item:
    ok, measured = _better_than_chance(evaluation)
    comparison = (evaluation.get("comparison") or {}).get("reason", "")
    return Item(
        "EU AI Act Art. 15", "Accuracy and robustness declared and measured",
        PASS if ok else FAIL,
        f"{measured} on {evaluation.get('test_rows')} held-out rows; {comparison}; serving "
        "validates every request against the training schema (400 naming the column)"
        if ok else f"{measured}: no better than chance on held-out rows",
        evidence)


def _minimisation_item(plan: Any, schema: Any, drop_pii: bool, evidence: list[str]) -> Item:
    pii_inputs = [c.name for c in schema.columns if c.is_pii and c.name in plan.input_columns]
    pii_dropped = [c for c, reason in plan.dropped.items() if "personal data" in reason]
    return Item(
        "GDPR Art. 5(1)(c), 25", "Data minimisation: no personal data in the features",
        FAIL if pii_inputs else PASS,
        (f"personal data used as model inputs: {pii_inputs}; set features.drop_pii: true "
         "(it is " + str(drop_pii).lower() + ")") if pii_inputs else
        (f"no column the catalog tagged as personal data is a model input; dropped: "
         f"{', '.join(pii_dropped) or 'none present'}; the package's explanation background "
         "holds model inputs only"),
        evidence)


def verdict(items: list[Item]) -> tuple[str, str]:
    """The overall verdict and a one-line summary."""
    statuses = [i.status for i in items]
    failed = [i.requirement for i in items if i.status == FAIL]
    open_items = [i.requirement for i in items if i.status in (NOT_RUN, PENDING)]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in (PASS, FAIL, NOT_RUN, PENDING, NOT_REQUIRED)
                       if statuses.count(s))
    if failed:
        return FAIL, f"{counts}; failed: {', '.join(failed)}"
    if open_items:
        return "incomplete", f"{counts}; open: {', '.join(open_items)}"
    return PASS, counts


def render_markdown(name: str, version: str, items: list[Item]) -> str:
    result, summary = verdict(items)
    lines = [f"# Compliance report: {name} v{version}", "",
             f"**Verdict: {result}** ({summary})", "",
             "An engineering checklist that gathers evidence for review; not legal advice.", "",
             "| requirement | what | status | detail | evidence |",
             "| --- | --- | --- | --- | --- |"]
    for item in items:
        evidence = "<br>".join(f"`{e}`" for e in item.evidence) or "-"
        lines.append(f"| {item.requirement} | {item.title} | **{item.status}** | {item.detail} | "
                     f"{evidence} |")
    return "\n".join(lines) + "\n"


def to_json(name: str, version: str, items: list[Item]) -> str:
    result, summary = verdict(items)
    return json.dumps({"model": name, "version": version, "verdict": result, "summary": summary,
                       "items": [asdict(i) for i in items]}, indent=2, default=str)
