"""KFP component: fairness of the model's decisions, mitigation, and the deployment gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def bias_check(
    model: Input[Model],
    train: Input[Dataset],
    test: Input[Dataset],
    checked_model: Output[Model],
    report: Output[Markdown],
    summary: Output[Artifact],
    metrics: Output[Metrics],
    schema: Input[Artifact] = None,
    sensitive_columns: str = "from config",
    model_name: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> NamedTuple("Outputs", [("verdict", str), ("mitigated", bool)]):
    """Check the model's decisions per group against the policy; mitigate; gate deployment.

    Per group of each sensitive attribute (held-out rows): selection rate, mean score, TPR,
    FPR, error rate, AUC; then demographic-parity difference and ratio (of the decisions,
    and of the ranking: the top-scored share equal to the training positive rate flagged)
    and equalized-odds difference against ``governance``. A broken limit is mitigated by a
    per-group score repair and/or per-group decision thresholds fitted on the training rows
    and re-checked on the held-out rows; they travel inside ``checked_model`` (register
    this one). If a limit stays broken and
    ``governance.block_deploy_on_bias`` is true, the step fails with PolicyError after
    writing its report, so nothing is registered or deployed. Every verdict is an audit
    event.

    Usable alone: ``bias_check(model=t.outputs["model"], train=f.outputs["train"],
    test=f.outputs["test"], sensitive_columns="gender,age_band")`` (no run config: the
    default policy; no schema: the training rows are profiled here for ``sensitive`` tags).

    Args:
        model: The candidate MLflow pyfunc model folder.
        train: Training rows (Parquet): where mitigation thresholds are fitted.
        test: Held-out rows (Parquet): where every check is measured.
        checked_model: Output. The package to register: the same model plus any bias
            mitigation and a background sample for served explanations.
        report: Output. Markdown: per-group tables before and after, checks, accuracy cost.
        summary: Output. The full fairness report as JSON.
        metrics: Output. Parity figures before and after, and the accuracy cost.
        schema: Optional: the dataset's schema JSON (``discover``'s; ``sensitive`` column
            tags); without it the training rows are profiled here.
        sensitive_columns: Comma-separated protected attributes to check. "from config":
            ``config.governance.sensitive_columns``, else the columns tagged ``sensitive``.
        model_name: The model the audit events and the report name. "from config":
            ``config.name``, else the training data's file name.
        config: Optional: the run configuration (``governance`` holds the policy; autokfp's
            pipelines pass the resolved one); the inputs above override it.

    Returns:
        verdict: pass, mitigated, fail (only when not blocking) or not_run. mitigated:
        whether a mitigation was applied.

    Raises:
        PolicyError: a fairness limit stays broken and the policy blocks deployment.

    Example:
        >>> b = bias_check(config=cfg, model=t.outputs["model"], train=f.outputs["train"], test=f.outputs["test"], schema=d.outputs["schema"])
        >>> b = bias_check(model=t.outputs["model"], train=f.outputs["train"], test=f.outputs["test"], sensitive_columns="gender")  # used alone
    """
    import logging
    from collections import namedtuple

    from autokfp.steps.bias_check import bias_check as step
    from autokfp.steps.form import model_form_config, standalone, with_policy
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = with_policy(model_form_config(config, model.path, train.path,
                                               model_name=model_name),
                             "governance", sensitive_columns=sensitive_columns)
    inputs = standalone(run_config, train.path, schema.path if schema is not None else None)
    outputs = namedtuple("Outputs", ["verdict", "mitigated"])
    return outputs(*publish(step(inputs.config, model.path, train.path, test.path,
                                 inputs.schema_path,
                                 checked_model.path, report.path, summary.path),
                            metrics=metrics, summary=summary, checked_model=checked_model))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(bias_check, "bias_check.yaml")
