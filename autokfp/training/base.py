"""The interface every training engine implements, so nothing downstream asks which made a model.

An engine trains on a feature frame and writes its own artifacts into a folder; it can
later load a ``Scorer`` from that folder that maps a feature frame to predictions. The
model package (``autokfp.modeling.model_package``) wraps any engine's folder plus the feature plan into
one MLflow pyfunc. Adding an engine means implementing ``Engine`` and registering it in
``ENGINES``; selection, registry and serving need no change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd


class Scorer(Protocol):
    """Scores feature frames: class probabilities (n x k, in ``classes`` order) or values (n)."""

    def predict(self, features: pd.DataFrame) -> np.ndarray: ...


@dataclass
class EngineResult:
    """What an engine hands back after training."""

    engine: str
    artifact_dir: Path
    leader: str
    leaderboard: pd.DataFrame
    cv_metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    # out-of-sample scores of training rows: (row positions into the training frame, scores
    # n x k in ``classes`` order for classifiers); what the probability calibration is fitted on
    holdout: tuple[np.ndarray, np.ndarray] | None = None


class Engine(Protocol):
    name: str

    def train(
        self,
        features: pd.DataFrame,
        target: pd.Series,
        task: str,
        classes: list[str] | None,
        categorical: list[str],
        budget: Any,
        sort_metric: str,
        workdir: Path,
    ) -> EngineResult: ...

    def load_scorer(self, artifact_dir: Path, task: str, classes: list[str] | None) -> Scorer: ...


def get_engine(name: str) -> Engine:
    """The engine registered under ``name``."""
    try:
        factory = ENGINES[name]
    except KeyError:
        from autokfp.errors import ConfigError

        raise ConfigError(f"unknown training engine '{name}'; available: {sorted(ENGINES)}") from None
    return factory()


def _h2o() -> Engine:
    from autokfp.training.h2o_automl import H2OAutoMLEngine

    return H2OAutoMLEngine()


def _autokeras() -> Engine:
    from autokfp.training.autokeras_engine import AutoKerasEngine

    return AutoKerasEngine()


ENGINES: dict[str, Any] = {"h2o": _h2o, "autokeras": _autokeras}
