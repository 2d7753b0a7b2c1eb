"""Task inference from the target column, and the metric that ranks models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.errors import ConfigError, DataError
from autokfp.modeling.tasks import TASK_METRICS, infer_task, primary_metric

rng = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1, 0, None], "binary"),
        (["yes", "no", "no", "yes"], "binary"),
        ([True, False, True], "binary"),
        ([1.0, 2.0, 2.0, 1.0], "binary"),
        (["red", "green", "blue", "red"], "multiclass"),
        ([1, 2, 3, 4, 5, 1, 2], "multiclass"),
        ([0.5, 1.25, 3.0, 7.75, 2.5], "regression"),
        (list(range(30)), "regression"),
    ],
)
def test_infer_task_from_values(values: list, expected: str) -> None:
    assert infer_task(pd.Series(values, name="y")) == expected


def test_continuous_target_is_regression() -> None:
    assert infer_task(pd.Series(rng.normal(size=500), name="price")) == "regression"


def test_text_target_with_too_many_classes_names_the_column() -> None:
    target = pd.Series([f"label-{i}" for i in range(80)], name="product_code")
    with pytest.raises(DataError, match="product_code") as info:
        infer_task(target)
    assert "80 distinct" in str(info.value)


def test_missing_values_do_not_count_as_a_class() -> None:
    assert infer_task(pd.Series(["a", "b", None, np.nan, "a"], name="y")) == "binary"


def test_requested_task_that_fits_is_kept() -> None:
    assert infer_task(pd.Series([0, 1, 2, 1], name="y"), "regression") == "regression"
    assert infer_task(pd.Series([0, 1, 1, 0], name="y"), "multiclass") == "multiclass"
    assert infer_task(pd.Series(["a", "b"], name="y"), "binary") == "binary"


def test_requested_binary_on_three_classes_names_the_column() -> None:
    with pytest.raises(DataError, match="'plan'") as info:
        infer_task(pd.Series(["a", "b", "c"], name="plan"), "binary")
    assert "3 distinct" in str(info.value)
    assert "exactly 2" in str(info.value)


def test_requested_regression_on_text_names_the_column() -> None:
    with pytest.raises(DataError, match="'segment'") as info:
        infer_task(pd.Series(["low", "high", "mid"], name="segment"), "regression")
    assert "not numeric" in str(info.value)


@pytest.mark.parametrize("requested", ["binary", "multiclass"])
def test_requested_classification_on_continuous_values_names_the_column(requested: str) -> None:
    with pytest.raises(DataError, match="'revenue'") as info:
        infer_task(pd.Series(rng.normal(size=200), name="revenue"), requested)
    assert "task: regression" in str(info.value)


@pytest.mark.parametrize(("task", "metric"), [("binary", "auc"), ("multiclass", "logloss"),
                                              ("regression", "rmse")])
def test_primary_metric_defaults(task: str, metric: str) -> None:
    assert primary_metric(task) == metric
    assert primary_metric(task, "auto") == metric


@pytest.mark.parametrize(("task", "metric"), [("binary", "f1"), ("multiclass", "accuracy"),
                                              ("regression", "mae"), ("regression", "r2")])
def test_primary_metric_configured_and_fitting(task: str, metric: str) -> None:
    assert primary_metric(task, metric) == metric


@pytest.mark.parametrize(("task", "metric"), [("regression", "auc"), ("binary", "rmse"),
                                              ("multiclass", "auc")])
def test_primary_metric_that_does_not_fit_the_task(task: str, metric: str) -> None:
    with pytest.raises(ConfigError, match="selection.primary_metric") as info:
        primary_metric(task, metric)
    message = str(info.value)
    assert f"'{metric}'" in message
    assert task in message
    for allowed in TASK_METRICS[task]:
        assert allowed in message
