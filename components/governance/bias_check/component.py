"""KFP component: fairness of the model's decisions, mitigation, and the deployment gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def bias_check(
    config: dict,
    model: Input[Model],
    train: Input[Dataset],
    test: Input[Dataset],
    schema: Input[Artifact],
    checked_model: Output[Model],
    report: Output[Markdown],
    summary: Output[Artifact],
    metrics: Output[Metrics],
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

    Args:
        config: The run configuration (``governance`` holds the policy).
        model: The candidate MLflow pyfunc model folder.
        train: Training rows (Parquet): where mitigation thresholds are fitted.
        test: Held-out rows (Parquet): where every check is measured.
        schema: The dataset's schema JSON (``sensitive`` column tags).
        checked_model: Output. The package to register: the same model plus any bias
            mitigation and a background sample for served explanations.
        report: Output. Markdown: per-group tables before and after, checks, accuracy cost.
        summary: Output. The full fairness report as JSON.
        metrics: Output. Parity figures before and after, and the accuracy cost.

    Returns:
        verdict: pass, mitigated, fail (only when not blocking) or not_run. mitigated:
        whether a mitigation was applied.

    Raises:
        PolicyError: a fairness limit stays broken and the policy blocks deployment.

    Example:
        >>> b = bias_check(config=cfg, model=t.outputs["model"], train=f.outputs["train"], test=f.outputs["test"], schema=d.outputs["schema"])
    """
    import logging
    from collections import namedtuple

    from autokfp.steps.bias_check import bias_check as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    outputs = namedtuple("Outputs", ["verdict", "mitigated"])
    return outputs(*publish(step(config, model.path, train.path, test.path, schema.path,
                                 checked_model.path, report.path, summary.path),
                            metrics=metrics, summary=summary, checked_model=checked_model))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(bias_check, "bias_check.yaml")
