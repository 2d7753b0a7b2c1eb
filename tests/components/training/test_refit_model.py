"""The ``refit_model`` component: what it writes for registration and shows the UI.

The refit itself (H2O and AutoKeras on real rows, the registry, the next run's gate) is
tested in tests/engine/training/test_refit_for_serving.py; here, the component's face with
the refit turned off: the gated package passes through, and says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from kfp.dsl import Dataset, Metrics, Model

from autokfp.components import refit_model
from tests.components import artifact


def _refit(config, evaluated, trained_package, tmp_path):
    """The component run on the evaluated package with ``config``: (result, served model
    artifact, metrics artifact)."""
    served = artifact(Model, tmp_path, "served_model")
    metrics = artifact(Metrics, tmp_path, "metrics")
    result = refit_model.python_func(
        config=config, model=evaluated["model"], evaluation=evaluated["evaluation"],
        train=artifact(Dataset, tmp_path, "train", trained_package.paths.train),
        test=evaluated["test"], served_model=served, metrics=metrics)
    return result, served, metrics


def test_with_the_refit_off_the_gated_package_is_served_and_says_why(evaluated,
                                                                      trained_package,
                                                                      tmp_path) -> None:
    config = {**evaluated["config"]}
    config["training"] = {**config["training"], "refit_for_serving": "never"}
    result, served, metrics = _refit(config, evaluated, trained_package, tmp_path)
    assert result == "gated"
    assert served.metadata["served"] == "gated"
    assert "refit_for_serving is never" in served.metadata["serving_reason"]
    meta = json.loads(Path(served.path, "artifacts", "meta.json").read_text())
    assert meta["serving"]["model"] == "gated"
    assert meta["serving"]["fitted_rows"] == meta["fitted_rows"]
    assert metrics.metadata["gate_fitted_rows"] == metrics.metadata["served_fitted_rows"] \
        == meta["fitted_rows"]
    assert Path(served.path, "MLmodel").is_file()
    assert not Path(served.path, "gate_model").exists()


def test_a_refit_figure_that_is_not_a_number_is_left_out_of_the_metrics() -> None:
    from autokfp.steps.refit_model import Refitted

    figures = {"auc_gate": 0.81, "auc_refit": float("nan"), "refit_seconds": 12.5}
    published = Refitted("gated", "the refit was rejected", "h2o", 100, 100, figures).publication()
    assert published.metrics == {"gate_fitted_rows": 100.0, "served_fitted_rows": 100.0,
                                 "auc_gate": 0.81, "refit_seconds": 12.5}


def test_a_refit_whose_h2o_jvm_does_not_start_serves_the_gated_model_and_says_why(
        evaluated, trained_package, tmp_path, monkeypatch, caplog) -> None:
    """The refit is wanted, but its H2O JVM is still starting at the limit (a slow node):
    the gated package serves, and the run's log, the UI's metadata, the package, the audit
    trail and the model card all say the refit did not happen, why, and what to raise."""
    from autokfp.governance import audit
    from autokfp.governance.model_card import limitations, refit_warning
    from tests.engine.training.test_h2o_start import NEVER, _java_home, _launched

    home, launches = _java_home(tmp_path, NEVER)  # the refit's child inherits it
    monkeypatch.setenv("H2O_JAVA_HOME", str(home))
    config = {**evaluated["config"]}
    config["training"] = {**config["training"], "refit_for_serving": "always"}
    config["engines"] = {**config["engines"],
                         "h2o": {**config["engines"]["h2o"], "start_timeout_secs": 10}}
    served = artifact(Model, tmp_path, "served_model")
    metrics = artifact(Metrics, tmp_path, "metrics")
    with caplog.at_level("WARNING", logger="autokfp.steps.refit_model"):
        result = refit_model.python_func(
            config=config, model=evaluated["model"], evaluation=evaluated["evaluation"],
            train=artifact(Dataset, tmp_path, "train", trained_package.paths.train),
            test=evaluated["test"], served_model=served, metrics=metrics)
    assert result == "gated"
    assert _launched(launches) == 1  # stopped once, at the limit: not started again
    reason = served.metadata["serving_reason"]
    assert "was still starting after" in reason and "engines.h2o.start_timeout_secs" in reason
    assert served.metadata["refit"] == "failed"
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "the refit on every labelled row did not happen (failed)" in warned, warned
    assert "raise engines.h2o.start_timeout_secs" in warned
    meta = json.loads(Path(served.path, "artifacts", "meta.json").read_text())
    assert meta["serving"]["model"] == "gated" and meta["serving"]["refit"] == "failed"
    assert not Path(served.path, "gate_model").exists()
    (event,) = audit.events_for("churn-test", None, kind="model.refit_rejected")
    assert event["details"]["outcome"] == "failed"
    assert "engines.h2o.start_timeout_secs" in event["details"]["reason"]
    warning = refit_warning(meta)
    assert warning.startswith("**Warning: the refit on every labelled row did not happen "
                              "(it failed).**"), warning
    assert "engines.h2o.start_timeout_secs" in warning
    assert warning in limitations(meta, SimpleNamespace(input_columns=[]), {}, {}, {})


def test_over_refit_max_rows_a_refit_estimated_over_refit_max_secs_is_not_made_and_says_why(
        evaluated, trained_package, tmp_path) -> None:
    """A table over ``training.refit_max_rows`` under ``auto`` is refitted only when its
    estimate is within ``training.refit_max_secs``: here 1 s, under the estimate's fixed
    start-and-check share alone, so the gated model serves, and the reason, the UI's
    metrics and the package say by what estimate."""
    from autokfp.steps.refit_model import REFIT_OVERHEAD_SECS

    config = {**evaluated["config"]}
    config["training"] = {**config["training"], "refit_for_serving": "auto",
                          "refit_max_rows": 100, "refit_max_secs": 1}
    result, served, metrics = _refit(config, evaluated, trained_package, tmp_path)
    assert result == "gated"
    reason = served.metadata["serving_reason"]
    assert "over training.refit_max_rows (100)" in reason, reason
    assert "over training.refit_max_secs (1s)" in reason and "estimated at" in reason, reason
    assert served.metadata["refit"] == "not wanted"
    assert metrics.metadata["refit_estimate_seconds"] > REFIT_OVERHEAD_SECS
    meta = json.loads(Path(served.path, "artifacts", "meta.json").read_text())
    assert meta["serving"]["model"] == "gated" and meta["serving"]["reason"] == reason
