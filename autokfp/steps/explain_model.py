"""The `explain_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.steps.io import read_config, read_package, write_json, write_text
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explained(StepResult):
    """The five most important features, and how the explanation was made."""

    top_features: list[str]
    shap: str
    """run, skipped or failed."""
    metric: str

    def publication(self) -> Publication:
        return Publication(metadata={"explanation": {"shap": self.shap, "metric": self.metric}},
                           returns=(",".join(self.top_features),))


def _served(meta: dict[str, Any]) -> dict[str, Any]:
    """Which model was explained: the served one (``refit``, fitted on every labelled row,
    or the ``gated`` package), the rows it was fitted on, and what that means for the
    permutation importance, which is measured on the test rows."""
    serving = meta.get("serving") or {}
    model = serving.get("model", "gated")
    fitted = meta.get("fitted_rows", meta.get("trained_rows"))
    rows = f"{fitted} " if fitted is not None else ""  # a package without the count
    if model == "refit":
        note = (f"the served model, refitted on all {rows}labelled rows after the gate; the "
                "test rows the permutation importance is measured on are among them, so it "
                "shows what the served model relies on; it is not an out-of-sample "
                "measure")
    else:
        fitted_on = f", fitted on {fitted} rows" if fitted is not None else ""
        note = (f"the served model (the gated one{fitted_on}); the permutation "
                "importance is measured on test rows it did not see")
    return {"model": model, "fitted_rows": fitted, "note": note}


def explain_model(config: dict[str, Any] | RunConfig, model_path: str, train_path: str,
                  test_path: str, explanation_path: str, report_path: str,
                  plots_dir: str) -> Explained:
    """Permutation importance and Kernel SHAP for the package; JSON, HTML and PNG plots.

    Neither file is read whole: the rows ``explain.explain_model`` would draw from the whole
    frames are drawn from the files (``governance.explain_rows`` test rows, the SHAP
    background's training rows, the first ``governance.shap_rows`` test rows), so the
    explanation is the same and memory does not grow with the tables.
    """
    from autokfp.governance import explain
    from autokfp.modeling.feature_file import head_file, sample_file

    cfg = read_config(config)
    model, plan, meta = read_package(model_path)
    columns = list(plan.input_columns)
    seed, gov = cfg.split.seed, cfg.governance
    sample = sample_file(test_path, [*columns, meta["target"]], gov.explain_rows, seed)
    background = sample_file(train_path, columns, explain.BACKGROUND_ROWS, seed)
    explained = head_file(test_path, [*columns, meta["target"]], max(gov.shap_rows, 0))
    result = explain.explain_rows(model, plan, meta, sample, background, explained, plots_dir,
                                  seed=seed)
    result["model"] = cfg.model_name
    result["served"] = _served(meta)
    write_json(explanation_path, result)
    write_text(report_path, explain.html_report(result, [Path(plots_dir, p) for p in result["plots"]]))
    top = result["permutation_importance"]["columns"][:5]
    return Explained(top_features=[i["column"] for i in top], shap=result["shap"]["status"],
                     metric=result["permutation_importance"]["metric"])
