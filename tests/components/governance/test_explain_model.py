"""The ``explain_model`` component: the top features, the plots and the explanation."""

from __future__ import annotations

import json
from pathlib import Path


def test_explain_model_names_the_top_features_and_draws_the_plots(explained) -> None:
    top, outputs = explained
    assert top and len(top.split(",")) == 5
    assert sorted(p.name for p in Path(outputs["plots"].path).glob("*.png")) == [
        "local_row_0.png", "permutation_importance.png", "shap_summary.png"]
    assert outputs["explanation"].metadata["shap"] == "run"
    assert "<html" in Path(outputs["report"].path).read_text().lower()
    # it says which model it explained: here the gated package as it serves without a refit
    explanation = json.loads(Path(outputs["explanation"].path).read_text())
    assert explanation["served"]["model"] == "gated"
    assert explanation["served"]["fitted_rows"] > 0
    assert "did not see" in explanation["served"]["note"]
