"""KFP component: what the retraining registered and what serves now (audit trail)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def record_retraining(
    config: dict,
    run_id: str,
    registration: Input[Artifact],
    outcome: Output[Artifact],
) -> str:
    """Record the outcome of a triggered retraining and keep the new champion's reference.

    Runs after the nested training graph (which registers, deploys as a canary, verifies
    and promotes or rolls back). Writes ``retrain.completed`` to the audit trail and, when
    the retrained model became champion, stores its monitoring reference while its
    training data is unchanged.

    Args:
        config: The run configuration.
        run_id: The pipeline run id.
        registration: The registration JSON of the nested training graph.
        outcome: Output. JSON: registered version, promoted, champion now, deployment state.

    Returns:
        The champion version after retraining.

    Example:
        >>> record_retraining(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                   registration=training.output)
    """
    import logging

    from autokfp.steps.record_retraining import record_retraining as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, registration.path, outcome.path, run_id=run_id),
                   outcome=outcome)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(record_retraining, "record_retraining.yaml")
