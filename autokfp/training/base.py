"""The interface every training engine implements, so nothing downstream asks which made a model.

An engine trains on a feature frame and writes its own artifacts into a folder; it can
later load a ``Scorer`` from that folder that maps a feature frame to predictions. The
model package (``autokfp.modeling.model_package``) wraps any engine's folder plus the
feature plan into one MLflow pyfunc. An engine is configured by its own settings model
(an ``EngineSettings``, under ``engines.<name>`` in the run config) and the engine-neutral
``budget``. Engines register themselves in ``autokfp.engine_registry``; selection,
registry and serving need no change for a new one (see docs/training.md, "Adding an engine").

This module only declares the interface: it imports no engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from autokfp.engine_registry import EngineSettings

if TYPE_CHECKING:
    from autokfp.config import BudgetSpec

__all__ = ["Engine", "EngineResult", "EngineSettings", "FrameScorer", "Refittable", "Scorer"]


class Scorer(Protocol):
    """Scores feature frames: class probabilities (n x k, in ``classes`` order) or values (n)."""

    @property
    def feature_names(self) -> list[str]: ...

    def predict(self, features: pd.DataFrame) -> np.ndarray: ...

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The same scores for feature rows given as dicts (the serving fast path)."""
        ...


class FrameScorer:
    """A ``Scorer`` base whose row path goes through ``predict`` on a DataFrame.

    An engine whose library has no faster way to score a handful of rows subclasses this
    and implements ``predict`` and ``feature_names`` only.
    """

    @property
    def feature_names(self) -> list[str]:
        raise NotImplementedError

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.predict(pd.DataFrame(list(rows), columns=self.feature_names))


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
    # what those rows are (``autokfp.modeling.estimate``): "out_of_fold" (each row scored by
    # a model of the final recipe that never saw it; selection pools them with the test
    # rows), "validation" (rows that also chose the model: optimistic, so selection compares
    # on the test rows alone) or "unstated" (a plugin that does not say: treated as validation)
    holdout_kind: str = "unstated"
    # training rows the exported model was fitted on; None: all of them (an engine that
    # keeps some back for its own validation, and does not refit, says how many it used)
    fitted_rows: int | None = None


class Engine(Protocol):
    """A training engine, constructed with its validated settings: ``Engine(settings)``."""

    name: str
    settings: EngineSettings

    def train(
        self,
        features: pd.DataFrame,
        target: pd.Series,
        task: str,
        classes: list[str] | None,
        categorical: list[str],
        budget: BudgetSpec,
        sort_metric: str,
        workdir: Path,
    ) -> EngineResult: ...

    def load_scorer(self, artifact_dir: Path, task: str, classes: list[str] | None) -> Scorer: ...


class Refittable(Protocol):
    """An engine that can train the model of one of its folders again on other rows: the
    same chosen configuration (algorithm and hyper-parameters, or architecture, optimizer
    and epochs), no search. What ``refit_model`` calls after the champion gate, to fit the
    served model on every labelled row; an engine without ``refit`` serves its gated model."""

    def refit(
        self,
        artifact_dir: Path,
        features: pd.DataFrame,
        target: pd.Series,
        task: str,
        classes: list[str] | None,
        categorical: list[str],
        budget: BudgetSpec,
        sort_metric: str,
        workdir: Path,
    ) -> EngineResult: ...
