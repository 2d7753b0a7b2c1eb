"""KFP component: the retraining decision and its reasons (audit trail)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def decide_retraining(
    config: dict,
    run_id: str,
    collection: Input[Artifact],
    drift: Input[Artifact],
    performance: Input[Artifact],
    anomalies: Input[Artifact],
    decision: Output[Artifact],
) -> bool:
    """Decide whether to retrain: drift, performance drop, new data, schedule.

    Data-driven triggers count only on a window with enough rows whose inputs pass the
    quality checks; the decision, every trigger's value and the reasons go to the audit
    trail as ``retrain.triggered`` or ``retrain.skipped`` (once per run).

    Args:
        config: The run configuration (``monitoring`` thresholds).
        run_id: The pipeline run id.
        collection: The collection JSON from ``collect_predictions``.
        drift: The drift JSON from ``detect_drift``.
        performance: The performance JSON from ``measure_performance``.
        anomalies: The anomalies JSON from ``detect_anomalies``.
        decision: Output. JSON: retrain, summary, reasons, blockers, every trigger check.

    Returns:
        Whether to retrain (the pipeline's ``dsl.If`` condition).

    Example:
        >>> decided = decide_retraining(
        ...     config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...     collection=c.outputs["collection"], drift=d.outputs["drift"],
        ...     performance=p.outputs["performance"], anomalies=a.outputs["anomalies"])
    """
    import logging

    from autokfp.steps.decide_retraining import decide_retraining as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(
        step(config, collection.path, drift.path, performance.path, anomalies.path,
             decision.path, run_id=run_id),
        decision=decision,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(decide_retraining, "decide_retraining.yaml")
