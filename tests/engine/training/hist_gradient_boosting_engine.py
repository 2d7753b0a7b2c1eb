"""A third training engine, written the way a plugin author would: this one module only.

scikit-learn's HistGradientBoosting behind the ``Engine`` interface, with its own settings
model, registered by the module itself. The tests install it the way ``pip install`` would
install a plugin package: a distribution whose entry point in the ``autokfp.engines`` group
names this module (see ``install_plugin`` in tests/engine/training/test_engine_plugin.py).
Nothing else in autokfp changes for it: config validation, the pipeline's fan-out,
selection, registry and serving find it through the registry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from autokfp.errors import TrainingError
from autokfp.training import EngineResult, EngineSettings, EngineSpec, FrameScorer, register_engine

MODEL_FILE = "hgb.joblib"
LEVELS_FILE = "levels.json"
SMALL_BATCH = 1000


class HistGradientBoostingSettings(EngineSettings):
    """``engines.hgb``: one gradient-boosted tree ensemble, early-stopped on held-back rows."""

    max_iter: int = Field(default=300, ge=1, le=10_000)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_leaf_nodes: int = Field(default=31, ge=2)
    validation_fraction: float = Field(default=0.2, ge=0.05, le=0.5)


def _frame(features: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """Categorical columns as pandas categories over the training levels (unseen: missing)."""
    out = features.copy()
    for column, known in levels.items():
        values = out[column].astype("object").where(out[column].notna(), None)
        out[column] = pd.Categorical([None if v is None else str(v) for v in values],
                                     categories=known)
    for column in out.columns:
        if column not in levels:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out


class HistGradientBoostingEngine:
    """scikit-learn HistGradientBoosting behind the ``Engine`` interface."""

    name = "hgb"

    def __init__(self, settings: HistGradientBoostingSettings | None = None):
        self.settings = settings or HistGradientBoostingSettings()

    def train(self, features: pd.DataFrame, target: pd.Series, task: str,
              classes: list[str] | None, categorical: list[str], budget: Any,
              sort_metric: str, workdir: Path) -> EngineResult:
        import joblib
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.model_selection import train_test_split

        started = time.monotonic()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        levels = {c: sorted(str(v) for v in features[c].dropna().unique()) for c in categorical}
        x = _frame(features, levels)
        settings = self.settings
        common = dict(max_iter=settings.max_iter, learning_rate=settings.learning_rate,
                      max_leaf_nodes=settings.max_leaf_nodes, categorical_features="from_dtype",
                      early_stopping=True, validation_fraction=settings.validation_fraction,
                      random_state=budget.seed)
        rows = np.arange(len(x))
        if task == "regression":
            y = target.astype("float64").to_numpy()
            model: Any = HistGradientBoostingRegressor(**common)
            fit, held = train_test_split(rows, test_size=settings.validation_fraction,
                                         random_state=budget.seed)
        else:
            y = target.astype(str).to_numpy()
            model = HistGradientBoostingClassifier(**common)
            fit, held = train_test_split(rows, test_size=settings.validation_fraction,
                                         random_state=budget.seed, stratify=y)
        # the held-back rows give the out-of-sample scores (calibration, the cv estimate);
        # the shipped model is then refitted on every row
        model.fit(x.iloc[fit], y[fit])
        holdout = None
        cv: dict[str, float] = {}
        if task != "regression":
            order = [list(model.classes_).index(c) for c in classes or []]
            scores = model.predict_proba(x.iloc[held])[:, order]
            holdout = (held, scores)
            if task == "binary":
                from sklearn.metrics import roc_auc_score

                cv["cv_auc"] = float(roc_auc_score(y[held] == classes[-1], scores[:, 1]))
        model.fit(x, y)
        if task != "regression" and list(model.classes_) != sorted(classes or []):
            raise TrainingError(f"hgb learned classes {list(model.classes_)}, expected {classes}")
        joblib.dump(model, workdir / MODEL_FILE)
        (workdir / LEVELS_FILE).write_text(json.dumps({"columns": list(features.columns),
                                                       "levels": levels}))
        board = pd.DataFrame([{"model_id": "hgb_1", "iterations": int(model.n_iter_),
                               **cv}])
        return EngineResult(
            engine=self.name, artifact_dir=workdir, leader="hgb_1", leaderboard=board,
            cv_metrics=cv, holdout=holdout,
            params={"max_runtime_secs": budget.max_runtime_secs, "iterations": int(model.n_iter_),
                    "models_trained": 1, "validation_fraction": settings.validation_fraction,
                    "cv_method": f"holdout {settings.validation_fraction:.0%} of training rows",
                    "seconds": round(time.monotonic() - started, 2)})

    def load_scorer(self, artifact_dir: Path, task: str,
                    classes: list[str] | None) -> HistGradientBoostingScorer:
        return HistGradientBoostingScorer(Path(artifact_dir), task, classes)


class HistGradientBoostingScorer(FrameScorer):
    """Scores feature frames; the row path is the interface's default (through a frame)."""

    def __init__(self, artifact_dir: Path, task: str, classes: list[str] | None):
        import joblib

        if not (artifact_dir / MODEL_FILE).exists():
            raise TrainingError(f"hgb model file is missing in {artifact_dir}")
        self.task = task
        self.model = joblib.load(artifact_dir / MODEL_FILE)
        saved = json.loads((artifact_dir / LEVELS_FILE).read_text())
        self.columns, self.levels = saved["columns"], saved["levels"]
        self.order = ([list(self.model.classes_).index(c) for c in classes or []]
                      if task != "regression" else None)

    @property
    def feature_names(self) -> list[str]:
        return list(self.columns)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        x = _frame(features[self.columns], self.levels)
        # OpenMP threads cost more than they give on a few rows, and on a busy node their
        # barrier dominates: one row took 400 ms (p95 2.8 s) with all threads on a loaded
        # 2-core machine, 61 ms with one
        with threadpool_limits(limits=1 if len(x) < SMALL_BATCH else None):
            if self.task == "regression":
                return self.model.predict(x).astype("float64")
            return self.model.predict_proba(x)[:, self.order]


register_engine(EngineSpec(name="hgb", engine=HistGradientBoostingEngine,
                           settings=HistGradientBoostingSettings,
                           title="scikit-learn HistGradientBoosting"))
