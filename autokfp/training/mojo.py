"""Scoring of H2O MOJO models through JPype: no H2O cluster, no frame uploads.

Scoring through a running H2O cluster costs ~0.5 s per request (a frame upload each time);
the MOJO scored through ``hex.genmodel`` costs well under a millisecond per row. The JVM is
started once per process with the ``h2o.jar`` that ships in the h2o wheel (it contains
h2o-genmodel). In a local run the tasks score through the run's shared scorer instead
(``mojo_service``: one JVM for the run), with the same answers to the bit, and fall back to
their own JVM whenever it is absent or fails.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.errors import TrainingError
from autokfp.training.mojo_service import (
    ScorerUnavailable,
    SharedMojo,
    h2o_jar,
    model_description,
    score_raw,
    shared_address,
    start_jvm,
)

log = logging.getLogger(__name__)
__all__ = ["MojoScorer", "start_jvm", "h2o_jar"]


class _LocalMojo:
    """The MOJO loaded in this process's JVM."""

    def __init__(self, mojo_path: Path) -> None:
        start_jvm()
        from hex.genmodel import MojoModel  # type: ignore[import-not-found]
        from jpype import JArray, JDouble

        self.model = MojoModel.load(str(mojo_path))
        self.description = model_description(self.model)
        self.doubles = JArray(JDouble)

    def score(self, distinct: np.ndarray) -> np.ndarray:
        return score_raw(self.model, self.doubles, distinct, self.description["preds_size"])


class MojoScorer:
    """Scores a MOJO zip: class probabilities in ``classes`` order, or regression values."""

    def __init__(self, mojo_path: Path, task: str, classes: list[str] | None):
        self.task = task
        self._path = Path(mojo_path)
        self._local: _LocalMojo | None = None
        self._shared: SharedMojo | None = None
        address = shared_address()
        if address is not None:
            try:
                self._shared = SharedMojo(self._path, address)
            except ScorerUnavailable:
                self._shared = None
        description = self._shared.description if self._shared is not None \
            else self._in_process().description
        names: list[str] = description["names"]
        response: str = description["response"]
        domains: list[list[str] | None] = description["domains"]
        self._columns = [n for n in names if n != response]
        self._categorical = {n for i, n in enumerate(names) if n != response
                             and domains[i] is not None}
        # the raw row H2O scores (``GenModel.score0``): one double per model column, a
        # categorical as its level's index; unknown levels and missing values are NaN
        self._slots = {n: i for i, n in enumerate(names) if n != response}
        self._levels = {n: {v: j for j, v in enumerate(domains[i] or [])}
                        for i, n in enumerate(names) if n in self._categorical}
        self._width = len(names)
        self._preds_size = int(description["preds_size"])
        self._order: list[int] | None = None
        if task != "regression":
            domain = list(domains[description["response_index"]] or [])
            wanted = classes or domain
            missing = [c for c in wanted if c not in domain]
            if missing:
                raise TrainingError(f"MOJO response domain {domain} lacks classes {missing}")
            self._order = [domain.index(c) for c in wanted]

    def _in_process(self) -> _LocalMojo:
        if self._local is None:
            self._local = _LocalMojo(self._path)
        return self._local

    def _score(self, distinct: np.ndarray) -> np.ndarray:
        """``score0`` of each raw row: in the run's shared scorer, else (or once it fails)
        in this process's JVM; the same answers either way."""
        shared = self._shared  # read once: another thread may drop it meanwhile
        if shared is not None:
            try:
                return shared.score(distinct)
            except ScorerUnavailable:
                shared.close()
                self._shared = None
        return self._in_process().score(distinct)

    @property
    def feature_names(self) -> list[str]:
        return list(self._columns)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """A frame's rows, as ``predict_rows`` scores them (to the bit), faster: each column
        is coded at once into a matrix of raw rows, then each distinct row goes to ``score0``
        once, through the same two reused Java arrays (no dict per row, no new array per
        call)."""
        raw = np.full((len(features), self._width), math.nan)
        for name, slot in self._slots.items():
            if name in features.columns:
                raw[:, slot] = self._raw_column(features[name], self._levels.get(name))
        # a raw row scores the same wherever it occurs: each distinct one (byte for byte)
        # once; Kernel SHAP's synthetic rows repeat (15-30% of them on a 14-column table)
        keys = raw.view(np.dtype((np.void, raw.dtype.itemsize * raw.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        out = self._score(raw[first])
        out = out[inverse.ravel()]
        if self.task == "regression":
            return out[:, 0].copy()
        return out[:, 1:][:, self._order]

    @staticmethod
    def _raw_column(column: pd.Series, domain: dict[str, int] | None) -> np.ndarray:
        """One feature column as ``predict_rows`` codes each value: a number as a double,
        a categorical as its level's index, a missing value or an unknown level NaN."""
        if domain is None and isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiub":
            # plain numpy numbers (no pandas NA): float(value) for each, NaN stays NaN
            return column.to_numpy(dtype="float64")
        nan = math.nan

        def code(value: Any) -> float:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return nan
            return float(value) if domain is None else domain.get(str(value), nan)

        return np.asarray([code(v) for v in column.to_numpy(dtype=object)], dtype="float64")

    def predict_rows(self, rows: Any, count: int | None = None) -> np.ndarray:
        """Score feature rows given as dicts (the serving fast path).

        Each row is one call into the JVM: the raw row as a double array to ``score0``,
        as ``EasyPredictModelWrapper`` fills it (a categorical's level index, an unknown
        level or a missing value NaN), without its one call per column (a quarter of the
        time: 53 against 217 us a row here). The answers are the wrapper's to the bit
        (``predict_rows_easy``, tests/engine/training/test_mojo_scoring.py).
        """
        slots, levels = self._slots, self._levels
        width, nan = self._width, math.nan
        regression = self.task == "regression"
        local = self._local if self._shared is None else None
        if local is not None:
            model, doubles, size = local.model, local.doubles, self._preds_size
        results = []
        raws = []
        for features in rows:
            raw = [nan] * width
            for name, value in features.items():
                slot = slots.get(name)
                if slot is None or value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                domain = levels.get(name)
                raw[slot] = float(value) if domain is None else domain.get(str(value), nan)
            if local is None:
                raws.append(raw)
                continue
            preds = np.asarray(model.score0(doubles(raw), doubles(size)), dtype="float64")
            results.append(preds[0] if regression else preds[1:])
        if local is None:  # the shared scorer: every row in one request
            scores = self._score(np.asarray(raws, dtype="float64").reshape(len(raws), width))
            results = list(scores[:, 0] if regression else scores[:, 1:])
        if regression:
            return np.asarray(results, dtype="float64")
        probs = np.asarray(results, dtype="float64").reshape(len(results), -1)
        return probs[:, self._order]

    def predict_rows_easy(self, rows: Any) -> np.ndarray:
        """``predict_rows`` through H2O's ``EasyPredictModelWrapper`` (one call per column):
        the reference the fast path is checked against."""
        from hex.genmodel.easy import (  # type: ignore[import-not-found]
            EasyPredictModelWrapper,
            RowData,
        )

        config = (EasyPredictModelWrapper.Config().setModel(self._in_process().model)
                  .setConvertUnknownCategoricalLevelsToNa(True)
                  .setConvertInvalidNumbersToNa(True))
        wrapper = EasyPredictModelWrapper(config)
        results = []
        categorical = self._categorical
        for features in rows:
            row = RowData()
            for name, value in features.items():
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                if name in categorical:
                    row.put(name, str(value))
                else:
                    row.put(name, float(value))
            if self.task == "regression":
                results.append(float(wrapper.predictRegression(row).value))
            elif self.task == "binary":
                results.append(list(wrapper.predictBinomial(row).classProbabilities))
            else:
                results.append(list(wrapper.predictMultinomial(row).classProbabilities))
        if self.task == "regression":
            return np.asarray(results, dtype="float64")
        probs = np.asarray(results, dtype="float64").reshape(len(results), -1)
        return probs[:, self._order]
