"""KFP component: after the champion gate, the chosen model fitted on every labelled row."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def refit_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    train: Input[Dataset],
    test: Input[Dataset],
    served_model: Output[Model],
    metrics: Output[Metrics],
    model_name: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Fit the gated model's configuration again on the training and test rows; serve it.

    The champion gate compares models on the fixed test rows, so the gated model never saw
    them. On a small table (``training.refit_for_serving: auto``: at most
    ``training.refit_max_rows`` labelled rows, or a larger one whose refit is estimated
    within ``training.refit_max_secs``; ``always``; ``never``), once the gate has
    passed, the same engine trains the same configuration again (no search: H2O the
    leader's algorithm and parameters, or its stacked ensemble's recipe; AutoKeras the
    chosen architecture, optimizer and epoch count) on every labelled row. That package is
    the output, with the gated package kept inside it as ``gate_model/`` (the next run's
    gate scores that one on the test rows). A refit that fails, crashes, or scores its own
    rows far worse than the gated model is not served: the output is the gated package, and
    its ``meta.serving`` says why. The step never fails the run for a refit. It runs on
    the CPU (the runtime image holds both engines): by default it refits small tables, and
    larger ones whose refit is estimated within 600 s.

    Usable alone: ``refit_model(model=b.outputs["checked_model"],
    evaluation=e.outputs["evaluation"], train=f.outputs["train"], test=f.outputs["test"],
    model_name="churn")`` (no run config: every setting's default).

    Args:
        model: The gated MLflow pyfunc model folder (what ``evaluate_model`` judged).
        evaluation: The evaluation JSON of the gate (``evaluate_model``'s): only a model it
            promotes is refitted.
        train: Training rows (Parquet), from ``engineer_features``.
        test: The held-out test rows (Parquet), from ``engineer_features``.
        served_model: Output. The package to register and serve: the refit (with
            ``gate_model/`` inside) or the gated package; its metadata says which.
        metrics: Output. The rows each model was fitted on, the refit's seconds and its
            check's figures.
        model_name: The registered model (the audit trail's ``model.refit`` event).
            "from config": ``config.name``.
        config: Optional: the run configuration (``training.refit_for_serving``,
            ``refit_max_rows``, ``refit_max_secs``, the budget and engine settings).

    Returns:
        Which model is served: ``refit`` or ``gated``.

    Example:
        >>> r = refit_model(config=cfg, model=b.outputs["checked_model"],
        ...                 evaluation=e.outputs["evaluation"], train=f.outputs["train"],
        ...                 test=f.outputs["test"])
    """
    import logging

    from autokfp.steps.form import model_form_config
    from autokfp.steps.refit_model import refit_model as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = model_form_config(config, model.path, train.path, model_name=model_name)
    return publish(step(run_config, model.path, evaluation.path, train.path, test.path,
                        served_model.path), metrics=metrics, model=served_model)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(refit_model, "refit_model.yaml")
