"""KFP component: group representation and label balance before training."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def check_data_bias(
    config: dict,
    train: Input[Dataset],
    plan: Input[Artifact],
    schema: Input[Artifact],
    report: Output[Markdown],
    summary: Output[Artifact],
) -> str:
    """Check each sensitive attribute's representation and label rate in the training rows.

    Sensitive attributes come from ``governance.sensitive_columns`` or the catalog's
    ``sensitive`` tags. Groups below ``governance.min_group_size`` and label rates that
    differ beyond the parity policy are warnings (they never stop the run): the
    post-training ``bias_check`` measures what the model makes of them. No sensitive
    attribute known is stated as "not run".

    Args:
        config: The run configuration (``governance`` holds the policy).
        train: Training rows (Parquet) from engineer_features.
        plan: The feature plan JSON (task, target, classes).
        schema: The dataset's schema JSON (column tags).
        report: Output. Markdown: groups, shares, label rates, checks.
        summary: Output. The same as JSON.

    Returns:
        The verdict: pass, warn or not_run.

    Example:
        >>> c = check_data_bias(config=cfg, train=f.outputs["train"], plan=f.outputs["plan"], schema=d.outputs["schema"])
    """
    import logging

    from autokfp.steps.check_data_bias import check_data_bias as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, train.path, plan.path, schema.path, report.path, summary.path),
                   summary=summary)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(check_data_bias, "check_data_bias.yaml")
