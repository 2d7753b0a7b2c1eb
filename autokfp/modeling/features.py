"""Feature engineering driven by the catalog's semantic types.

``plan_features`` learns a ``FeaturePlan`` from the training rows only (levels, vocabularies,
reference time, which columns leak); ``apply_features`` applies exactly that plan to any
frame: training, test, or a single request at serving time. The plan is plain JSON and is
packaged inside the registered model, so training and serving cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from autokfp.catalog.schema import PII_TYPES, DatasetSchema
from autokfp.config import FeatureSpec
from autokfp.errors import SchemaError, TrainingError

log = logging.getLogger(__name__)

MAX_CATEGORY_LEVELS = 50
OTHER_LEVEL = "__other__"
_TOKEN = re.compile(r"[a-z][a-z']{2,}")
_STOPWORDS = frozenset(
    "the and for with was were has have had this that from are but not you your our they them "
    "about into over after before very just can could would should will been being".split()
)


@dataclass
class FeaturePlan:
    """Everything needed to turn raw rows into model features, learnt from training rows."""

    target: str
    task: str
    classes: list[Any] | None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    boolean: list[str] = field(default_factory=list)
    datetime: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    datetime_parts: list[str] = field(default_factory=list)
    reference_time: str | None = None
    categorical_levels: dict[str, list[str]] = field(default_factory=dict)
    text_vocabulary: dict[str, list[str]] = field(default_factory=dict)
    missing_indicators: list[str] = field(default_factory=list)
    # numeric features whose stored values Evidently reads as categories (codes stored as
    # text or category dtype, integers with at most 10 distinct values): drift tests them
    # as categories, as Evidently would, while the model keeps reading them as numbers
    category_coded: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    leakage_scores: dict[str, float] = field(default_factory=dict)
    # columns that predict the target at the leakage threshold or better on their own but
    # show no other sign of a leak: kept, with a warning (name -> why it was kept)
    strong_predictors: dict[str, str] = field(default_factory=dict)
    # integer columns read as group keys (``_find_group_keys``: a person's or a store's code,
    # many rows per value, the target's level set by the group, not by the code's order):
    # categories with one level per group, not numbers (name -> the evidence)
    group_keys: dict[str, str] = field(default_factory=dict)
    # feature selection (``select_features``): engineered columns left out although their
    # raw column stays (e.g. one datetime part), and the evidence for every decision
    excluded_features: list[str] = field(default_factory=list)
    feature_importance: dict[str, float] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def input_columns(self) -> list[str]:
        """Raw columns a request must carry (others are ignored)."""
        return self.numeric + self.categorical + self.boolean + self.datetime + self.text

    @property
    def feature_columns(self) -> list[str]:
        """The engineered columns the model sees, in order."""
        if not self.excluded_features:
            return self._all_feature_columns()
        excluded = set(self.excluded_features)
        return [c for c in self._all_feature_columns() if c not in excluded]

    def feature_groups(self) -> dict[str, list[str]]:
        """Raw input column -> the engineered columns made from it (before exclusions)."""
        groups: dict[str, list[str]] = {}
        for name in self.numeric:
            groups[name] = [name] + ([f"{name}__missing"] if name in self.missing_indicators else [])
        for name in self.categorical + self.boolean:
            groups[name] = [name]
        for name in self.datetime:
            groups[name] = [f"{name}__{part}" for part in self.datetime_parts]
        for name in self.text:
            groups[name] = [f"{name}__chars", f"{name}__words"] + [
                f"{name}__tok_{tok}" for tok in self.text_vocabulary.get(name, [])]
        return groups

    def _all_feature_columns(self) -> list[str]:
        columns: list[str] = []
        columns += self.numeric
        columns += [f"{c}__missing" for c in self.missing_indicators]
        columns += self.categorical
        columns += self.boolean
        for col in self.datetime:
            columns += [f"{col}__{part}" for part in self.datetime_parts]
        for col in self.text:
            columns += [f"{col}__chars", f"{col}__words"]
            columns += [f"{col}__tok_{tok}" for tok in self.text_vocabulary.get(col, [])]
        return columns

    @property
    def categorical_features(self) -> list[str]:
        """Output columns that hold category labels (engines encode these their own way)."""
        excluded = set(self.excluded_features)
        return [c for c in self.categorical if c not in excluded]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> FeaturePlan:
        return cls(**json.loads(text))


def plan_features(
    train: pd.DataFrame,
    schema: DatasetSchema,
    target: str,
    task: str,
    spec: FeatureSpec,
    id_column: str | None = None,
    classes: list[Any] | None = None,
) -> FeaturePlan:
    """Decide, from training rows only, which columns become which features.

    Columns are dropped (and the reason recorded) when they are the id, constant or empty,
    PII (if ``spec.drop_pii``), listed in ``spec.drop_columns``, or leak the target (see
    ``_screen_leaks``: predicting it alone at ``spec.leakage_threshold`` or better is not
    enough; the column must also stand far above every other column, or look like an id).
    """
    if target not in train.columns:
        raise SchemaError(f"target column '{target}' is not in the data; columns are: {sorted(train.columns)}")
    plan = FeaturePlan(target=target, task=task, classes=classes, datetime_parts=list(spec.datetime_parts))
    unknown_drops = sorted(set(spec.drop_columns) - set(train.columns))
    if unknown_drops:
        log.warning("features.drop_columns names columns that are not in the data: %s", unknown_drops)
    y = train[target]
    for col in schema.columns:
        name = col.name
        if name == target or name not in train.columns:
            continue
        semantic = col.semantic_type
        if name in spec.drop_columns:
            plan.dropped[name] = "listed in features.drop_columns"
        elif name == id_column or semantic == "id":
            plan.dropped[name] = "identifier (unique per row, carries no signal)"
        elif semantic in ("constant", "empty"):
            plan.dropped[name] = f"{semantic} column"
        elif spec.drop_pii and (semantic in PII_TYPES or col.is_pii):
            plan.dropped[name] = f"personal data ({semantic}); set features.drop_pii: false to keep it"
        elif semantic == "numeric":
            plan.numeric.append(name)
        elif semantic == "boolean":
            plan.boolean.append(name)
        elif semantic == "datetime":
            plan.datetime.append(name)
        elif semantic == "text":
            if spec.max_text_tokens > 0:
                plan.text.append(name)
            else:
                plan.dropped[name] = "free text and features.max_text_tokens is 0"
        elif semantic == "categorical" and _is_number_column(train[name]):
            # small integer counts keep their order: trees split them better as numbers
            plan.numeric.append(name)
        else:  # categorical and anything unrecognised is treated as categories
            plan.categorical.append(name)

    for name in plan.categorical:
        counts = train[name].dropna().map(category_text).value_counts()
        plan.categorical_levels[name] = counts.index[:MAX_CATEGORY_LEVELS].tolist()
    for name in plan.text:
        plan.text_vocabulary[name] = _vocabulary(train[name], spec.max_text_tokens)
    if plan.datetime:
        latest = max(_to_datetime(train[c]).max() for c in plan.datetime)
        plan.reference_time = None if pd.isna(latest) else pd.Timestamp(latest).isoformat()
    plan.missing_indicators = [c for c in plan.numeric if train[c].isna().any()]
    plan.category_coded = [c for c in plan.numeric if _stored_as_categories(train[c])]

    _screen_leaks(plan, train, y, spec.leakage_threshold)
    if getattr(spec, "group_keys", True):
        _find_group_keys(plan, train, y)
    if not plan.feature_columns:
        raise TrainingError(
            "every column was dropped before training ("
            + "; ".join(f"{k}: {v}" for k, v in plan.dropped.items())
            + "); keep some features (features.drop_pii, features.drop_columns) or add data"
        )
    for name, reason in plan.dropped.items():
        log.info("feature dropped: %s (%s)", name, reason)
    return plan


def apply_features(frame: pd.DataFrame, plan: FeaturePlan) -> pd.DataFrame:
    """Turn raw rows into the model's feature frame, exactly as learnt in ``plan``.

    Unknown extra columns are ignored; missing input columns raise SchemaError naming
    them; unseen categories become ``__other__``; bad numbers become missing values.
    """
    missing = [c for c in plan.input_columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"input is missing required column(s) {missing}; the model expects "
            f"{plan.input_columns}"
        )
    out: dict[str, Any] = {}
    for name in plan.numeric:
        out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in plan.missing_indicators:
        out[f"{name}__missing"] = out[name].isna().astype("float64")
    group_keys = getattr(plan, "group_keys", None) or {}  # as _quick_matrix reads it
    for name in plan.categorical:
        levels = set(plan.categorical_levels.get(name, []))
        values = frame[name].astype("object")
        as_text = values.map(group_code_text if name in group_keys else category_text,
                             na_action="ignore")
        known = as_text.isna() | as_text.isin(levels)
        out[name] = as_text.where(known, OTHER_LEVEL)
    for name in plan.boolean:
        out[name] = _to_bool_float(frame[name])
    reference = pd.Timestamp(plan.reference_time) if plan.reference_time else None
    for name in plan.datetime:
        stamps = _to_datetime(frame[name])
        for part in plan.datetime_parts:
            if part == "age_days":
                if reference is None:
                    values = pd.Series(np.nan, index=frame.index)
                else:
                    values = (reference - stamps).dt.total_seconds() / 86_400.0
            else:
                values = getattr(stamps.dt, part)
            out[f"{name}__{part}"] = values.astype("float64")
    for name in plan.text:
        # each distinct text is measured once and the figures are taken back to its rows:
        # rows repeat texts (Kernel SHAP scores thousands of copies of ~20 rows, a served
        # batch or a log's notes repeat theirs), and each token is a regex search
        codes, texts = pd.factorize(frame[name].fillna("").astype(str).str.lower())
        text = pd.Series(texts, dtype=object)
        parts = {f"{name}__chars": text.str.len(),
                 f"{name}__words": text.str.split().str.len().fillna(0)}
        for token in plan.text_vocabulary.get(name, []):
            parts[f"{name}__tok_{token}"] = text.str.contains(rf"\b{re.escape(token)}\b", regex=True)
        for column, values in parts.items():
            out[column] = pd.Series(values.to_numpy(dtype="float64")[codes], index=frame.index)
    features = pd.DataFrame(out, index=frame.index)
    return features[plan.feature_columns]


def category_text(value: Any) -> str:
    """One spelling per category, whatever the transport did to it (2, 2.0 and "2" agree)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


# a whole number written as text, as a served JSON value or a CSV cell brings an integer
# code that passed through a float ("12345.0", "+12", " 7 "): its digits, its zeros dropped
_WHOLE_NUMBER_TEXT = re.compile(r"\s*([+-]?\d+)(?:\.0*)?\s*")


def group_code_text(value: Any) -> str:
    """A group key's value as its level (``category_text``, which makes 12345, 12345.0 and
    "12345" one level) with a whole number written as text read as that number too:
    "12345.0" is 12345's level, not ``__other__`` (a group key was an integer column in
    training, so its levels are integers' text)."""
    text = category_text(value)
    found = _WHOLE_NUMBER_TEXT.fullmatch(text) if isinstance(value, str) else None
    return str(int(found[1])) if found else text


def _stored_as_categories(series: pd.Series) -> bool:
    """Evidently's column-type rule (``infer_column_type``) says categorical: a category
    dtype, text with at most half its values distinct, or integers with <= 10 distinct."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.nunique() <= 10
    if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        present = series.dropna()
        if present.empty or not all(isinstance(v, str) for v in present.iloc[[0, -1]]):
            return False
        return present.nunique() <= len(present) * 0.5
    return False


def _is_number_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _to_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series
    else:
        stamps = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps


def latest_time(series: pd.Series) -> Any:
    """The newest time in a column, as the plan's ``reference_time`` reads it (NaT if none)."""
    return _to_datetime(series).max()


def _to_bool_float(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return pd.to_numeric(series, errors="coerce").astype("float64")
    mapping = {"true": 1.0, "t": 1.0, "yes": 1.0, "y": 1.0, "1": 1.0,
               "false": 0.0, "f": 0.0, "no": 0.0, "n": 0.0, "0": 0.0}
    return series.astype(str).str.strip().str.lower().map(mapping).astype("float64")


def _vocabulary(series: pd.Series, size: int) -> list[str]:
    counts: Counter[str] = Counter()
    for text in series.dropna().astype(str).str.lower():
        counts.update(set(t for t in _TOKEN.findall(text) if t not in _STOPWORDS))
    documents = max(int(series.notna().sum()), 1)
    # tokens in almost every row or in a handful carry little: keep the useful middle
    useful = [(t, n) for t, n in counts.items() if 5 <= n <= 0.9 * documents]
    useful.sort(key=lambda item: (-item[1], item[0]))
    return [t for t, _ in useful[:size]]


def _single_column_score(x: pd.Series, y: pd.Series, task: str) -> float:
    """How well one column alone predicts the target: AUC (classification) or |Spearman|."""
    from sklearn.metrics import roc_auc_score

    mask = y.notna()
    x, y = x[mask], y[mask]
    if x.nunique(dropna=False) <= 1:
        return 0.0
    if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
        encoded = x.astype("float64").fillna(x.min() - 1.0)
    else:
        as_text = x.astype(str)
        if as_text.nunique() > 0.5 * len(as_text):  # near-unique text: not a category
            return 0.0
        encoded = None
    if task == "regression":
        if encoded is None:
            encoded = x.astype(str).map(y.groupby(x.astype(str)).mean())
        corr = pd.Series(encoded.values).corr(pd.Series(y.astype(float).values), method="spearman")
        return 0.0 if pd.isna(corr) else abs(float(corr))
    scores = []
    for cls in y.unique() if task == "multiclass" else [sorted(y.unique(), key=str)[-1]]:
        target = (y == cls).astype(int)
        if target.nunique() < 2:
            continue
        if encoded is None:
            keys = x.astype(str)
            # out-of-fold category means, so a high-cardinality column cannot fake a leak
            folds = np.arange(len(keys)) % 2
            score = pd.Series(np.nan, index=keys.index)
            for fold in (0, 1):
                means = target[folds != fold].groupby(keys[folds != fold]).mean()
                score[folds == fold] = keys[folds == fold].map(means).fillna(target.mean())
            values = score.astype(float)
        else:
            values = encoded
        auc = roc_auc_score(target, values)
        scores.append(max(auc, 1.0 - auc))
    return max(scores) if scores else 0.0


# A column is a leak only on specific evidence. On real data a strong predictor is usually a
# good feature, and several columns that each predict the target well are a sign of an easy
# problem (breast_cancer's cell measurements, wine's chemistry, penguins' body sizes), not of
# a leak. A leak stands out: its error (1 - score, on a 0..1 scale) is at most 1/STANDOUT of
# the best other column's, or it is id-like (distinct integers in (almost) every row: the
# rows were sorted or numbered by outcome).
LEAK_STANDOUT = 4.0
ID_LIKE_DISTINCT_SHARE = 0.95
EXACT_SCORE = 0.999  # one column alone determines the target: recorded with or after it


def _leak_error(score: float, task: str) -> float:
    """How far from a perfect predictor a column is, 0 (perfect) .. 1 (useless)."""
    if task == "regression":  # |Spearman|
        return max(0.0, 1.0 - score)
    return max(0.0, 2.0 * (1.0 - score))  # AUC: 0.5 -> 1, 1.0 -> 0


def _id_like(series: pd.Series) -> bool:
    values = series.dropna()
    if len(values) < 20 or not _is_number_column(values):
        return False
    numbers = values.astype("float64")
    return bool((numbers == numbers.round()).all()
                and numbers.nunique() >= ID_LIKE_DISTINCT_SHARE * len(series))


def _screen_leaks(plan: FeaturePlan, train: pd.DataFrame, y: pd.Series, threshold: float) -> None:
    """Drop the columns that leak the target; keep strong but plausible predictors, noted.

    Every column's single-column score goes to ``plan.leakage_scores``. A column at
    ``threshold`` or better is dropped when it is id-like or stands far above every other
    column (``LEAK_STANDOUT``); otherwise it is kept and listed in ``plan.strong_predictors``
    with the evidence, so the run summary and the audit trail can say so.
    """
    scores: dict[str, float] = {}
    for name in list(plan.input_columns):
        if name in plan.text:
            continue
        try:
            scores[name] = float(_single_column_score(train[name], y, plan.task))
        except (TypeError, ValueError) as exc:  # a column we cannot score is kept, not guessed
            log.debug("leakage score of %s failed: %s", name, exc)
            continue
        plan.leakage_scores[name] = round(scores[name], 4)
    errors = {name: _leak_error(score, plan.task) for name, score in scores.items()}
    for name, score in scores.items():
        if score < threshold:
            continue
        others = {other: error for other, error in errors.items() if other != name}
        runner_up = min(others, key=others.__getitem__) if others else None
        reference = others[runner_up] if runner_up else 1.0
        described = (f"alone it predicts '{plan.target}' with score {score:.3f} "
                     f"(features.leakage_threshold {threshold})")
        if score >= EXACT_SCORE:
            reason = (f"target leakage: alone it determines '{plan.target}' (score {score:.3f}); "
                      "a column that spells out the outcome is recorded with or after it")
        elif _id_like(train[name]):
            reason = f"target leakage: an id-like column (a distinct integer in every row) and {described}"
        elif errors[name] * LEAK_STANDOUT <= reference:
            next_best = (f"the next best column, '{runner_up}', scores {scores[runner_up]:.3f}"
                         if runner_up else "no other column predicts it")
            reason = f"target leakage: {described}, far above every other column ({next_best})"
        else:
            strong = sorted(other for other, value in scores.items()
                            if other != name and value >= threshold)
            plan.strong_predictors[name] = (
                f"{described}, but it does not stand out"
                + (f" (so do {strong})" if strong else
                   f" (the next best column, '{runner_up}', scores {scores[runner_up]:.3f})"
                   if runner_up else "")
                + ": kept as a strong predictor; list it in features.drop_columns if it is "
                  "only known after the outcome")
            continue
        plan.dropped[name] = reason
        for group in (plan.numeric, plan.categorical, plan.boolean, plan.datetime):
            if name in group:
                group.remove(name)
        plan.categorical_levels.pop(name, None)
        if name in plan.missing_indicators:
            plan.missing_indicators.remove(name)
    for name, why in plan.strong_predictors.items():
        log.warning("strong predictor kept: %s: %s", name, why)


# A group key is an integer code shared by many rows: a person's id in a panel of yearly
# rows, a store's or a machine's number. Its values are labels, not amounts: the target's
# level belongs to each group, and neighbouring codes are unrelated. As a number, trees can
# only carve it into ranges of codes, so they miss most of the group effect (issue 17, Males:
# 545 persons, ~6 rows each; H2O GBM test RMSE 0.411 with the code as a number, 0.378 with it
# as H2O categories, 0.442 without it). The evidence, out of fold on the training rows: the
# code's own values' target means (shrunk to the overall mean) predict far better than a
# trend over the code's order (means over GROUP_KEY_BINS quantile bins). A measurement (an
# age, a count, a size) is the other way round: its trend predicts as well or better.
GROUP_KEY_MIN_VALUES = 20  # fewer values: a tree separates them as a number already
GROUP_KEY_MIN_ROWS_PER_VALUE = 3.0  # fewer: a group's level is barely estimable
GROUP_KEY_MIN_GAIN = 0.02  # share of the mean-only squared error, beyond the trend's
GROUP_KEY_MIN_Z = 4.0  # the paired advantage over rows, in standard errors
GROUP_KEY_BINS = 20
GROUP_KEY_SHRINK = 5.0  # a group's mean counts as if this many rows sat at the overall mean
GROUP_KEY_MAX_ROWS = 20_000  # rows sampled for the test (0.12 CPU-s a column at 50,000)
GROUP_KEY_MAX_CODE = 2**53  # codes float64 holds exactly (a request's JSON number, a NaN's column)
MAX_GROUP_LEVELS = 1_000  # groups with 2+ training rows a group key may have (more: kept a number)


def _target_matrix(y: pd.Series, task: str) -> np.ndarray:
    """The target as numbers to square errors of: the value, or one indicator per class
    (the positive class alone for a binary task)."""
    if task == "regression":
        return y.astype("float64").to_numpy()[:, None]
    labels = y.map(category_text)
    classes = sorted(labels.unique())
    if task == "binary":
        classes = classes[-1:]
    return np.stack([(labels == c).to_numpy(dtype="float64") for c in classes], axis=1)


def _shrunk_means(keys: np.ndarray, values: np.ndarray, overall: np.ndarray,
                  wanted: np.ndarray) -> np.ndarray:
    """Per key the mean of ``values`` shrunk to ``overall``, read at ``wanted`` (unseen
    keys get ``overall``)."""
    grouped = pd.DataFrame(values).groupby(keys)
    means = grouped.sum().add(GROUP_KEY_SHRINK * overall, axis=1).div(
        grouped.size() + GROUP_KEY_SHRINK, axis=0)
    found = means.reindex(wanted).to_numpy()
    return np.where(np.isnan(found), overall, found)


def group_key_evidence(x: pd.Series, y: pd.Series, task: str, seed: int = 0,
                       folds: int = 5) -> dict[str, float] | None:
    """How an integer column predicts the target out of fold as categories and as an order.

    None when it is not a candidate (not integers, under GROUP_KEY_MIN_VALUES values or
    under GROUP_KEY_MIN_ROWS_PER_VALUE rows per value). Else the share of the mean-only
    squared error that its values' means remove (``gain_values``), that a trend over its
    order removes (``gain_order``), and the paired z of the difference over rows."""
    from sklearn.model_selection import KFold

    mask = x.notna() & y.notna()
    if not _is_number_column(x) or mask.sum() < 2 * GROUP_KEY_MIN_VALUES:
        return None
    codes = x[mask].astype("float64")
    if not (codes == codes.round()).all() or float(codes.abs().max()) >= GROUP_KEY_MAX_CODE:
        return None
    distinct = int(codes.nunique())
    if distinct < GROUP_KEY_MIN_VALUES or len(codes) < GROUP_KEY_MIN_ROWS_PER_VALUE * distinct:
        return None
    target = _target_matrix(y[mask], task)
    keys = codes.to_numpy()
    if len(keys) > GROUP_KEY_MAX_ROWS:
        keep = np.random.default_rng(seed).choice(len(keys), GROUP_KEY_MAX_ROWS, replace=False)
        keys, target = keys[keep], target[keep]
    errors = {name: np.zeros(len(keys)) for name in ("mean", "values", "order")}
    for fit, held in KFold(folds, shuffle=True, random_state=seed).split(keys):
        overall = target[fit].mean(axis=0)
        errors["mean"][held] = ((target[held] - overall) ** 2).sum(axis=1)
        by_value = _shrunk_means(keys[fit], target[fit], overall, keys[held])
        errors["values"][held] = ((target[held] - by_value) ** 2).sum(axis=1)
        edges = np.unique(np.quantile(keys[fit], np.linspace(0, 1, GROUP_KEY_BINS + 1)[1:-1]))
        by_order = _shrunk_means(np.searchsorted(edges, keys[fit], side="right"), target[fit],
                                 overall, np.searchsorted(edges, keys[held], side="right"))
        errors["order"][held] = ((target[held] - by_order) ** 2).sum(axis=1)
    base = float(errors["mean"].mean())
    if base <= 0.0:
        return None
    advantage = errors["order"] - errors["values"]
    spread = float(advantage.std(ddof=1)) / np.sqrt(len(advantage))
    return {"values": distinct, "rows_per_value": round(len(codes) / distinct, 2),
            "gain_values": round(1.0 - float(errors["values"].mean()) / base, 4),
            "gain_order": round(1.0 - float(errors["order"].mean()) / base, 4),
            "z": round(float(advantage.mean()) / spread, 2) if spread > 0 else 0.0}


def _is_group_key(evidence: dict[str, float] | None) -> bool:
    if evidence is None:
        return False
    values, order = evidence["gain_values"], evidence["gain_order"]
    return (values - order >= GROUP_KEY_MIN_GAIN and evidence["z"] >= GROUP_KEY_MIN_Z
            and order <= 0.5 * values)


def _find_group_keys(plan: FeaturePlan, train: pd.DataFrame, y: pd.Series) -> None:
    """Move the numeric columns that are group keys (see above) to the categories, with one
    level per group that has at least 2 training rows (at most MAX_GROUP_LEVELS of them),
    and record the evidence in ``plan.group_keys``. Runs after the leakage screen, which
    scores the column as the number it was stored as."""
    for name in list(plan.numeric):
        evidence = group_key_evidence(train[name], y, plan.task)
        if not _is_group_key(evidence):
            continue
        assert evidence is not None
        counts = train[name].dropna().map(category_text).value_counts()
        if int((counts >= 2).sum()) > MAX_GROUP_LEVELS:
            # the test measured every group; with only the MAX_GROUP_LEVELS most frequent as
            # levels, the rest would read as one (the review: 5,000 persons x 6 rows, 80% of
            # the rows __other__, a 41.6% gain measured, 8.9% left): kept a number
            log.info("group key: %s has %d groups of 2+ rows, more than the %d levels a "
                     "category keeps: kept a number", name, int((counts >= 2).sum()),
                     MAX_GROUP_LEVELS)
            continue
        levels = counts[counts >= 2].index.tolist()
        plan.numeric.remove(name)
        plan.categorical.append(name)
        plan.categorical_levels[name] = levels
        for group in (plan.category_coded, plan.missing_indicators):
            if name in group:
                group.remove(name)
        plan.group_keys[name] = (
            f"an integer code with {evidence['values']} values, {evidence['rows_per_value']:.1f} "
            f"training rows each: out of fold, its values' own means of '{plan.target}' remove "
            f"{evidence['gain_values']:.1%} of the squared error of the overall mean, a trend "
            f"over its order {evidence['gain_order']:.1%} (paired z {evidence['z']:.1f}); read as "
            f"categories, one per group ({len(levels)} levels): the model learns each group's "
            "level, and predicts rows of groups it has not seen (new ones) less well; list it in "
            "features.drop_columns if the rows to predict come from new groups, or set "
            "features.group_keys: false to keep it a number")
        log.warning("group key: %s: %s", name, plan.group_keys[name])


# ------------------------------------------------------------------ row-wise fast path
# Serving answers mostly one or a few rows per request. Building pandas frames for that
# costs ~10 ms; the same plan applied to plain dicts costs well under a millisecond. The
# two paths must agree exactly (tests compare them on many rows and edge cases).

_BOOL_TEXT = {"true": 1.0, "t": 1.0, "yes": 1.0, "y": 1.0, "1": 1.0,
              "false": 0.0, "f": 0.0, "no": 0.0, "n": 0.0, "0": 0.0}
_TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NaT


def _number(value: Any) -> float:
    if _missing(value):
        return float("nan")
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        # pandas' parser, as in apply_features: float() also reads "1_000" and "٣", and
        # rounds some long decimals differently
        return float(pd.to_numeric(value, errors="coerce"))
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _boolean(value: Any) -> float:
    if _missing(value):
        return float("nan")
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return float(value)
    return _BOOL_TEXT.get(str(value).strip().lower(), float("nan"))


def _timestamp(value: Any) -> pd.Timestamp | None:
    if _missing(value):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if stamp is pd.NaT:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    try:  # apply_features works in nanoseconds: dates outside 1677-2262 are missing there
        return stamp.as_unit("ns")
    except (OverflowError, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _reference_stamp(text: str) -> pd.Timestamp:
    """The plan's reference time, parsed once per text (every served request needs it)."""
    return pd.Timestamp(text)


def _token_pattern(token: str) -> re.Pattern[str]:
    pattern = _TOKEN_PATTERNS.get(token)
    if pattern is None:
        pattern = _TOKEN_PATTERNS[token] = re.compile(rf"\b{re.escape(token)}\b")
    return pattern


def apply_features_records(records: list[dict[str, Any]], plan: FeaturePlan,
                           stamps: list[dict[str, Any]] | None = None
                           ) -> list[dict[str, float | str | None]]:
    """``apply_features`` for a few rows given as dicts (same result, no pandas).

    ``stamps``, when given, holds each row's date/time columns already parsed by the same
    rule (``_timestamp``: column → ``pd.Timestamp`` or None), so they are not parsed twice."""
    missing = [c for c in plan.input_columns if any(c not in r for r in records)]
    if missing:
        raise SchemaError(
            f"input is missing required column(s) {sorted(set(missing))}; the model expects "
            f"{plan.input_columns}"
        )
    reference = _reference_stamp(plan.reference_time) if plan.reference_time else None
    levels = {name: set(plan.categorical_levels.get(name, [])) for name in plan.categorical}
    group_keys = getattr(plan, "group_keys", None) or {}
    spelling = {name: group_code_text if name in group_keys else category_text
                for name in plan.categorical}
    out = []
    for index, record in enumerate(records):
        row: dict[str, float | str | None] = {}
        for name in plan.numeric:
            row[name] = _number(record[name])
        for name in plan.missing_indicators:
            row[f"{name}__missing"] = 1.0 if row[name] != row[name] else 0.0
        for name in plan.categorical:
            value = record[name]
            if _missing(value):
                row[name] = None
            else:
                text = spelling[name](value)
                row[name] = text if text in levels[name] else OTHER_LEVEL
        for name in plan.boolean:
            row[name] = _boolean(record[name])
        for name in plan.datetime:
            stamp = _timestamp(record[name]) if stamps is None else stamps[index][name]
            for part in plan.datetime_parts:
                if stamp is None:
                    row[f"{name}__{part}"] = float("nan")
                elif part == "age_days":
                    row[f"{name}__{part}"] = (
                        float("nan") if reference is None
                        # as Series.dt.total_seconds: Timedelta.total_seconds drops nanoseconds
                        else float((reference - stamp).value) / 1e9 / 86_400.0)
                else:
                    row[f"{name}__{part}"] = float(getattr(stamp, part))
        for name in plan.text:
            value = record[name]
            text = "" if _missing(value) else str(value).lower()
            row[f"{name}__chars"] = float(len(text))
            row[f"{name}__words"] = float(len(text.split()))
            for token in plan.text_vocabulary.get(name, []):
                row[f"{name}__tok_{token}"] = 1.0 if _token_pattern(token).search(text) else 0.0
        out.append(row)
    if plan.excluded_features:
        keep = plan.feature_columns
        out = [{name: row[name] for name in keep} for row in out]
    return out


# --------------------------------------------------------------- selection by importance
# A quick gradient-boosting model on the training rows ranks the engineered features by
# permutation importance on training rows it did not fit. Features whose shuffling does not
# hurt that model carry no signal it can find; they are left out, and the rest are capped at
# ``max_features``. The test split is never looked at.

SELECTION_MAX_ROWS = 5_000
_QUICK_SCORERS = {"binary": "roc_auc", "multiclass": "neg_log_loss",
                  "regression": "neg_root_mean_squared_error"}


def select_features(
    plan: FeaturePlan,
    train: pd.DataFrame,
    max_features: int | None = None,
    drop_useless: bool = True,
    seed: int = 0,
) -> FeaturePlan:
    """Rank features by permutation importance of a quick model; drop useless ones, cap the rest.

    Changes ``plan`` in place and returns it. A raw column whose engineered features are all
    left out moves to ``plan.dropped`` with the reason; a partly useful one (e.g. some
    datetime parts) keeps its raw column and lists the unused parts in
    ``plan.excluded_features``. At least one feature always stays. When the quick model is
    no better than chance its importances mean nothing: only the ``max_features`` cap
    applies then, and the reason is recorded in ``plan.selection``.
    """
    import time

    started = time.monotonic()
    columns = plan.feature_columns
    record: dict[str, Any] = {"method": "permutation importance of a gradient-boosting quick "
                                        "model on held-back training rows",
                              "max_features": max_features, "drop_useless": drop_useless,
                              "features_before": len(columns)}
    plan.selection = record
    within_cap = max_features is None or len(columns) <= max_features
    if len(columns) <= 1 or (not drop_useless and within_cap):
        record.update(status="skipped", reason="nothing to select", features_after=len(columns))
        return plan
    labelled = train[train[plan.target].notna()]
    if len(labelled) > SELECTION_MAX_ROWS:
        labelled = labelled.sample(SELECTION_MAX_ROWS, random_state=seed)
    features = apply_features(labelled, plan)
    # imported before the limit: threadpool_limits limits the thread pools of the libraries
    # loaded when it starts, and scikit-learn's OpenMP runtime is loaded with its estimators
    # (a fresh process's first selection ran on every core: 31.4 CPU-s against 4.0 at load 14)
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    # one OpenMP thread: on a busy node several spinning threads are far slower than one
    with threadpool_limits(limits=1):
        importance, quick_score, useful_model = _permutation_importance(
            features, labelled[plan.target], plan, seed)
    record.update(rows=len(labelled), quick_model_score=quick_score,
                  quick_model_metric=_QUICK_SCORERS[plan.task].replace("neg_", ""),
                  quick_model_useful=useful_model)
    plan.feature_importance = {name: round(value[0], 6) for name, value in importance.items()}
    ranked = sorted(columns, key=lambda c: -importance[c][0])
    keep = list(ranked)
    reasons: dict[str, str] = {}
    if drop_useless and useful_model:
        keep, reasons = _drop_by_importance(features, labelled[plan.target], plan, ranked,
                                            importance, record, seed)
    elif drop_useless:
        record["reason"] = ("the quick model is no better than chance on held-back rows, so its "
                            "importances mean nothing; no feature dropped for importance")
    if max_features is not None and len(keep) > max_features:
        for name in keep[max_features:]:
            reasons[name] = (f"feature selection: rank {ranked.index(name) + 1} by importance, "
                             f"beyond budget.max_features={max_features}")
        keep = keep[:max_features]
    _apply_exclusions(plan, set(columns) - set(keep), reasons)
    # the plan holds no timing: the same rows and settings give the same plan, byte for byte
    # (its digest keys the training tasks' cache: engineer_features.training_data_uri)
    record.update(status="done", features_after=len(plan.feature_columns),
                  excluded={name: reasons[name] for name in columns if name in reasons})
    log.info("feature selection kept %d of %d features in %.1fs", len(plan.feature_columns),
             len(columns), time.monotonic() - started)
    return plan


def _drop_by_importance(features: pd.DataFrame, y: pd.Series, plan: FeaturePlan,
                        ranked: list[str], importance: dict[str, Any], record: dict[str, Any],
                        seed: int) -> tuple[list[str], dict[str, str]]:
    """The features kept (in ``ranked`` order) and why each other one is dropped, by its
    permutation importance; the drop stands only when cross-validation confirms it
    (``record['cv_check']``, and ``record['reason']`` when it does not)."""
    from threadpoolctl import threadpool_limits

    # Dropping a weak real feature costs more than keeping a useless one, so only clear
    # cases go: never used by the quick model, or harmful beyond noise (mean + 2 SE < 0).
    reasons: dict[str, str] = {}
    for name in ranked:
        mean, stderr, never_used = importance[name]
        if never_used:
            reasons[name] = "feature selection: the quick model never uses it (importance 0)"
        elif mean + 2.0 * stderr < 0.0:
            reasons[name] = (f"feature selection: shuffling it improves the quick model "
                             f"(importance {mean:+.5f} ± {stderr:.5f})")
    keep = [c for c in ranked if c not in reasons]
    if not keep:  # never leave the model without input: keep the least useless one
        keep = ranked[:1]
        reasons.pop(ranked[0], None)
    if reasons:
        with threadpool_limits(limits=1):
            check = _cross_validate_drop(features, y, plan, keep, seed + 1)
        record["cv_check"] = check
        if not check["accepted"]:
            keep, reasons = list(ranked), {}
            record["reason"] = (
                f"the features left after dropping for importance do worse under "
                f"{check['folds']}-fold cross-validation ({check['metric']} "
                f"{check['kept']:.5f} vs {check['all']:.5f} with every feature): "
                "none dropped for importance")
    return keep, reasons


def _cross_validate_drop(features: pd.DataFrame, y: pd.Series, plan: FeaturePlan,
                         keep: list[str], seed: int, folds: int = 3) -> dict[str, Any]:
    """The quick model's out-of-fold score with every feature and with ``keep`` only, on the
    same folds (drawn apart from the importance folds that chose the drops). The drop is
    accepted only when the kept features score at least as well on average."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, StratifiedKFold

    matrix, categorical = _quick_matrix(features, plan)
    if plan.task == "regression":
        target = y.astype("float64").to_numpy()
        splitter: Any = KFold(folds, shuffle=True, random_state=seed)
    else:
        target = y.map(category_text).to_numpy()
        counts = pd.Series(target).value_counts()
        splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed)
                    if counts.min() >= folds else KFold(folds, shuffle=True, random_state=seed))
    kept_columns = [list(matrix.columns).index(name) for name in keep]
    scores: dict[str, list[float]] = {"all": [], "kept": []}
    values = matrix.to_numpy(dtype="float64")
    for fit_idx, held_idx in splitter.split(values, target):
        fold_scores = {}
        for name, columns in (("all", list(range(values.shape[1]))), ("kept", kept_columns)):
            mask = [categorical[i] for i in columns]
            model_type: Any = (HistGradientBoostingRegressor if plan.task == "regression"
                               else HistGradientBoostingClassifier)
            model = model_type(max_iter=60, categorical_features=mask if any(mask) else None,
                               random_state=seed)
            model.fit(values[fit_idx][:, columns], target[fit_idx])
            # no shuffled copies (repeats=0): only the held-back rows' own score
            scored = _shuffled_scores(model, values[held_idx][:, columns], target[held_idx],
                                      plan.task, repeats=0, seed=seed)
            if scored is None:
                break
            fold_scores[name] = scored[0]
        if len(fold_scores) == 2:
            for name, value in fold_scores.items():
                scores[name].append(value)
    metric = _QUICK_SCORERS[plan.task].replace("neg_", "")
    if not scores["all"]:
        return {"folds": folds, "metric": metric, "all": float("nan"), "kept": float("nan"),
                "accepted": False}
    every, kept = float(np.mean(scores["all"])), float(np.mean(scores["kept"]))
    # greater is better for every quick score (negated losses); a tie is not a loss
    return {"folds": len(scores["all"]), "metric": metric, "all": round(abs(every), 6),
            "kept": round(abs(kept), 6), "accepted": bool(kept >= every - 1e-9)}


def _quick_matrix(features: pd.DataFrame, plan: FeaturePlan) -> tuple[pd.DataFrame, list[bool]]:
    """Numbers for the quick model: categories as codes of the plan's levels."""
    matrix = {}
    categorical = set(plan.categorical_features)
    group_keys = set(getattr(plan, "group_keys", None) or {})
    for name in features.columns:
        if name in group_keys:
            # up to MAX_GROUP_LEVELS levels, beyond the quick model's 255 categories: its
            # codes as the numbers they were stored as (the group's own level is the engines')
            matrix[name] = pd.to_numeric(features[name], errors="coerce").to_numpy(dtype="float64")
        elif name in categorical:
            levels = list(plan.categorical_levels.get(name, [])) + [OTHER_LEVEL]
            codes = pd.Categorical(features[name], categories=levels).codes.astype("float64")
            codes[codes < 0] = np.nan
            matrix[name] = codes
        else:
            matrix[name] = features[name].to_numpy(dtype="float64")
    frame = pd.DataFrame(matrix, index=features.index)
    return frame, [name in categorical and name not in group_keys for name in features.columns]


def _permutation_importance(features: pd.DataFrame, y: pd.Series, plan: FeaturePlan,
                            seed: int) -> tuple[dict[str, tuple[float, float, bool]], float, bool]:
    """Per feature (mean importance, its standard error over folds, never used), score, useful.

    Three folds: each fits the quick model on two thirds of the rows and shuffles each
    feature on the other third (2 repeats). Averaging over folds keeps a weak but real
    feature from looking useless because of one unlucky split. Each fold scores the
    held-back rows and every shuffled copy of them in one batch (``_shuffled_scores``).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, StratifiedKFold

    matrix, categorical = _quick_matrix(features, plan)
    mask = categorical if any(categorical) else None
    if plan.task == "regression":
        target = y.astype("float64").to_numpy()
        splitter: Any = KFold(3, shuffle=True, random_state=seed)
    else:
        target = y.map(category_text).to_numpy()
        counts = pd.Series(target).value_counts()
        splitter = (StratifiedKFold(3, shuffle=True, random_state=seed) if counts.min() >= 3
                    else KFold(3, shuffle=True, random_state=seed))
    per_fold, scores, useful = [], [], []
    values = matrix.to_numpy(dtype="float64")
    for fold, (fit_idx, held_idx) in enumerate(splitter.split(matrix, target)):
        if plan.task == "regression":
            model: Any = HistGradientBoostingRegressor(max_iter=60, categorical_features=mask,
                                                       random_state=seed)
        else:
            model = HistGradientBoostingClassifier(max_iter=60, categorical_features=mask,
                                                   random_state=seed)
        fit_y, held_y = target[fit_idx], target[held_idx]
        model.fit(values[fit_idx], fit_y)
        shuffled = _shuffled_scores(model, values[held_idx], held_y, plan.task,
                                    repeats=2, seed=seed + fold)
        if shuffled is None:  # e.g. a class missing from the held-back rows
            continue
        score, permuted = shuffled
        scores.append(score)
        useful.append(_better_than_chance(score, held_y, fit_y, plan.task))
        per_fold.append(score - permuted)  # features x repeats
    if not per_fold:
        return {c: (0.0, 0.0, False) for c in features.columns}, float("nan"), False
    stacked = np.stack(per_fold)  # folds x features x repeats
    fold_means = stacked.mean(axis=2)
    mean = fold_means.mean(axis=0)
    stderr = (fold_means.std(axis=0, ddof=1) / np.sqrt(len(per_fold)) if len(per_fold) > 1
              else np.zeros_like(mean))
    never_used = np.all(stacked == 0.0, axis=(0, 2))
    importance = {name: (float(mean[i]), float(stderr[i]), bool(never_used[i]))
                  for i, name in enumerate(features.columns)}
    return importance, round(abs(float(np.mean(scores))), 6), bool(np.mean(useful) > 0.5)


def _shuffled_scores(model: Any, held: np.ndarray, held_y: np.ndarray, task: str, repeats: int,
                     seed: int) -> tuple[float, np.ndarray] | None:
    """(score of the held-back rows, features x repeats scores with one column shuffled).

    The same as scikit-learn's ``permutation_importance`` with the quick scorers (AUC, log
    loss, RMSE; greater is better), but every shuffled copy is scored in one ``predict``
    call and one vectorised metric, instead of one scorer call per feature and repeat. The
    unshuffled rows are block 0 of that batch, so a feature the model never uses scores
    exactly the same as the baseline (importance 0.0).
    """
    rng = np.random.RandomState(seed)
    n, width = held.shape
    blocks = np.empty((1 + width * repeats, n, width), dtype="float64")
    blocks[:] = held
    for j in range(width):
        for r in range(repeats):
            blocks[1 + j * repeats + r, :, j] = held[rng.permutation(n), j]
    batch = blocks.reshape(-1, width)
    if task == "regression":
        predicted = model.predict(batch).reshape(len(blocks), n)
        metric = -np.sqrt(np.mean((predicted - held_y.astype("float64")) ** 2, axis=1))
    else:
        classes = list(model.classes_)
        truth = np.array([classes.index(v) if v in classes else -1 for v in held_y])
        if (truth < 0).any():
            return None
        probabilities = model.predict_proba(batch).reshape(len(blocks), n, len(classes))
        if task == "binary":
            if len(np.unique(truth)) < 2:
                return None
            metric = _auc_rows(probabilities[:, :, 1], truth == 1)
        else:
            picked = np.take_along_axis(probabilities, truth[None, :, None], axis=2)[:, :, 0]
            metric = np.mean(np.log(np.clip(picked, 1e-15, 1.0)), axis=1)  # -log loss
    return float(metric[0]), metric[1:].reshape(width, repeats)


def _auc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``scores`` against the same labels (ties count one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return (ranks[:, positive].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _better_than_chance(score: float, held_y: np.ndarray, fit_y: np.ndarray, task: str) -> bool:
    if task == "binary":
        return score > 0.55
    if task == "regression":
        baseline = float(np.sqrt(np.mean((held_y - np.mean(fit_y)) ** 2)))
        return -score < 0.98 * baseline
    priors = pd.Series(fit_y).value_counts(normalize=True)
    prior = pd.Series(held_y).map(priors).fillna(1e-6)
    prior_loss = -float(np.mean(np.log(np.clip(prior, 1e-6, 1))))
    return -score < 0.98 * prior_loss


def _apply_exclusions(plan: FeaturePlan, excluded: set[str], reasons: dict[str, str]) -> None:
    """Drop raw columns whose every feature is excluded; exclude single parts of the others."""
    partial: list[str] = []
    for raw, group in plan.feature_groups().items():
        out = [name for name in group if name in excluded]
        if not out:
            continue
        if len(out) == len(group):
            first = next((reasons[name] for name in group if name in reasons), "feature selection")
            plan.dropped[raw] = first
            for members in (plan.numeric, plan.categorical, plan.boolean, plan.datetime, plan.text):
                if raw in members:
                    members.remove(raw)
            plan.categorical_levels.pop(raw, None)
            plan.text_vocabulary.pop(raw, None)
            plan.group_keys.pop(raw, None)  # dropped: no longer read as anything
            if raw in plan.missing_indicators:
                plan.missing_indicators.remove(raw)
        else:
            partial += out
    plan.excluded_features = sorted(set(plan.excluded_features) | set(partial))
