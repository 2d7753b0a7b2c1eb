"""The model card's warning when a wanted refit did not happen (``meta.serving.refit``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from autokfp.governance.model_card import (
    _metrics_section,
    card_metadata,
    limitations,
    refit_warning,
)

EVALUATION = {"metrics": {"auc": 0.84}, "test_rows": 31,
              "comparison": {"reason": "no champion yet"}}


def _meta(serving: dict) -> dict:
    return {"task": "binary", "engine": "h2o", "target": "churned", "primary_metric": "auc",
            "trained_rows": 102, "fitted_rows": 102, "serving": serving}


@pytest.mark.parametrize("outcome, said", [("failed", "it failed"),
                                           ("rejected", "a check rejected it"),
                                           ("unsupported", "the engine cannot refit")])
def test_a_refit_that_was_wanted_and_did_not_happen_is_a_warning_in_the_card(outcome,
                                                                            said) -> None:
    meta = _meta({"model": "gated", "fitted_rows": 102, "refit": outcome,
                  "reason": "the refit failed (EngineFailure: the local H2O JVM ...)"})
    warning = refit_warning(meta)
    assert warning.startswith(f"**Warning: the refit on every labelled row did not happen "
                              f"({said}).**")
    assert "fitted on 102 rows" in warning and "the local H2O JVM" in warning
    assert warning in _metrics_section(EVALUATION, {}, meta)
    assert warning in limitations(meta, SimpleNamespace(input_columns=[]), {}, {}, EVALUATION)
    schema = SimpleNamespace(dataset_id="local/churn.csv", fingerprint="abc")
    front = card_metadata(name="churn", version="2", tags={}, meta=meta, schema=schema,
                          evaluation=EVALUATION)
    assert front["autokfp"]["serving"]["refit"] == outcome


@pytest.mark.parametrize("serving", [
    {"model": "gated", "fitted_rows": 102, "refit": "not wanted",
     "reason": "training.refit_for_serving is never"},
    {"model": "gated", "fitted_rows": 102, "reason": "a package from before outcomes"},
    {"model": "refit", "fitted_rows": 133, "gate_fitted_rows": 102, "reason": "fitted again"},
])
def test_no_warning_when_no_refit_was_wanted_or_the_refit_serves(serving) -> None:
    meta = _meta(serving)
    assert refit_warning(meta) == ""
    assert not any("Warning" in line for line in _metrics_section(EVALUATION, {}, meta))
