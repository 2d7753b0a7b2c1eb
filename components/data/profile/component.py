"""KFP component: profile the training data and enforce the quality gate."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def profile(
    config: dict,
    dataset: Input[Dataset],
    schema: Input[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    # a default only so callers of python_func written before it existed keep working;
    # KFP always passes it
    summary: Output[HTML] = None,
):
    """Check data quality against the policy in ``config.quality``; stop on failure.

    Checks: row count, target present / not constant / not missing, class counts, per
    column missing fractions, id uniqueness, duplicate rows, freshness and the row count
    against the last crawl. Each is pass, warn or fail.

    Args:
        config: The run configuration.
        dataset: The training dataset (Parquet).
        schema: Its schema JSON (from ``discover``).
        report: Output. An HTML quality report shown in the Kubeflow UI.
        metrics: Output. Counts of passed, warned and failed checks.
        summary: Output. Evidently's DataSummaryPreset report as HTML (written first, so it
            is there for the UI even when the gate fails).

    Raises:
        QualityGateError: one or more checks failed; the message lists every one.

    Example:
        >>> profile(config=run_config, dataset=d.outputs["dataset"], schema=d.outputs["schema"])
    """
    import logging

    from autokfp.steps.profile import profile as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    publish(step(config, dataset.path, schema.path, report.path,
                 data_summary_path=summary.path if summary is not None else None),
            metrics=metrics)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(profile, "profile.yaml")
