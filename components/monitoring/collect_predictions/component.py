"""KFP component: the champion's logged predictions for the window, with labels and reference."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def collect_predictions(
    config: dict,
    run_id: str,
    window_end: str,
    current: Output[Dataset],
    reference: Output[Dataset],
    collection: Output[Artifact],
    scheduled_time: str = "",
) -> str:
    """Read the champion's logged predictions for the window, join labels, find the reference.

    Reads ``<artifact root>/predictions/<service>/v<champion>/`` for the last
    ``monitoring.window_days`` days, joins the labels that arrived
    (``monitoring.labels``) by id, resolves the champion's training reference (the stored
    sample, else its training dataset while unchanged) and checks the live inputs. Rows
    logged by other versions, a missing reference, labels that never arrived and an empty
    window are reported in ``collection``, never raised.

    Args:
        config: The run configuration (``name``, ``training``, ``monitoring``).
        run_id: The pipeline run id (the exit handler restores the champion of this run).
        window_end: End of the window: an ISO 8601 time, ``now``, or ``scheduled`` (the
            run's scheduled time, from ``scheduled_time``).
        current: Output. The window's rows (Parquet): inputs, ``output_*`` predictions, label.
        reference: Output. The reference rows (Parquet; empty when missing).
        collection: Output. JSON: status, rows, labels, reference, input quality, notes.
        scheduled_time: ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER`` (RFC 3339, UTC);
            left unsubstituted (kfp.local) the window ends now.

    Returns:
        The status: ``ok``, ``empty``, ``too-few-rows`` or ``no-champion``.

    Example:
        >>> c = collect_predictions(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                         window_end="scheduled",
        ...                         scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER)
    """
    import logging

    from autokfp.steps.collect_predictions import collect_predictions as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(
        step(config, current.path, reference.path, collection.path, run_id=run_id,
             window_end=window_end, scheduled_time=scheduled_time),
        collection=collection,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(collect_predictions, "collect_predictions.yaml")
