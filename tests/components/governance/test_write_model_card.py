"""The ``write_model_card`` component: the card, the compliance report and its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Markdown, Metrics, Model

from autokfp.components import (
    bias_check,
    check_data_bias,
    evaluate_model,
    explain_model,
    register_model,
    write_model_card,
)
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


def test_the_governance_components_run_alone_without_a_config_or_a_schema(home, inputs,
                                                                           tmp_path) -> None:
    """As in someone else's pipeline: no run config, no schema from discover; the typed
    inputs carry what the config would, the training rows are profiled for sensitive tags."""
    # check_data_bias: no schema, so the training rows are profiled: age and gender are
    # recognised by name, as discover's schema has them (test_check_data_bias)
    summary = artifact(Artifact, tmp_path, "data-summary")
    verdict = check_data_bias.python_func(train=inputs["train"], plan=inputs["plan"],
                                          report=artifact(Markdown, tmp_path, "data-report"),
                                          summary=summary)
    assert verdict in ("pass", "warn")
    assert summary.metadata["sensitive_columns"] == "age,gender"
    # the typed input narrows them
    narrowed = artifact(Artifact, tmp_path, "data-summary-2")
    check_data_bias.python_func(train=inputs["train"], plan=inputs["plan"],
                                sensitive_columns="gender", summary=narrowed,
                                report=artifact(Markdown, tmp_path, "data-report-2"))
    assert narrowed.metadata["sensitive_columns"] == "gender"

    # bias_check: gender alone (as the package's checked fixture), the name typed
    checked = {"checked_model": artifact(Model, tmp_path, "checked_model"),
               "report": artifact(Markdown, tmp_path, "report"),
               "summary": artifact(Artifact, tmp_path, "summary"),
               "metrics": artifact(Metrics, tmp_path, "metrics")}
    verdict, _ = bias_check.python_func(model=inputs["model"], train=inputs["train"],
                                        test=inputs["test"], sensitive_columns="gender",
                                        model_name="churn-alone", **checked)
    assert verdict in ("pass", "mitigated")
    fairness = json.loads(Path(checked["summary"].path).read_text())
    assert fairness["model"] == "churn-alone" and fairness["sensitive_columns"] == ["gender"]

    # explain_model: the typed row counts; SHAP skipped by shap_rows=0
    explained = {"explanation": artifact(Artifact, tmp_path, "explanation"),
                 "report": artifact(HTML, tmp_path, "explain-report"),
                 "plots": artifact(Artifact, tmp_path, "plots")}
    top = explain_model.python_func(model=checked["checked_model"], train=inputs["train"],
                                    test=inputs["test"], explain_rows=60, shap_rows=0,
                                    model_name="churn-alone", **explained)
    assert top
    explanation = json.loads(Path(explained["explanation"].path).read_text())
    assert explanation["permutation_importance"]["rows"] == 60
    assert explanation["model"] == "churn-alone"
    assert explanation["shap"]["status"] != "run"

    # evaluate -> register (no schema: the training rows profiled) -> the model card
    evaluation = artifact(Artifact, tmp_path, "evaluation")
    evaluate_model.python_func(model=checked["checked_model"], test=inputs["test"],
                               model_name="churn-alone", evaluation=evaluation,
                               metrics=artifact(Metrics, tmp_path, "eval-metrics"),
                               classification=artifact(ClassificationMetrics, tmp_path, "c"))
    registration = artifact(Artifact, tmp_path, "registration")
    version = register_model.python_func(model=checked["checked_model"], evaluation=evaluation,
                                         dataset=inputs["train"], model_name="churn-alone",
                                         registration=registration)
    assert version == "1"
    card = artifact(Markdown, tmp_path, "card")
    compliance_summary = artifact(Artifact, tmp_path, "compliance_summary")
    verdict, deployable = write_model_card.python_func(
        model=checked["checked_model"], registration=registration, evaluation=evaluation,
        schema=_profiled_schema(tmp_path, inputs), fairness=checked["summary"],
        explanation=explained["explanation"], card=card,
        compliance=artifact(Markdown, tmp_path, "compliance"),
        compliance_summary=compliance_summary,
        card_metadata=artifact(Markdown, tmp_path, "card_metadata"), require_approval=True)
    assert "# Model card: churn-alone v1" in Path(card.path).read_text()
    assert deployable is False  # approval required by the typed input, not given
    assert compliance_summary.metadata["verdict"] in ("pass", "incomplete")


def _profiled_schema(tmp_path, inputs) -> Artifact:
    """A schema of the training rows, as profile or discover would hand it on."""
    from autokfp.steps.form import standalone

    profiled = standalone(None, inputs["train"].path, None, target="churned")
    return artifact(Artifact, tmp_path, "schema-alone", Path(profiled.schema_path))
