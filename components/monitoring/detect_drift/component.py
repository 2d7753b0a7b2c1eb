"""KFP component: per-feature and prediction drift, with Evidently's HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def detect_drift(
    config: dict,
    current: Input[Dataset],
    reference: Input[Dataset],
    collection: Input[Artifact],
    drift: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> float:
    """Test every input feature and the predictions for drift against the reference.

    Verdicts use Evidently's default test per column (K-S, chi-square, z-test,
    Jensen-Shannon, normed Wasserstein, with its thresholds) computed by
    ``autokfp.monitoring.drift`` on every row; the HTML report is Evidently's
    DataDriftPreset on a sample, for the Kubeflow UI. With an empty window or no
    reference the report says why nothing was measured.

    Args:
        config: The run configuration (``monitoring.drift_share``).
        current: The window's rows from ``collect_predictions``.
        reference: The reference rows from ``collect_predictions``.
        collection: The collection JSON from ``collect_predictions``.
        drift: Output. JSON: per-column verdicts for features and predictions, shares.
        report: Output. Evidently's data drift report (HTML).
        metrics: Output. Share and number of drifted features, prediction drift.

    Returns:
        The share of drifted features (0 when drift was not measured).

    Example:
        >>> d = detect_drift(config=cfg, current=c.outputs["current"],
        ...                  reference=c.outputs["reference"], collection=c.outputs["collection"])
    """
    import logging

    from autokfp.steps.detect_drift import detect_drift as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(
        step(config, current.path, reference.path, collection.path, drift.path, report.path),
        metrics=metrics,
        drift=drift,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(detect_drift, "detect_drift.yaml")
