"""The ``write_model_card`` component: the card, the compliance report and its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp.dsl import Artifact, Markdown

from autokfp.components import write_model_card
from autokfp.steps import evaluate_model as evaluate_model_step
from autokfp.steps import register_model as register_model_step
from tests.components import artifact


def test_write_model_card_links_the_evidence(home, inputs, checked, explained, tmp_path) -> None:
    model = checked[2]["checked_model"]
    evaluation = tmp_path / "evaluation.json"
    registration = tmp_path / "registration.json"
    evaluate_model_step.evaluate_model(inputs["config"], model.path, inputs["test"].path,
                                       str(evaluation))
    register_model_step.register_model(inputs["config"], model.path, str(evaluation),
                                       inputs["schema"].path, str(registration))
    card = artifact(Markdown, tmp_path, "card")
    compliance = artifact(Markdown, tmp_path, "compliance")
    compliance_summary = artifact(Artifact, tmp_path, "compliance_summary")
    card_metadata = artifact(Markdown, tmp_path, "card_metadata")
    verdict, deployable = write_model_card.python_func(
        config=inputs["config"], model=model,
        registration=artifact(Artifact, tmp_path, "registration", registration),
        evaluation=artifact(Artifact, tmp_path, "evaluation", evaluation),
        schema=inputs["schema"], fairness=checked[2]["summary"],
        explanation=explained[1]["explanation"], card=card, compliance=compliance,
        compliance_summary=compliance_summary, card_metadata=card_metadata)
    assert verdict == "pass" and deployable is True
    assert compliance_summary.metadata["verdict"] == "pass"
    text = Path(compliance.path).read_text()
    assert f"fairness_report: {checked[2]['summary'].uri}" in text  # evidence links
    assert "# Model card: churn-test v1" in Path(card.path).read_text()

    # the machine-readable card: Hugging Face model-card metadata as YAML front matter
    text = Path(card_metadata.path).read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    metadata = yaml.safe_load(front)
    assert "# Model card: churn-test v1" in body
    assert metadata["pipeline_tag"] == "tabular-classification"
    assert metadata["datasets"] and metadata["library_name"] == "mlflow"
    (result,) = metadata["model-index"][0]["results"]
    assert result["task"]["type"] == "tabular-classification"
    auc = {m["type"]: m["value"] for m in result["metrics"]}["auc"]
    evaluated = json.loads(evaluation.read_text())["metrics"]["auc"]
    assert auc == pytest.approx(evaluated) and 0.5 < auc <= 1.0
    assert metadata["autokfp"]["registry_uri"] == "models:/churn-test/1"
