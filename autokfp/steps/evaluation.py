"""Evaluation shared by two steps: ``select_model`` (every engine's candidate) and
``evaluate_model`` (one model) score their candidates and the champion on the same test rows,
write the evaluation document, its report and MLflow run, and record the selection."""

from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING, Any

from autokfp.config import RunConfig
from autokfp.steps.io import read_config, record_event, write_json, write_text

if TYPE_CHECKING:
    from autokfp.modeling.feature_file import TestRows

log = logging.getLogger(__name__)


def evaluate_candidates(config: dict[str, Any] | RunConfig, candidate_paths: dict[str, str],
                        test_path: str, evaluation_path: str, model_path: str | None = None,
                        report_path: str | None = None) -> dict[str, Any]:
    """Score every candidate of ``candidate_paths`` (engine -> model folder or candidate
    marker) and the champion on the test rows; select the best and decide whether it is
    promoted. Writes the evaluation document to ``evaluation_path`` (and returns it), the
    selected model to ``model_path`` and the HTML report to ``report_path`` when given, logs
    the evaluation run to MLflow and records ``model.selected`` in the audit trail."""
    from autokfp.modeling import registry
    from autokfp.modeling.feature_file import TestRows
    from autokfp.modeling.selection import copy_selected, evaluation_document, load_candidates
    from autokfp.modeling.selection import select_model as select

    cfg = read_config(config)
    # the test rows scored batch by batch: only the target column is held whole
    test = TestRows(path=test_path)
    candidates = load_candidates(candidate_paths)
    client = registry.configure()
    current = registry.champion_version(client, cfg.model_name)
    champion, champion_error = _load_champion(cfg.model_name, current)
    selection = select(candidates, test, cfg.selection, cfg.split.seed, champion=champion,
                       champion_version=None if current is None else str(current.version))
    if champion_error:
        selection.comparison["reason"] = f"{champion_error}; {selection.comparison['reason']}"
    document = evaluation_document(selection, len(test))
    _report(cfg.model_name, selection, document, test, current, report_path)
    if model_path:
        copy_selected(selection, model_path)
    write_json(evaluation_path, document)
    if selection.gate_fallback is not None:
        # never silent: a warning in the run summary and its own audit event
        from autokfp.governance.audit import record_warning

        record_warning("model.gate_fallback", selection.gate_fallback["reason"],
                       {key: value for key, value in selection.gate_fallback.items()
                        if key != "reason"}, model=cfg.model_name)
    record_event("model.selected", {
        "engine": selection.selected.engine, "reason": selection.reason,
        "metric": selection.metric,
        "value": document["metrics"].get(selection.metric),
        "promote": bool(selection.comparison.get("promote")),
        "decision": selection.comparison.get("reason"),
        "gate_fallback": selection.gate_fallback,
        "candidates": {c.engine: c.status for c in selection.candidates}}, cfg.model_name)
    log.info("selected %s: %s; %s", selection.selected.engine, selection.reason,
             selection.comparison.get("reason"))
    return document


def _load_champion(model_name: str, current: Any) -> tuple[Any, str | None]:
    """The champion's package, or None and why it cannot be loaded (an unusable champion
    never blocks a new model: it is replaced)."""
    from autokfp.modeling import registry
    from autokfp.modeling.model_package import load_gate_model

    if current is None:
        return None, None
    try:
        # a champion refitted on every row after its gate has seen the test rows: the model
        # it kept from the gate (fitted without them) is the one compared on them
        model, gated = load_gate_model(registry.model_uri(model_name))
        if gated:
            log.info("champion v%s was refitted on the test rows after its gate: its gate "
                     "model is compared on them", current.version)
        return model, None
    except Exception as exc:  # noqa: BLE001 - an unusable champion must not block a new model
        champion_error = (f"champion v{current.version} cannot be loaded ({exc}); it is "
                          "replaced by a model that can")
        log.warning(champion_error)
        return None, champion_error


def _report(model_name: str, selection: Any, document: dict[str, Any], test: TestRows,
            current: Any, report_path: str | None) -> None:
    """The evaluation plots and HTML page, logged with the document as an MLflow run (its id
    goes into ``document``); the page also to ``report_path`` when given."""
    from autokfp.modeling.plots import write_plots
    from autokfp.modeling.selection import log_evaluation_run, report_html

    target = selection.selected.meta["target"]
    with tempfile.TemporaryDirectory(prefix="autokfp-plots-") as scratch:
        curves = {c.engine: c.predictions for c in selection.candidates if c.predictions is not None}
        if selection.champion_predictions is not None:
            curves[f"champion v{current.version}"] = selection.champion_predictions
        try:
            plots = write_plots(test.column(target), curves, selection.selected.meta, scratch,
                                selected=selection.selected.engine)
        except Exception as exc:  # noqa: BLE001 - a plot must never cost the evaluation
            log.warning("evaluation plots failed: %s: %s", type(exc).__name__, exc)
            plots = {}
        page = report_html(document, plots)
        document["mlflow_run_id"] = log_evaluation_run(model_name, selection, document, plots,
                                                       page)
        if report_path:
            write_text(report_path, page)
