"""Learning tasks (binary, multiclass, regression), how to infer them and their metrics."""

from __future__ import annotations

from typing import Literal

import pandas as pd

from autokfp.errors import DataError, plain

Task = Literal["binary", "multiclass", "regression"]

# metrics where a larger value is better; the rest are losses
GREATER_IS_BETTER = {"auc": True, "accuracy": True, "f1": True, "r2": True,
                     "logloss": False, "rmse": False, "mae": False}
DEFAULT_PRIMARY = {"binary": "auc", "multiclass": "logloss", "regression": "rmse"}
TASK_METRICS = {
    "binary": ("auc", "logloss", "f1", "accuracy", "precision", "recall"),
    "multiclass": ("logloss", "accuracy", "f1"),
    "regression": ("rmse", "mae", "r2"),
}
MAX_MULTICLASS_LEVELS = 50


def infer_task(target: pd.Series, requested: str = "auto") -> Task:
    """Binary for two values, multiclass for few discrete values, else regression."""
    values = target.dropna()
    distinct = values.nunique()
    if distinct < 2:
        shown = "no values" if distinct == 0 else f"the single value {plain(values.iloc[0])!r}"
        raise DataError(
            f"target '{target.name}' has {shown} (missing values do not count); a model needs "
            "at least two classes or values: check training.target and the data"
        )
    if requested != "auto":
        if requested in ("binary", "multiclass") and distinct > MAX_MULTICLASS_LEVELS:
            raise DataError(
                f"training.task is '{requested}' but target '{target.name}' has {distinct} distinct "
                f"values (at most {MAX_MULTICLASS_LEVELS}); use task: regression or fix the target"
            )
        if requested == "binary" and distinct != 2:
            raise DataError(
                f"training.task is 'binary' but target '{target.name}' has {distinct} distinct "
                "value(s); a binary target needs exactly 2"
            )
        if requested == "regression" and not pd.api.types.is_numeric_dtype(values):
            raise DataError(
                f"training.task is 'regression' but target '{target.name}' is not numeric "
                f"({values.dtype}); use task: multiclass or convert the column"
            )
        return requested  # type: ignore[return-value]
    if distinct == 2:
        return "binary"
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric:
        if distinct > MAX_MULTICLASS_LEVELS:
            raise DataError(
                f"target '{target.name}' is text with {distinct} distinct values: too many classes "
                f"(at most {MAX_MULTICLASS_LEVELS}); pick another target"
            )
        return "multiclass"
    integral = bool((values == values.round()).all())
    if integral and distinct <= 10:
        return "multiclass"
    return "regression"


def primary_metric(task: Task, configured: str = "auto") -> str:
    """The metric that ranks models for ``task``; a configured one must suit the task."""
    if configured == "auto":
        return DEFAULT_PRIMARY[task]
    if configured not in TASK_METRICS[task]:
        from autokfp.errors import ConfigError

        raise ConfigError(
            f"selection.primary_metric '{configured}' does not apply to a {task} task; "
            f"use one of: {', '.join(TASK_METRICS[task])}"
        )
    return configured
