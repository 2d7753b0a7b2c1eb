"""KFP component: every candidate and the champion on the same test rows; keep the best."""

from typing import List, NamedTuple  # noqa: UP035 - KFP reads Input[List[Model]], not list[...]

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def select_model(
    candidates: Input[List[Model]],  # noqa: UP006 - see the import
    test: Input[Dataset],
    model: Output[Model],
    evaluation: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    target: str = "from config",
    model_name: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> NamedTuple("Outputs", [("engine", str), ("promote", bool), ("primary_metric", float)]):
    """Score each engine's leader and the champion on the held-out rows; pass on the best.

    Every candidate is scored through the pyfunc that would serve it, checked for
    calibration and robustness (column order, numeric noise, unseen categories, missing
    values; a candidate that cannot score such rows is disqualified) and ranked by the
    primary metric. A candidate whose training failed or was skipped is recorded with its
    reason and the others compete without it; if none is usable the step fails naming each
    engine's reason. The best candidate is compared with the current ``champion`` by a
    paired bootstrap on the same rows. The leaderboard, ROC/PR/calibration/confusion plots
    and the losing candidates' model folders are logged in an MLflow evaluation run.

    Usable alone: ``select_model(candidates=dsl.Collected(t.outputs["model"]),
    test=f.outputs["test"], model_name="churn")`` (no run config: the default selection
    policy; the target is the candidates').

    Args:
        candidates: Every engine's candidate (model folder or candidate marker), e.g.
            ``dsl.Collected`` of ``train_model``'s ``model`` fanned out over the engines;
            each names its engine in its metadata.
        test: Held-out test rows (Parquet).
        model: Output. The selected MLflow pyfunc model folder.
        evaluation: Output. JSON: the selected model's metrics, the champion comparison,
            every candidate's metrics and validation reports.
        report: Output. HTML leaderboard, robustness checks and plots.
        metrics: Output. Test metrics of the selected model (and Brier score, ECE).
        classification: Output. ROC curve and confusion matrix for the Kubeflow UI.
        target: The column to predict. "from config": ``config.training.target``, else the
            candidates' own.
        model_name: The registered model whose ``champion`` competes too (none registered:
            the best candidate wins). "from config": ``config.name``.
        config: Optional: the run configuration (``selection``: primary_metric, confidence,
            ...; autokfp's pipelines pass the resolved one); the inputs above override it.

    Returns:
        engine: the selected engine. promote: whether it should become champion.
        primary_metric: its test value.

    Raises:
        TrainingError: no candidate could be trained or scored.

    Example:
        >>> s = select_model(config=cfg, candidates=dsl.Collected(t.outputs["model"]),
        ...                  test=f.outputs["test"])
        >>> s = select_model(candidates=dsl.Collected(t.outputs["model"]),
        ...                  test=f.outputs["test"], model_name="churn")     # used alone
    """
    import logging
    import os
    from collections import namedtuple

    from autokfp.steps.form import model_form_config
    from autokfp.steps.results import publish
    from autokfp.steps.select_model import select_model as step

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = {}
    for number, candidate in enumerate(candidates):
        name = candidate.metadata.get("engine") or f"candidate-{number + 1}"
        paths[name] = candidate.path
    # the target, when not given, is that of a candidate that is a model folder
    packaged = [path for path in paths.values()
                if os.path.isfile(os.path.join(path, "artifacts", "meta.json"))]
    run_config = model_form_config(config, packaged[0] if packaged else "", test.path,
                                   target=target, model_name=model_name)
    outputs = namedtuple("Outputs", ["engine", "promote", "primary_metric"])
    return outputs(*publish(step(run_config, paths, test.path, evaluation.path, model.path,
                                 report.path),
                            metrics=metrics, classification=classification, model=model,
                            evaluation=evaluation))

if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(select_model, "select_model.yaml")
