"""KFP component: train with H2O AutoML (GPU in the cluster, CPU locally)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("training"), install_kfp_package=False)
def train_h2o_automl(
    config: dict,
    train: Input[Dataset],
    plan: Input[Artifact],
    model: Output[Model],
    leaderboard: Output[HTML],
    metrics: Output[Metrics],
):
    """Train H2O AutoML within ``config.budget`` and package the leader as an MLflow pyfunc.

    The leader is exported as a MOJO and wrapped, with the feature plan, in one MLflow
    pyfunc model folder that scores raw rows in-process (no H2O cluster needed to serve).
    XGBoost uses the node's GPU when one is present.

    Args:
        config: The run configuration (``budget``: max_runtime_secs, max_models, nfolds...).
        train: Training rows (Parquet).
        plan: The feature plan (JSON).
        model: Output. The MLflow pyfunc model folder.
        leaderboard: Output. The AutoML leaderboard as HTML.
        metrics: Output. Cross-validation metrics of the leader and training figures.

    Raises:
        TrainingError: no model could be trained or exported within the budget.

    Example:
        >>> t = train_h2o_automl(config=cfg, train=f.outputs["train"], plan=f.outputs["plan"])
    """
    import logging

    from autokfp.stages import train_stage

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = train_stage(config, train.path, plan.path, model.path, leaderboard.path, engine="h2o")
    model.metadata.update({"engine": "h2o", "leader": summary["leader"], "device": summary["device"],
                           "framework": "mlflow-pyfunc"})
    for key, value in summary.items():
        if isinstance(value, (int, float)):
            metrics.log_metric(key, value)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(train_h2o_automl, "train_h2o_automl.yaml")
