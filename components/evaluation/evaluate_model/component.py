"""KFP component: score the candidate and the champion on the same test rows."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    test: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    target: str = "from config",
    model_name: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> NamedTuple("Outputs", [("promote", bool), ("primary_metric", float)]):
    """Compute test metrics and decide, with a paired bootstrap, whether it beats the champion.

    The current ``champion`` (if any) is loaded from the MLflow registry and scored on the
    same held-out rows; the candidate wins only by at least ``selection.min_improvement``
    and with probability ``selection.confidence``.

    Usable alone: ``evaluate_model(model=t.outputs["model"], test=f.outputs["test"],
    model_name="churn")`` (no run config: the default selection policy; the target is the
    model's).

    Args:
        model: The candidate MLflow pyfunc model folder (``train_model``'s ``model``).
        test: Held-out test rows (Parquet; ``engineer_features``'s ``test``).
        evaluation: Output. JSON with metrics, the comparison evidence and curves.
        metrics: Output. Test metrics (AUC, log loss, F1, accuracy / RMSE, MAE, R2).
        classification: Output. ROC curve and confusion matrix for the Kubeflow UI.
        target: The column to predict. "from config": ``config.training.target``, else the
            model's own.
        model_name: The registered model whose ``champion`` the candidate is compared with
            (none registered: the candidate wins). "from config": ``config.name``.
        config: Optional: the run configuration (``selection``: the comparison policy;
            autokfp's pipelines pass the resolved one); the inputs above override it.

    Returns:
        promote: whether the candidate should become champion. primary_metric: its value.

    Example:
        >>> e = evaluate_model(config=cfg, model=t.outputs["model"], test=f.outputs["test"])
        >>> e = evaluate_model(model=t.outputs["model"], test=f.outputs["test"],
        ...                    model_name="churn")                            # used alone
    """
    import logging
    from collections import namedtuple

    from autokfp.steps.evaluate_model import evaluate_model as step
    from autokfp.steps.form import model_form_config
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    outputs = namedtuple("Outputs", ["promote", "primary_metric"])
    run_config = model_form_config(config, model.path, test.path, target=target,
                                   model_name=model_name)
    return outputs(*publish(step(run_config, model.path, test.path, evaluation.path),
                            metrics=metrics, classification=classification,
                            evaluation=evaluation))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(evaluate_model, "evaluate_model.yaml")
