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
):
    """Check data quality against the policy in ``config.quality``; stop on failure.

    Checks: row count, target present / not constant / not missing, class counts, per
    column missing fractions, id uniqueness, duplicate rows. Each is pass, warn or fail.

    Args:
        config: The run configuration.
        dataset: The training dataset (Parquet).
        schema: Its schema JSON (from ``discover``).
        report: Output. An HTML quality report shown in the Kubeflow UI.
        metrics: Output. Counts of passed, warned and failed checks.

    Raises:
        QualityGateError: one or more checks failed; the message lists every one.

    Example:
        >>> profile(config=run_config, dataset=d.outputs["dataset"], schema=d.outputs["schema"])
    """
    import logging

    from autokfp.stages import profile_stage

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = profile_stage(config, dataset.path, schema.path, report.path)
    for key, value in summary.items():
        metrics.log_metric(key, value)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(profile, "profile.yaml")
