"""AutoKeras as an autokfp engine: a neural architecture search over dense networks.

AutoKeras 3.0.0 still ships ``StructuredDataClassifier`` / ``StructuredDataRegressor``, but
their structured-data block no longer encodes categories: it expects numbers only. So the
engine encodes the feature frame itself (``KerasEncoding``, stored next to the model):
numeric features standardised with the training mean and deviation, missing values set to
0 (the mean; the plan's ``<col>__missing`` indicators keep the fact), values clipped to
±10 deviations, and each categorical feature one-hot over the levels seen in training plus
``__other__`` (a missing category is all zeros). AutoKeras then searches the network
(depth, width, dropout, normalisation, learning rate) on that matrix.

Its settings (``AutoKerasSettings``, ``engines.autokeras`` in the run config) map as
follows: ``max_trials`` architectures at most, ``epochs`` epochs per trial at most, early
stopping on the validation loss after ``patience`` epochs without improvement; the
engine-neutral ``budget.max_runtime_secs`` is a wall-clock deadline, counted from after
TensorFlow's import and device set-up (search time, as H2O's JVM start is outside its
budget): when it passes, the running trial stops after its current batch and no new trial
starts.
``validation_fraction`` of the training rows (stratified) pick
the architecture and the epoch. Those rows chose the model, so its scores of them are
optimistic (session 16: AutoKeras beat H2O there in 9 of 17 suite runs, on fresh rows in 3).
The engine's out-of-sample estimate is therefore made afresh after the search
(``out_of_fold_folds``, 5 by default): the chosen architecture trained from fresh weights
for the chosen epoch count on k−1 of k stratified folds of **all** training rows, no early
stopping, each fold scored by the model that never saw it: out-of-fold scores of every
training row, of the same recipe as the refit below, which calibration and selection read
(``holdout_kind`` ``out_of_fold``). When the k fits would take longer than
``out_of_fold_max_share`` of the budget (by the best trial's epoch times) or fail, the
validation rows' scores by the search's model are handed over instead, marked
``validation``: selection then compares the candidates on the held-out test rows alone. With
``refit`` (the default) the chosen architecture is then trained again from fresh weights on
all training rows, fit and validation rows together, for the best trial's best epoch count:
the exported model has seen every training row, as H2O's does (its final models train on all
rows, the folds only estimate). The refit comes after the search's deadline, like H2O's MOJO
export, and is skipped (logged, the search's model exported) when it would take longer than
``refit_max_share`` of the budget by the best trial's own epoch times, or does not end with a
finite loss.

TensorFlow is imported only when this engine trains or scores, so importing autokfp never
pulls it in. It uses a GPU when TensorFlow sees one, the CPU otherwise. Scoring calls the
Keras model directly, through one ``tf.function`` traced for any batch size: a few ms per
request instead of ~40 ms for ``model.predict``, whose per-call setup dominates small
requests.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from autokfp.engine_registry import EngineSpec, register_engine
from autokfp.errors import DataError, TrainingError
from autokfp.training.base import EngineResult, EngineSettings, FrameScorer
from autokfp.training.isolation import engine_timeout

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
ENCODING_FILE = "encoding.json"
CLIP = 10.0
MIN_ROWS = 20
SCORE_BATCH = 8192
# seconds kept back from the budget for what follows the search (reloading the best trial,
# saving it, scoring the validation rows): a fixed part plus a share of the budget
EXPORT_RESERVE_SECS = 4.0
EXPORT_RESERVE_SHARE = 0.04
# a refitted network whose loss on its rows exceeds the search's network's on its own by more
# than this share is not exported (see _refit_all_rows)
REFIT_LOSS_TOLERANCE = 0.10
# what the engine does after the k-fold refits (metrics, the candidate's files) must fit
# before the child's kill (isolation.engine_timeout): the folds stop this long before it
AFTER_FOLDS_SECS = 120.0
# each k-fold refit's set-up (cloning, compiling, tracing fit and predict) on top of its
# epochs: 1.5-3 CPU-s a fold on 120 rows x 15 epochs here (tests/engine/training/
# test_autokeras_out_of_fold.py)
FOLD_SETUP_SECS = 1.0
# the refitted network is saved only when, loaded back, it predicts what it did in memory on
# this many rows, to within this share of the largest prediction (float32 round-off)
ROUND_TRIP_ROWS = 512
ROUND_TRIP_TOLERANCE = 1e-3


class AutoKerasSettings(EngineSettings):
    """``engines.autokeras``: the architecture search (the deadline is ``budget.max_runtime_secs``)."""

    max_trials: int = Field(
        default=10, ge=1, le=500,
        description="most architectures tried (the search also stops at budget.max_runtime_secs)")
    epochs: int = Field(
        default=100, ge=1, le=10_000,
        description="most epochs per trial; early stopping usually ends a trial sooner")
    patience: int = Field(
        default=8, ge=1, le=1_000,
        description="epochs without validation-loss improvement before a trial stops")
    validation_fraction: float = Field(
        default=0.2, ge=0.05, le=0.5,
        description="share of training rows that picks the architecture and the epoch")
    refit: bool = Field(
        default=True,
        description="train the chosen architecture again on all training rows (fit + "
                    "validation) for the best epoch count; the search's model otherwise")
    # 1.0: with the whole budget as search time (TensorFlow's import outside it) the best
    # trial trains longer, and at 0.5 the refit was skipped on 6 of 7 benchmark tables
    refit_max_share: float = Field(
        default=1.0, gt=0.0, le=2.0,
        description="skip the refit when it would take longer than this share of "
                    "budget.max_runtime_secs (estimated from the best trial's epoch times)")
    out_of_fold_folds: int = Field(
        default=5, ge=0, le=20,
        description="k-fold refits of the chosen architecture after the search, for "
                    "out-of-fold scores of every training row (what selection compares); 0 "
                    "or 1: off, the validation rows' scores are kept (selection then uses "
                    "the held-out rows alone)")
    out_of_fold_max_share: float = Field(
        default=1.0, gt=0.0, le=5.0,
        description="skip the k-fold refits when they would take longer than this share "
                    "of budget.max_runtime_secs (estimated from the best trial's epoch "
                    "times)")


# ------------------------------------------------------------------------------ encoding


@dataclass
class KerasEncoding:
    """How a feature frame becomes the float32 matrix the network reads (and the target back)."""

    columns: list[str]
    numeric: list[str]
    means: list[float]
    scales: list[float]
    categorical: dict[str, list[str]] = field(default_factory=dict)
    target_mean: float = 0.0
    target_scale: float = 1.0
    clip: float = CLIP

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(levels) for levels in self.categorical.values())

    @classmethod
    def fit(cls, features: pd.DataFrame, categorical: list[str],
            target: pd.Series | None = None) -> KerasEncoding:
        """Learn means, deviations and levels from training features (and a regression target)."""
        from autokfp.modeling.features import OTHER_LEVEL

        numeric = [c for c in features.columns if c not in set(categorical)]
        means, scales = [], []
        for name in numeric:
            values = pd.to_numeric(features[name], errors="coerce").astype("float64")
            mean = float(values.mean()) if values.notna().any() else 0.0
            scale = float(values.std(ddof=0)) if values.notna().sum() > 1 else 1.0
            means.append(mean)
            scales.append(scale if scale > 1e-12 and math.isfinite(scale) else 1.0)
        levels = {}
        for name in categorical:
            seen = sorted(str(v) for v in features[name].dropna().unique() if str(v) != OTHER_LEVEL)
            levels[name] = seen + [OTHER_LEVEL]
        encoding = cls(columns=list(features.columns), numeric=numeric, means=means,
                       scales=scales, categorical=levels)
        if target is not None:
            values = target.astype("float64")
            encoding.target_mean = float(values.mean())
            spread = float(values.std(ddof=0))
            encoding.target_scale = spread if spread > 1e-12 and math.isfinite(spread) else 1.0
        return encoding

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """Feature frame (columns in any order) -> float32 matrix."""
        from autokfp.modeling.features import OTHER_LEVEL

        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            raise DataError(f"the feature frame lacks {missing}; the AutoKeras model was trained "
                            f"on {self.columns}")
        blocks = []
        if self.numeric:
            raw = features[self.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(
                dtype="float64")
            blocks.append(self._standardise(raw))
        for name, levels in self.categorical.items():
            values = features[name].astype("object")
            known = values.isna() | values.isin(levels)
            values = values.where(known, OTHER_LEVEL)
            codes = pd.Categorical(values, categories=levels).codes
            onehot = np.zeros((len(features), len(levels)), dtype="float32")
            rows = np.nonzero(codes >= 0)[0]
            onehot[rows, codes[rows]] = 1.0
            blocks.append(onehot)
        if not blocks:
            return np.zeros((len(features), 0), dtype="float32")
        return np.hstack(blocks).astype("float32", copy=False)

    def transform_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """The same matrix from feature rows given as dicts (the serving fast path)."""
        from autokfp.modeling.features import OTHER_LEVEL

        out = np.zeros((len(rows), self.width), dtype="float32")
        numeric = np.full((len(rows), len(self.numeric)), np.nan)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.numeric):
                value = row.get(name)
                try:
                    numeric[i, j] = np.nan if value is None else float(value)
                except (TypeError, ValueError):
                    numeric[i, j] = np.nan
        out[:, :len(self.numeric)] = self._standardise(numeric)
        offset = len(self.numeric)
        for name, levels in self.categorical.items():
            index = {level: k for k, level in enumerate(levels)}
            for i, row in enumerate(rows):
                value = row.get(name)
                if value is None or (isinstance(value, float) and value != value):
                    continue
                out[i, offset + index.get(str(value), index[OTHER_LEVEL])] = 1.0
            offset += len(levels)
        return out

    def _standardise(self, raw: np.ndarray) -> np.ndarray:
        scaled = (raw - np.asarray(self.means)) / np.asarray(self.scales)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=self.clip, neginf=-self.clip)
        return np.clip(scaled, -self.clip, self.clip).astype("float32")

    def encode_target(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.target_mean) / self.target_scale).astype("float32")

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        return values.astype("float64") * self.target_scale + self.target_mean

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> KerasEncoding:
        return cls(**json.loads(text))


# -------------------------------------------------------------------------------- device


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def tensorflow_device() -> str:
    """``gpu`` when TensorFlow sees a GPU, else ``cpu``."""
    _quiet_tensorflow()
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


# -------------------------------------------------------------------------------- engine


class _SearchClock:
    """Shared by the search callback and the engine (the tuner deep-copies callbacks)."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.best_loss = float("inf")
        self.best_trial = -1
        self.best_model: Any = None
        self.best_weights: list[np.ndarray] | None = None
        self.trials_started = 0
        self.expired = False
        self.expired_at: float | None = None
        self.oracle: Any = None
        self.trial_started: float | None = None
        self.best_epochs = 0  # epochs the best network had trained (its trial's best epoch + 1)
        self.best_epoch_seconds = 0.0  # its trial's seconds per epoch
        self.refit_fit_seconds: float | None = None  # the refit's training alone, when it ran
        self.refit_fit_cpu_seconds: float | None = None  # the same, in this process's CPU-s

    def stop_search(self) -> None:
        if self.oracle is not None:  # the tuner asks the oracle before each trial
            self.oracle.max_trials = max(1, len(self.oracle.trials))

    def check(self) -> bool:
        if not self.expired and time.monotonic() >= self.deadline:
            self.expired = True
            self.expired_at = time.monotonic()
            self.stop_search()
        return self.expired

    def trial_ended(self) -> None:
        """Start no further trial when less than half a trial's time is left."""
        if self.trial_started is None:
            return
        took = time.monotonic() - self.trial_started
        if self.deadline - time.monotonic() < 0.5 * took:
            self.stop_search()

    def __deepcopy__(self, memo: dict) -> _SearchClock:
        return self


def _search_callback(clock: _SearchClock) -> Any:
    import keras

    class SearchWatch(keras.callbacks.Callback):
        """Keeps the best network of the whole search; stops it at the budget's deadline.

        The weights of the best epoch of any trial (lowest validation loss) are kept as it
        happens and that very network is exported, instead of rebuilding it from the
        tuner's checkpoint: the model scored on the validation rows is the one shipped.
        """

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("val_loss")
            if loss is not None and math.isfinite(float(loss)) and float(loss) < clock.best_loss:
                clock.best_loss = float(loss)
                clock.best_trial = clock.trials_started - 1
                clock.best_model = self.model  # small networks: keep it, save once at the end
                clock.best_weights = [w.copy() for w in self.model.get_weights()]
                clock.best_epochs = epoch + 1
                if clock.trial_started is not None:
                    clock.best_epoch_seconds = (time.monotonic() - clock.trial_started) / (epoch + 1)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if clock.check():
                self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if clock.check():
                self.model.stop_training = True

        def on_train_begin(self, logs: Any = None) -> None:
            clock.trial_started = time.monotonic()
            clock.trials_started += 1

        def on_train_end(self, logs: Any = None) -> None:
            clock.trial_ended()

        def __deepcopy__(self, memo: dict) -> Any:
            return self

    return SearchWatch()


def _check_inputs(features: pd.DataFrame, target: pd.Series) -> None:
    if target.isna().any():
        raise DataError(f"the target has {int(target.isna().sum())} missing values; rows "
                        "without a label must be dropped before training")
    if len(features) < MIN_ROWS:
        raise DataError(f"AutoKeras needs at least {MIN_ROWS} training rows, got "
                        f"{len(features)}; add rows or leave 'autokeras' out of engines")


def _configure_tensorflow(budget: Any) -> str:
    """Cap TensorFlow's threads and seed it: the device training runs on."""
    import keras

    device = tensorflow_device()
    if getattr(budget, "nthreads", -1) and budget.nthreads > 0:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(budget.nthreads)
        except RuntimeError:  # already initialised in this process
            pass
    keras.utils.set_random_seed(int(budget.seed))
    return device


def _searcher(settings: AutoKerasSettings, task: str, classes: list[str] | None, width: int,
              search_dir: Path, seed: int) -> Any:
    """AutoKeras' structured-data classifier or regressor over ``width`` numeric inputs."""
    import autokeras as ak

    # Every input is numeric already. Named as such, AutoKeras' own input pipeline (which
    # runs outside the exported Keras model) leaves the matrix alone; left to infer,
    # it label-encodes columns with few distinct values, and the exported model would
    # then expect codes that scoring never produces.
    names = [f"x{i}" for i in range(width)]
    common = dict(column_names=names, column_types={n: "numerical" for n in names},
                  max_trials=settings.max_trials, directory=str(search_dir),
                  project_name=f"autokfp_{uuid.uuid4().hex[:8]}", overwrite=True,
                  seed=seed, objective="val_loss")
    if task == "regression":
        return ak.StructuredDataRegressor(**common)
    return ak.StructuredDataClassifier(num_classes=len(classes or []), **common)


def _search(searcher: Any, clock: _SearchClock, settings: AutoKerasSettings, x: np.ndarray,
            y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, batch_size: int) -> None:
    """The architecture search on the fit rows, validated on the others, under ``clock``."""
    import keras

    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e-4,
                                               patience=settings.patience),
                 _search_callback(clock)]
    try:
        with warnings.catch_warnings():
            # Keras notes AutoKeras' list-wrapped inputs and skipped optimizer state on
            # every trial; neither matters for a model that is only scored afterwards
            warnings.simplefilter("ignore", UserWarning)
            searcher.fit(x[fit_idx], y[fit_idx], validation_data=(x[val_idx], y[val_idx]),
                         epochs=settings.epochs, batch_size=batch_size,
                         callbacks=callbacks, verbose=0)
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(f"AutoKeras found no usable model: {exc}") from exc


def _export_best(clock: _SearchClock, searcher: Any, encoding: KerasEncoding, workdir: Path,
                 search_dir: Path) -> pd.DataFrame:
    """The best epoch's model and the encoding saved into ``workdir``, the search folder
    removed: the trials' leaderboard (also saved)."""
    if clock.best_model is None:
        raise TrainingError("AutoKeras finished no epoch with a finite validation loss; "
                            "raise budget.max_runtime_secs or check the data")
    clock.best_model.set_weights(clock.best_weights)
    clock.best_model.save(workdir / MODEL_FILE)
    (workdir / ENCODING_FILE).write_text(encoding.to_json())
    board = _trial_board(searcher.tuner.oracle)
    shutil.rmtree(search_dir, ignore_errors=True)
    board.to_csv(workdir / "leaderboard.csv", index=False)
    return board


class AutoKerasEngine:
    """AutoKeras structured-data classifier/regressor behind the ``Engine`` interface."""

    name = "autokeras"

    def __init__(self, settings: AutoKerasSettings | None = None):
        self.settings = settings or AutoKerasSettings()

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
    ) -> EngineResult:
        started = time.monotonic()
        settings = self.settings
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        _check_inputs(features, target)
        _quiet_tensorflow()
        import autokeras as ak
        import keras

        timings = {"import": round(time.monotonic() - started, 2)}
        device = _configure_tensorflow(budget)
        # the budget is search time: TensorFlow's import (5-18 s on 2 busy cores) and device
        # set-up come on top, as H2O's JVM start does
        clock_start = time.monotonic()

        encoding = KerasEncoding.fit(features, categorical,
                                     target if task == "regression" else None)
        x = encoding.transform(features)
        y, codes = self._encode_target(target, task, classes, encoding)
        fit_idx, val_idx = _validation_split(codes, settings.validation_fraction,
                                             int(budget.seed))
        reserve = EXPORT_RESERVE_SECS + EXPORT_RESERVE_SHARE * budget.max_runtime_secs
        deadline = clock_start + max(5.0, budget.max_runtime_secs - reserve)
        clock = _SearchClock(deadline)
        search_dir = workdir / "search"
        searcher = _searcher(settings, task, classes, x.shape[1], search_dir, int(budget.seed))
        clock.oracle = searcher.tuner.oracle
        batch_size = 32 if len(fit_idx) < 2000 else (64 if len(fit_idx) < 20_000 else 256)
        log.info("AutoKeras on %d rows x %d inputs (%s, device %s, budget %ss, %d trials x %d "
                 "epochs)", len(fit_idx), encoding.width, task, device, budget.max_runtime_secs,
                 settings.max_trials, settings.epochs)
        search_started = time.monotonic()
        _search(searcher, clock, settings, x, y, fit_idx, val_idx, batch_size)
        search_seconds = time.monotonic() - search_started
        timings["search"] = round(search_seconds, 2)
        if clock.expired_at is not None:
            timings["after_deadline"] = round(time.monotonic() - clock.expired_at, 2)
        mark = time.monotonic()
        board = _export_best(clock, searcher, encoding, workdir, search_dir)
        timings["export"] = round(time.monotonic() - mark, 2)
        mark = time.monotonic()
        scorer = KerasScorer(workdir, task, classes)
        held_idx, held_scores = val_idx, scorer.score_matrix(x[val_idx])
        kind = "validation"
        timings["validate"] = round(time.monotonic() - mark, 2)
        fitted_rows, refit_note = self._refit(clock, x, y, batch_size, budget, fit_idx, workdir,
                                              timings)
        mark = time.monotonic()
        # the refit is the same recipe on all rows: its training's seconds (set-up included,
        # not its save / reload check) measure what each fold costs better than the search's
        # epochs, which include tracing (session 17: the refit's whole 9 s put five folds at
        # 36 s, over a 30 s budget)
        oof, oof_note = _out_of_fold_scores(
            clock, x, y, codes, task, encoding, batch_size, int(budget.seed), fit_idx,
            settings.out_of_fold_folds,
            settings.out_of_fold_max_share * budget.max_runtime_secs,
            refit_seconds=clock.refit_fit_seconds,
            stop_by=started + engine_timeout(budget.max_runtime_secs) - AFTER_FOLDS_SECS)
        timings["out_of_fold"] = round(time.monotonic() - mark, 2)
        log.info("AutoKeras out-of-sample estimate: %s", oof_note)
        if oof is not None:
            held_idx, held_scores, kind = np.arange(len(x)), oof, "out_of_fold"
        truth = (codes if task != "regression" else target.to_numpy(dtype="float64"))[held_idx]
        cv = _validation_metrics(truth, held_scores, task, sort_metric, int(budget.seed))
        timings["total"] = round(time.monotonic() - started, 2)
        leader = f"trial_{clock.best_trial:0{len(str(settings.max_trials))}d}"
        info = {"engine": self.name, "leader": leader, "device": device,
                "autokeras_version": ak.__version__, "keras_version": keras.__version__,
                "search_seconds": round(search_seconds, 2), "deadline_reached": clock.expired,
                "trials": len(board), "inputs": encoding.width, "features": list(features.columns),
                "categorical": categorical, "validation_rows": int(len(val_idx)),
                "fitted_rows": int(fitted_rows), "refit": refit_note, "seconds": timings,
                "out_of_sample": oof_note, "holdout_kind": kind,
                # what a refit after the champion gate trains again (``refit``)
                "best_epochs": int(clock.best_epochs), "batch_size": int(batch_size),
                "optimizer": _optimizer_config(clock.best_model),
                # what that costs, for the refit step's estimate (``refit_seconds``)
                "recipe_fit": _recipe_fit(clock, len(x), len(fit_idx))}
        (workdir / "engine.json").write_text(json.dumps(info, indent=2))
        log.info("AutoKeras leader %s after %.1fs (%d trials%s); validation %s; seconds %s", leader,
                 search_seconds, len(board), ", deadline reached" if clock.expired else "", cv,
                 timings)
        return EngineResult(
            engine=self.name, artifact_dir=workdir, leader=leader, leaderboard=board,
            cv_metrics=cv, device=device,
            holdout=(held_idx, held_scores), holdout_kind=kind, fitted_rows=int(fitted_rows),
            params={**self._params(budget, batch_size, len(board), clock.expired, refit_note,
                                   int(fitted_rows)),
                    "out_of_sample": oof_note,
                    **({"cv_method": oof_note} if oof is not None else {})},
        )

    def _refit(self, clock: _SearchClock, x: np.ndarray, y: np.ndarray, batch_size: int,
               budget: Any, fit_idx: np.ndarray, workdir: Path,
               timings: dict[str, float]) -> tuple[int, str]:
        """The best architecture refitted on every training row when ``refit`` is on (within
        its share of the budget): the rows the saved model was fitted on, and what happened."""
        settings = self.settings
        fitted_rows, refit_note = len(fit_idx), "off (engines.autokeras.refit: false)"
        if settings.refit:
            mark = time.monotonic()
            refitted, refit_note = _refit_all_rows(
                clock, x, y, batch_size, int(budget.seed), fit_idx,
                settings.refit_max_share * budget.max_runtime_secs)
            if refitted is not None:
                exported, refit_note = _save_refit(refitted, x, workdir / MODEL_FILE, refit_note)
                if exported:
                    fitted_rows = len(x)
            timings["refit"] = round(time.monotonic() - mark, 2)
        log.info("AutoKeras refit: %s", refit_note)
        return fitted_rows, refit_note

    def refit(
        self,
        artifact_dir: Path,
        features: pd.DataFrame,
        target: pd.Series,
        task: str,
        classes: list[str] | None,
        categorical: list[str],
        budget: Any,
        sort_metric: str,
        workdir: Path,
    ) -> EngineResult:
        """The network in ``artifact_dir`` trained again on ``features``: its architecture
        from fresh weights, with its optimizer, batch size and epoch count (``engine.json``),
        its input encoding and normalisation statistics kept, so it scores rows as the
        gated network does. No search and no deadline. Raises TrainingError when the folder
        records no epoch count (trained before it was kept), or when the loaded saved file
        does not predict what the trained network did."""
        artifact_dir, workdir = Path(artifact_dir), Path(workdir)
        info = json.loads((artifact_dir / "engine.json").read_text())
        epochs, batch_size = int(info.get("best_epochs") or 0), int(info.get("batch_size") or 0)
        if epochs < 1 or batch_size < 1 or not info.get("optimizer"):
            raise TrainingError(f"{artifact_dir / 'engine.json'} records no epoch count, batch "
                                "size or optimizer (a network trained before they were kept): "
                                "it cannot be refitted")
        started = time.monotonic()
        _check_inputs(features, target)
        _quiet_tensorflow()
        device = _configure_tensorflow(budget)
        encoding = KerasEncoding.from_json((artifact_dir / ENCODING_FILE).read_text())
        x = encoding.transform(features)
        y, _codes = self._encode_target(target, task, classes, encoding)
        gated = _load_keras_model(artifact_dir / MODEL_FILE)
        fit_started, fit_cpu = time.monotonic(), time.process_time()
        model, last_loss = _fit_clone(gated, info["optimizer"], _task_loss(task), x, y, epochs,
                                      batch_size, int(budget.seed))
        fitted = {"rows": len(x), "epochs": epochs,
                  "seconds": round(time.monotonic() - fit_started, 3),
                  "cpu_seconds": round(time.process_time() - fit_cpu, 3),
                  "source": "the refit after the champion gate"}
        if not math.isfinite(last_loss):
            raise TrainingError(f"the refit ended with a non-finite loss ({last_loss})")
        if workdir.exists():
            shutil.rmtree(workdir)
        shutil.copytree(artifact_dir, workdir)
        (workdir / "holdout.npz").unlink(missing_ok=True)  # the gated network's, not this one's
        note = f"refitted on {len(x)} rows for {epochs} epochs after the champion gate"
        exported, note = _save_refit(model, x, workdir / MODEL_FILE, note)
        if not exported:
            raise TrainingError(note)
        seconds = round(time.monotonic() - started, 2)
        info.update({"fitted_rows": len(x), "refit": note, "refit_seconds": seconds,
                     "device": device, "recipe_fit": fitted})
        (workdir / "engine.json").write_text(json.dumps(info, indent=2))
        return EngineResult(
            engine=self.name, artifact_dir=workdir, leader=str(info.get("leader", "")),
            leaderboard=pd.DataFrame({"trial": [info.get("leader", "")]}), device=device,
            params={"refit": note, "refit_seconds": seconds, "epochs": epochs,
                    "batch_size": batch_size, "fit_seconds": fitted["seconds"],
                    "fit_cpu_seconds": fitted["cpu_seconds"]},
            fitted_rows=len(x))

    def refit_seconds(self, artifact_dir: Path, trained_rows: int, rows: int
                      ) -> tuple[float, str] | None:
        """About how long ``refit`` of the network in ``artifact_dir`` takes on ``rows`` rows,
        its fit alone (no TensorFlow import, no save): the same recipe's own recorded fit
        (``engine.json``'s ``recipe_fit``: the training's refit on every training row for the
        best epoch count, else the best trial's epochs), scaled linearly by ``rows`` over the
        rows it fitted (same epochs and batch size: the work per epoch is linear in the
        rows). With the basis, for the reason a refit is or is not made. None when the folder
        records no fit time (a package from before they were kept, whose training refit did
        not run either). ``trained_rows`` is not needed: the record says its own rows."""
        from autokfp.modeling.feature_file import FRAME_ENGINE_MAX_ROWS

        try:
            info = json.loads((Path(artifact_dir) / "engine.json").read_text())
        except (OSError, ValueError):
            return None
        fit = info.get("recipe_fit") or _older_recipe_fit(info)
        try:
            seconds, fitted = float(fit["seconds"]), int(fit["rows"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (math.isfinite(seconds) and seconds > 0 and fitted > 0):
            return None
        rows = min(int(rows), FRAME_ENGINE_MAX_ROWS)  # a frame engine trains on that many
        basis = (f"{fit.get('source', 'a fit of the recipe')}: {seconds:.1f}s for "
                 f"{fit.get('epochs', '?')} epochs on {fitted} rows")
        return round(seconds * rows / fitted, 1), basis

    def _params(self, budget: Any, batch_size: int, trials: int, deadline_reached: bool,
                refit_note: str, fitted_rows: int) -> dict[str, Any]:
        settings = self.settings
        return {"max_runtime_secs": budget.max_runtime_secs,
                "max_trials": settings.max_trials,
                "max_epochs": settings.epochs, "patience": settings.patience,
                "validation_fraction": settings.validation_fraction,
                "batch_size": batch_size, "seed": budget.seed, "objective": "val_loss",
                "models_trained": trials, "deadline_reached": deadline_reached,
                "refit": refit_note, "fitted_rows": fitted_rows,
                "cv_method": f"holdout {settings.validation_fraction:.0%} of "
                             "training rows (bootstrap spread)"}

    @staticmethod
    def _encode_target(target: pd.Series, task: str, classes: list[str] | None,
                       encoding: KerasEncoding) -> tuple[np.ndarray, np.ndarray]:
        if task == "regression":
            values = target.to_numpy(dtype="float64")
            return encoding.encode_target(values), np.zeros(len(values), dtype=int)
        labels = list(classes or [])
        lookup = {label: i for i, label in enumerate(labels)}
        codes = np.array([lookup.get(str(v), -1) for v in target], dtype=int)
        if (codes < 0).any():
            unknown = sorted({str(v) for v, c in zip(target, codes) if c < 0})[:5]
            raise DataError(f"target values {unknown} are not among the classes {labels}")
        if task == "binary":
            return codes.astype("float32"), codes
        return np.eye(len(labels), dtype="float32")[codes], codes

    def load_scorer(self, artifact_dir: Path, task: str, classes: list[str] | None) -> KerasScorer:
        return KerasScorer(Path(artifact_dir), task, classes)


def _refit_all_rows(clock: _SearchClock, x: np.ndarray, y: np.ndarray, batch_size: int,
                    seed: int, fit_idx: np.ndarray, limit_seconds: float) -> tuple[Any, str]:
    """The best architecture trained again, from fresh weights, on all rows ``x`` for the
    best network's epoch count: (model, what was done), or (None, why not).

    No row is left to judge the refitted network out of sample, so it is checked where it
    can be: its loss on the rows it fitted must not exceed the search's network's loss on
    the rows that one fitted by more than ``REFIT_LOSS_TOLERANCE`` (a refit that did not
    converge in the same epoch count, seen here with a few epochs from an unlucky start,
    is rejected and the search's network exported)."""
    import keras

    searched_rows = len(fit_idx)
    best = clock.best_model
    epochs = clock.best_epochs
    if best is None or epochs < 1:
        return None, "skipped: the search recorded no best epoch"
    estimate = clock.best_epoch_seconds * epochs * len(x) / max(searched_rows, 1)
    if estimate > limit_seconds:
        return None, (f"skipped: about {estimate:.0f}s by the best trial's epochs, over "
                      f"refit_max_share of the budget ({limit_seconds:.0f}s); the search's "
                      f"model (fitted on {searched_rows} rows) is exported")
    try:
        fit_started, fit_cpu = time.monotonic(), time.process_time()
        model, last_loss = _fit_clone(best, keras.optimizers.serialize(best.optimizer),
                                      best.loss, x, y, epochs, batch_size, seed)
        clock.refit_fit_seconds = time.monotonic() - fit_started
        clock.refit_fit_cpu_seconds = time.process_time() - fit_cpu
    except (RuntimeError, ValueError, TypeError) as exc:
        return None, f"failed ({type(exc).__name__}: {exc}); the search's model is exported"
    if not math.isfinite(last_loss):
        return None, "ended with a non-finite loss; the search's model is exported"
    try:
        refit_loss = _mean_loss(model, best.loss, x, y)
        search_loss = _mean_loss(best, best.loss, x[fit_idx], y[fit_idx])
    except (RuntimeError, ValueError, TypeError) as exc:
        return None, (f"rejected: its loss could not be checked ({type(exc).__name__}: {exc}); "
                      "the search's model is exported")
    if not refit_loss <= search_loss * (1 + REFIT_LOSS_TOLERANCE) + 1e-6:
        return None, (f"rejected: loss {refit_loss:.4f} on its {len(x)} rows against the "
                      f"search's {search_loss:.4f} on its {searched_rows}; the search's model "
                      "is exported")
    return model, (f"on all {len(x)} training rows for {epochs} epochs (the search's model "
                   f"was fitted on {searched_rows}; loss {refit_loss:.4f} vs {search_loss:.4f})")


def _recipe_fit(clock: _SearchClock, rows: int, searched_rows: int) -> dict[str, Any] | None:
    """What fitting the chosen recipe (its architecture from fresh weights, its epochs) cost
    in training, for ``refit_seconds``: the refit on every training row when it ran (its
    training alone, measured), else the best trial's epochs on the rows it was fitted on
    (seconds per epoch from its trial, tracing included); None without a best epoch."""
    if clock.best_epochs < 1:
        return None
    if clock.refit_fit_seconds is not None:
        return {"rows": int(rows), "epochs": int(clock.best_epochs),
                "seconds": round(clock.refit_fit_seconds, 3),
                "cpu_seconds": round(clock.refit_fit_cpu_seconds or 0.0, 3),
                "source": "the training's refit on every training row"}
    if clock.best_epoch_seconds <= 0:
        return None
    return {"rows": int(searched_rows), "epochs": int(clock.best_epochs),
            "seconds": round(clock.best_epoch_seconds * clock.best_epochs, 3),
            "source": "the best trial's epochs"}


def _older_recipe_fit(info: dict[str, Any]) -> dict[str, Any] | None:
    """A package from before ``recipe_fit`` was kept: its training refit's seconds (save
    and reload check included, so it errs high) when that refit ran on its ``fitted_rows``."""
    seconds = (info.get("seconds") or {}).get("refit")
    if not seconds or not str(info.get("refit", "")).startswith("on all "):
        return None
    return {"rows": info.get("fitted_rows"), "epochs": info.get("best_epochs"),
            "seconds": seconds, "source": "the training's refit on every training row "
                                          "(its save and check included)"}


def _fit_clone(source: Any, optimizer: dict[str, Any], loss: Any, x: np.ndarray, y: np.ndarray,
               epochs: int, batch_size: int, seed: int) -> tuple[Any, float]:
    """``source``'s architecture trained from fresh weights on ``x``/``y`` for ``epochs``
    with the optimizer of config ``optimizer``: (the network, its last epoch's loss)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.models.clone_model(source)
    # statistics adapted to the data (normalisation layers) are not learned by fit: the
    # clone keeps the source's; every trainable weight starts afresh
    for kept, target in zip(source.weights, model.weights):
        if not kept.trainable:
            target.assign(kept.numpy())
    # A Normalization layer computes from those variables only in finalize_state (what
    # adapt() and loading a saved model call): without it the clone would train on its
    # initial mean 0 / variance 1 and be saved with the source's statistics, which the
    # loaded model then applies to weights fitted without them (diamonds: RMSE 4,287 on
    # its own training rows against 580 in memory)
    for layer in model.layers:
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    model.compile(optimizer=keras.optimizers.deserialize(optimizer), loss=loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    losses = history.history.get("loss") or [float("nan")]
    return model, float(losses[-1])


def _fold_numbers(codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold in 0..folds-1, stratified by class (``validation_ranks``; a class of
    one row ranks 1.0 and lands in the last fold)."""
    from autokfp.modeling.validation import validation_ranks

    ranks = validation_ranks(codes, seed + 1)  # not the validation split's draw
    return np.minimum((ranks * folds).astype(int), folds - 1)


def _cross_fit(fit_and_score: Any, fold_of: np.ndarray, folds: int,
               give_up_at: float | None = None) -> np.ndarray | None:
    """Out-of-fold scores: for each fold, ``fit_and_score(trained, scored)`` (row indices:
    every row outside the fold, the fold's) trains a model on ``trained`` only and returns
    its scores of ``scored``; None when a fold fails (returns None) or ``give_up_at``
    (``time.monotonic()``) passes before the last fold is done."""
    scores: np.ndarray | None = None
    for fold in range(folds):
        scored = np.flatnonzero(fold_of == fold)
        if len(scored) == 0:
            continue
        part = fit_and_score(np.flatnonzero(fold_of != fold), scored)
        if part is None:
            return None
        part = np.asarray(part, dtype="float64")
        if scores is None:
            scores = np.full((len(fold_of), *part.shape[1:]), np.nan)
        scores[scored] = part
        if give_up_at is not None and time.monotonic() > give_up_at and fold < folds - 1:
            return None
    return scores


def _out_of_fold_scores(clock: _SearchClock, x: np.ndarray, y: np.ndarray, codes: np.ndarray,
                        task: str, encoding: KerasEncoding, batch_size: int, seed: int,
                        fit_idx: np.ndarray, folds: int, limit_seconds: float,
                        refit_seconds: float | None = None,
                        stop_by: float | None = None) -> tuple[np.ndarray | None, str]:
    """Out-of-fold scores of every row of ``x`` by k-fold refits of the search's best
    network (its architecture from fresh weights, its optimizer, its best epoch count, no
    early stopping), in ``KerasScorer.score_matrix``'s form: (scores, what was done), or
    (None, why not). Their time is estimated from ``refit_seconds`` (the same recipe on
    all rows, measured) when given, else from the best trial's epoch times. ``stop_by``
    (``time.monotonic()``): no fold starts after it, and the folds are not begun when their
    estimate ends after it (the engine's child is killed at ``engine_timeout`` of the budget,
    and the whole candidate, search and refit included, would be lost with it)."""
    import keras

    best, epochs = clock.best_model, clock.best_epochs
    if folds < 2:
        return None, "validation rows (engines.autokeras.out_of_fold_folds below 2)"
    if best is None or epochs < 1:
        return None, "validation rows (the search recorded no best epoch)"
    if refit_seconds is not None:
        estimate, basis = folds * (folds - 1) / folds * refit_seconds, "the refit's time"
    else:
        estimate = folds * (FOLD_SETUP_SECS + clock.best_epoch_seconds * epochs * len(x)
                            * (folds - 1) / folds / max(len(fit_idx), 1))
        basis = "the best trial's epochs"
    if estimate > limit_seconds:
        return None, (f"validation rows: {folds}-fold refits would take about {estimate:.0f}s "
                      f"by {basis}, over out_of_fold_max_share of the budget "
                      f"({limit_seconds:.0f}s)")
    if stop_by is not None and time.monotonic() + estimate > stop_by:
        return None, (f"validation rows: {folds}-fold refits would take about {estimate:.0f}s "
                      f"by {basis}, past the training child's time limit")
    optimizer = keras.optimizers.serialize(best.optimizer)
    failed: list[str] = []

    def fit_and_score(trained: np.ndarray, scored: np.ndarray) -> np.ndarray | None:
        try:
            model, last_loss = _fit_clone(best, optimizer, best.loss, x[trained], y[trained],
                                          epochs, batch_size, seed)
        except (RuntimeError, ValueError, TypeError) as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            return None
        if not math.isfinite(last_loss):
            failed.append(f"a fold ended with a non-finite loss ({last_loss})")
            return None
        raw = np.asarray(model.predict(x[scored], batch_size=SCORE_BATCH, verbose=0))
        return _scores_from_raw(raw, task, encoding)

    started = time.monotonic()
    # a bad estimate (a loaded machine) may double the time; past that the folds stop
    scores = _cross_fit(fit_and_score, _fold_numbers(codes, folds, seed), folds,
                        give_up_at=(started + 2 * limit_seconds if stop_by is None
                                    else min(started + 2 * limit_seconds, stop_by)))
    if scores is None:
        return None, ("validation rows: the k-fold refits " + (
            f"failed ({failed[0]})" if failed else
            "ran past the training child's time limit"
            if stop_by is not None and time.monotonic() > stop_by else
            f"ran over twice out_of_fold_max_share of the budget ({limit_seconds:.0f}s)"))
    if not np.isfinite(scores).all():
        return None, "validation rows: the k-fold refits scored non-finite values"
    return scores, (f"out of fold: {folds}-fold refits of the chosen architecture on all "
                    f"{len(x)} training rows ({epochs} epochs each, no early stopping; "
                    f"{time.monotonic() - started:.0f}s)")


def _optimizer_config(model: Any) -> dict[str, Any] | None:
    """The JSON form of ``model``'s optimizer (None if it has none or it is not JSON)."""
    import keras

    try:
        config = keras.optimizers.serialize(model.optimizer)
        return json.loads(json.dumps(config))
    except Exception:  # noqa: BLE001 - only a later refit needs it
        return None


def _task_loss(task: str) -> str:
    """The loss AutoKeras' heads train with for ``task`` (the encoded targets' form)."""
    return {"binary": "binary_crossentropy", "multiclass": "categorical_crossentropy"}.get(
        task, "mean_squared_error")


def _save_refit(model: Any, x: np.ndarray, path: Path, note: str) -> tuple[bool, str]:
    """Save the refitted network over the search's at ``path`` only if the saved file, loaded
    as scoring loads it, gives the predictions the network gave in memory (on up to
    ``ROUND_TRIP_ROWS`` rows); otherwise the search's model stays. Returns whether the refit
    was exported (so the package was fitted on every row) and what was done."""
    staged = path.with_name(f"refit-{path.name}")
    sample = x[:ROUND_TRIP_ROWS]
    try:
        model.save(staged)
        expected = np.asarray(model.predict(sample, batch_size=SCORE_BATCH, verbose=0))
        loaded = np.asarray(_load_keras_model(staged).predict(sample, batch_size=SCORE_BATCH,
                                                              verbose=0))
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        staged.unlink(missing_ok=True)
        return False, (f"rejected: it could not be saved and loaded ({type(exc).__name__}: "
                       f"{exc}); the search's model is exported")
    gap = float(np.max(np.abs(loaded - expected))) if expected.size else 0.0
    if not gap <= ROUND_TRIP_TOLERANCE * (1.0 + float(np.max(np.abs(expected), initial=0.0))):
        staged.unlink(missing_ok=True)
        return False, (f"rejected: saved and loaded, it predicts differently from the network "
                       f"that was trained (largest difference {gap:.4g}); the search's model "
                       "is exported")
    staged.replace(path)
    return True, note


def _mean_loss(model: Any, loss: Any, x: np.ndarray, y: np.ndarray) -> float:
    """``model``'s mean training loss on rows ``x`` with labels ``y``."""
    import keras

    if isinstance(loss, dict):  # AutoKeras compiles {head name: loss}; one head here
        if len(loss) != 1:
            raise ValueError(f"{len(loss)} output losses, one expected")
        loss = next(iter(loss.values()))
    function = keras.losses.get(loss) if isinstance(loss, str) else loss
    predicted = np.asarray(model.predict(x, batch_size=SCORE_BATCH, verbose=0))
    truth = y.reshape(predicted.shape) if y.size == predicted.size else y
    return float(np.mean(keras.ops.convert_to_numpy(function(truth, predicted))))


def _validation_split(codes: np.ndarray, fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (fit, validation): ``fraction`` of every class (at least one row of each
    class of two or more), drawn by ``validation_ranks`` so that H2O's blending validation
    rows of the same run are among them (selection compares both engines on those rows)."""
    from autokfp.modeling.validation import validation_ranks

    held = validation_ranks(codes, seed) < fraction
    if not held.any():  # every class a single row: a share of all rows
        held = validation_ranks(np.zeros(len(codes), dtype=int), seed) < fraction
    return np.flatnonzero(~held), np.flatnonzero(held)


def _trial_board(oracle: Any) -> pd.DataFrame:
    """Every trial with its validation loss, best epoch and hyperparameters, best first."""
    rows = []
    for trial_id, trial in oracle.trials.items():
        score = trial.score
        rows.append({
            "model_id": f"trial_{trial_id}",
            "val_loss": float(score) if score is not None else float("nan"),
            "best_epoch": (int(trial.best_step) + 1) if trial.best_step is not None else None,
            "status": str(trial.status),
            "hyperparameters": json.dumps(trial.hyperparameters.values, default=str,
                                          sort_keys=True),
        })
    board = pd.DataFrame(rows, columns=["model_id", "val_loss", "best_epoch", "status",
                                        "hyperparameters"])
    return board.sort_values("val_loss", na_position="last").reset_index(drop=True)


def _validation_metrics(truth: np.ndarray, scores: np.ndarray, task: str, metric: str,
                        seed: int) -> dict[str, float]:
    """Validation-row estimates named like H2O's cross-validation metrics, with a spread."""
    from autokfp.modeling.validation import metric_spread

    names = {"binary": ("auc", "logloss"), "multiclass": ("logloss", "accuracy"),
             "regression": ("rmse", "mae", "r2")}[task]
    metrics: dict[str, float] = {}
    for name in dict.fromkeys((*names, metric)):
        try:
            value, spread = metric_spread(name, truth, scores, task,
                                          samples=100 if name == metric else 0, seed=seed)
        except ValueError:
            continue
        metrics[f"cv_{name}"] = value
        if name == metric:
            metrics[f"cv_{name}_sd"] = spread
    return metrics


# -------------------------------------------------------------------------------- scoring


def _load_keras_model(path: Path) -> Any:
    _quiet_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except (TypeError, ValueError):
        import autokeras  # noqa: F401 - registers AutoKeras' own layers with Keras

        return keras.saving.load_model(path, compile=False)


class KerasScorer(FrameScorer):
    """Scores feature frames with the exported Keras model: probabilities or values."""

    def __init__(self, artifact_dir: Path, task: str, classes: list[str] | None):
        artifact_dir = Path(artifact_dir)
        path = artifact_dir / MODEL_FILE
        if not path.exists() or not (artifact_dir / ENCODING_FILE).exists():
            raise TrainingError(f"AutoKeras model files are missing in {artifact_dir}; the model "
                                "folder is incomplete")
        self.task = task
        self.classes = classes
        self.encoding = KerasEncoding.from_json((artifact_dir / ENCODING_FILE).read_text())
        self._model = _load_keras_model(path)
        import tensorflow as tf

        # One graph for every batch size: traced once, then a few ms per request. (Keras'
        # predict_on_batch retraces for each new batch size; model.predict costs ~40 ms a
        # call, an eager model(x) ~10 ms here.)
        model = self._model
        self._graph = tf.function(
            lambda x: model([x], training=False),
            input_signature=[tf.TensorSpec([None, self.encoding.width], tf.float32)])

    @property
    def feature_names(self) -> list[str]:
        return list(self.encoding.columns)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.score_matrix(self.encoding.transform(features))

    def predict_rows(self, rows: Any) -> np.ndarray:
        """Score feature rows given as dicts (the serving fast path)."""
        return self.score_matrix(self.encoding.transform_rows(list(rows)))

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Encoded matrix -> class probabilities (n x k) or regression values (n)."""
        if len(x) == 0:
            width = 0 if self.task == "regression" else len(self.classes or [0, 1])
            return np.zeros((0, width)) if width else np.zeros(0)
        parts = [self._graph(x[i:i + SCORE_BATCH]).numpy()
                 for i in range(0, len(x), SCORE_BATCH)]
        return _scores_from_raw(np.concatenate(parts), self.task, self.encoding)


def _scores_from_raw(raw: np.ndarray, task: str, encoding: KerasEncoding) -> np.ndarray:
    """The network's output -> class probabilities (n x k) or regression values (n)."""
    raw = np.asarray(raw).astype("float64")
    if task == "regression":
        return encoding.decode_target(raw.reshape(-1))
    if task == "binary":
        positive = np.clip(raw.reshape(-1), 0.0, 1.0)
        return np.column_stack([1.0 - positive, positive])
    raw = np.clip(raw, 0.0, None)
    return raw / np.clip(raw.sum(axis=1, keepdims=True), 1e-12, None)


register_engine(EngineSpec(
    name="autokeras", engine=AutoKerasEngine, settings=AutoKerasSettings, title="AutoKeras",
    default=True, serving_extra="keras",  # a Keras model needs TensorFlow to score
    legacy_budget_keys={"autokeras_max_trials": "max_trials", "autokeras_epochs": "epochs",
                        "autokeras_patience": "patience",
                        "autokeras_validation_fraction": "validation_fraction"}))
