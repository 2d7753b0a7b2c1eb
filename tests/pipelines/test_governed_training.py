"""The training graph with the governance components wired in, compiled and validated
strictly (the component faces themselves: tests/components/governance/).

No ``from __future__ import annotations`` here: kfp reads the pipeline's annotations as
real types.
"""

import yaml
from kfp import compiler, dsl

from autokfp.components import (
    BY_STAGE,
    bias_check,
    check_data_bias,
    deploy_model,
    discover,
    engineer_features,
    evaluate_model,
    explain_model,
    profile,
    register_model,
    train_model,
    write_model_card,
)
from autokfp.edge.compilation import validate_pipeline_yaml
from autokfp.pipelines.cluster import ClusterOptions, configure_task, configure_training_task


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
        trained = configure_training_task(train_model(
            config=config, engine="h2o", train=features.outputs["train"],
            plan=features.outputs["plan"]), options)
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
    for component in BY_STAGE["governance"]:
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
