"""KFP component: the run form's typed parameters -> the run config, checked first."""

from kfp import dsl

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def resolve_config(
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
    dataset: str = "from config",
    target: str = "from config",
    task: str = "from config",
    model_name: str = "from config",
    budget_seconds: int = -1,
    engines: str = "from config",
    require_approval: bool = False,
    check_data: bool = True,
    window_days: float = -1,
    drift_share: float = -1,
    performance_drop: float = -1,
    labels: str = "from config",
) -> dict:
    """Merge the run form's parameters into the config, validate it, and check the data.

    The first task of a training run: a bad value (an unknown setting, a task that does not
    exist, an engine that is not installed, a missing dataset, a target that is not one of
    its columns) fails here within seconds with the message ``autokfp run`` prints for the
    same config, before any other task starts. A parameter left at ``from config`` (or -1)
    keeps the config's value. The drift-monitoring pipeline's first task is this one too,
    with its monitoring settings and ``check_data=False``.

    Args:
        config: An optional full run configuration (the YAML run config as a dict); the
            other parameters override its fields.
        dataset: ``<source>/<table or file>`` of the config's sources, a ``gs://`` or
            ``s3://`` URI or an absolute path of one file, or a DataHub dataset URN.
        target: The column to predict.
        task: ``auto``, ``binary``, ``multiclass`` or ``regression``.
        model_name: The registered model's name (lowercase, digits, '-'); default: the
            dataset's name.
        budget_seconds: Training time per engine in seconds, 10 to 86400 (-1: the config's).
        engines: Comma-separated engines that compete (e.g. ``h2o,autokeras``).
        require_approval: Hold the model back from production until a person approves it.
        check_data: Read the dataset and check its target column (the monitoring pipeline
            does not: it reads the data only when it retrains).
        window_days: Monitoring: compare the predictions of the last N days (-1: the
            config's ``monitoring.window_days``).
        drift_share: Monitoring: retrain when this share of features drifted (-1: config's).
        performance_drop: Monitoring: retrain when the live metric is worse than the test
            metric by this fraction of it (-1: config's).
        labels: Monitoring: where ground truth arrives (a CSV/Parquet file or folder,
            ``gs://``/``s3://``), joined to the predictions by id.

    Returns:
        The validated run configuration every later task reads.

    Raises:
        ConfigError: a bad setting or parameter; the message names each one.
        DataError: the dataset is missing, empty or unreadable.
        SchemaError: the target is not a column of the dataset.

    Example:
        >>> resolved = resolve_config(dataset="gs://bucket/churn/customers.parquet",
        ...                           target="churned", budget_seconds=600)
        >>> found = discover(config=resolved.output)
    """
    import logging

    from autokfp.steps.resolve_config import resolve_config as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, dataset=dataset, target=target, task=task, model_name=model_name,
                        budget_seconds=budget_seconds, engines=engines,
                        require_approval=require_approval, check_data=check_data,
                        window_days=window_days, drift_share=drift_share,
                        performance_drop=performance_drop, labels=labels))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(resolve_config, "resolve_config.yaml")
