"""The ``autonomous-training`` pipeline.

discover → profile (quality gate) → engineer features → train H2O AutoML ∥ train AutoKeras
(each on a GPU node, no dependency between them) → select (every candidate and the champion
on the same test rows) → register the winner (MLflow alias) → deploy (KServe).
"""


from kfp import dsl

from components import (
    deploy_model,
    discover,
    engineer_features,
    profile,
    register_model,
    select_model,
    train_autokeras,
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
        description="Autonomous training: discover, validate, engineer features, train H2O "
                    "AutoML and AutoKeras in parallel on GPU nodes, select the best candidate "
                    "against the champion on the same test rows, register it in MLflow, "
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
        # One task per engine, both from the same features and with no dependency between
        # them: in the cluster they run at the same time, each on its own GPU node; kfp.local
        # runs them one after the other. An engine that fails still completes its task with a
        # "failed candidate" marker, so selection falls back to the other engine's leader.
        h2o = configure_training_task(
            train_h2o_automl(config=config, train=features.outputs["train"],
                             plan=features.outputs["plan"]), options)
        h2o.set_display_name("train H2O AutoML (GPU)")
        h2o.set_retry(num_retries=1, backoff_duration="60s")
        keras = configure_training_task(
            train_autokeras(config=config, train=features.outputs["train"],
                            plan=features.outputs["plan"]), options)
        keras.set_display_name("train AutoKeras (GPU)")
        keras.set_retry(num_retries=1, backoff_duration="60s")
        selected = configure_task(select_model(config=config, h2o_model=h2o.outputs["model"],
                                               autokeras_model=keras.outputs["model"],
                                               test=features.outputs["test"]), options)
        selected.set_display_name("select vs champion")
        registered = configure_task(register_model(config=config, model=selected.outputs["model"],
                                                   evaluation=selected.outputs["evaluation"],
                                                   schema=found.outputs["schema"]), options)
        registered.set_display_name("register in MLflow")
        deployed = configure_task(deploy_model(config=config,
                                               registration=registered.outputs["registration"],
                                               test=features.outputs["test"]), options)
        deployed.set_display_name("deploy to KServe")
        return registered.outputs["registration"]

    return autonomous_training


autonomous_training = build_autonomous_training()
