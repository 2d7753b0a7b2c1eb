"""Explanations against models whose true explanation is known (no H2O needed)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.governance import explain
from autokfp.modeling.features import FeaturePlan

META = {"task": "binary", "classes": [0, 1], "class_labels": ["0", "1"], "target": "y",
        "threshold": 0.5}
WEIGHTS = {"x1": 0.5, "x2": -0.2}
COLOUR = {"red": 0.1, "blue": -0.05, "green": 0.0}


class LinearModel:
    """probability = 0.4 + 0.5·x1 − 0.2·x2 + colour effect; ``noise`` is ignored."""

    plan = FeaturePlan(target="y", task="binary", classes=[0, 1], numeric=["x1", "x2", "noise"],
                       categorical=["colour"])

    def predict(self, context, frame: pd.DataFrame) -> pd.DataFrame:
        p = (0.4 + sum(w * pd.to_numeric(frame[c]) for c, w in WEIGHTS.items())
             + frame["colour"].map(COLOUR).astype(float))
        p = p.to_numpy(dtype="float64")
        return pd.DataFrame({"prediction": (p >= 0.5).astype(int), "probability_0": 1 - p,
                             "probability_1": p}, index=frame.index)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.uniform(0, 1, n), "x2": rng.uniform(0, 1, n),
                          "noise": rng.normal(size=n),
                          "colour": rng.choice(list(COLOUR), size=n)})
    model = LinearModel()
    p = model.predict(None, frame)["probability_1"]
    frame["y"] = (rng.random(n) < p).astype(int)
    return frame


def test_permutation_importance_ranks_what_the_model_uses() -> None:
    frame = _frame(600, 0)
    result = explain.permutation_importance(LinearModel(), frame, META,
                                            ["x1", "x2", "noise", "colour"], repeats=3)
    ranked = {i["column"]: i for i in result["columns"]}
    assert result["metric"] == "auc" and result["rows"] == 600
    assert ranked["noise"]["importance"] == 0.0 and ranked["noise"]["std"] == 0.0
    assert result["columns"][0]["column"] == "x1"
    assert ranked["x2"]["importance"] > 0.0 and ranked["colour"]["importance"] > 0.0


def test_kernel_shap_recovers_a_linear_model_exactly() -> None:
    background = _frame(15, 1)
    rows = _frame(4, 2)
    result = explain.kernel_shap(LinearModel(), LinearModel.plan, META, background, rows,
                                 nsamples=200)
    assert result["status"] == "run" and result["output"] == "probability_1"
    values = np.asarray(result["values"])
    columns = result["columns"]
    # the exact SHAP value of an additive model: w·(x − mean over the background)
    for name, weight in WEIGHTS.items():
        expected = weight * (rows[name] - background[name].mean())
        assert values[:, columns.index(name)] == pytest.approx(expected.to_numpy(), abs=1e-6)
    colour = rows["colour"].map(COLOUR) - background["colour"].map(COLOUR).mean()
    assert values[:, columns.index("colour")] == pytest.approx(colour.to_numpy(), abs=1e-6)
    assert values[:, columns.index("noise")] == pytest.approx(0.0, abs=1e-9)
    # contributions and base value add up to the output
    totals = values.sum(axis=1) + result["base_value"]
    assert totals == pytest.approx(result["outputs"], abs=1e-9)

    local = explain.local_explanations(result, rows)
    assert list(local[0]["contributions"])[-1] == "noise"  # sorted by size
    assert local[0]["inputs"]["colour"] == rows["colour"].iloc[0]


def test_multiclass_shap_is_not_run_and_says_why() -> None:
    meta = {"task": "multiclass", "classes": ["a", "b", "c"], "class_labels": ["a", "b", "c"],
            "target": "y"}
    result = explain.kernel_shap(LinearModel(), LinearModel.plan, meta, _frame(5, 0), _frame(2, 1))
    assert result["status"] == "not_run" and "multiclass" in result["reason"]


def test_explain_model_writes_plots_and_a_report(tmp_path) -> None:
    frame = _frame(300, 3)
    result = explain.explain_model(LinearModel(), LinearModel.plan, META, frame, frame,
                                   tmp_path, rows=200, shap_rows=3, background_rows=10,
                                   nsamples=100)
    assert result["plots"] == ["permutation_importance.png", "shap_summary.png", "local_row_0.png"]
    for name in result["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result["local"]) == 3 and result["shap"]["mean_abs"]
    assert "not run" in result["h2o_contributions"]
    page = explain.html_report(result, [tmp_path / p for p in result["plots"]])
    assert page.count("data:image/png;base64,") == 3

    skipped = explain.explain_model(LinearModel(), LinearModel.plan, META, frame, frame,
                                    Path(tmp_path, "none"), rows=50, shap_rows=0)
    assert skipped["shap"]["status"] == "not_run" and "shap_rows is 0" in skipped["shap"]["reason"]


def test_background_records_hold_model_inputs_only() -> None:
    frame = _frame(50, 4).assign(email="a@example.com")
    records = explain.background_records(frame, ["x1", "colour"], rows=5)
    assert len(records) == 5 and set(records[0]) == {"x1", "colour"}


class InteractingModel:
    """probability = sigmoid(x0·x1 + x2·x3 − x4·x5 + …) over 12 columns: with interactions and
    more coalitions (2^12) than Kernel SHAP's samples, its values depend on which it samples."""

    columns = [f"x{i}" for i in range(12)]
    plan = FeaturePlan(target="y", task="binary", classes=[0, 1], numeric=columns,
                       categorical=[])

    def predict(self, context, frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[self.columns].to_numpy(dtype="float64")
        z = sum(((-1) ** i) * x[:, 2 * i] * x[:, 2 * i + 1] for i in range(6))
        p = 1 / (1 + np.exp(-z))
        return pd.DataFrame({"prediction": (p >= 0.5).astype(int), "probability_0": 1 - p,
                             "probability_1": p}, index=frame.index)


def test_kernel_shap_gives_the_same_values_in_every_run_and_leaves_numpy_as_it_was() -> None:
    rng = np.random.default_rng(3)
    background, rows = (pd.DataFrame(rng.normal(size=(n, 12)), columns=InteractingModel.columns)
                        for n in (20, 3))
    model = InteractingModel()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = explain.kernel_shap(model, model.plan, META, background, rows, nsamples=40)
    assert (np.random.get_state()[1] == before).all()  # the caller's generator is untouched
    np.random.seed(999)  # whatever the global state, the same contributions
    second = explain.kernel_shap(model, model.plan, META, background, rows, nsamples=40)
    assert first["values"] == second["values"]
    other = explain.kernel_shap(model, model.plan, META, background, rows, nsamples=40, seed=1)
    assert other["values"] != first["values"]  # the sample does matter for this model


class SlowInteractingModel(InteractingModel):
    """The same model taking a moment per call (as a real one does), which lets another
    thread run between Kernel SHAP's sampling of one row and the next."""

    def predict(self, context, frame: pd.DataFrame) -> pd.DataFrame:
        time.sleep(0.005)
        return super().predict(context, frame)


def test_concurrent_kernel_shap_runs_give_the_sequential_values() -> None:
    """shap samples from numpy's global generator: runs in several threads (as a served
    model's explanations could be) must not interleave their draws."""
    rng = np.random.default_rng(5)
    model = SlowInteractingModel()
    background = pd.DataFrame(rng.normal(size=(10, 12)), columns=model.columns)
    requests = [pd.DataFrame(rng.normal(size=(3, 12)), columns=model.columns) for _ in range(4)]
    sequential = [explain.kernel_shap(model, model.plan, META, background, rows, nsamples=40)
                  ["values"] for rows in requests]
    assert len({str(v) for v in sequential}) == len(requests)
    start = threading.Barrier(len(requests) * 2)

    def run(rows: pd.DataFrame) -> list:
        start.wait()
        return explain.kernel_shap(model, model.plan, META, background, rows, nsamples=40)["values"]

    with ThreadPoolExecutor(len(requests) * 2) as pool:
        concurrent = list(pool.map(run, requests * 2))
    assert concurrent == sequential * 2


def test_the_explain_step_draws_its_rows_from_the_files_and_explains_as_on_the_frames(
        tmp_path, monkeypatch) -> None:
    """The step draws from the Parquet files the rows ``explain_model`` draws from the whole
    frames (never reading a file whole), so it writes the same explanation."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.steps import explain_model as explain_model_step
    from tests.conftest import small_config

    train, test = _frame(3_000, 5), _frame(1_000, 6)
    for name, frame in (("train", train), ("test", test)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       tmp_path / f"{name}.parquet", row_group_size=100)
    config = small_config(tmp_path, governance={"explain_rows": 200, "shap_rows": 3})
    expected = explain.explain_model(LinearModel(), LinearModel.plan, META, train, test,
                                     tmp_path / "frames", rows=200, shap_rows=3,
                                     seed=config.split.seed)

    def whole_read(*args, **kwargs):
        raise AssertionError("the explain step read a Parquet file whole")

    monkeypatch.setattr(pd, "read_parquet", whole_read)
    monkeypatch.setattr(pq, "read_table", whole_read)
    monkeypatch.setattr(explain_model_step, "read_package",
                        lambda path: (LinearModel(), LinearModel.plan, dict(META)))
    summary = explain_model_step.explain_model(
        config, "unused", str(tmp_path / "train.parquet"), str(tmp_path / "test.parquet"),
        str(tmp_path / "explanation.json"), str(tmp_path / "report.html"), str(tmp_path / "plots"))
    written = json.loads((tmp_path / "explanation.json").read_text())
    assert written.pop("model") == config.model_name
    served = written.pop("served")  # which model was explained (53b3fb9): this package is gated
    assert served["model"] == "gated" and served["fitted_rows"] is None
    assert "None" not in served["note"] and "did not see" in served["note"]
    assert written == json.loads(json.dumps(expected))
    assert written["shap"]["status"] == "run" and len(written["local"]) == 3
    assert summary.top_features[0] == "x1"


class RecordingModel(LinearModel):
    """The linear model, keeping every frame it was asked to score."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def predict(self, context, frame: pd.DataFrame) -> pd.DataFrame:
        self.frames.append(frame.copy())
        return super().predict(context, frame)


def test_kernel_shap_scores_each_distinct_synthetic_row_once_with_every_copys_value() -> None:
    """Kernel SHAP's synthetic rows repeat (a coalition that takes a background row's own
    value gives a row already made): each distinct one is scored once, and the values are
    those of shap scoring every copy (the same coding and seed, to the bit). Whatever rows
    shap hands over in one call (its batching is its own), the model is asked for exactly
    that call's distinct rows."""
    import shap

    rng = np.random.default_rng(7)

    def frame(n: int) -> pd.DataFrame:  # few values per column: many repeated rows
        return pd.DataFrame({"x1": rng.integers(0, 2, n).astype(float),
                             "x2": rng.integers(0, 3, n).astype(float),
                             "noise": rng.integers(0, 2, n).astype(float),
                             "colour": rng.choice(list(COLOUR), size=n)})

    background, rows = frame(10), frame(3)
    model = RecordingModel()
    result = explain.kernel_shap(model, LinearModel.plan, META, background, rows, nsamples=14)

    columns = list(LinearModel.plan.input_columns)
    codec = explain._Codec.fit([background, rows], columns, set(LinearModel.plan.numeric))
    calls: list[np.ndarray] = []  # every matrix shap asked to score, copies and all

    def score_every_copy(matrix: np.ndarray) -> np.ndarray:
        calls.append(np.atleast_2d(matrix).copy())
        return LinearModel().predict(None, codec.decode(np.atleast_2d(matrix)))[
            "probability_1"].to_numpy(dtype="float64")

    np.random.seed(0)
    encoded = codec.encode(rows[columns])
    reference = shap.KernelExplainer(score_every_copy, codec.encode(background[columns]),
                                     keep_index=False).shap_values(
        encoded, nsamples=14, silent=True, l1_reg=False)
    assert np.asarray(result["values"]).tolist() == np.asarray(reference).tolist()
    # the model got shap's calls in order (then one of the explained rows for their outputs),
    # each cut to its distinct rows
    distinct = [len(np.unique(m, axis=0)) for m in calls] + [len(np.unique(encoded, axis=0))]
    assert [len(f) for f in model.frames] == distinct
    assert not any(f.duplicated().any() for f in model.frames)
    copies = sum(len(m) for m in calls)
    assert sum(len(f) for f in model.frames) < copies / 2
