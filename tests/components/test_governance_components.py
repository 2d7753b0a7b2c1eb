"""The governance components: called as plain Python (``.python_func``) on the session's
trained model, and wired into the training graph (compiled and validated strictly).

No ``from __future__ import annotations`` here: kfp reads the pipeline's annotations as
real types.
"""

import json
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model

from autokfp.edge.compilation import validate_pipeline_yaml
from autokfp.settings import Settings
from autokfp.steps import evaluate_model as evaluate_model_step
from autokfp.steps import register_model as register_model_step
from components import (
    deploy_model,
    discover,
    engineer_features,
    evaluate_model,
    profile,
    register_model,
    train_h2o_automl,
)
from components.governance import (
    GOVERNANCE_COMPONENTS,
    bias_check,
    check_data_bias,
    explain_model,
    write_model_card,
)
from pipelines.cluster import ClusterOptions, configure_task, configure_training_task
from tests.conftest import small_config


def _artifact(cls, folder: Path, name: str, path: Path | None = None):
    artifact = cls(name=name, uri=str(path or folder / name))
    return artifact


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("governance-components-home")
        for name in ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AUTOKFP_MLFLOW_ARTIFACT_ROOT",
                     "AUTOKFP_PIPELINE_ROOT"):
            patch.delenv(name, raising=False)
        patch.setenv("AUTOKFP_HOME", str(root))
        patch.setenv("DATAHUB_TELEMETRY_ENABLED", "false")
        settings = Settings.from_env()
        settings.ensure_local_dirs()
        yield settings


@pytest.fixture(scope="module")
def inputs(trained_package):
    paths = trained_package.paths
    folder = paths.model.parent
    return {
        "config": small_config(trained_package.folder,
                               governance={"shap_rows": 2, "explain_rows": 100}).to_dict(),
        "train": _artifact(Dataset, folder, "train", paths.train),
        "test": _artifact(Dataset, folder, "test", paths.test),
        "plan": _artifact(Artifact, folder, "plan", paths.plan),
        "schema": _artifact(Artifact, folder, "schema", paths.schema),
        "model": _artifact(Model, folder, "model", paths.model),
    }


@pytest.fixture(scope="module")
def checked(home, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bias-check")
    outputs = {"checked_model": _artifact(Model, out, "checked_model"),
               "report": _artifact(Markdown, out, "report"),
               "summary": _artifact(Artifact, out, "summary"),
               "metrics": _artifact(Metrics, out, "metrics")}
    verdict, mitigated = bias_check.python_func(
        config=inputs["config"], model=inputs["model"], train=inputs["train"], test=inputs["test"],
        schema=inputs["schema"], **outputs)
    return verdict, mitigated, outputs


def test_check_data_bias_writes_its_report(home, inputs, tmp_path) -> None:
    report, summary = _artifact(Markdown, tmp_path, "report"), _artifact(Artifact, tmp_path, "s")
    verdict = check_data_bias.python_func(config=inputs["config"], train=inputs["train"],
                                          plan=inputs["plan"], schema=inputs["schema"],
                                          report=report, summary=summary)
    assert verdict in ("pass", "warn")
    assert summary.metadata["sensitive_columns"] == "gender"
    assert json.loads(Path(summary.path).read_text())["data"]["gender"]["groups"]


def test_bias_check_outputs_the_package_to_register(checked) -> None:
    verdict, mitigated, outputs = checked
    assert verdict == "mitigated" and mitigated is True
    assert (Path(outputs["checked_model"].path) / "MLmodel").exists()
    assert outputs["checked_model"].metadata["fairness"] == "mitigated"
    assert "before_gender_demographic_parity_ratio" in outputs["metrics"].metadata
    assert outputs["summary"].metadata["verdict"] == "mitigated"
    assert "## Mitigation" in Path(outputs["report"].path).read_text()


def test_explain_model_and_write_model_card(home, inputs, checked, tmp_path) -> None:
    model = checked[2]["checked_model"]
    explanation = _artifact(Artifact, tmp_path, "explanation")
    report = _artifact(HTML, tmp_path, "report")
    plots = _artifact(Artifact, tmp_path, "plots")
    top = explain_model.python_func(config=inputs["config"], model=model, train=inputs["train"],
                                    test=inputs["test"], explanation=explanation, report=report,
                                    plots=plots)
    assert top and len(top.split(",")) == 5
    assert sorted(p.name for p in Path(plots.path).glob("*.png")) == [
        "local_row_0.png", "permutation_importance.png", "shap_summary.png"]
    assert explanation.metadata["shap"] == "run"

    evaluation = tmp_path / "evaluation.json"
    registration = tmp_path / "registration.json"
    evaluate_model_step.evaluate_model(inputs["config"], model.path, inputs["test"].path, str(evaluation))
    register_model_step.register_model(inputs["config"], model.path, str(evaluation), inputs["schema"].path,
                          str(registration))
    card = _artifact(Markdown, tmp_path, "card")
    compliance = _artifact(Markdown, tmp_path, "compliance")
    compliance_summary = _artifact(Artifact, tmp_path, "compliance_summary")
    verdict, deployable = write_model_card.python_func(
        config=inputs["config"], model=model,
        registration=_artifact(Artifact, tmp_path, "registration", registration),
        evaluation=_artifact(Artifact, tmp_path, "evaluation", evaluation),
        schema=inputs["schema"], fairness=checked[2]["summary"], explanation=explanation,
        card=card, compliance=compliance, compliance_summary=compliance_summary)
    assert verdict == "pass" and deployable is True
    assert compliance_summary.metadata["verdict"] == "pass"
    text = Path(compliance.path).read_text()
    assert f"fairness_report: {checked[2]['summary'].uri}" in text  # evidence links
    assert "# Model card: churn-test v1" in Path(card.path).read_text()


def build_governed_training(options: ClusterOptions | None = None):
    """The training graph with the governance steps wired in (what pipelines/training uses)."""
    options = options or ClusterOptions()

    @dsl.pipeline(name="autonomous-training-governed")
    def governed(config: dict) -> dsl.Artifact:
        found = configure_task(discover(config=config), options)
        checked = configure_task(profile(config=config, dataset=found.outputs["dataset"],
                                         schema=found.outputs["schema"]), options)
        features = configure_task(engineer_features(config=config, dataset=found.outputs["dataset"],
                                                    schema=found.outputs["schema"]), options)
        features.after(checked)
        data_bias = configure_task(check_data_bias(
            config=config, train=features.outputs["train"], plan=features.outputs["plan"],
            schema=found.outputs["schema"]), options)
        data_bias.set_display_name("fairness of the training data")
        trained = configure_training_task(train_h2o_automl(
            config=config, train=features.outputs["train"], plan=features.outputs["plan"]), options)
        bias = configure_task(bias_check(
            config=config, model=trained.outputs["model"], train=features.outputs["train"],
            test=features.outputs["test"], schema=found.outputs["schema"]), options)
        bias.set_display_name("bias check + mitigation")
        evaluated = configure_task(evaluate_model(config=config, model=bias.outputs["checked_model"],
                                                  test=features.outputs["test"]), options)
        explained = configure_task(explain_model(
            config=config, model=bias.outputs["checked_model"], train=features.outputs["train"],
            test=features.outputs["test"]), options)
        explained.set_display_name("explain")
        registered = configure_task(register_model(
            config=config, model=bias.outputs["checked_model"],
            evaluation=evaluated.outputs["evaluation"], schema=found.outputs["schema"]), options)
        registered.after(explained)
        card = configure_task(write_model_card(
            config=config, model=bias.outputs["checked_model"],
            registration=registered.outputs["registration"],
            evaluation=evaluated.outputs["evaluation"], schema=found.outputs["schema"],
            fairness=bias.outputs["summary"], explanation=explained.outputs["explanation"]), options)
        card.set_display_name("model card + compliance report")
        deployed = configure_task(deploy_model(config=config,
                                               registration=registered.outputs["registration"],
                                               test=features.outputs["test"]), options)
        deployed.after(card)
        return registered.outputs["registration"]

    return governed


def test_the_governed_training_graph_compiles_strictly(tmp_path) -> None:
    target = tmp_path / "governed.yaml"
    compiler.Compiler().compile(build_governed_training(), str(target))
    spec = validate_pipeline_yaml(target)
    tasks = spec["root"]["dag"]["tasks"]
    for component in GOVERNANCE_COMPONENTS:
        assert component.name in tasks
    evaluate = tasks["evaluate-model"]
    assert (evaluate["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
            == {"producerTask": "bias-check", "outputArtifactKey": "checked_model"})
    register = tasks["register-model"]
    assert (register["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
            == {"producerTask": "bias-check", "outputArtifactKey": "checked_model"})
    assert "explain-model" in register["dependentTasks"]
    assert "write-model-card" in tasks["deploy-model"]["dependentTasks"]
    executors = next(yaml.safe_load_all(target.read_text()))["deploymentSpec"]["executors"]
    for name in ("exec-bias-check", "exec-explain-model", "exec-write-model-card"):
        assert executors[name]["container"]["image"].rsplit("/", 1)[1].startswith("autokfp-runtime:")


@pytest.mark.parametrize("component", GOVERNANCE_COMPONENTS, ids=lambda c: c.name)
def test_each_component_compiles_alone(component, tmp_path) -> None:
    target = tmp_path / f"{component.name}.yaml"
    compiler.Compiler().compile(component, str(target))
    validate_pipeline_yaml(target)
    readme = Path(component.python_func.__code__.co_filename).with_name("README.md").read_text()
    for name in component.component_spec.inputs:
        assert f"`{name}`" in readme
