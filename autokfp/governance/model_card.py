"""The model card of one registered model version (Markdown).

Written after registration, so it names the version, its MLflow run and the catalog links
the registry recorded (dataset URN, schema fingerprint and version). Sections: intended
use, data (catalog links, lineage, features used and dropped), metrics overall and per
group, fairness (before and after mitigation), explanations, limitations, training
configuration, package versions. The card is also logged to the model's MLflow run.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

PACKAGES = ("autokfp", "h2o", "mlflow", "kfp", "kserve", "scikit-learn", "pandas", "numpy",
            "fairlearn", "shap", "acryl-datahub")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that trained, checked and serve the model."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def default_intended_use(meta: dict[str, Any], dataset: str) -> str:
    return (f"Predicts `{meta['target']}` ({meta['task']}) for rows shaped like the catalogued "
            f"dataset `{dataset}`, as decision support. It was trained and selected "
            "autonomously by autokfp; it has not been validated for other populations, time "
            "periods or purposes. State the business purpose in `governance.intended_use`.")


def limitations(meta: dict[str, Any], plan: Any, fairness: dict[str, Any],
                explanation: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """Known limits, derived from what the checks found (never a fixed boilerplate list)."""
    items = [f"Measured on {evaluation.get('test_rows', 'the')} held-out rows of one fixed split; "
             "figures move with the sample (about ±0.01 AUC at 1,000 rows)."]
    if warning := refit_warning(meta):
        items.append(warning)
    for note in fairness.get("notes", []):
        items.append(f"Fairness: {note}")
    for column, data in (fairness.get("data") or {}).items():
        for check in data.get("checks", []):
            if check["status"] == "warn":
                items.append(f"Training data, `{column}`: {check['detail']}.")
    mitigation = fairness.get("mitigation") or {}
    if mitigation.get("applied"):
        column = mitigation["column"]
        items.append(f"Scores and decisions are adjusted per group of `{column}` "
                     f"({mitigation['method']}): requests must carry `{column}` (rows without it "
                     "are not adjusted), served probabilities of adjusted groups are no longer "
                     "calibrated, and treating groups differently may itself need a legal review "
                     "where you operate.")
    sensitive_inputs = [c for c in fairness.get("sensitive_columns", []) if c in plan.input_columns]
    if sensitive_inputs:
        items.append(f"Sensitive attribute(s) {', '.join(f'`{c}`' for c in sensitive_inputs)} are "
                     "model inputs; drop them with `features.drop_columns` if your policy forbids it "
                     "(the parity checks still run on them).")
    shap_result = explanation.get("shap") or {}
    if shap_result.get("status") != "run":
        items.append(f"Local explanations: {shap_result.get('reason', 'not run')}.")
    else:
        items.append("Kernel SHAP values are estimates from a small background sample "
                     f"({shap_result.get('background_rows')} rows); use them to read single "
                     "predictions, not as exact attributions.")
    if meta.get("task") == "binary" or meta.get("calibration"):
        from autokfp.modeling.calibration import describe_calibration

        items.append(describe_calibration(meta.get("calibration")))
    return items


def build_model_card(*, name: str, version: str, registration: dict[str, Any],
                     tags: dict[str, str], meta: dict[str, Any], plan: Any, schema: Any,
                     evaluation: dict[str, Any], fairness: dict[str, Any],
                     explanation: dict[str, Any], config: Any,
                     lineage: list[dict[str, Any]] | None, evidence: dict[str, str],
                     compliance: dict[str, Any] | None = None,
                     versions: dict[str, str] | None = None) -> str:
    """The Markdown model card of ``name`` ``version``."""
    dataset = tags.get("dataset") or schema.dataset_id
    lines = _header(name, version, registration, meta, config, dataset)
    lines += _data_section(tags, meta, plan, schema, evaluation, lineage, dataset)
    lines += _metrics_section(evaluation, fairness, meta)
    lines += _fairness_section(fairness)
    lines += _explanations_section(explanation)
    lines += ["## Limitations", ""]
    lines += [f"- {item}" for item in limitations(meta, plan, fairness, explanation, evaluation)]
    lines.append("")
    if compliance:
        lines += ["## Compliance", "", f"**{compliance['verdict']}**: {compliance['summary']} "
                  "(see the compliance report).", ""]
    lines += _training_section(config, meta)
    lines += ["## Package versions", "", "| package | version |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in (versions or package_versions()).items()]
    lines.append("")
    if evidence:
        lines += ["## Evidence", "", "| artifact | where |", "| --- | --- |"]
        lines += [f"| {k} | `{v}` |" for k, v in evidence.items()]
        lines.append("")
    return "\n".join(lines)


def _header(name: str, version: str, registration: dict[str, Any], meta: dict[str, Any],
            config: Any, dataset: str) -> list[str]:
    """Title, registry coordinates and the intended use."""
    intended = config.governance.intended_use or default_intended_use(meta, dataset)
    return [f"# Model card: {name} v{version}", "",
            f"Aliases: {', '.join(registration.get('aliases', [])) or '-'}; "
            f"decision: {registration.get('decision', '-')}", "",
            f"MLflow run `{registration.get('run_id', '')}` "
            f"(`models:/{name}/{version}`); engine {meta['engine']}, leader "
            f"`{meta.get('leader', '')}`; task {meta['task']}, target `{meta['target']}`.", "",
            "## Intended use", "", intended, ""]


def _data_section(tags: dict[str, str], meta: dict[str, Any], plan: Any, schema: Any,
                  evaluation: dict[str, Any], lineage: list[dict[str, Any]] | None,
                  dataset: str) -> list[str]:
    """The dataset and its catalog links, lineage, and the features used and dropped."""
    lines = ["## Data", "",
             "| what | value |", "| --- | --- |",
             f"| dataset | `{dataset}` ({schema.platform}, {schema.row_count} rows) |",
             f"| catalog URN | `{tags.get('dataset_urn', '-')}` |",
             f"| schema fingerprint | `{tags.get('dataset_fingerprint', schema.fingerprint)}` |",
             f"| schema version | {tags.get('dataset_schema_version', schema.catalog.get('schema_version', '-'))} |",
             f"| training rows | {meta.get('trained_rows', '-')} |",
             f"| rows the model was fitted on | {meta.get('fitted_rows', meta.get('trained_rows', '-'))} |",
             f"| held-out rows | {evaluation.get('test_rows', '-')} |", ""]
    serving = serving_facts(meta)
    if serving["served"] == "refit":
        lines[-1:-1] = [
            f"| served model | refitted on all {serving['served_fitted_rows']} labelled rows "
            "after the champion gate |",
            f"| gated model | fitted on {serving['gate_fitted_rows']} rows (kept in the version "
            f"as `{serving['gate_model']}/`; the next run's gate scores it) |"]
    if lineage:
        lines += ["Lineage (from the catalog):", ""]
        for entry in lineage:
            for node in entry.get("upstream", []):
                lines.append(f"- upstream {node.get('kind')}: `{node.get('name')}` (`{node.get('urn')}`)")
            for node in entry.get("downstream", []):
                lines.append(f"- downstream {node.get('kind')}: `{node.get('name')}` (`{node.get('urn')}`)")
        lines.append("")
    else:
        lines += ["Lineage: not recorded in the catalog for this version.", ""]
    lines += [f"Features used ({len(plan.input_columns)} input columns): "
              + ", ".join(f"`{c}`" for c in plan.input_columns), "",
              "| dropped column | why |", "| --- | --- |"]
    lines += [f"| `{c}` | {r} |" for c, r in plan.dropped.items()] or ["| - | - |"]
    lines.append("")
    return lines


def _metrics_section(evaluation: dict[str, Any], fairness: dict[str, Any],
                     meta: dict[str, Any]) -> list[str]:
    """Held-out metrics, the champion comparison, and the per-group tables."""
    lines = ["## Metrics (held-out rows)", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {int(v) if k == 'rows' else _fmt(v)} |"
              for k, v in evaluation.get("metrics", {}).items()]
    estimate = evaluation.get("estimate") or {}
    if estimate.get("value") is not None:
        interval = (f", 90% interval {_fmt(estimate['ci_low'])}–{_fmt(estimate['ci_high'])}"
                    if estimate.get("ci_low") is not None else "")
        lines += ["", f"Estimate used to choose the model: {estimate['metric']} "
                      f"{_fmt(estimate['value'])}{interval} on {estimate['rows']} rows "
                      f"({estimate['source']}: {estimate.get('holdout_rows', 0)} training rows "
                      f"scored out of sample + {estimate.get('test_rows', 0)} held-out rows). "
                      "The held-out figures above are noisier on a small table."]
    rows = meta.get("trained_rows")
    serving = serving_facts(meta)
    if serving["served"] == "refit":
        lines += ["", f"The served model is the gated configuration fitted again on all "
                      f"{serving['served_fitted_rows']} labelled rows, the "
                      f"{evaluation.get('test_rows', 'held-out')} held-out rows included, after "
                      "it passed the champion gate. The held-out figures above are those of "
                      f"the gated model (fitted on {serving['gate_fitted_rows']} rows without "
                      "them), which the version keeps for the next run's comparison; the "
                      "served model has seen those rows, so it has no held-out figure of its "
                      f"own. Refit check: {serving['check']}."]
    elif warning := refit_warning(meta):
        lines += ["", warning]
    elif rows:
        fitted = meta.get("fitted_rows", rows)
        fitted_on = (f"all {rows} training rows" if fitted == rows else
                     f"{fitted} of the {rows} training rows (the rest were the engine's "
                     "validation rows)")
        lines += ["", f"The model was fitted on {fitted_on}; the "
                      f"{evaluation.get('test_rows', 'held-out')} held-out rows were kept out "
                      "of training to compare candidates and the champion (no refit on them"
                      + (f": {serving['reason']}" if serving["reason"] else "") + ")."]
    comparison = evaluation.get("comparison") or {}
    lines += ["", f"Champion comparison: {comparison.get('reason', 'n/a')}", ""]
    if fallback := meta.get("gate_fallback"):
        lines += [f"**Selected as the gate's fallback**: {fallback['reason']}. The "
                  f"{fallback['from_engine']} candidate ranked first on the pooled rows but "
                  "showed no edge on the held-out rows; this candidate, tied with it there, "
                  f"was held to confidence {fallback['confidence']:.3f} instead of the usual "
                  "one, since the same held-out rows were looked at twice.", ""]
    if fairness.get("overall_after"):
        after, before = fairness["overall_after"], fairness["overall_before"]
        lines += [f"Bias mitigation, on the same {_fairness_rows(fairness)}: as trained AUC {before['auc']:.4f}, "
                  f"accuracy {before['accuracy']:.4f}, F1 {before['f1']:.4f}; as registered and "
                  f"served (mitigated) AUC {after['auc']:.4f}, accuracy {after['accuracy']:.4f}, "
                  f"F1 {after['f1']:.4f}.", ""]
    for stage, title in (("before", "Per group, as trained"), ("after", "Per group, as deployed")):
        for column, data in (fairness.get(stage) or {}).items():
            lines += [f"{title} (`{column}`):", "",
                      "| group | rows | selection rate | mean score | TPR | FPR | error rate | AUC |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            for group, s in data["groups"].items():
                small = " (too small to judge)" if group in data.get("too_small", {}) else ""
                lines.append(f"| {group}{small} | {s['rows']} | {_fmt(s['selection_rate'], 3)} | "
                             f"{_fmt(s['mean_score'], 3)} | {_fmt(s['tpr'], 3)} | {_fmt(s['fpr'], 3)} "
                             f"| {_fmt(s['error_rate'], 3)} | {_fmt(s['auc'], 3)} |")
            lines.append("")
    return lines


def _fairness_rows(fairness: dict[str, Any]) -> str:
    """Which rows the fairness figures were measured on."""
    if fairness.get("measured_on", "test") == "test":
        return "held-out rows"
    return (f"{fairness.get('test_rows', 'the')} training rows scored out of fold by the "
            "engine's cross-validation models, as the test rows could not measure every group")


def _fairness_section(fairness: dict[str, Any]) -> list[str]:
    """The fairness verdict, the mitigation carried in the model, and the checks."""
    lines = ["## Fairness", "", f"**{fairness.get('verdict', 'not_run')}**: "
             f"{fairness.get('verdict_reason', '')}", ""]
    mitigation = fairness.get("mitigation") or {}
    if mitigation.get("summary"):
        lines += [mitigation["summary"], ""]
    if mitigation.get("applied"):
        lines += [f"Mitigation carried in the model: {mitigation['method']}. Accuracy cost "
                  f"{fairness.get('accuracy_cost', 0.0):+.4f}, AUC cost "
                  f"{fairness.get('auc_cost', 0.0):+.4f} ({_fairness_rows(fairness)}).", ""]
    latest = fairness.get("after") or fairness.get("before") or {}
    checks = [c for data in latest.values() for c in data["checks"]] + fairness.get("checks", [])
    if checks:
        lines += ["| check | column | status | detail |", "| --- | --- | --- | --- |"]
        lines += [f"| {c['name']} | {c['column'] or '-'} | {c['status']} | {c['detail']} |"
                  for c in checks]
        lines.append("")
    return lines


def _explanations_section(explanation: dict[str, Any]) -> list[str]:
    """Permutation importance, Kernel SHAP and H2O contributions, and the :explain route."""
    lines = ["## Explanations", ""]
    importance = explanation.get("permutation_importance")
    if importance:
        top = importance["columns"][:8]
        served = explanation.get("served") or {}
        rows = (f"{importance['metric']} on {importance['rows']} test rows the served refit "
                "was fitted on: what it relies on, not an out-of-sample measure"
                if served.get("model") == "refit" else
                f"held-out {importance['metric']}, {importance['rows']} rows")
        lines += [f"Permutation importance of the served model (drop in {rows}): "
                  + ", ".join(f"`{i['column']}` {i['importance']:.4f}" for i in top), ""]
    shap_result = explanation.get("shap") or {}
    if shap_result.get("status") == "run":
        shap_top = list(shap_result.get("mean_abs", {}).items())[:8]
        lines += [f"Kernel SHAP (mean |contribution| to {shap_result['output']}, "
                  f"{shap_result.get('rows')} rows): "
                  + ", ".join(f"`{c}` {v:.4f}" for c, v in shap_top), ""]
    else:
        lines += [f"Kernel SHAP: {shap_result.get('reason', 'not run')}", ""]
    lines += [f"H2O contributions: {explanation.get('h2o_contributions', 'not run')}", "",
              "The served model answers `POST /v1/models/<name>:explain` with per-column "
              "contributions for the instances sent.", ""]
    return lines


def _training_section(config: Any, meta: dict[str, Any]) -> list[str]:
    """Every training setting of the run config, per engine too, and the threshold."""
    training = config.to_dict()
    lines = ["## Training configuration", "", "| setting | value |", "| --- | --- |"]
    for section in ("training", "split", "budget", "features", "selection", "governance"):
        for key, value in (training.get(section) or {}).items():
            lines.append(f"| {section}.{key} | `{value}` |")
    for engine, settings in (training.get("engines") or {}).items():
        for key, value in settings.items():
            lines.append(f"| engines.{engine}.{key} | `{value}` |")
    lines += [f"| decision threshold | {meta.get('threshold', 0.5)} |", ""]
    return lines


def card_metadata(*, name: str, version: str, tags: dict[str, str], meta: dict[str, Any],
                  schema: Any, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The card's machine-readable form: Hugging Face model-card metadata.

    The keys of the YAML front matter of a Hugging Face model card (``tags``,
    ``pipeline_tag``, ``datasets``, ``metrics``, ``model-index`` with one result of the
    held-out test metrics), plus an ``autokfp`` block with the registry coordinates.
    """
    task = meta["task"]
    pipeline_tag = "tabular-regression" if task == "regression" else "tabular-classification"
    dataset = tags.get("dataset") or schema.dataset_id
    metrics = {k: float(v) for k, v in evaluation.get("metrics", {}).items()
               if isinstance(v, (int, float)) and v == v}
    return {
        "model_name": f"{name} v{version}",
        "library_name": "mlflow",
        "pipeline_tag": pipeline_tag,
        "tags": ["autokfp", "tabular", task, str(meta["engine"])],
        "datasets": [dataset],
        "metrics": sorted(metrics),
        "model-index": [{
            "name": f"{name} v{version}",
            "results": [{
                "task": {"type": pipeline_tag, "name": task},
                "dataset": {"name": dataset, "type": tags.get("dataset_urn") or dataset,
                            "split": "test"},
                "metrics": [{"type": key, "value": value, "name": f"test {key}"}
                            for key, value in sorted(metrics.items())],
            }],
        }],
        "autokfp": {"model": name, "version": str(version),
                    "registry_uri": f"models:/{name}/{version}", "target": meta["target"],
                    "primary_metric": meta.get("primary_metric"),
                    "dataset_fingerprint": tags.get("dataset_fingerprint", schema.fingerprint),
                    "kfp_run_id": tags.get("kfp.run_id"),
                    "kfp_pipeline_name": tags.get("kfp.pipeline_name"),
                    "serving": serving_facts(meta)},
    }


def serving_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """Which model the version serves (``refit``: fitted again on every labelled row after the
    gate; ``gated``: the model the gate judged), the rows each was fitted on, and why."""
    serving = meta.get("serving") or {}
    fitted = meta.get("fitted_rows", meta.get("trained_rows"))
    if serving.get("model") == "refit":
        check = serving.get("check") or {}
        return {"served": "refit", "served_fitted_rows": serving.get("fitted_rows", fitted),
                "gate_fitted_rows": serving.get("gate_fitted_rows"),
                "gate_model": serving.get("gate_model", "gate_model"),
                "reason": serving.get("reason", ""), "check": check.get("detail", "-")}
    return {"served": "gated", "served_fitted_rows": fitted, "gate_fitted_rows": fitted,
            "gate_model": None, "reason": serving.get("reason", ""), "check": None,
            "refit": serving.get("refit", "")}


# how a wanted refit ended without being served (``meta.serving.refit``, refit_model's)
_REFIT_MISSED = {"failed": "it failed", "rejected": "a check rejected it",
                 "unsupported": "the engine cannot refit"}


def refit_warning(meta: dict[str, Any]) -> str:
    """A warning when a refit on every labelled row was wanted and did not happen (the
    version serves the gated model), saying why; "" otherwise."""
    serving = serving_facts(meta)
    missed = _REFIT_MISSED.get(serving.get("refit") or "")
    if serving["served"] != "gated" or not missed:
        return ""
    return (f"**Warning: the refit on every labelled row did not happen ({missed}).** The "
            f"served model is the gated model, fitted on {serving['served_fitted_rows']} rows "
            f"without the held-out rows. Why: {serving['reason']}")


def card_with_metadata(card: str, metadata: dict[str, Any]) -> str:
    """A Hugging Face model card: the metadata as YAML front matter, then the Markdown card."""
    import yaml

    return f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n\n{card}"
