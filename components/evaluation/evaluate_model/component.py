"""KFP component: score the candidate and the champion on the same test rows."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def evaluate_model(
    config: dict,
    model: Input[Model],
    test: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
) -> NamedTuple("Outputs", [("promote", bool), ("primary_metric", float)]):
    """Compute test metrics and decide, with a paired bootstrap, whether it beats the champion.

    The current ``champion`` (if any) is loaded from the MLflow registry and scored on the
    same held-out rows; the candidate wins only by at least ``selection.min_improvement``
    and with probability ``selection.confidence``.

    Args:
        config: The run configuration.
        model: The candidate MLflow pyfunc model folder.
        test: Held-out test rows (Parquet).
        evaluation: Output. JSON with metrics, the comparison evidence and curves.
        metrics: Output. Test metrics (AUC, log loss, F1, accuracy / RMSE, MAE, R2).
        classification: Output. ROC curve and confusion matrix for the Kubeflow UI.

    Returns:
        promote: whether the candidate should become champion. primary_metric: its value.

    Example:
        >>> e = evaluate_model(config=cfg, model=t.outputs["model"], test=f.outputs["test"])
    """
    import logging
    from collections import namedtuple

    from autokfp.steps.evaluate_model import evaluate_model as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    outputs = namedtuple("Outputs", ["promote", "primary_metric"])
    return outputs(*publish(step(config, model.path, test.path, evaluation.path),
                            metrics=metrics, classification=classification,
                            evaluation=evaluation))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(evaluate_model, "evaluate_model.yaml")
