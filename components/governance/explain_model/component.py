"""KFP component: global and local explanations with plots."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def explain_model(
    config: dict,
    model: Input[Model],
    train: Input[Dataset],
    test: Input[Dataset],
    explanation: Output[Artifact],
    report: Output[HTML],
    plots: Output[Artifact],
) -> str:
    """Explain the model: permutation importance, Kernel SHAP, and local explanations.

    Works on the raw input columns for any engine: permutation importance on
    ``governance.explain_rows`` held-out rows, Kernel SHAP contributions for
    ``governance.shap_rows`` of them (against a training-row background); a method that
    cannot run says why in the report.

    Args:
        config: The run configuration (``governance.explain_rows``, ``governance.shap_rows``).
        model: The MLflow pyfunc model folder (bias_check's ``checked_model``).
        train: Training rows (Parquet): the SHAP background.
        test: Held-out rows (Parquet): what is explained.
        explanation: Output. JSON: importance, SHAP values, local explanations.
        report: Output. HTML with the plots inlined (shown in the Kubeflow UI).
        plots: Output. A folder of PNG plots.

    Returns:
        The most important columns, comma-separated.

    Example:
        >>> x = explain_model(config=cfg, model=b.outputs["checked_model"], train=f.outputs["train"], test=f.outputs["test"])
    """
    import logging

    from autokfp.steps.explain_model import explain_model as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, model.path, train.path, test.path, explanation.path,
                        report.path, plots.path), explanation=explanation)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(explain_model, "explain_model.yaml")
