"""The `evaluate_model` step: files in, files out, one call into the engine."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.steps.select_model import _evaluate

log = logging.getLogger(__name__)


def evaluate_model(config: dict[str, Any] | RunConfig, model_path: str, test_path: str,
                   evaluation_path: str) -> dict[str, Any]:
    """Score the candidate and the current champion on the same test rows and decide.

    The single-candidate case of ``select_model``: the same metrics, validation reports
    (calibration, robustness, CV spread), MLflow evaluation run and champion comparison.
    """
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    return _evaluate(config, {meta["engine"]: model_path}, test_path, evaluation_path)
