"""KFP component: register the candidate in MLflow and set its alias."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def register_model(
    config: dict,
    model: Input[Model],
    evaluation: Input[Artifact],
    schema: Input[Artifact],
    registration: Output[Artifact],
    kfp_run_id: str = "",
    pipeline_name: str = "",
) -> str:
    """Log a run and register the model version; alias ``champion`` only if it won.

    The replaced champion gets alias ``previous`` (the rollback target); a candidate that
    did not win gets ``challenger``. Registering the same model package twice (a rerun)
    returns the existing version instead of a duplicate.

    Args:
        config: The run configuration (``name`` is the registered model name).
        model: The MLflow pyfunc model folder.
        evaluation: The evaluation JSON (metrics and the champion comparison).
        schema: The training dataset's schema JSON (lineage tags: dataset, URN, fingerprint).
        registration: Output. JSON: name, version, aliases, decision, storage URI.
        kfp_run_id: The KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``); tagged
            ``kfp.run_id`` on the model version.
        pipeline_name: The pipeline that registers; tagged ``kfp.pipeline_name``.

    Returns:
        The registered model version.

    Example:
        >>> r = register_model(config=cfg, model=t.outputs["model"], evaluation=e.outputs["evaluation"],
        ...                    schema=d.outputs["schema"],
        ...                    kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                    pipeline_name="my-pipeline")
    """
    import logging

    from autokfp.steps.register_model import register_model as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, model.path, evaluation.path, schema.path, registration.path,
                        kfp_run_id=kfp_run_id, pipeline_name=pipeline_name),
                   registration=registration)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(register_model, "register_model.yaml")
