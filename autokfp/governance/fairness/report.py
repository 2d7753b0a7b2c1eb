"""The fairness report as Markdown, and the overall metrics it compares."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn import metrics as skm

from autokfp.governance.fairness.groups import _auc

log = logging.getLogger("autokfp.governance.fairness")


def summary_metrics(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC of the scores; accuracy, F1, precision, recall and selection rate of the decisions."""
    auc = _auc(np.asarray(y_true), np.asarray(scores))
    return {"auc": auc, "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
            "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
            "selection_rate": float(np.mean(y_pred)) if len(y_pred) else float("nan")}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _checks_table(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["| check | column | status | value | limit | detail |", "| --- | --- | --- | --- | --- | --- |"]
    for c in checks:
        lines.append(f"| {c['name']} | {c['column'] or '-'} | **{c['status']}** | "
                     f"{_fmt(c.get('value'))} | {_fmt(c.get('limit'))} | {c['detail']} |")
    return lines


def _groups_table(groups: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| group | rows | positives | selection rate | mean score | TPR | FPR | error rate | AUC |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for g, s in groups.items():
        lines.append(f"| {g} | {s['rows']} | {s['positives']} | {_fmt(s['selection_rate'])} | "
                     f"{_fmt(s['mean_score'])} | {_fmt(s['tpr'])} | {_fmt(s['fpr'])} | "
                     f"{_fmt(s['error_rate'])} | {_fmt(s['auc'])} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The fairness report (pre-training, before and after mitigation) as Markdown."""
    lines = [f"# Fairness report: {report.get('model', '')}", "",
             f"**Verdict: {report['verdict']}**: {report['verdict_reason']}", ""]
    policy = report["policy"]
    eo_limit = policy["max_equalized_odds_difference"]
    eo_text = "reported only" if eo_limit is None else f"at most {eo_limit}"
    lines += ["Policy: demographic-parity difference at most "
              f"{policy['max_demographic_parity_difference']}, ratio at least "
              f"{policy['min_demographic_parity_ratio']} (for the decisions"
              + (", and for the ranking: the top-scored share equal to the training positive "
                 f"rate ({report['top_share']:.1%}) flagged" if policy.get("ranking_parity")
                 and report.get("top_share") is not None else "")
              + f"), equalized-odds difference {eo_text}"
              f"; groups need {policy['min_group_size']} held-out rows to be measured; "
              f"mitigate: {policy['mitigate']}; block deployment on bias: "
              f"{policy['block_deploy_on_bias']}.", "",
             f"Sensitive attributes: {', '.join(report['sensitive_columns']) or 'none known'} "
             f"(from the {report['sensitive_source']}).", ""]
    if report.get("notes"):
        lines += ["## Not run", ""] + [f"- {n}" for n in report["notes"]] + [""]
    for column, data in (report.get("data") or {}).items():
        lines += [f"## Before training: `{column}` in the training rows", "",
                  "| group | rows | share | label rate |", "| --- | --- | --- | --- |"]
        lines += [f"| {g} | {s['rows']} | {s['share']:.1%} | {_fmt(s['positive_rate'])} |"
                  for g, s in data["groups"].items()]
        lines += [""] + _checks_table(data["checks"]) + [""]
    rows = ("held-out rows" if report.get("measured_on", "test") == "test"
            else "training rows scored out of fold")
    for stage, title in (("before", "The trained model"), ("after", "After mitigation")):
        for column, data in (report.get(stage) or {}).items():
            lines += [f"## {title}: `{column}` on the {rows}", ""]
            lines += _groups_table(data["groups"]) + [""]
            lines += _checks_table(data["checks"]) + [""]
    mitigation = report.get("mitigation") or {}
    if mitigation:
        lines += ["## Mitigation", "", mitigation.get("summary", ""), ""]
        if mitigation.get("attempts"):
            lines += ["| safety margin | mitigation | held-out re-check |", "| --- | --- | --- |"]
            lines += [f"| {a['margin']} | {a.get('method', '-')} | {a['result']} |"
                      for a in mitigation["attempts"]]
            lines.append("")
        if mitigation.get("thresholds"):
            lines += ["| group | threshold |", "| --- | --- |"]
            lines += [f"| {g} | {t:.4f} |" for g, t in mitigation["thresholds"].items()]
            lines += [f"| every other group | {mitigation['default_threshold']:.4f} |", ""]
        before, after = report.get("overall_before"), report.get("overall_after")
        if before and after:
            lines += ["| metric (held-out rows) | before | after | change |", "| --- | --- | --- | --- |"]
            for key in ("auc", "accuracy", "f1", "precision", "recall", "selection_rate"):
                lines.append(f"| {key} | {before[key]:.4f} | {after[key]:.4f} | "
                             f"{after[key] - before[key]:+.4f} |")
            lines += ["", "A score repair moves probabilities (within each group their order is "
                          "kept); thresholds move decisions only.", ""]
    return "\n".join(lines) + "\n"
