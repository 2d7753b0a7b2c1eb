"""KFP component: profile the training data and enforce the quality gate."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def profile(
    dataset: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    # a default only so callers of python_func written before it existed keep working;
    # KFP always passes it
    summary: Output[HTML] = None,
    schema: Input[Artifact] = None,
    target: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
):
    """Check data quality against the policy in ``config.quality``; stop on failure.

    Checks: row count, target present / not constant / not missing, class counts, per
    column missing fractions, id uniqueness, duplicate rows, freshness and the row count
    against the last crawl. Each is pass, warn or fail.

    Usable alone, on any Parquet or CSV ``Dataset``: ``profile(dataset=d, target="churned")``
    (no run config: the default quality policy; no schema: the dataset is profiled here).

    Args:
        dataset: The training dataset (Parquet, or CSV when used alone).
        report: Output. An HTML quality report shown in the Kubeflow UI.
        metrics: Output. Counts of passed, warned and failed checks.
        summary: Output. Evidently's DataSummaryPreset report as HTML (written first, so it
            is there for the UI even when the gate fails).
        schema: Optional: its schema JSON (from ``discover``); without it the dataset is
            profiled here.
        target: The column to predict. "from config": ``config.training.target``.
        config: Optional: the run configuration (``quality``: the policy; autokfp's
            pipelines pass the resolved one); ``target`` overrides it.

    Raises:
        QualityGateError: one or more checks failed; the message lists every one.
        ConfigError: no target (neither ``target`` nor a config), or a bad setting.

    Example:
        >>> profile(config=run_config, dataset=d.outputs["dataset"], schema=d.outputs["schema"])
        >>> profile(dataset=my_task.outputs["data"], target="churned")   # used alone
    """
    import logging

    from autokfp.steps.form import standalone
    from autokfp.steps.profile import profile as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    inputs = standalone(config, dataset.path, schema.path if schema is not None else None,
                        target=target)
    publish(step(inputs.config, inputs.dataset_path, inputs.schema_path, report.path,
                 data_summary_path=summary.path if summary is not None else None),
            metrics=metrics)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(profile, "profile.yaml")
