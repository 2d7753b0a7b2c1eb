"""KFP component: register the candidate in MLflow and set its alias."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def register_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    registration: Output[Artifact],
    schema: Input[Artifact] = None,
    dataset: Input[Dataset] = None,
    model_name: str = "from config",
    kfp_run_id: str = "",
    pipeline_name: str = "",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Log a run and register the model version; alias ``champion`` only if it won.

    The replaced champion gets alias ``previous`` (the rollback target); a candidate that
    did not win gets ``challenger``. Registering the same model package twice (a rerun)
    returns the existing version instead of a duplicate.

    Usable alone: ``register_model(model=t.outputs["model"],
    evaluation=e.outputs["evaluation"], dataset=my_task.outputs["data"], model_name="churn")``
    (no run config; no schema: the training data given as ``dataset`` is profiled here for
    the version's lineage tags). The registry is the task's ``MLFLOW_TRACKING_URI``.

    Args:
        model: The MLflow pyfunc model folder.
        evaluation: The evaluation JSON (metrics and the champion comparison;
            ``evaluate_model``'s or ``select_model``'s ``evaluation``).
        registration: Output. JSON: name, version, aliases, decision, storage URI, target.
        schema: Optional: the training dataset's schema JSON (``discover``'s; lineage tags:
            dataset, URN, fingerprint). Give it or ``dataset``.
        dataset: Optional: the training data (Parquet or CSV), profiled here when no
            ``schema`` is given.
        model_name: The registered model's name. "from config": ``config.name``; required
            without a config.
        kfp_run_id: The KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``); tagged
            ``kfp.run_id`` on the model version.
        pipeline_name: The pipeline that registers; tagged ``kfp.pipeline_name``.
        config: Optional: the run configuration (autokfp's pipelines pass the resolved one;
            its budget and engine settings become the run's parameters); ``model_name``
            overrides its ``name``.

    Returns:
        The registered model version.

    Raises:
        ConfigError: no model name (neither ``model_name`` nor a config), or neither
            ``schema`` nor ``dataset``.

    Example:
        >>> r = register_model(config=cfg, model=t.outputs["model"], evaluation=e.outputs["evaluation"],
        ...                    schema=d.outputs["schema"],
        ...                    kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ...                    pipeline_name="my-pipeline")
        >>> r = register_model(model=t.outputs["model"], evaluation=e.outputs["evaluation"],
        ...                    dataset=my_task.outputs["data"], model_name="churn")  # used alone
    """
    import logging

    from autokfp.errors import ConfigError
    from autokfp.steps.form import named_config, stand_in_dataset, standalone
    from autokfp.steps.register_model import register_model as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    schema_path = schema.path if schema is not None else None
    if schema_path is None and dataset is None:
        raise ConfigError("register_model: give schema (discover's schema) or dataset (the "
                          "training data, profiled here for the version's lineage tags)")
    run_config = named_config(config, model_name, what="register_model", model_path=model.path,
                              dataset_path=dataset.path if dataset is not None
                              else stand_in_dataset(schema_path, model.path))
    if schema_path is None:
        schema_path = standalone(run_config, dataset.path, None).schema_path
    return publish(step(run_config, model.path, evaluation.path, schema_path, registration.path,
                        kfp_run_id=kfp_run_id, pipeline_name=pipeline_name),
                   registration=registration)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(register_model, "register_model.yaml")
