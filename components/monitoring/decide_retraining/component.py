"""KFP component: the retraining decision and its reasons (audit trail)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def decide_retraining(
    collection: Input[Artifact],
    drift: Input[Artifact],
    performance: Input[Artifact],
    anomalies: Input[Artifact],
    decision: Output[Artifact],
    run_id: str = "",
    drift_share: float = -1,
    performance_drop: float = -1,
    min_new_rows: int = -1,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> bool:
    """Decide whether to retrain: drift, performance drop, new data, schedule.

    Data-driven triggers count only on a window with enough rows whose inputs pass the
    quality checks; the decision, every trigger's value and the reasons go to the audit
    trail as ``retrain.triggered`` or ``retrain.skipped`` (once per run).

    Usable alone: ``decide_retraining(collection=c.outputs["collection"],
    drift=d.outputs["drift"], performance=p.outputs["performance"],
    anomalies=a.outputs["anomalies"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)``; its
    ``Output`` is the condition of the user's own ``dsl.If`` (no run config: the model is the
    one the collection names, the thresholds the typed inputs or their defaults).

    Args:
        collection: The collection JSON from ``collect_predictions``.
        drift: The drift JSON from ``detect_drift``.
        performance: The performance JSON from ``measure_performance``.
        anomalies: The anomalies JSON from ``detect_anomalies``.
        decision: Output. JSON: retrain, summary, reasons, blockers, every trigger check.
        run_id: The pipeline run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``): the decision is
            audited once per run.
        drift_share: Retrain when at least this share of the features drifted, e.g. 0.3;
            -1: the config's ``monitoring.drift_share`` (default 0.3).
        performance_drop: Retrain when the live primary metric is worse than the
            champion's test metric by this fraction of it, e.g. 0.05; -1: the config's
            ``monitoring.performance_drop`` (default 0.05).
        min_new_rows: Retrain when this many labelled rows arrived for the champion, e.g.
            50000; -1: the config's ``monitoring.min_new_rows`` (default 50000).
        config: Optional: the run configuration (autokfp's pipeline passes the resolved
            one); the inputs above override its ``monitoring``.

    Returns:
        Whether to retrain (the pipeline's ``dsl.If`` condition).

    Raises:
        ConfigError: no config and a collection that names no model, or a value out of
            range.

    Example:
        >>> decided = decide_retraining(
        ...     config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...     collection=c.outputs["collection"], drift=d.outputs["drift"],
        ...     performance=p.outputs["performance"], anomalies=a.outputs["anomalies"])
    """
    import logging

    from autokfp.steps.decide_retraining import decide_retraining as step
    from autokfp.steps.form import monitoring_config
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = monitoring_config(config, what="decide_retraining", named_in=collection.path,
                                   drift_share=drift_share, performance_drop=performance_drop,
                                   min_new_rows=min_new_rows)
    return publish(
        step(run_config, collection.path, drift.path, performance.path, anomalies.path,
             decision.path, run_id=run_id),
        decision=decision,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(decide_retraining, "decide_retraining.yaml")
