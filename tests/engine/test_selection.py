"""Selection: every candidate and the champion on the same test rows; the best goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from autokfp.errors import TrainingError
from autokfp.modeling import registry
from autokfp.modeling.estimate import HOLDOUT_FILE
from autokfp.steps import register_model as register_model_step
from autokfp.steps import select_model as select_model_step
from autokfp.training.isolation import write_candidate_marker
from tests.conftest import small_config


def _config(trained_package):
    return small_config(trained_package.folder,
                        selection={"bootstrap_samples": 200, "confidence": 0.9},
                        deploy={"target": "manifest"})


def _degraded(model: Path, folder: Path) -> Path:
    """A clearly worse copy of the model: its plan hides the strongest inputs from the MOJO."""
    copy = folder / "degraded-model"
    shutil.copytree(model, copy)
    plan_path = copy / "artifacts" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["categorical_levels"] = {name: [] for name in plan["categorical_levels"]}
    plan["numeric"] = [c for c in plan["numeric"] if c not in ("tenure_months", "monthly_charges")]
    plan["missing_indicators"] = [c for c in plan["missing_indicators"] if c in plan["numeric"]]
    plan_path.write_text(json.dumps(plan))
    # its out-of-fold predictions were the good model's: a degraded copy has none
    (copy / "artifacts" / "engine" / HOLDOUT_FILE).unlink()
    return copy


def _select(config, candidates: dict, trained_package, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    return select_model_step.select_model(config, {k: str(v) for k, v in candidates.items()},
                               str(trained_package.paths.test), str(out / "evaluation.json"),
                               str(out / "model"), str(out / "report.html")).record


def test_the_better_candidate_is_selected_and_logged(autokfp_home, trained_package,
                                                     tmp_path) -> None:
    config = _config(trained_package)
    good = Path(trained_package.paths.model)
    worse = _degraded(good, tmp_path)
    out = tmp_path / "run"
    # the worse one first: the order of the engines must not decide
    document = _select(config, {"worse": worse, "good": good}, trained_package, out)

    assert document["selected"]["engine"] == "good"
    assert document["engine"] == "good"
    assert "good has the best auc" in document["selected"]["reason"]
    assert "(test rows;" in document["selected"]["reason"]  # no pooled rows with the copy
    rows = {row["engine"]: row for row in document["candidates"]}
    assert rows["good"]["test_auc"] > rows["worse"]["test_auc"] + 0.03
    assert rows["worse"]["p_better_than_selected"] < 0.1
    assert rows["good"]["robustness_passed"] is True
    assert registry.package_hash(out / "model") == registry.package_hash(good)
    assert document["comparison"]["promote"] is True  # no champion yet
    assert {"brier", "ece", "auc"} <= set(document["metrics"])
    assert document["validation"]["good"]["cv"]["sd"] is not None
    assert json.loads((out / "evaluation.json").read_text())["selected"]["engine"] == "good"
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 4 and "worse" in page

    run = mlflow.get_run(document["mlflow_run_id"])
    assert run.data.tags["autokfp.selected_engine"] == "good"
    assert run.data.metrics["good.test_auc"] == pytest.approx(rows["good"]["test_auc"])
    client = registry.configure()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"leaderboard.json", "leaderboard.csv", "evaluation.json", "plots",
            "candidates"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"roc.png", "precision_recall.png", "calibration.png",
            "confusion_matrix.png"} <= plots
    losers = {a.path for a in client.list_artifacts(run.info.run_id, "candidates")}
    assert losers == {"candidates/worse"}


def test_a_failed_engine_falls_back_to_the_other_leader(autokfp_home, trained_package,
                                                        tmp_path) -> None:
    config = _config(trained_package)
    failed = tmp_path / "autokeras-model"
    write_candidate_marker(failed, "autokeras", "failed",
                           "the engine process was killed by SIGKILL (out of memory)")
    out = tmp_path / "run"
    document = _select(config, {"h2o": trained_package.paths.model, "autokeras": failed},
                       trained_package, out)
    assert document["selected"]["engine"] == "h2o"
    assert "fallback" in document["selected"]["reason"]
    assert "SIGKILL" in document["selected"]["reason"]
    rows = {row["engine"]: row for row in document["candidates"]}
    assert rows["autokeras"]["status"] == "failed"
    assert "out of memory" in rows["autokeras"]["reason"]
    registration = register_model_step.register_model(config, str(out / "model"), str(out / "evaluation.json"),
                                         str(trained_package.paths.schema),
                                         str(out / "registration.json"))
    assert registration.aliases == ["champion"]


def test_no_usable_candidate_is_a_clear_error(autokfp_home, trained_package, tmp_path) -> None:
    config = _config(trained_package)
    first, second = tmp_path / "a", tmp_path / "b"
    write_candidate_marker(first, "h2o", "failed", "H2O cluster did not start")
    write_candidate_marker(second, "autokeras", "skipped", "'autokeras' is not in engines")
    with pytest.raises(TrainingError, match="H2O cluster did not start") as info:
        _select(config, {"h2o": first, "autokeras": second}, trained_package, tmp_path / "run")
    assert "autokeras: skipped" in str(info.value)
    assert not (tmp_path / "run" / "evaluation.json").exists()


def test_winner_replaces_the_champion_only_when_better(autokfp_home, trained_package,
                                                       tmp_path) -> None:
    config = _config(trained_package)
    good = Path(trained_package.paths.model)
    worse = _degraded(good, tmp_path)
    first = _select(config, {"worse": worse}, trained_package, tmp_path / "run1")
    register_model_step.register_model(config, str(tmp_path / "run1" / "model"),
                          str(tmp_path / "run1" / "evaluation.json"),
                          str(trained_package.paths.schema), str(tmp_path / "reg1.json"))
    assert first["comparison"]["promote"] is True

    second = _select(config, {"worse": worse, "good": good}, trained_package, tmp_path / "run2")
    assert second["selected"]["engine"] == "good"
    assert second["champion"]["version"] == "1"
    assert second["champion"]["metrics"]["auc"] == pytest.approx(first["metrics"]["auc"])
    assert second["comparison"]["promote"] is True
    registered = register_model_step.register_model(config, str(tmp_path / "run2" / "model"),
                                       str(tmp_path / "run2" / "evaluation.json"),
                                       str(trained_package.paths.schema),
                                       str(tmp_path / "reg2.json"))
    assert registered.aliases == ["champion"] and registered.replaced_version == "1"
    client = registry.configure()
    assert str(client.get_model_version_by_alias("churn-test", "previous").version) == "1"

    # a third run whose best candidate is the degraded one is kept as challenger
    third = _select(config, {"worse": _degraded(good, tmp_path / "again")}, trained_package,
                    tmp_path / "run3")
    assert third["comparison"]["promote"] is False


def test_leaders_of_both_engines_compete_on_the_same_rows(autokfp_home, trained_package,
                                                          keras_package, tmp_path) -> None:
    config = _config(trained_package)
    document = _select(config, {"h2o": trained_package.paths.model,
                                "autokeras": keras_package.paths.model},
                       trained_package, tmp_path / "run")
    rows = {row["engine"]: row for row in document["candidates"]}
    assert rows["h2o"]["test_rows"] == rows["autokeras"]["test_rows"] == document["test_rows"]
    assert {rows["h2o"]["status"], rows["autokeras"]["status"]} == {"trained"}
    best = max(rows.values(), key=lambda row: row["test_auc"])
    assert document["selected"]["engine"] == best["engine"]
    for engine in ("h2o", "autokeras"):
        report = document["validation"][engine]
        assert report["robustness"]["passed"], report["robustness"]
        assert 0.0 <= report["calibration"]["brier"] <= 1.0
        assert report["cv"]["method"]


def test_candidates_are_ranked_on_out_of_sample_training_rows_plus_test_rows(
        autokfp_home, trained_package, tmp_path) -> None:
    """The test split alone is noisy on small tables; the engines' out-of-fold predictions
    over the training rows are not. A candidate that looks better on the test rows but is
    far worse out of sample on the training rows loses."""
    import numpy as np

    config = _config(trained_package)
    good = Path(trained_package.paths.model)
    stored = np.load(good / "artifacts" / "engine" / HOLDOUT_FILE)
    assert len(stored["positions"]) == len(pd.read_parquet(trained_package.paths.train))
    # "overfit": the same model on the test rows, but out of sample on the training rows
    # its scores are mostly noise (what a model that memorised its training rows shows)
    overfit = tmp_path / "overfit"
    shutil.copytree(good, overfit)
    rng = np.random.default_rng(0)
    noisy = stored["scores"].copy()
    noisy[:, 1] = np.clip(0.5 * noisy[:, 1] + 0.5 * rng.random(len(noisy)), 0, 1)
    noisy[:, 0] = 1 - noisy[:, 1]
    np.savez_compressed(overfit / "artifacts" / "engine" / HOLDOUT_FILE,
                        positions=stored["positions"], scores=noisy, truth=stored["truth"])
    document = _select(config, {"overfit": overfit, "good": good}, trained_package,
                       tmp_path / "run")
    rows = {row["engine"]: row for row in document["candidates"]}
    assert rows["overfit"]["test_auc"] == pytest.approx(rows["good"]["test_auc"])
    assert document["selected"]["engine"] == "good"
    estimate = document["estimate"]
    train_rows = len(stored["positions"])
    assert estimate["holdout_rows"] == train_rows
    assert estimate["rows"] == train_rows + document["test_rows"]
    assert estimate["ci_low"] < estimate["value"] < estimate["ci_high"]
    assert estimate["ci_high"] - estimate["ci_low"] < 0.1
    assert rows["good"]["estimate_auc"] > rows["overfit"]["estimate_auc"] + 0.05
    assert rows["overfit"]["p_better_than_selected"] < 0.05
    assert "out-of-sample training rows" in document["selected"]["reason"]


def test_test_rows_streamed_from_parquet_select_as_the_whole_frame(trained_package,
                                                                 tmp_path) -> None:
    """The evaluate step scores the test rows batch by batch (``TestRows``): the same
    predictions, metrics and robustness checks as on the whole frame, with two candidates
    (one degraded) and batches that straddle the file's row groups."""
    from autokfp.modeling.feature_file import TestRows
    from autokfp.modeling.selection import load_candidates, select_model

    spec = _config(trained_package).selection
    good = Path(trained_package.paths.model)
    paths = {"good": str(good), "worse": str(_degraded(good, tmp_path))}
    test = pd.read_parquet(trained_package.paths.test)
    test.to_parquet(tmp_path / "test.parquet", index=False, row_group_size=70)
    whole = select_model(load_candidates(paths), test, spec, seed=3, robustness_rows=50)
    streamed = select_model(load_candidates(paths),
                            TestRows(path=tmp_path / "test.parquet", batch_rows=37), spec,
                            seed=3, robustness_rows=50)
    assert streamed.selected.engine == whole.selected.engine == "good"
    for mine, theirs in zip(streamed.candidates, whole.candidates):
        pd.testing.assert_frame_equal(mine.predictions, theirs.predictions)
        assert mine.metrics == theirs.metrics and mine.metrics
        assert mine.robustness == theirs.robustness and mine.robustness["rows"] == 50
        assert mine.estimate == theirs.estimate
    assert streamed.comparison == whole.comparison
