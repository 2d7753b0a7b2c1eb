"""KFP component: the monitoring pipeline's exit handler."""

from kfp import dsl

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def finalize_monitoring(
    status: dsl.PipelineTaskFinalStatus,
    run_id: str = "",
    model_name: str = "from config",
    dataset: str = "from config",
    target: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Record a failed monitoring run and restore the last good champion if a deploy broke.

    Runs whatever happened inside the pipeline (``dsl.ExitHandler``). On failure it writes
    ``monitoring.run_failed`` to the audit trail; if a model became champion during the run
    and its deploy was not verified, the champion the run started with is restored (the
    failed version gets alias ``rejected``; in a cluster the canary gets 0% of traffic).

    Usable alone, as the exit task of a user's ``dsl.ExitHandler`` around
    ``collect_predictions`` and what follows: ``finalize_monitoring(model_name="churn",
    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)`` (no run config; the same ``run_id`` as
    ``collect_predictions``, which keeps the champion the run started with).

    Args:
        status: The final status of the pipeline's tasks (set by KFP).
        run_id: The pipeline run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        model_name: The monitored model, e.g. churn; the run form's model name, applied over
            ``config`` as the first task does ("from config": keep the config's; required
            without a config).
        dataset: The run form's dataset (names the model when nothing else does).
        target: The run form's target column.
        config: Optional: the run configuration (autokfp's pipeline passes its ``config``
            parameter: an exit task cannot read the first task's resolved config).

    Returns:
        The restored champion version, or an empty string.

    Raises:
        ConfigError: the pipeline succeeded but nothing names the model (no config, no
            dataset and no ``model_name``); after a failure this is logged and nothing is
            recorded.

    Example:
        >>> exit_task = finalize_monitoring(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        >>> exit_task = finalize_monitoring(model_name="churn",
        ...                                 run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)  # alone
    """
    import logging

    from autokfp.steps.finalize_monitoring import finalize_monitoring as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, status.state, run_id=run_id, error=status.error_message or "",
                        task=status.pipeline_task_name or "",
                        form={"model_name": model_name, "dataset": dataset, "target": target}))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(finalize_monitoring, "finalize_monitoring.yaml")
