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
) -> str:
    """Train H2O AutoML within ``config.budget`` and package the leader as an MLflow pyfunc.

    The leader is exported as a MOJO and wrapped, with the feature plan, in one MLflow
    pyfunc model folder that scores raw rows in-process (no H2O cluster needed to serve).
    XGBoost uses the node's GPU when one is present. H2O runs in a child process: if it
    raises, is killed (out of memory) or overruns its time, the task still succeeds and
    ``model`` holds a ``candidate.json`` marker with ``status: failed`` and the reason, so
    selection falls back to the other engines' leaders. With ``h2o`` left out of
    ``config.engines`` the marker says ``skipped``.

    Args:
        config: The run configuration (``budget``: max_runtime_secs, max_models, nfolds...).
        train: Training rows (Parquet).
        plan: The feature plan (JSON).
        model: Output. The MLflow pyfunc model folder (or a failed/skipped candidate marker).
        leaderboard: Output. The AutoML leaderboard as HTML.
        metrics: Output. Cross-validation metrics of the leader and training figures.

    Returns:
        The candidate's status: ``trained``, ``failed`` or ``skipped``.

    Example:
        >>> t = train_h2o_automl(config=cfg, train=f.outputs["train"], plan=f.outputs["plan"])
    """
    from autokfp.steps.train_model import train_component

    return train_component(config, train, plan, model, leaderboard, metrics, engine="h2o")


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(train_h2o_automl, "train_h2o_automl.yaml")
