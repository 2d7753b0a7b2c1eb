"""The ``autonomous-training`` pipeline.

discover → profile (quality gate) → engineer features → train (H2O AutoML, GPU) →
evaluate (vs. the champion, same test rows) → register (MLflow alias) → deploy (KServe).
"""


from kfp import dsl

from components import (
    deploy_model,
    discover,
    engineer_features,
    evaluate_model,
    profile,
    register_model,
    train_h2o_automl,
)
from pipelines.cluster import ClusterOptions, configure_task, configure_training_task

PIPELINE_NAME = "autonomous-training"

# Shown in the Kubeflow UI as the default run parameter: replace the bucket and dataset.
EXAMPLE_CONFIG = {
    "name": "churn",
    "sources": [{"name": "lake", "kind": "gcs", "uri": "gs://REPLACE-WITH-YOUR-BUCKET/churn"}],
    "training": {"dataset": "lake/customers.parquet", "target": "churned"},
    "budget": {"max_runtime_secs": 600, "max_models": 30},
}


def build_autonomous_training(options: "ClusterOptions | None" = None):
    """Build the pipeline with ``options`` (cluster settings; ignored by kfp.local)."""
    options = options or ClusterOptions()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Autonomous training: discover, validate, engineer features, train with H2O "
                    "AutoML on a GPU node, evaluate against the champion, register in MLflow, "
                    "deploy to KServe.",
    )
    def autonomous_training(config: dict = EXAMPLE_CONFIG) -> dsl.Artifact:
        found = configure_task(discover(config=config), options)
        found.set_display_name("discover data")
        checked = configure_task(profile(config=config, dataset=found.outputs["dataset"],
                                         schema=found.outputs["schema"]), options)
        checked.set_display_name("profile + quality gate")
        features = configure_task(engineer_features(config=config, dataset=found.outputs["dataset"],
                                                    schema=found.outputs["schema"]), options, caching=True)
        features.after(checked)
        features.set_display_name("engineer features")
        trained = configure_training_task(
            train_h2o_automl(config=config, train=features.outputs["train"],
                             plan=features.outputs["plan"]), options)
        trained.set_display_name("train H2O AutoML (GPU)")
        trained.set_retry(num_retries=1, backoff_duration="60s")
        evaluated = configure_task(evaluate_model(config=config, model=trained.outputs["model"],
                                                  test=features.outputs["test"]), options)
        evaluated.set_display_name("evaluate vs champion")
        registered = configure_task(register_model(config=config, model=trained.outputs["model"],
                                                   evaluation=evaluated.outputs["evaluation"],
                                                   schema=found.outputs["schema"]), options)
        registered.set_display_name("register in MLflow")
        deployed = configure_task(deploy_model(config=config,
                                               registration=registered.outputs["registration"],
                                               test=features.outputs["test"]), options)
        deployed.set_display_name("deploy to KServe")
        return registered.outputs["registration"]

    return autonomous_training


autonomous_training = build_autonomous_training()
