"""KFP component: add the run to the monitoring history and flag anomalies."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def detect_anomalies(
    config: dict,
    run_id: str,
    current: Input[Dataset],
    collection: Input[Artifact],
    drift: Input[Artifact],
    performance: Input[Artifact],
    anomalies: Output[Artifact],
) -> int:
    """Append this run to the monitoring history and flag what is unusual in it.

    The history (drift share, prediction mean, live metric and, with
    ``monitoring.metrics_url``, latency and error rate) is judged with a seasonal median +
    MAD baseline (``monitoring.season``, ``monitoring.anomaly_threshold``); each anomaly is
    an audit event ``monitoring.anomaly``.

    Args:
        config: The run configuration (``monitoring``).
        run_id: The pipeline run id (a retried task adds no second history line).
        current: The window's rows from ``collect_predictions``.
        collection: The collection JSON from ``collect_predictions``.
        drift: The drift JSON from ``detect_drift``.
        performance: The performance JSON from ``measure_performance``.
        anomalies: Output. JSON: anomalies found, the history record added.

    Returns:
        The number of anomalies.

    Example:
        >>> a = detect_anomalies(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                      current=c.outputs["current"], collection=c.outputs["collection"],
        ...                      drift=d.outputs["drift"], performance=p.outputs["performance"])
    """
    import logging

    from autokfp.steps.detect_anomalies import detect_anomalies as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(
        step(config, current.path, collection.path, drift.path, performance.path,
             anomalies.path, run_id=run_id),
        anomalies=anomalies,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(detect_anomalies, "detect_anomalies.yaml")
