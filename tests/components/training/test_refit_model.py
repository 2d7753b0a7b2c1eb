"""The ``refit_model`` component: what it writes for registration and shows the UI.

The refit itself (H2O and AutoKeras on real rows, the registry, the next run's gate) is
tested in tests/engine/training/test_refit_for_serving.py; here, the component's face with
the refit turned off: the gated package passes through, and says why.
"""

from __future__ import annotations

import json
from pathlib import Path

from kfp.dsl import Dataset, Metrics, Model

from autokfp.components import refit_model
from tests.components import artifact


def test_with_the_refit_off_the_gated_package_is_served_and_says_why(evaluated,
                                                                      trained_package,
                                                                      tmp_path) -> None:
    config = {**evaluated["config"]}
    config["training"] = {**config["training"], "refit_for_serving": "never"}
    served = artifact(Model, tmp_path, "served_model")
    metrics = artifact(Metrics, tmp_path, "metrics")
    result = refit_model.python_func(
        config=config, model=evaluated["model"], evaluation=evaluated["evaluation"],
        train=artifact(Dataset, tmp_path, "train", trained_package.paths.train),
        test=evaluated["test"], served_model=served, metrics=metrics)
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
