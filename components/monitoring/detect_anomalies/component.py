"""KFP component: add the run to the monitoring history and flag anomalies."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def detect_anomalies(
    current: Input[Dataset],
    collection: Input[Artifact],
    drift: Input[Artifact],
    performance: Input[Artifact],
    anomalies: Output[Artifact],
    run_id: str = "",
    anomaly_threshold: float = -1,
    season: str = "from config",
    metrics_url: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> int:
    """Append this run to the monitoring history and flag what is unusual in it.

    The history (drift share, prediction mean, live metric and, with
    ``monitoring.metrics_url``, latency and error rate) is judged with a seasonal median +
    MAD baseline (``monitoring.season``, ``monitoring.anomaly_threshold``); each anomaly is
    an audit event ``monitoring.anomaly``.

    Usable alone: ``detect_anomalies(current=c.outputs["current"],
    collection=c.outputs["collection"], drift=d.outputs["drift"],
    performance=p.outputs["performance"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)`` (no run
    config: the model is the one the collection names; the history is kept under the task's
    artifact root).

    Args:
        current: The window's rows from ``collect_predictions``.
        collection: The collection JSON from ``collect_predictions``.
        drift: The drift JSON from ``detect_drift``.
        performance: The performance JSON from ``measure_performance``.
        anomalies: Output. JSON: anomalies found, the history record added.
        run_id: The pipeline run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``; a retried task
            adds no second history line).
        anomaly_threshold: The robust z-score of an anomaly, e.g. 4; -1: the config's
            ``monitoring.anomaly_threshold`` (default 4).
        season: The seasonality the histories have: ``none``, ``daily`` or ``weekly``. "from
            config": ``monitoring.season`` (default daily).
        metrics_url: The predictor's Prometheus text endpoint (or a file of it), for the
            latency and error-rate histories. "from config": ``monitoring.metrics_url``
            (default: none).
        config: Optional: the run configuration (autokfp's pipeline passes the resolved
            one); the inputs above override it.

    Returns:
        The number of anomalies.

    Raises:
        ConfigError: no config and a collection that names no model, or a value out of
            range (a ``season`` other than the three).

    Example:
        >>> a = detect_anomalies(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                      current=c.outputs["current"], collection=c.outputs["collection"],
        ...                      drift=d.outputs["drift"], performance=p.outputs["performance"])
    """
    import logging

    from autokfp.steps.detect_anomalies import detect_anomalies as step
    from autokfp.steps.form import monitoring_config
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = monitoring_config(config, what="detect_anomalies", named_in=collection.path,
                                   anomaly_threshold=anomaly_threshold, season=season,
                                   metrics_url=metrics_url)
    return publish(
        step(run_config, current.path, collection.path, drift.path, performance.path,
             anomalies.path, run_id=run_id),
        anomalies=anomalies,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(detect_anomalies, "detect_anomalies.yaml")
