"""Probability calibration fitted into the model: Platt (binary) / temperature (multiclass)
scaling on out-of-sample training scores, applied only when cross-fitting shows it helps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax
from sklearn.metrics import roc_auc_score

from autokfp.errors import ConfigError
from autokfp.modeling.calibration import apply_calibration, fit_calibration, log_loss
from autokfp.modeling.model_package import adjust_scores, format_predictions
from tests.conftest import small_config


def _binary(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, n)
    return p, (rng.random(n) < p).astype(int)


def _cols(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p, p])


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _overconfident(p: np.ndarray) -> np.ndarray:
    return expit(3.0 * _logit(p))


def _cubed(p: np.ndarray) -> np.ndarray:
    return p ** 3


def _multiclass(n: int = 3000, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and classes drawn from softmax(logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 1.5
    truth = softmax(logits, axis=1)
    cumulative = truth.cumsum(axis=1)
    codes = (rng.random((n, 1)) > cumulative).sum(axis=1)
    return logits, np.minimum(codes, k - 1)


# ----------------------------------------------------------------------------------- binary


@pytest.mark.parametrize("distort", [_overconfident, _cubed], ids=["logit-x3", "cubed"])
def test_badly_calibrated_binary_scores_are_recalibrated(distort) -> None:
    p, y = _binary()
    record = fit_calibration(y, _cols(distort(p)), "binary", seed=3)
    assert record["applied"] is True and record["method"] == "platt", record["reason"]
    assert record["rows"] == 3000 and record["folds"] == 5
    assert record["relative_gain"] > 0.15
    assert record["log_loss_after"] < 0.85 * record["log_loss_before"]
    assert record["ece_before"] > 0.1 and record["ece_after"] < 0.05
    # out of sample: fresh rows of the same process are better off calibrated too
    p2, y2 = _binary(seed=1)
    raw = _cols(distort(p2))
    assert log_loss(y2, apply_calibration(raw, record)) < 0.85 * log_loss(y2, raw)


def test_platt_recovers_the_inverse_of_a_known_distortion() -> None:
    p, y = _binary(n=20_000, seed=2)
    record = fit_calibration(y, _cols(_overconfident(p)), "binary", seed=0)
    assert record["parameters"]["a"] == pytest.approx(1 / 3, abs=0.03)
    assert record["parameters"]["b"] == pytest.approx(0.0, abs=0.05)


def test_calibrated_binary_scores_are_left_alone() -> None:
    p, y = _binary()
    raw = _cols(p)
    record = fit_calibration(y, raw, "binary", seed=3)
    assert record["applied"] is False
    assert "calibrated enough" in record["reason"]
    assert record["relative_gain"] < 0.005
    assert record["parameters"]["a"] == pytest.approx(1.0, abs=0.15)
    # the numbers are recorded even when it is not applied, and nothing changes
    assert record["log_loss_after"] is not None and record["ece_after"] is not None
    assert apply_calibration(raw, record) is raw


def test_too_few_rows_or_a_rare_class_are_not_calibrated() -> None:
    p, y = _binary(n=80)
    record = fit_calibration(y, _cols(_overconfident(p)), "binary", seed=0)
    assert record["applied"] is False and "too few" in record["reason"]
    assert record["rows"] == 80 and record["log_loss_before"] is not None

    p, y = _binary(n=3000)
    rare = np.flatnonzero(y == 1)[8:]  # keep 8 positives only
    keep = np.setdiff1d(np.arange(len(y)), rare)
    record = fit_calibration(y[keep], _cols(_overconfident(p[keep])), "binary", seed=0)
    assert record["applied"] is False and "8 of the rarest class" in record["reason"]


def test_binary_calibration_keeps_the_ranking_and_the_auc() -> None:
    p, y = _binary()
    raw = _cols(_overconfident(p))
    record = fit_calibration(y, raw, "binary", seed=3)
    calibrated = apply_calibration(raw, record)
    assert record["applied"] and not np.allclose(calibrated, raw)
    assert roc_auc_score(y, calibrated[:, 1]) == roc_auc_score(y, raw[:, 1])
    order = np.argsort(raw[:, 1], kind="stable")
    assert (np.diff(calibrated[order, 1]) >= 0).all()
    # a temperature on two classes is monotone as well
    cooled = apply_calibration(raw, {"applied": True, "method": "temperature",
                                     "parameters": {"temperature": 2.5}})
    assert roc_auc_score(y, cooled[:, 1]) == roc_auc_score(y, raw[:, 1])


# ------------------------------------------------------------------------------- multiclass


def test_overconfident_multiclass_scores_get_a_temperature() -> None:
    logits, y = _multiclass()
    raw = softmax(3.0 * logits, axis=1)
    record = fit_calibration(y, raw, "multiclass", seed=3)
    assert record["applied"] is True and record["method"] == "temperature", record["reason"]
    assert record["parameters"]["temperature"] == pytest.approx(3.0, rel=0.1)
    assert record["log_loss_after"] < 0.8 * record["log_loss_before"]
    assert record["ece_after"] < 0.5 * record["ece_before"]
    calibrated = apply_calibration(raw, record)
    assert (calibrated.argmax(axis=1) == raw.argmax(axis=1)).all()
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-12)
    assert log_loss(y, calibrated) < 0.8 * log_loss(y, raw)


def test_calibrated_multiclass_scores_are_left_alone() -> None:
    logits, y = _multiclass()
    record = fit_calibration(y, softmax(logits, axis=1), "multiclass", seed=3)
    assert record["applied"] is False and "calibrated enough" in record["reason"]
    assert record["parameters"]["temperature"] == pytest.approx(1.0, abs=0.1)


def test_regression_has_no_calibration_and_bad_input_is_refused() -> None:
    assert fit_calibration(np.zeros(5), np.zeros(5), "regression", seed=0) is None
    with pytest.raises(ValueError, match="n x k"):
        fit_calibration([0, 1, 1], np.ones((4, 2)) / 2, "binary")
    with pytest.raises(ValueError, match="truth codes"):
        fit_calibration([0, 1, 2], np.ones((3, 2)) / 2, "binary")


# -------------------------------------------------------------------- format_predictions

BINARY_META = {"task": "binary", "classes": [0, 1], "class_labels": ["0", "1"], "threshold": 0.5}
PLATT = {"applied": True, "method": "platt", "parameters": {"a": 0.5, "b": 0.4}}


def test_format_predictions_applies_the_calibration() -> None:
    p, _ = _binary(n=500, seed=4)
    raw = _cols(p)
    index = pd.RangeIndex(len(p))
    out = format_predictions(raw.copy(), {**BINARY_META, "calibration": PLATT}, index)
    expected = expit(0.5 * _logit(p) + 0.4)
    np.testing.assert_allclose(out["probability_1"], expected, atol=1e-12)
    np.testing.assert_allclose(out["probability_0"] + out["probability_1"], 1.0, atol=1e-12)
    assert (out["prediction"] == (expected >= 0.5).astype(int)).all()
    assert (out["prediction"] != (p >= 0.5).astype(int)).any()  # the threshold sees calibrated p


def test_format_predictions_without_an_applied_calibration_is_unchanged() -> None:
    p, _ = _binary(n=500, seed=4)
    raw = _cols(p)
    index = pd.RangeIndex(len(p))
    old = pd.DataFrame({"prediction": (p >= 0.5).astype(int), "probability_0": raw[:, 0],
                        "probability_1": raw[:, 1]}, index=index)
    pd.testing.assert_frame_equal(format_predictions(raw, BINARY_META, index), old)
    skipped = {**PLATT, "applied": False, "reason": "calibrated enough"}
    pd.testing.assert_frame_equal(
        format_predictions(raw, {**BINARY_META, "calibration": skipped}, index), old)


def test_calibration_comes_before_the_fairness_score_repair() -> None:
    p, _ = _binary(n=400, seed=5)
    groups = ["a" if i % 2 else "b" for i in range(len(p))]
    levels = np.linspace(0, 1, 11)
    repair = {"strength": 0.6, "reference": np.quantile(p, levels).tolist(),
              "groups": {"a": np.quantile(p[1::2] ** 2, levels).tolist()}}
    meta = {**BINARY_META, "calibration": PLATT,
            "fairness_mitigation": {"column": "g", "score_repair": repair}}
    out = format_predictions(_cols(p), meta, pd.RangeIndex(len(p)), groups=groups)
    first = adjust_scores(apply_calibration(_cols(p), PLATT), meta, groups)
    np.testing.assert_allclose(out["probability_1"], first[:, 1], atol=1e-12)
    reversed_order = apply_calibration(adjust_scores(_cols(p), meta, groups), PLATT)
    assert np.abs(reversed_order[:, 1] - first[:, 1]).max() > 1e-3


def test_format_predictions_multiclass_temperature_keeps_the_winner() -> None:
    logits, _ = _multiclass(n=300, k=3)
    raw = softmax(logits, axis=1)
    meta = {"task": "multiclass", "classes": ["a", "b", "c"], "class_labels": ["a", "b", "c"],
            "calibration": {"applied": True, "method": "temperature",
                            "parameters": {"temperature": 2.0}}}
    out = format_predictions(raw, meta, pd.RangeIndex(len(raw)))
    probs = out[["probability_a", "probability_b", "probability_c"]].to_numpy()
    np.testing.assert_allclose(probs, softmax(np.log(raw) / 2.0, axis=1), atol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (out["prediction"].to_numpy() == np.array(["a", "b", "c"])[raw.argmax(axis=1)]).all()


# ---------------------------------------------------------------------------- model card


def test_model_card_says_what_was_done_to_the_probabilities() -> None:
    from types import SimpleNamespace

    from autokfp.governance.model_card import limitations

    def said(meta: dict) -> list[str]:
        items = limitations(meta, SimpleNamespace(input_columns=[]), {}, {}, {"test_rows": 10})
        return [i for i in items if i.startswith("Probabilities")]

    p, y = _binary(seed=6)
    applied = fit_calibration(y, _cols(_overconfident(p)), "binary", seed=0)
    skipped = fit_calibration(y, _cols(p), "binary", seed=0)
    (text,) = said({"task": "binary", "calibration": applied})
    assert text.startswith("Probabilities are recalibrated by Platt scaling")
    assert f"{applied['ece_before']:.4f} -> {applied['ece_after']:.4f}" in text
    (text,) = said({"task": "binary", "calibration": skipped})
    assert "not recalibrated: cross-fitted log loss" in text and "calibrated enough" in text
    assert f"{skipped['ece_before']:.4f} -> {skipped['ece_after']:.4f}" in text
    logits, codes = _multiclass()
    cooled = fit_calibration(codes, softmax(3 * logits, axis=1), "multiclass", seed=0)
    (text,) = said({"task": "multiclass", "calibration": cooled})
    assert "temperature scaling (T=" in text
    # packages from before calibration existed read as before
    assert said({"task": "binary"}) == ["Probabilities are the engine's; they were not "
                                        "recalibrated."]
    assert said({"task": "multiclass"}) == []


# ------------------------------------------------------------------------------ config


def test_calibration_setting_defaults_to_auto_and_rejects_other_values(tmp_path) -> None:
    assert small_config(tmp_path).training.calibration == "auto"
    training = {"dataset": "files/customers.parquet", "target": "churned"}
    assert small_config(tmp_path, training={**training, "calibration": "none"}
                        ).training.calibration == "none"
    with pytest.raises(ConfigError, match=r"training\.calibration: .*'auto' or 'none'"):
        small_config(tmp_path, training={**training, "calibration": "platt"})


# ------------------------------------------------------------------- trained packages


def _raw_engine_scores(model_dir: Path, meta: dict, rows: pd.DataFrame) -> np.ndarray:
    from autokfp.modeling.features import FeaturePlan, apply_features
    from autokfp.training import get_engine

    artifacts = model_dir / "artifacts"
    plan = FeaturePlan.from_json((artifacts / "plan.json").read_text())
    scorer = get_engine(meta["engine"]).load_scorer(artifacts / "engine", meta["task"],
                                                    meta["class_labels"])
    return scorer.predict(apply_features(rows, plan))


def _package_probabilities(model_dir: Path, meta: dict, rows: pd.DataFrame,
                           scratch: Path) -> np.ndarray:
    """The package's pyfunc class loaded with its own plan and engine but ``meta``."""
    from autokfp.modeling.model_package import AutokfpModel

    artifacts = model_dir / "artifacts"
    meta_path = scratch / "meta.json"
    meta_path.write_text(json.dumps(meta))
    model = AutokfpModel()
    model._load(artifacts / "plan.json", meta_path, artifacts / "engine")
    predictions = model.predict(None, rows)
    return predictions[[f"probability_{c}" for c in meta["class_labels"]]].to_numpy()


def test_trained_h2o_package_carries_and_applies_its_calibration(trained_package,
                                                                 tmp_path) -> None:
    from autokfp.modeling.model_package import load_model_package

    model_dir = Path(trained_package.paths.model)
    meta = json.loads((model_dir / "artifacts" / "meta.json").read_text())
    calibration = meta["calibration"]
    train = pd.read_parquet(trained_package.paths.train)
    # fitted on H2O's out-of-fold predictions of every training row
    assert calibration["method"] == "platt"
    assert calibration["rows"] == len(train) and calibration["folds"] == 5
    assert "3-fold cross-validation" in calibration["source"]
    for key in ("log_loss_before", "log_loss_after", "ece_before", "ece_after"):
        assert 0.0 < calibration[key] < 1.0, key
    assert set(calibration["parameters"]) == {"a", "b"} and calibration["reason"]
    assert calibration["applied"] == (calibration["relative_gain"] > 0.005)

    test = pd.read_parquet(trained_package.paths.test)
    rows = test.drop(columns=["churned"])
    raw = _raw_engine_scores(model_dir, meta, rows)
    served = load_model_package(str(model_dir)).predict(rows)[["probability_0", "probability_1"]]
    np.testing.assert_allclose(served.to_numpy(), apply_calibration(raw, calibration), atol=1e-12)
    assert roc_auc_score(test["churned"], served["probability_1"]) == pytest.approx(
        roc_auc_score(test["churned"], raw[:, 1]), abs=1e-12)

    # the same package with its fitted parameters switched on scores through them
    forced = {**meta, "calibration": {**calibration, "applied": True}}
    probabilities = _package_probabilities(model_dir, forced, rows, tmp_path)
    expected = apply_calibration(raw, forced["calibration"])
    np.testing.assert_allclose(probabilities, expected, atol=1e-12)
    assert np.abs(expected - raw).max() > 1e-6
    assert roc_auc_score(test["churned"], probabilities[:, 1]) == pytest.approx(
        roc_auc_score(test["churned"], raw[:, 1]), abs=1e-12)


def test_trained_autokeras_package_calibrates_on_its_out_of_fold_rows(keras_package) -> None:
    from autokfp.modeling.model_package import load_model_package

    model_dir = Path(keras_package.paths.model)
    meta = json.loads((model_dir / "artifacts" / "meta.json").read_text())
    engine = json.loads((model_dir / "artifacts" / "engine" / "engine.json").read_text())
    calibration = meta["calibration"]
    assert calibration["method"] == "platt"
    # every training row, scored by the k-fold refits (not the validation rows that chose
    # the network)
    assert calibration["rows"] == meta["trained_rows"] > engine["validation_rows"]
    assert calibration["source"].startswith("out of fold: 5-fold refits"), calibration
    rows = pd.read_parquet(keras_package.paths.test).drop(columns=["churned"])
    raw = _raw_engine_scores(model_dir, meta, rows)
    served = load_model_package(str(model_dir)).predict(rows)[["probability_0", "probability_1"]]
    np.testing.assert_allclose(served.to_numpy(), apply_calibration(raw, calibration), atol=1e-6)
