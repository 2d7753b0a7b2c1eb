"""KFP component: train with AutoKeras (GPU in the cluster, CPU locally)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("training"), install_kfp_package=False)
def train_autokeras(
    config: dict,
    train: Input[Dataset],
    plan: Input[Artifact],
    model: Output[Model],
    leaderboard: Output[HTML],
    metrics: Output[Metrics],
) -> str:
    """Search a neural network with AutoKeras within ``config.budget``; package it as a pyfunc.

    AutoKeras tries up to ``budget.autokeras_max_trials`` architectures of at most
    ``budget.autokeras_epochs`` epochs each, stops a trial early after
    ``budget.autokeras_patience`` epochs without validation improvement, and stops the
    whole search at ``budget.max_runtime_secs``. The best network and its input encoding
    are packaged with the feature plan in one MLflow pyfunc. TensorFlow uses the node's GPU
    when it sees one. Like every training component it runs its engine in a child process:
    a crash, an out-of-memory kill or an overrun leaves a ``candidate.json`` marker
    (``status: failed`` and the reason) instead of failing the run, and selection falls back
    to the other engines' leaders. With ``autokeras`` left out of ``config.engines`` the
    marker says ``skipped``.

    Args:
        config: The run configuration (``budget``: max_runtime_secs, autokeras_max_trials,
            autokeras_epochs, autokeras_patience, autokeras_validation_fraction).
        train: Training rows (Parquet).
        plan: The feature plan (JSON).
        model: Output. The MLflow pyfunc model folder (or a failed/skipped candidate marker).
        leaderboard: Output. The trials (validation loss, best epoch, hyperparameters) as HTML.
        metrics: Output. Validation metrics of the best network and training figures.

    Returns:
        The candidate's status: ``trained``, ``failed`` or ``skipped``.

    Example:
        >>> k = train_autokeras(config=cfg, train=f.outputs["train"], plan=f.outputs["plan"])
    """
    from autokfp.steps.train_model import train_component

    return train_component(config, train, plan, model, leaderboard, metrics, engine="autokeras")


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(train_autokeras, "train_autokeras.yaml")
