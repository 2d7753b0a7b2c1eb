"""KFP component: per-feature and prediction drift, with Evidently's HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def detect_drift(
    current: Input[Dataset],
    reference: Input[Dataset],
    collection: Input[Artifact],
    drift: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    drift_share: float = -1,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> float:
    """Test every input feature and the predictions for drift against the reference.

    Verdicts use Evidently's default test per column (K-S, chi-square, z-test,
    Jensen-Shannon, normed Wasserstein, with its thresholds) computed by
    ``autokfp.monitoring.drift`` on every row; the HTML report is Evidently's
    DataDriftPreset on a sample, for the Kubeflow UI. With an empty window or no
    reference the report says why nothing was measured.

    Usable alone: ``detect_drift(current=c.outputs["current"],
    reference=c.outputs["reference"], collection=c.outputs["collection"])`` after
    ``collect_predictions`` (no run config: the model is the one the collection names).

    Args:
        current: The window's rows from ``collect_predictions``.
        reference: The reference rows from ``collect_predictions``.
        collection: The collection JSON from ``collect_predictions``.
        drift: Output. JSON: per-column verdicts for features and predictions, shares.
        report: Output. Evidently's data drift report (HTML).
        metrics: Output. Share and number of drifted features, prediction drift.
        drift_share: The share of drifted features at which the dataset counts as drifted,
            e.g. 0.3; -1: the config's ``monitoring.drift_share`` (default 0.3).
        config: Optional: the run configuration (autokfp's pipeline passes the resolved
            one); ``drift_share`` overrides it.

    Returns:
        The share of drifted features (0 when drift was not measured).

    Raises:
        ConfigError: no config and a collection that names no model, or a value out of
            range.

    Example:
        >>> d = detect_drift(config=cfg, current=c.outputs["current"],
        ...                  reference=c.outputs["reference"], collection=c.outputs["collection"])
        >>> d = detect_drift(current=c.outputs["current"], reference=c.outputs["reference"],
        ...                  collection=c.outputs["collection"], drift_share=0.5)  # used alone
    """
    import logging

    from autokfp.steps.detect_drift import detect_drift as step
    from autokfp.steps.form import monitoring_config
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = monitoring_config(config, what="detect_drift", named_in=collection.path,
                                   drift_share=drift_share)
    return publish(
        step(run_config, current.path, reference.path, collection.path, drift.path, report.path),
        metrics=metrics,
        drift=drift,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(detect_drift, "detect_drift.yaml")
