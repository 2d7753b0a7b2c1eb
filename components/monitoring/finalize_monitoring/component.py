"""KFP component: the monitoring pipeline's exit handler."""

from kfp import dsl

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def finalize_monitoring(
    config: dict,
    run_id: str,
    status: dsl.PipelineTaskFinalStatus,
    model_name: str = "from config",
    dataset: str = "from config",
    target: str = "from config",
) -> str:
    """Record a failed monitoring run and restore the last good champion if a deploy broke.

    Runs whatever happened inside the pipeline (``dsl.ExitHandler``). On failure it writes
    ``monitoring.run_failed`` to the audit trail; if a model became champion during the run
    and its deploy was not verified, the champion the run started with is restored (the
    failed version gets alias ``rejected``; in a cluster the canary gets 0% of traffic).

    Args:
        config: The run configuration (the pipeline's ``config`` parameter: an exit task
            cannot read the first task's resolved config).
        run_id: The pipeline run id.
        status: The final status of the pipeline's tasks (set by KFP).
        model_name: The run form's model name, applied over ``config`` as the first task
            does ("from config": keep the config's).
        dataset: The run form's dataset (names the model when nothing else does).
        target: The run form's target column.

    Returns:
        The restored champion version, or an empty string.

    Example:
        >>> exit_task = finalize_monitoring(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
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
