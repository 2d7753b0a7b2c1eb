"""Bad training input ends in a clear error or a documented fallback, never a useless model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.profiling import profile_frame
from autokfp.errors import DataError, TrainingError
from autokfp.modeling.tasks import infer_task
from autokfp.steps import engineer_features as engineer_features_step
from tests.conftest import small_config


@pytest.mark.parametrize(("values", "shown"), [([1, 1, 1, None], "1.0"), (["yes", "yes"], "'yes'"),
                                             ([2.5, 2.5, 2.5], "2.5"), ([7, 7], "7"),
                                             ([True, True], "True")])
def test_a_target_with_one_value_is_refused(values, shown) -> None:
    with pytest.raises(DataError, match="'churned' has the single value") as info:
        infer_task(pd.Series(values, name="churned"))
    # the value as the user wrote it, not numpy's repr (np.float64(1.0), np.int64(7))
    assert f"the single value {shown} (" in str(info.value)
    assert "np." not in str(info.value) and "at least two" in str(info.value)


def test_messages_show_plain_values() -> None:
    from autokfp.errors import plain

    assert repr(plain(np.float64(0.3))) == "0.3"
    assert repr(plain({"auc": np.float32(0.5), "n": [np.int64(1), (np.bool_(True),)]})) == (
        "{'auc': 0.5, 'n': [1, (True,)]}")
    assert plain("text") == "text" and plain(None) is None


def test_an_empty_target_is_refused() -> None:
    with pytest.raises(DataError, match="no values"):
        infer_task(pd.Series([None, None], name="churned", dtype=object))


def _engineer(tmp_path, frame: pd.DataFrame, **overrides):
    frame.to_parquet(tmp_path / "customers.parquet", index=False)
    config = small_config(tmp_path, **overrides)
    schema = profile_frame(frame, "files/customers.parquet", "file", str(tmp_path))
    (tmp_path / "schema.json").write_text(schema.to_json())
    return engineer_features_step.engineer_features(config, tmp_path / "customers.parquet", tmp_path / "schema.json",
                                 tmp_path / "train.parquet", tmp_path / "test.parquet",
                                 tmp_path / "plan.json")


def test_fewer_rows_than_folds_names_the_setting(tmp_path, churn_frame) -> None:
    # the H2O engine checks its own folds (feature engineering knows no engine's settings)
    from autokfp.config import BudgetSpec
    from autokfp.training.h2o_automl import H2OAutoMLEngine, H2OSettings

    frame = churn_frame.head(15)
    engine = H2OAutoMLEngine(H2OSettings(nfolds=10))
    with pytest.raises(DataError, match="engines.h2o.nfolds=10") as info:
        engine.train(frame[["age", "tenure_months"]], frame["churned"].astype(str), "binary",
                     ["0", "1"], [], BudgetSpec(max_runtime_secs=10), "auc", tmp_path / "engine")
    assert "lower engines.h2o.nfolds" in str(info.value)
    # and engineering the same rows no longer fails on an engine's setting
    summary = _engineer(tmp_path, churn_frame.head(40), selection={"feature_selection": "off"},
                        quality={"min_rows": 10}, engines={"h2o": {"nfolds": 10}})
    assert summary.train_rows + summary.test_rows == 40


def test_rows_without_a_label_are_left_out_not_guessed(tmp_path, churn_frame) -> None:
    frame = churn_frame.head(500).copy()
    frame.loc[frame.index[:50], "churned"] = np.nan
    summary = _engineer(tmp_path, frame)
    assert summary.train_rows + summary.test_rows == 450
    assert pd.read_parquet(tmp_path / "train.parquet")["churned"].notna().all()


def test_every_feature_dropped_is_a_training_error(tmp_path, churn_frame) -> None:
    frame = churn_frame.head(300)[["customer_id", "email", "churned"]]
    with pytest.raises(TrainingError, match="every column was dropped"):
        _engineer(tmp_path, frame)
