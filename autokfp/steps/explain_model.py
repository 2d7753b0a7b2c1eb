"""The `explain_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

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


def explain_model(config: dict[str, Any] | RunConfig, model_path: str, train_path: str,
                  test_path: str, explanation_path: str, report_path: str,
                  plots_dir: str) -> Explained:
    """Permutation importance and Kernel SHAP for the package; JSON, HTML and PNG plots."""
    from autokfp.governance import explain

    cfg = read_config(config)
    model, plan, meta = read_package(model_path)
    train = pd.read_parquet(train_path)
    test = pd.read_parquet(test_path)
    result = explain.explain_model(model, plan, meta, train, test, plots_dir,
                                   rows=cfg.governance.explain_rows,
                                   shap_rows=cfg.governance.shap_rows, seed=cfg.split.seed)
    result["model"] = cfg.model_name
    write_json(explanation_path, result)
    write_text(report_path, explain.html_report(result, [Path(plots_dir, p) for p in result["plots"]]))
    top = result["permutation_importance"]["columns"][:5]
    return Explained(top_features=[i["column"] for i in top], shap=result["shap"]["status"],
                     metric=result["permutation_importance"]["metric"])
