"""The ``drift-monitoring`` pipeline: watch the champion, retrain it when the world moved.

collect predictions (window + labels + reference + input quality) → detect drift (features
and predictions; Evidently HTML) and measure performance → detect anomalies (history) →
decide retraining → ``dsl.If(retrain)``: the ``autonomous-training`` pipeline, nested
(discover → ... → register → canary deploy → verify → promote or roll back) → record the
retraining. Every task runs inside a ``dsl.ExitHandler`` whose exit task records a failed
run and restores the last good champion when a deploy broke.

Schedule it with ``autokfp schedule`` (a Kubeflow recurring run) or run it locally on a
timer with ``autokfp monitor CONFIG --every 10m``.
"""

from kfp import dsl

from autokfp.components import (
    collect_predictions,
    decide_retraining,
    detect_anomalies,
    detect_drift,
    finalize_monitoring,
    measure_performance,
    record_retraining,
    resolve_config,
)
from autokfp.pipelines.cluster import ClusterOptions, built_on_first_use, configure_task
from autokfp.pipelines.training.autonomous_training import FROM_CONFIG, build_autonomous_training

PIPELINE_NAME = "drift-monitoring"
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
# v2's placeholder, substituted per run (a recurring run's tick); the v1 macro
# ``[[ScheduledTime]]`` is not expanded by v2 (kubeflow/pipelines#12494)
SCHEDULED_TIME = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
WINDOW_END_DEFAULT = "scheduled"
# not "": the KFP UI reports a falsy default as "Missing parameter" (kubeflow/pipelines#11515)


def _resilient(task, options: ClusterOptions, retries: int = 2, name: str | None = None):
    """Cluster settings plus retries with exponential backoff for transient failures
    (an object store or registry that blinks); the stages are idempotent, so a retry is safe."""
    configure_task(task, options, name=name)
    task.set_retry(
        num_retries=retries, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s"
    )
    return task


def build_drift_monitoring(options: "ClusterOptions | None" = None):
    """Build the pipeline with ``options`` (cluster settings; ignored by kfp.local)."""
    options = options or ClusterOptions()
    training_pipeline = build_autonomous_training(options)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "Drift monitoring: compare the champion's logged predictions with its training "
            "reference (per-feature and prediction drift, Evidently report), measure live "
            "performance on arriving labels, flag anomalies, and re-enter the training "
            "graph when a trigger fires."
        ),
    )
    def drift_monitoring(
        model_name: str = FROM_CONFIG,
        dataset: str = FROM_CONFIG,
        target: str = FROM_CONFIG,
        labels: str = FROM_CONFIG,
        window_days: float = -1,
        drift_share: float = -1,
        performance_drop: float = -1,
        budget_seconds: int = -1,
        engines: str = FROM_CONFIG,
        window_end: str = WINDOW_END_DEFAULT,
        config: dict = {},  # noqa: B006 - a KFP default, never mutated
    ):
        """Watch the champion and retrain it when the world moved.

        Args:
            model_name: The registered model whose champion is watched (its logged
                predictions are read). "from config": config's name, else the dataset's name.
            dataset: The training data a retraining reads (and the drift reference when none
                is stored): a gs:// or s3:// URI of a Parquet/CSV file, <source>/<table or
                file> of the sources in config, or a DataHub dataset URN (urn:li:dataset:...).
                "from config": config's training.dataset.
            target: The column the model predicts. "from config": config's training.target.
            labels: Where the ground truth of served predictions arrives, joined to them by
                id: a CSV/Parquet file or folder (gs://, s3://). "from config": config's
                monitoring.labels.path (default: none, no performance verdict).
            window_days: Compare the predictions logged in the last N days, e.g. 7; -1:
                config's monitoring.window_days (default 7).
            drift_share: Retrain when at least this share of the features drifted, e.g. 0.3;
                -1: config's monitoring.drift_share (default 0.3).
            performance_drop: Retrain when the live primary metric is worse than the test
                metric by this fraction of it, e.g. 0.05; -1: config's (default 0.05).
            budget_seconds: Training time of each engine when it retrains, e.g. 600; -1:
                config's budget.max_runtime_secs (default 120).
            engines: Comma-separated engines that compete when it retrains, e.g.
                "h2o,autokeras". "from config": config's engines.
            window_end: End of the monitoring window: "scheduled" (the run's scheduled time;
                a recurring run's tick), "now", or an ISO 8601 time such as
                2026-06-30T12:00:00Z.
            config: Optional: a full run configuration as JSON (sources, monitoring,
                training...); the fields above override it. See the project's README, "The
                run config".
        """
        # the exit task cannot read a task's output: it applies the same form to the raw
        # config (and does nothing when the form does not resolve: nothing ran)
        exit_task = finalize_monitoring(config=config, run_id=RUN_ID, model_name=model_name,
                                        dataset=dataset, target=target)
        configure_task(exit_task, options, name="record outcome + restore champion on failure")
        with dsl.ExitHandler(exit_task, name="monitor"):
            # the form is checked first: a bad value fails this task within seconds, with
            # the message `autokfp monitor` prints, and nothing else starts
            resolved = configure_task(
                resolve_config(config=config, dataset=dataset, target=target,
                               model_name=model_name, budget_seconds=budget_seconds,
                               engines=engines, labels=labels, window_days=window_days,
                               drift_share=drift_share, performance_drop=performance_drop,
                               check_data=False),
                options, name="check the run form")
            config = resolved.output
            collected = _resilient(
                collect_predictions(
                    config=config, run_id=RUN_ID, window_end=window_end,
                    scheduled_time=SCHEDULED_TIME if options.schedule_time else "",
                ),
                options,
                name="collect predictions + labels + reference",
            )
            drift = _resilient(
                detect_drift(
                    config=config,
                    current=collected.outputs["current"],
                    reference=collected.outputs["reference"],
                    collection=collected.outputs["collection"],
                ),
                options, name="detect drift (features + predictions)")
            performance = _resilient(
                measure_performance(
                    config=config,
                    current=collected.outputs["current"],
                    collection=collected.outputs["collection"],
                ),
                options, name="measure live performance")
            anomalies = _resilient(
                detect_anomalies(
                    config=config,
                    run_id=RUN_ID,
                    current=collected.outputs["current"],
                    collection=collected.outputs["collection"],
                    drift=drift.outputs["drift"],
                    performance=performance.outputs["performance"],
                ),
                options, name="detect anomalies in the history")
            decided = _resilient(
                decide_retraining(
                    config=config,
                    run_id=RUN_ID,
                    collection=collected.outputs["collection"],
                    drift=drift.outputs["drift"],
                    performance=performance.outputs["performance"],
                    anomalies=anomalies.outputs["anomalies"],
                ),
                options, name="decide retraining")
            retrain = decided.outputs["Output"] == True  # noqa: E712 - a KFP condition, not Python
            with dsl.If(retrain, name="retrain"):
                training = training_pipeline(config=config)
                training.set_display_name("autonomous training (nested)")
                training.set_caching_options(False)  # a second trigger must really retrain
                _resilient(
                    record_retraining(config=config, run_id=RUN_ID, registration=training.output),
                    options, name="record retraining outcome")
        # no pipeline output: KFP allows none from inside an ExitHandler; the decision is the
        # decide-retraining task's "decision" artifact (and an audit event)

    return drift_monitoring


# ``drift_monitoring`` (default options) is built when first read: see built_on_first_use
__getattr__, __dir__ = built_on_first_use(globals(), "drift_monitoring", build_drift_monitoring)
