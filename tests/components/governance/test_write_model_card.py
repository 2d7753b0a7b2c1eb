"""The ``write_model_card`` component: the card, the compliance report and its verdict."""

from __future__ import annotations

from pathlib import Path

from kfp.dsl import Artifact, Markdown

from autokfp.steps import evaluate_model as evaluate_model_step
from autokfp.steps import register_model as register_model_step
from components import write_model_card
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
    verdict, deployable = write_model_card.python_func(
        config=inputs["config"], model=model,
        registration=artifact(Artifact, tmp_path, "registration", registration),
        evaluation=artifact(Artifact, tmp_path, "evaluation", evaluation),
        schema=inputs["schema"], fairness=checked[2]["summary"],
        explanation=explained[1]["explanation"], card=card, compliance=compliance,
        compliance_summary=compliance_summary)
    assert verdict == "pass" and deployable is True
    assert compliance_summary.metadata["verdict"] == "pass"
    text = Path(compliance.path).read_text()
    assert f"fairness_report: {checked[2]['summary'].uri}" in text  # evidence links
    assert "# Model card: churn-test v1" in Path(card.path).read_text()
