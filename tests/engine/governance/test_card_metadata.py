"""The machine-readable model card: Hugging Face model-card metadata as YAML front matter."""

from __future__ import annotations

from types import SimpleNamespace

import yaml

from autokfp.governance.model_card import card_metadata, card_with_metadata


def _metadata(task: str = "binary") -> dict:
    schema = SimpleNamespace(dataset_id="local/churn.csv", fingerprint="abc123")
    tags = {"dataset": "local/churn.csv", "dataset_urn": "urn:li:dataset:(x,churn,PROD)",
            "kfp.run_id": "run-9", "kfp.pipeline_name": "autonomous-training"}
    meta = {"task": task, "engine": "h2o", "target": "churned", "primary_metric": "auc"}
    evaluation = {"metrics": {"auc": 0.84, "logloss": 0.41, "broken": float("nan")}}
    return card_metadata(name="churn", version="3", tags=tags, meta=meta, schema=schema,
                         evaluation=evaluation)


def test_the_card_parses_back_as_front_matter_and_markdown() -> None:
    text = card_with_metadata("# Model card: churn v3\n\nbody", _metadata())
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    parsed = yaml.safe_load(front)
    assert body.strip().startswith("# Model card: churn v3")
    assert parsed["pipeline_tag"] == "tabular-classification"
    assert parsed["datasets"] == ["local/churn.csv"]
    assert parsed["metrics"] == ["auc", "logloss"]  # a NaN metric is left out
    (index,) = parsed["model-index"]
    (result,) = index["results"]
    assert result["dataset"]["type"] == "urn:li:dataset:(x,churn,PROD)"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"auc": 0.84, "logloss": 0.41}
    assert parsed["autokfp"]["kfp_run_id"] == "run-9"
    assert parsed["autokfp"]["registry_uri"] == "models:/churn/3"


def test_a_regression_card_is_tagged_tabular_regression() -> None:
    assert _metadata("regression")["pipeline_tag"] == "tabular-regression"
