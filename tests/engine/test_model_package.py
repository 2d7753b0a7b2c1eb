"""The packaged model: an MLflow pyfunc that carries its preprocessing and scores raw rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from autokfp.modeling.model_package import load_model_package

FRESH_PROCESS = """
import sys
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_parquet(sys.argv[2])
model.predict(rows.drop(columns=["churned"])).to_parquet(sys.argv[3])
"""


@pytest.fixture(scope="module")
def model(trained_package):
    return load_model_package(str(trained_package.paths.model))


@pytest.fixture(scope="module")
def test_rows(trained_package) -> pd.DataFrame:
    return pd.read_parquet(trained_package.paths.test)


@pytest.fixture(scope="module")
def predictions(model, test_rows) -> pd.DataFrame:
    return model.predict(test_rows.drop(columns=["churned"]))


def test_model_folder_is_an_mlflow_model(trained_package) -> None:
    folder = Path(trained_package.paths.model)
    mlmodel = (folder / "MLmodel").read_text()
    assert "python_function" in mlmodel
    for name in ("plan.json", "meta.json", "engine/model.zip"):
        assert (folder / "artifacts" / name).is_file(), name
    meta = json.loads((folder / "artifacts" / "meta.json").read_text())
    assert meta["engine"] == "h2o"
    assert meta["task"] == "binary"
    assert meta["class_labels"] == ["0", "1"]
    assert meta["target"] == "churned"


def test_fresh_process_loads_and_reproduces_predictions(trained_package, test_rows, predictions,
                                                        tmp_path) -> None:
    out = tmp_path / "fresh.parquet"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(trained_package.paths.model),
         str(trained_package.paths.test), str(out)],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = pd.read_parquet(out)
    assert len(fresh) == len(test_rows)
    assert list(fresh.columns) == list(predictions.columns)
    assert (fresh["prediction"].to_numpy() == predictions["prediction"].to_numpy()).all()
    np.testing.assert_allclose(fresh[["probability_0", "probability_1"]].to_numpy(),
                               predictions[["probability_0", "probability_1"]].to_numpy(),
                               atol=1e-6, rtol=0)


def test_predictions_have_labels_and_probabilities(predictions, test_rows) -> None:
    assert list(predictions.columns) == ["prediction", "probability_0", "probability_1"]
    assert len(predictions) == len(test_rows)
    total = predictions["probability_0"] + predictions["probability_1"]
    np.testing.assert_allclose(total.to_numpy(), 1.0, atol=1e-9)
    assert predictions["probability_1"].between(0, 1).all()
    assert set(predictions["prediction"].unique()) <= {0, 1}
    # the label follows the probability at the 0.5 threshold
    expected = (predictions["probability_1"] >= 0.5).astype(int)
    assert (predictions["prediction"].astype(int) == expected).all()
    # not a constant model
    assert predictions["probability_1"].std() > 0.05


def test_model_ranks_held_out_rows_well(predictions, test_rows) -> None:
    auc = roc_auc_score(test_rows["churned"], predictions["probability_1"])
    assert auc >= 0.78, f"held-out AUC {auc:.3f}"


def test_unseen_categories_missing_values_and_extra_columns_still_score(model, test_rows,
                                                                        predictions) -> None:
    rows = test_rows.drop(columns=["churned"]).head(6).copy()
    rows["contract_type"] = ["ten-year", None, "month-to-month", "one-year", "two-year", "x"]
    rows["internet_service"] = "satellite"
    rows["tenure_months"] = [np.nan, 3, 12, np.nan, 40.0, 1]  # integer column, now with gaps
    rows["monthly_charges"] = np.nan
    rows["age"] = None
    rows["payment_method"] = None
    rows["support_notes"] = [None, "brand new words here", "", None, "price", "outage"]
    rows["loyalty_tier"] = "gold"  # a column the model never saw
    scored = model.predict(rows)
    assert len(scored) == 6
    assert scored[["probability_0", "probability_1"]].notna().all().all()
    np.testing.assert_allclose((scored["probability_0"] + scored["probability_1"]).to_numpy(), 1.0)


def test_extra_columns_do_not_change_scores(model, test_rows, predictions) -> None:
    rows = test_rows.drop(columns=["churned"]).head(20)
    scored = model.predict(rows.assign(loyalty_tier="gold", churned=1))
    np.testing.assert_allclose(scored["probability_1"].to_numpy(),
                               predictions["probability_1"].head(20).to_numpy(), atol=1e-12)


def test_single_json_like_request_scores_like_the_batch(model, test_rows, predictions) -> None:
    record = json.loads(test_rows.drop(columns=["churned"]).head(1).to_json(orient="records",
                                                                             date_format="iso"))
    request = pd.DataFrame(record)
    request["signup_date"] = pd.to_datetime(request["signup_date"]).dt.tz_localize(None)
    scored = model.predict(request)
    assert scored["probability_1"].iloc[0] == pytest.approx(
        predictions["probability_1"].iloc[0], abs=1e-9)


def test_missing_column_raises_an_error_naming_it(model, test_rows) -> None:
    rows = test_rows.drop(columns=["churned", "tenure_months"]).head(3)
    with pytest.raises(Exception, match="tenure_months"):
        model.predict(rows)


def test_unwrapped_model_raises_schema_error_naming_the_column(model, test_rows) -> None:
    from autokfp.errors import SchemaError

    python_model = model.unwrap_python_model()
    rows = test_rows.drop(columns=["churned", "contract_type"]).head(3)
    with pytest.raises(SchemaError, match="contract_type"):
        python_model.predict(None, rows)


def _typed(frame: pd.DataFrame, plan) -> pd.DataFrame:
    """The same rows as a user's frame often holds them: categories, pandas strings, nullable
    integers, time-zone-aware datetimes and plain objects side by side."""
    out = frame.copy()
    for i, column in enumerate(plan.categorical):
        out[column] = out[column].astype("category" if i % 2 == 0 else "string")
    for column in plan.numeric:
        if pd.api.types.is_integer_dtype(out[column]):
            out[column] = out[column].astype("Int64")
    for column in plan.datetime:
        out[column] = pd.to_datetime(out[column], utc=True).dt.tz_convert("Europe/Paris")
    return out


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame.filter(like="probability_").to_numpy(dtype="float64")


def test_any_pandas_dtype_scores_like_plain_columns(model, test_rows, predictions) -> None:
    """Through MLflow's schema enforcement (the loaded pyfunc), as a notebook user calls it."""
    plan = model.unwrap_python_model().plan
    rows = test_rows.drop(columns=["churned"])
    typed = _typed(rows, plan)
    assert any(isinstance(typed[c].dtype, pd.CategoricalDtype) for c in plan.categorical)
    np.testing.assert_allclose(_probabilities(model.predict(typed)), _probabilities(predictions),
                               atol=1e-9)
    as_objects = rows.astype(object)
    np.testing.assert_allclose(_probabilities(model.predict(as_objects)),
                               _probabilities(predictions), atol=1e-9)


def test_an_integer_column_arriving_with_missing_values_as_floats_scores(
        model, test_rows, predictions) -> None:
    plan = model.unwrap_python_model().plan
    integers = [c for c in plan.numeric if pd.api.types.is_integer_dtype(test_rows[c])]
    assert integers, "the example data has integer inputs"
    rows = test_rows.drop(columns=["churned"]).copy()
    gaps = rows.index % 5 == 0
    for column in integers:
        rows[column] = rows[column].astype("float64").where(~gaps)
    scored = model.predict(rows)
    probabilities = _probabilities(scored)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[~gaps], _probabilities(predictions)[~gaps], atol=1e-9)


def test_a_model_trained_on_typed_columns_is_saved_and_scores_them(trained_package, model,
                                                                    test_rows, predictions,
                                                                    tmp_path) -> None:
    """The package's input example and signature come from the training frame's own dtypes
    (a Parquet file with category columns, say): saving and scoring must accept them."""
    from autokfp.modeling.model_package import save_model_package

    inner = model.unwrap_python_model()
    artifacts = Path(trained_package.paths.model) / "artifacts"
    train = pd.read_parquet(trained_package.paths.train).drop(columns=["churned"])
    saved = save_model_package(tmp_path / "typed-model", inner.plan, artifacts / "engine",
                               dict(inner.meta), _typed(train, inner.plan))
    again = load_model_package(str(saved))
    typed = _typed(test_rows.drop(columns=["churned"]), inner.plan)
    np.testing.assert_allclose(_probabilities(again.predict(typed)), _probabilities(predictions),
                               atol=1e-9)
