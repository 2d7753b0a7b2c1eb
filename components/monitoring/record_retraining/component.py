"""KFP component: what the retraining registered and what serves now (audit trail)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def record_retraining(
    registration: Input[Artifact],
    outcome: Output[Artifact],
    run_id: str = "",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Record the outcome of a triggered retraining and keep the new champion's reference.

    Runs after the nested training graph (which registers, deploys as a canary, verifies
    and promotes or rolls back). Writes ``retrain.completed`` to the audit trail and, when
    the retrained model became champion, stores its monitoring reference while its
    training data is unchanged.

    Usable alone: ``record_retraining(registration=r.outputs["registration"],
    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)`` after ``register_model`` (no run config: the
    model is the one the registration names).

    Args:
        registration: The registration JSON of the nested training graph
            (``register_model``'s ``registration``).
        outcome: Output. JSON: registered version, promoted, champion now, deployment state.
        run_id: The pipeline run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``): the outcome is
            audited once per run.
        config: Optional: the run configuration (autokfp's pipeline passes the resolved
            one).

    Returns:
        The champion version after retraining.

    Raises:
        ConfigError: no config and a registration that names no model.

    Example:
        >>> record_retraining(config=cfg, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                   registration=training.output)
    """
    import logging

    from autokfp.steps.form import monitoring_config
    from autokfp.steps.record_retraining import record_retraining as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = monitoring_config(config, what="record_retraining",
                                   named_in=registration.path, name_key="name")
    return publish(step(run_config, registration.path, outcome.path, run_id=run_id),
                   outcome=outcome)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(record_retraining, "record_retraining.yaml")
