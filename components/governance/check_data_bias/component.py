"""KFP component: group representation and label balance before training."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def check_data_bias(
    train: Input[Dataset],
    plan: Input[Artifact],
    report: Output[Markdown],
    summary: Output[Artifact],
    schema: Input[Artifact] = None,
    sensitive_columns: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Check each sensitive attribute's representation and label rate in the training rows.

    Sensitive attributes come from ``governance.sensitive_columns`` or the catalog's
    ``sensitive`` tags. Groups below ``governance.min_group_size`` and label rates that
    differ beyond the parity policy are warnings (they never stop the run): the
    post-training ``bias_check`` measures what the model makes of them. No sensitive
    attribute known is stated as "not run".

    Usable alone: ``check_data_bias(train=f.outputs["train"], plan=f.outputs["plan"],
    sensitive_columns="gender")`` (no run config: the default policy; no schema: the
    training rows are profiled here for ``sensitive`` tags).

    Args:
        train: Training rows (Parquet) from engineer_features.
        plan: The feature plan JSON (task, target, classes).
        report: Output. Markdown: groups, shares, label rates, checks.
        summary: Output. The same as JSON.
        schema: Optional: the dataset's schema JSON (``discover``'s; column tags); without
            it the training rows are profiled here.
        sensitive_columns: Comma-separated protected attributes to check. "from config":
            ``config.governance.sensitive_columns``, else the columns tagged ``sensitive``.
        config: Optional: the run configuration (``governance`` holds the policy; autokfp's
            pipelines pass the resolved one); ``sensitive_columns`` overrides it.

    Returns:
        The verdict: pass, warn or not_run.

    Example:
        >>> c = check_data_bias(config=cfg, train=f.outputs["train"], plan=f.outputs["plan"], schema=d.outputs["schema"])
        >>> c = check_data_bias(train=f.outputs["train"], plan=f.outputs["plan"], sensitive_columns="gender")  # used alone
    """
    import logging

    from autokfp.steps.check_data_bias import check_data_bias as step
    from autokfp.steps.form import plan_target, standalone, with_policy
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    has_target = bool(((config or {}).get("training") or {}).get("target"))
    inputs = standalone(config, train.path, schema.path if schema is not None else None,
                        target="from config" if has_target else plan_target(plan.path))
    run_config = with_policy(inputs.config, "governance", sensitive_columns=sensitive_columns)
    return publish(step(run_config, train.path, plan.path, inputs.schema_path, report.path,
                        summary.path),
                   summary=summary)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(check_data_bias, "check_data_bias.yaml")
