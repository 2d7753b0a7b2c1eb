"""The registered model: one MLflow pyfunc that carries its own feature preprocessing.

Whatever engine trained it, a packaged model is a folder with the MLflow pyfunc layout and
three artifacts: ``plan.json`` (the fitted ``FeaturePlan``), ``meta.json`` (task, classes,
engine, decision threshold, the probability calibration (``autokfp.modeling.calibration``) and, when
bias mitigation applied, its per-group score repair and thresholds) and
``engine/`` (the engine's own files, e.g. an H2O MOJO). ``predict`` takes raw
rows (the columns the source data had) and returns a frame with ``prediction`` and, for
classifiers, ``probability_<class>`` per class. Training, evaluation and serving all use
this one class, so they cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.modeling.features import FeaturePlan, apply_features

log = logging.getLogger(__name__)

try:  # the pyfunc base class; the engine stays importable without mlflow for plain use
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[misc,assignment]


class AutokfpModel(PythonModel):
    """MLflow pyfunc: raw rows in, predictions (and class probabilities) out."""

    def load_context(self, context: Any) -> None:
        self._load(Path(context.artifacts["plan"]), Path(context.artifacts["meta"]),
                   Path(context.artifacts["engine"]))

    def _load(self, plan_path: Path, meta_path: Path, engine_dir: Path) -> None:
        from autokfp.engine_registry import get_engine

        self.plan = FeaturePlan.from_json(plan_path.read_text())
        self.meta = json.loads(meta_path.read_text())
        engine = get_engine(self.meta["engine"])
        self.scorer = engine.load_scorer(engine_dir, self.meta["task"], self.meta.get("class_labels"))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        features = apply_features(model_input, self.plan)
        raw = self.scorer.predict(features)
        return format_predictions(raw, self.meta, model_input.index,
                                  groups=group_values(self.meta, model_input))


    def predict_records(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        """Score a few raw rows given as dicts: the same answer as ``predict``, much faster."""
        from autokfp.modeling.features import apply_features_records

        rows = apply_features_records(records, self.plan)
        raw = self._score_rows(rows)
        return format_predictions(raw, self.meta, pd.RangeIndex(len(records)),
                                  groups=group_values(self.meta, records))

    def _score_rows(self, rows: list[Any]) -> Any:
        # a scorer written before Scorer.predict_rows existed scores through a frame
        scorer_rows = getattr(self.scorer, "predict_rows", None)
        if scorer_rows is None:
            return self.scorer.predict(pd.DataFrame(rows, columns=self.plan.feature_columns))
        return scorer_rows(rows)

    def predict_answers(self, records: list[dict[str, Any]],
                        stamps: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """``predict_records`` as the JSON answer rows a server sends (no pandas at all):
        ``prediction`` and ``probability_<class>`` as plain Python values, missing as None.
        The same numbers as ``predict``: both go through ``decide``. ``stamps``: each row's
        date/time columns already parsed (as the server's validator returns them)."""
        from autokfp.modeling.features import apply_features_records

        rows = apply_features_records(records, self.plan, stamps=stamps)
        raw = self._score_rows(rows)
        meta = self.meta
        if meta["task"] == "regression":
            return [{"prediction": _plain(v)} for v in np.asarray(raw).tolist()]
        probabilities, winners = decide(raw, meta, group_values(meta, records))
        classes = meta["classes"]
        keys = [f"probability_{label}" for label in meta["class_labels"]]
        answers = []
        for row, winner in zip(probabilities.tolist(), winners.tolist()):
            answer = {"prediction": classes[winner]}
            for key, value in zip(keys, row):
                answer[key] = None if value != value else value
            answers.append(answer)
        return answers


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def decide(raw: np.ndarray, meta: dict[str, Any], groups: list[str] | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """A classifier's engine output → (final class probabilities, index of the decided class
    per row): calibration, then the per-group score repair, then the threshold."""
    if (meta.get("calibration") or {}).get("applied"):
        from autokfp.modeling.calibration import apply_calibration

        raw = apply_calibration(raw, meta["calibration"])
    if meta["task"] == "binary":
        raw = adjust_scores(raw, meta, groups)
        threshold = decision_thresholds(meta, groups, len(raw))
        return raw, (raw[:, 1] >= threshold).astype(int)
    return raw, raw.argmax(axis=1)


def format_predictions(raw: np.ndarray, meta: dict[str, Any], index: pd.Index,
                       groups: list[str] | None = None) -> pd.DataFrame:
    """Engine output → the public prediction frame.

    Classifiers: the probability calibration fitted at training (``meta['calibration']``,
    when applied) comes first, then the per-group score repair, then the threshold.
    ``groups`` (binary models carrying ``meta['fairness_mitigation']`` only) holds each
    row's value of the sensitive attribute, normalised by ``group_key``: its group's score
    repair and threshold apply to the row. Without a mitigation the one
    ``meta['threshold']`` decides every row, exactly as before.
    """
    if meta["task"] == "regression":
        return pd.DataFrame({"prediction": raw}, index=index)
    classes = meta["classes"]
    labels = meta["class_labels"]
    raw, winners = decide(raw, meta, groups)
    out = pd.DataFrame({f"probability_{label}": raw[:, i] for i, label in enumerate(labels)}, index=index)
    out.insert(0, "prediction", [classes[i] for i in winners])
    return out


MISSING_GROUP = "(missing)"


def group_key(value: Any) -> str:
    """The group a sensitive-attribute value belongs to, as text (the same in training,
    fairness checks and serving): missing values form one group, 2.0 and 2 are "2"."""
    if value is None:
        return MISSING_GROUP
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return MISSING_GROUP
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        if pd.isna(value):
            return MISSING_GROUP
    except (TypeError, ValueError):
        pass
    return str(value)


BAND_DISTINCT_VALUES = 10  # a numeric sensitive attribute with more values is checked in bands


def numeric_bands(values: Any) -> list[float] | None:
    """Band edges (training quartiles) for a numeric sensitive attribute such as age; None
    for a category, a code (few distinct values) or a column that is not numeric."""
    series = pd.Series(values)
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        series = pd.to_numeric(series, errors="coerce")
        if series.notna().sum() < 0.9 * max(1, pd.Series(values).notna().sum()):
            return None
    numbers = series.dropna().astype("float64")
    if numbers.nunique() <= BAND_DISTINCT_VALUES:
        return None
    edges = np.unique(np.round(np.quantile(numbers, [0.25, 0.5, 0.75]), 6))
    return [float(e) for e in edges]


def band_label(value: Any, edges: list[float]) -> str:
    """The band of ``value`` among ``edges``: "<32", "32-45", ..., "58+" (missing: its group)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return MISSING_GROUP
    if number != number:
        return MISSING_GROUP
    text = [f"{e:g}" for e in edges]
    position = int(np.searchsorted(np.asarray(edges), number, side="right"))
    if position == 0:
        return f"<{text[0]}"
    if position == len(edges):
        return f"{text[-1]}+"
    return f"{text[position - 1]}-{text[position]}"


def group_labels(values: Any, edges: list[float] | None) -> list[str]:
    """Each value's group: its band when ``edges`` are given, else ``group_key``."""
    if edges:
        return [band_label(v, edges) for v in values]
    return [group_key(v) for v in values]


def group_values(meta: dict[str, Any], rows: pd.DataFrame | list[dict[str, Any]]) -> list[str] | None:
    """Each row's group for the bias mitigation in ``meta`` (None when there is none).

    A row that does not carry the sensitive column is treated as no group: no repair, the
    overall threshold.
    """
    mitigation = meta.get("fairness_mitigation")
    if not mitigation or meta.get("task") != "binary":
        return None
    column = mitigation["column"]
    edges = mitigation.get("bands")
    if isinstance(rows, pd.DataFrame):
        if column not in rows.columns:
            log.warning("rows lack sensitive column '%s': no per-group mitigation applies to them", column)
            return [""] * len(rows)
        return group_labels(rows[column].tolist(), edges)
    return [group_labels([r[column]], edges)[0] if column in r else "" for r in rows]


def adjust_scores(raw: np.ndarray, meta: dict[str, Any], groups: list[str] | None) -> np.ndarray:
    """Binary probabilities after the per-group score repair in ``meta`` (if any).

    The repair moves each group's positive-class score part of the way (``strength``)
    towards the score at the same rank of the pooled distribution: s + λ·(F⁻¹(F_g(s)) − s).
    Order within a group is kept; groups the repair does not name are left as they are.
    """
    repair = (meta.get("fairness_mitigation") or {}).get("score_repair")
    if not repair or groups is None:
        return raw
    levels, reference, strength, quantiles_by_group = _repair_arrays(repair)
    positive = raw[:, 1].astype("float64").copy()
    present = set(groups)
    for group, quantiles in quantiles_by_group.items():
        if group not in present:
            continue
        rows = np.fromiter((g == group for g in groups), dtype=bool, count=len(groups))
        rank = np.interp(positive[rows], quantiles, levels)
        target = np.interp(rank, levels, reference)
        positive[rows] = positive[rows] + strength * (target - positive[rows])
    positive = np.clip(positive, 0.0, 1.0)
    return np.column_stack([1.0 - positive, positive])


def _repair_arrays(repair: dict[str, Any]) -> tuple:
    """The repair's arrays. Built per call on purpose: the mitigation search changes a
    repair in place while it tries strengths, so nothing may be cached by identity."""
    return (np.linspace(0.0, 1.0, len(repair["reference"])),
            np.asarray(repair["reference"], dtype="float64"), float(repair["strength"]),
            {group: np.asarray(quantiles, dtype="float64")
             for group, quantiles in repair["groups"].items()})


def decision_thresholds(meta: dict[str, Any], groups: list[str] | None, rows: int) -> Any:
    """The positive-class threshold: one float, or one per row when per-group thresholds
    (bias mitigation) apply; groups the mitigation did not set keep ``meta['threshold']``."""
    threshold = float(meta.get("threshold", 0.5))
    thresholds = (meta.get("fairness_mitigation") or {}).get("thresholds")
    if not thresholds or groups is None:
        return threshold
    by_group = {str(k): float(v) for k, v in thresholds.items()}
    return np.array([by_group.get(g, threshold) for g in groups], dtype="float64")[:rows]

def save_model_package(
    path: str | Path,
    plan: FeaturePlan,
    engine_dir: Path,
    meta: dict[str, Any],
    input_example: pd.DataFrame,
) -> Path:
    """Write the pyfunc model folder at ``path`` (replacing an empty or partial one)."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from autokfp import __version__
    from autokfp.storage.local import replace_dir

    path = Path(path)
    staging = path.parent / f".{path.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    scratch = path.parent / f".{path.name}.files"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / "plan.json").write_text(plan.to_json())
    (scratch / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    example = plain_frame(input_example[plan.input_columns].head(5))
    model = AutokfpModel()
    model._load(scratch / "plan.json", scratch / "meta.json", engine_dir)
    output_example = model.predict(None, example)
    signature = _inputs_any_type(infer_signature(example, output_example))
    try:
        mlflow.pyfunc.save_model(
            path=str(staging),
            python_model=AutokfpModel(),
            artifacts={"plan": str(scratch / "plan.json"), "meta": str(scratch / "meta.json"),
                       "engine": str(engine_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=[f"autokfp=={__version__}"],
            metadata={"autokfp_version": __version__, "engine": meta["engine"], "task": meta["task"]},
        )
        replace_dir(staging, path)  # never half a package at ``path``, even on kill -9
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with numpy dtypes only: categories and pandas' nullable/string types as
    objects (missing as None), time-zone-aware datetimes as naive UTC. MLflow stores and
    checks an input example in those terms."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            out[name] = column.dt.tz_convert("UTC").dt.tz_localize(None)
        elif isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(column):
            out[name] = column.astype(object).where(column.notna(), None)
        elif isinstance(column.dtype, pd.api.extensions.ExtensionDtype) and \
                pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            out[name] = column.astype("float64")
        elif isinstance(column.dtype, pd.api.extensions.ExtensionDtype):  # nullable boolean, ...
            out[name] = column.astype(object).where(column.notna(), None)
    return out


def _inputs_any_type(signature: Any) -> Any:
    """Declare every input column as Any: ``apply_features`` coerces each column itself.

    MLflow's schema enforcement otherwise rejects what a user's frame routinely holds: an
    integer column with one missing value (float64), a pandas ``category`` or ``string``
    column, nullable ``Int64``/``boolean``, a time-zone-aware datetime, so a champion would
    fail to score next month's data over a dtype alone. Column names stay required.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    inputs: list[ColSpec | TensorSpec] = [ColSpec(AnyType(), c.name, c.required)
                                          for c in signature.inputs.inputs]
    return ModelSignature(inputs=Schema(inputs), outputs=signature.outputs)


GATE_MODEL_DIR = "gate_model"
"""A package refitted on every labelled row after the champion gate keeps, in this folder, the
package that passed the gate (fitted without the fixed test rows): what the next run's
champion comparison scores on those rows."""


def load_gate_model(uri: str) -> tuple[Any, bool]:
    """The model a champion comparison scores on the test rows, and whether it is a kept gate
    model: the package's ``gate_model/`` when it has one (a refitted package: its served
    model has seen the test rows), else the package itself."""
    folder = Path(uri)
    if "://" in uri or not (folder / "MLmodel").is_file():
        import mlflow.artifacts

        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    gate = folder / GATE_MODEL_DIR
    if (gate / "MLmodel").is_file():
        return load_model_package(str(gate)), True
    return load_model_package(str(folder)), False


def load_model_package(uri: str) -> Any:
    """Load a packaged model (a folder, ``runs:/`` or ``models:/name@alias``) as a pyfunc.

    The one loader of packaged models: training, selection, deployment, monitoring and the
    predictor (``serving.predictor.load_package`` unwraps its ``AutokfpModel``) all use it.

    A local folder (what the pipeline's steps load) skips MLflow's own check of the
    package's requirements, which maps every installed distribution to its modules first
    (1-2 s per process on a loaded 2-core machine, in each step that loads a package);
    the same two warnings (a requirement this environment does not satisfy, another
    Python version) come from ``_warn_on_mismatches`` instead, which asks only for the
    packages the model requires.
    """
    import mlflow.pyfunc

    folder = Path(uri)
    if "://" in uri or not (folder / "MLmodel").is_file():
        return mlflow.pyfunc.load_model(uri)
    model = mlflow.pyfunc.load_model(uri, suppress_warnings=True)
    _warn_on_mismatches(folder, model.metadata.flavors.get("python_function", {}))
    return model


def _warn_on_mismatches(folder: Path, flavor: dict[str, Any]) -> None:
    """MLflow's load-time warnings for a package folder: its ``requirements.txt`` against
    the installed versions, and the Python version it was saved with (logged, as MLflow
    does, under ``mlflow.pyfunc``)."""
    import importlib.metadata
    import platform

    import mlflow
    from packaging.requirements import Requirement

    warn = logging.getLogger("mlflow.pyfunc").warning
    mismatches = []
    requirements = folder / "requirements.txt"
    for line in requirements.read_text().splitlines() if requirements.is_file() else []:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except ValueError:  # a path or URL: MLflow skips it too
            continue
        if requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            installed = (mlflow.__version__ if requirement.name == "mlflow"
                         else importlib.metadata.version(requirement.name))
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or (requirement.specifier
                                 and not requirement.specifier.contains(installed)):
            mismatches.append(f"{requirement.name} (current: {installed or 'uninstalled'}, "
                              f"required: {line})")
    if mismatches:
        warn("Detected one or more mismatches between the model's dependencies and the current "
             "Python environment:\n - %s", "\n - ".join(mismatches))
    saved, running = flavor.get("python_version"), platform.python_version()
    if saved is None:
        warn("The specified model does not have a specified Python version. It may be "
             "incompatible with the version of Python that is currently running: Python %s", running)
    elif saved.split(".")[:2] != running.split(".")[:2]:
        warn("The version of Python that the model was saved in, `Python %s`, differs from the "
             "version of Python that is currently running, `Python %s`, and may be incompatible",
             saved, running)
