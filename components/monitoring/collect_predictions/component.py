"""KFP component: the champion's logged predictions for the window, with labels and reference."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def collect_predictions(
    current: Output[Dataset],
    reference: Output[Dataset],
    collection: Output[Artifact],
    model_name: str = "from config",
    labels: str = "from config",
    id_column: str = "from config",
    label_column: str = "from config",
    window_days: float = -1,
    min_window_rows: int = -1,
    reference_data: Input[Dataset] = None,
    window_end: str = "now",
    scheduled_time: str = "",
    run_id: str = "",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Read the champion's logged predictions for the window, join labels, find the reference.

    Reads ``<artifact root>/predictions/<service>/v<champion>/`` for the last
    ``monitoring.window_days`` days, joins the labels that arrived
    (``monitoring.labels``) by id, resolves the champion's training reference (the stored
    sample, else its training dataset while unchanged) and checks the live inputs. Rows
    logged by other versions, a missing reference, labels that never arrived and an empty
    window are reported in ``collection``, never raised.

    Usable alone: ``collect_predictions(model_name="churn",
    reference_data=my_task.outputs["data"], labels="s3://bucket/churn/labels/",
    id_column="customer_id")`` (no run config: the registry is the task's
    ``MLFLOW_TRACKING_URI``, the predictions the ones the champion's predictor logged under
    the task's artifact root; the labels' target column is the champion's). Every later
    monitoring component reads the model's name from ``collection``.

    Args:
        current: Output. The window's rows (Parquet): inputs, ``output_*`` predictions, label.
        reference: Output. The reference rows (Parquet; empty when missing).
        collection: Output. JSON: model, status, rows, labels, reference, input quality, notes.
        model_name: The registered model whose champion is monitored, e.g. churn. "from
            config": ``config.name``; required without a config.
        labels: Where the ground truth of served predictions arrives: a CSV/Parquet file or a
            folder of them (local, gs://, s3://). "from config": ``monitoring.labels.path``
            (without a config: none, no performance verdict).
        id_column: The column the labels and the logged predictions share, e.g. customer_id;
            required with ``labels`` when the config names none. "from config":
            ``monitoring.labels.id_column``, else ``training.id_column``.
        label_column: The labels' ground-truth column. "from config":
            ``monitoring.labels.target``, else ``training.target`` (without a config: the
            champion's target).
        window_days: Read the predictions logged in the last N days, e.g. 7; -1: the
            config's ``monitoring.window_days`` (default 7).
        min_window_rows: Fewer rows in the window give no drift verdict and no retraining,
            e.g. 200; -1: the config's ``monitoring.min_window_rows`` (default 200).
        reference_data: Optional: the rows to compare the window with (the champion's
            training data, Parquet or CSV), instead of the champion's stored reference or
            its training dataset; at most ``monitoring.reference_rows`` are used (sampled).
        window_end: End of the window: an ISO 8601 time, ``now``, or ``scheduled`` (the
            run's scheduled time, from ``scheduled_time``).
        scheduled_time: ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER`` (RFC 3339, UTC);
            left unsubstituted (kfp.local) the window ends now.
        run_id: The pipeline run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``): the champion at the
            run's start is kept for ``finalize_monitoring``; "" keeps nothing.
        config: Optional: the run configuration (``name``, ``training``, ``monitoring``;
            autokfp's pipeline passes the resolved one); the inputs above override it.

    Returns:
        The status: ``ok``, ``empty``, ``too-few-rows`` or ``no-champion``.

    Raises:
        ConfigError: no model name (neither ``model_name`` nor a config), ``labels`` with no
            id column, or a value out of range.
        DataError: ``reference_data`` is empty, or neither Parquet nor CSV.

    Example:
        >>> c = collect_predictions(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                         window_end="scheduled",
        ...                         scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER)
        >>> c = collect_predictions(model_name="churn", reference_data=my_task.outputs["data"],
        ...                         labels="s3://bucket/churn/labels/",
        ...                         id_column="customer_id")  # used alone
    """
    import logging

    from autokfp.steps.collect_predictions import collect_predictions as step
    from autokfp.steps.form import monitoring_config, read_reference_data
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = monitoring_config(config, what="collect_predictions", model_name=model_name,
                                   labels=labels, id_column=id_column, label_column=label_column,
                                   window_days=window_days, min_window_rows=min_window_rows)
    given = (read_reference_data(reference_data.path, "collect_predictions")
             if reference_data is not None else None)
    return publish(
        step(run_config, current.path, reference.path, collection.path, run_id=run_id,
             window_end=window_end, scheduled_time=scheduled_time, reference_frame=given,
             standalone=not config),
        collection=collection,
    )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(collect_predictions, "collect_predictions.yaml")
