"""KFP component: global and local explanations with plots."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def explain_model(
    model: Input[Model],
    train: Input[Dataset],
    test: Input[Dataset],
    explanation: Output[Artifact],
    report: Output[HTML],
    plots: Output[Artifact],
    explain_rows: int = -1,
    shap_rows: int = -1,
    model_name: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Explain the model: permutation importance, Kernel SHAP, and local explanations.

    Works on the raw input columns for any engine: permutation importance on
    ``governance.explain_rows`` held-out rows, Kernel SHAP contributions for
    ``governance.shap_rows`` of them (against a training-row background); a method that
    cannot run says why in the report.

    Usable alone: ``explain_model(model=t.outputs["model"], train=f.outputs["train"],
    test=f.outputs["test"])`` (no run config: the default row counts).

    Args:
        model: The MLflow pyfunc model folder that will serve: refit_model's
            ``served_model`` (bias_check's ``checked_model`` in a pipeline without a refit).
        train: Training rows (Parquet): the SHAP background.
        test: Held-out rows (Parquet): what is explained.
        explanation: Output. JSON: importance, SHAP values, local explanations.
        report: Output. HTML with the plots inlined (shown in the Kubeflow UI).
        plots: Output. A folder of PNG plots.
        explain_rows: Held-out rows for permutation importance (20-100000). -1:
            ``config.governance.explain_rows`` (default 300).
        shap_rows: Rows explained with Kernel SHAP (0: skip SHAP; at most 1000). -1:
            ``config.governance.shap_rows`` (default 20).
        model_name: The model the explanation names. "from config": ``config.name``, else
            the held-out data's file name.
        config: Optional: the run configuration (autokfp's pipelines pass the resolved
            one); the inputs above override it.

    Returns:
        The most important columns, comma-separated.

    Example:
        >>> x = explain_model(config=cfg, model=r.outputs["served_model"], train=f.outputs["train"], test=f.outputs["test"])
        >>> x = explain_model(model=t.outputs["model"], train=f.outputs["train"], test=f.outputs["test"], shap_rows=0)  # used alone
    """
    import logging

    from autokfp.steps.explain_model import explain_model as step
    from autokfp.steps.form import model_form_config, with_policy
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = with_policy(model_form_config(config, model.path, test.path,
                                               model_name=model_name), "governance",
                             explain_rows=explain_rows, shap_rows=shap_rows)
    return publish(step(run_config, model.path, train.path, test.path, explanation.path,
                        report.path, plots.path), explanation=explanation)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(explain_model, "explain_model.yaml")
