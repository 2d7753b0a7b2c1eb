"""The most reliable estimate of a candidate's quality: out-of-sample rows, pooled.

The held-out test split of a small table is a few dozen rows: the standard error of an AUC
on 68 rows is about 0.05, so picking the engine on it picks noise. Every engine also scores
training rows it did not fit: H2O the leader's out-of-fold cross-validation predictions
(every training row), AutoKeras its validation rows. Each package keeps them
(``engine/holdout.npz``: row positions in the training file, raw scores, labels), and
selection compares candidates on the rows **every** candidate scored out of sample (their
intersection) together with the test rows, through a paired bootstrap on those same rows.

Each file says what kind of rows it holds (``kind``): ``out_of_fold`` (every row scored by
a model of the engine's final recipe that never saw it: H2O's cross-validation, AutoKeras's
k-fold refits of its chosen architecture) or ``validation`` (rows that also chose the model:
its trial, its epoch, its leaderboard place; H2O's blending rows, AutoKeras's validation rows
when its k-fold refits did not fit its budget). Session 16 measured what pooling validation
rows does: AutoKeras beat H2O's candidate on its validation rows in 9 of 17 suite runs and
on fresh test rows in 3, and was selected over a better H2O model. So training rows are
pooled only when **every** candidate's are out of fold (``HONEST_KINDS``); otherwise the
candidates are compared on the held-out test rows alone. An engine (a plugin) that does not
say what its rows are (``unstated``) is not trusted. Files written before the kind was kept
hold none and count as out of fold (H2O's, the only ones selection pooled unchallenged).
H2O's out-of-fold predictions of a leader picked from a leaderboard on those same folds
stay slightly optimistic, as do AutoKeras's of an architecture picked on its validation
rows; both are far less noisy than a few dozen test rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

HOLDOUT_FILE = "holdout.npz"
# a refit's own out-of-fold predictions of every row it was fitted on (H2O: a cross-validated
# stacked ensemble's metalearner folds), which the refit step judges the recipe by and then
# takes out of the served package (``steps.refit_model``): positions in the refit's rows
REFIT_OOF_FILE = "refit_out_of_fold.npz"
OUT_OF_FOLD, VALIDATION, UNSTATED = "out_of_fold", "validation", "unstated"
HONEST_KINDS = frozenset({OUT_OF_FOLD})


def save_holdout(engine_dir: str | Path, positions: Any, scores: Any, truth: Any,
                 kind: str = OUT_OF_FOLD, name: str = HOLDOUT_FILE) -> Path:
    """Keep an engine's out-of-sample predictions next to its model files.

    ``positions``: row positions in the training rows; ``scores``: raw engine output for
    them (n x k class scores, or n values); ``truth``: their labels (class codes in the
    package's ``class_labels`` order, or values); ``kind``: ``OUT_OF_FOLD``, ``VALIDATION``
    or ``UNSTATED`` (the module's docstring; training passes the engine's
    ``EngineResult.holdout_kind``, which is ``unstated`` unless the engine says otherwise);
    ``name``: the file's (``REFIT_OOF_FILE`` for a refit's own).
    """
    path = Path(engine_dir) / name
    np.savez_compressed(path, positions=np.asarray(positions, dtype="int64"),
                        scores=np.asarray(scores, dtype="float64"),
                        truth=np.asarray(truth, dtype="float64"), kind=np.array(str(kind)))
    return path


@dataclass(frozen=True)
class StoredHoldout:
    """A packaged candidate's out-of-sample rows as ``save_holdout`` kept them: row
    positions, raw scores, labels, and what kind of rows they are."""

    positions: np.ndarray
    scores: np.ndarray
    truth: np.ndarray
    kind: str

    def served(self, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, scores as served, truth): class scores get the package's probability
        calibration, as ``predict`` would apply it."""
        if meta.get("task") != "regression":
            from autokfp.modeling.calibration import apply_calibration

            scores = apply_calibration(np.atleast_2d(self.scores), meta.get("calibration"))
        else:
            scores = self.scores.reshape(-1)
        return self.positions, scores, self.truth


def read_holdout(package: str | Path, name: str = HOLDOUT_FILE) -> StoredHoldout | None:
    """A packaged candidate's ``HOLDOUT_FILE`` (or ``name``), read once (None when it kept
    none). Its kind is ``OUT_OF_FOLD`` for a file that names none (written before the kind
    was kept)."""
    path = Path(package) / "artifacts" / "engine" / name
    if not path.is_file():
        return None
    with np.load(path) as stored:
        kind = str(stored["kind"]) if "kind" in stored.files else OUT_OF_FOLD
        return StoredHoldout(stored["positions"], stored["scores"], stored["truth"], kind)


def holdout_kind(package: str | Path) -> str | None:
    """What a packaged candidate's out-of-sample rows are (``OUT_OF_FOLD`` for a file that
    names none: written before the kind was kept), or None when it kept none."""
    path = Path(package) / "artifacts" / "engine" / HOLDOUT_FILE
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return str(stored["kind"]) if "kind" in stored.files else OUT_OF_FOLD


def load_holdout(package: str | Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray] | None:
    """(positions, scores as served, truth) of a packaged candidate, or None.

    Class scores get the package's probability calibration, as ``predict`` would apply it.
    """
    stored = read_holdout(package)
    return None if stored is None else stored.served(meta)


@dataclass
class PooledRows:
    """The rows every candidate scored out of sample, plus the test rows, for each one."""

    truth: pd.Series                      # labels (class label text) or values
    predictions: dict[str, pd.DataFrame]  # engine -> prediction frame over the same rows
    holdout_rows: int
    test_rows: int


def pool_rows(candidates: list[Any], truth: pd.Series, meta: dict[str, Any],
              stored: dict[str, StoredHoldout | None] | None = None) -> PooledRows | None:
    """Pool the common out-of-sample training rows with the test rows (None when a
    candidate kept no out-of-sample predictions, or kept rows that are not out of fold:
    selection then uses the test rows alone). ``stored``: each candidate's
    ``read_holdout``, when the caller has read them already (each file is read once)."""
    held: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for candidate in candidates:
        found = (stored[candidate.engine] if stored is not None
                 else read_holdout(candidate.path))
        if found is not None and found.kind not in HONEST_KINDS:
            log.info("%s's out-of-sample rows are %s rows, which also chose its model: "
                     "candidates are compared on the test rows alone", candidate.engine,
                     found.kind)
            return None
        if found is None:
            log.info("%s kept no out-of-sample predictions: candidates are compared on the "
                     "test rows alone", candidate.engine)
            return None
        held[candidate.engine] = found.served(candidate.meta)
    # numpy throughout: at 8M out-of-fold rows, Python sets and dicts of the positions held
    # 2.7 GB (evaluate's peak at 10M rows, docs/scale.md); these arrays hold ~0.3 GB. Each
    # candidate's positions are sorted once (``_Lookup``), for its distinct positions and
    # for the places of the common ones
    lookups = {engine: _Lookup(found[0]) for engine, found in held.items()}
    common: np.ndarray | None = None
    for lookup in lookups.values():
        common = lookup.distinct if common is None else np.intersect1d(
            common, lookup.distinct, assume_unique=True)
    rows = np.asarray(common if common is not None else (), dtype="int64")
    if len(rows) == 0:
        return None
    places = {engine: lookup.places(rows) for engine, lookup in lookups.items()}
    del lookups
    labels = meta.get("class_labels")
    first = next(iter(held))
    held_truth = held[first][2][places[first]]
    if labels:
        names = np.array(labels, dtype=object)
        held_labels = pd.Series(names[held_truth.astype("int64")])
        pooled_truth = pd.concat([held_labels, truth.astype(str)], ignore_index=True)
    else:
        pooled_truth = pd.concat([pd.Series(held_truth), truth.astype("float64")],
                                 ignore_index=True)
    frames = {}
    for candidate in candidates:
        picked = held[candidate.engine][1][places[candidate.engine]]
        if labels:
            frame = pd.DataFrame(picked, columns=[f"probability_{label}" for label in labels])
            test = candidate.predictions[frame.columns]
        else:
            frame = pd.DataFrame({"prediction": picked})
            test = candidate.predictions[["prediction"]]
        frames[candidate.engine] = pd.concat([frame, test.reset_index(drop=True)],
                                             ignore_index=True)
    return PooledRows(truth=pooled_truth, predictions=frames, holdout_rows=len(rows),
                      test_rows=len(truth))


class _Lookup:
    """A candidate's out-of-sample positions, sorted once: its distinct positions and where
    given ones are stored (the last place of a position stored twice)."""

    def __init__(self, positions: np.ndarray) -> None:
        self.order = np.argsort(positions, kind="stable")
        self.sorted = positions[self.order]
        last = np.ones(len(self.sorted), dtype=bool)  # the last of equal positions
        last[:-1] = self.sorted[1:] != self.sorted[:-1]
        self.distinct = self.sorted[last]

    def places(self, rows: np.ndarray) -> np.ndarray:
        """Where each of ``rows`` (all present) is in the positions."""
        return self.order[np.searchsorted(self.sorted, rows, side="right") - 1]


def metric_with_interval(truth: pd.Series, predictions: pd.DataFrame, meta: dict[str, Any],
                         metric: str, samples: int = 200, seed: int = 0) -> dict[str, Any]:
    """The metric on the rows, with a 90% bootstrap interval."""
    from autokfp.modeling.bootstrap import bootstrap_values
    from autokfp.modeling.evaluation import encode_labels, metric_value, probability_matrix

    task = meta["task"]
    if task == "regression":
        codes = truth.astype("float64").to_numpy()
        scores = predictions["prediction"].to_numpy(dtype="float64")
    else:
        codes = encode_labels(truth, meta)
        keep = codes >= 0
        codes, scores = codes[keep], probability_matrix(predictions, meta)[keep]
    value = metric_value(metric, codes, scores, task)
    # linear in the rows (the scores sorted once, each sample a weighting of the rows)
    values = [v for (v,) in bootstrap_values(metric, codes, (scores,), task, samples, seed,
                                             skip_errors=True)]
    low, high = (np.quantile(values, [0.05, 0.95]).tolist() if values else (None, None))
    return {"value": float(value), "ci_low": low, "ci_high": high, "rows": int(len(codes))}
