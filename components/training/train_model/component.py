"""KFP component: train one engine's candidate (GPU in the cluster, CPU locally)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("training"), install_kfp_package=False)
def train_model(
    train: Input[Dataset],
    plan: Input[Artifact],
    model: Output[Model],
    leaderboard: Output[HTML],
    metrics: Output[Metrics],
    engine: str = "h2o",
    budget_seconds: int = -1,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Train ``engine`` within ``config.budget`` and package its leader as an MLflow pyfunc.

    One component for every engine: the pipeline fans it out over the configured engines
    (``list_engines``), and each engine reads its own settings from
    ``config.engines.<engine>`` (H2O AutoML: max_models, nfolds, max_mem_size, ...;
    AutoKeras: max_trials, epochs, patience, ...). The leader's artifacts and the feature
    plan become one MLflow pyfunc model folder that scores raw rows in-process. The engine
    uses the node's GPU when it can. It runs in a child process: if it raises, is killed
    (out of memory) or overruns its time, the task still succeeds and ``model`` holds a
    ``candidate.json`` marker with ``status: failed`` and the reason, so selection falls
    back to the other engines' leaders. An engine left out of ``config.engines`` writes a
    ``skipped`` marker.

    Usable alone: ``train_model(train=f.outputs["train"], plan=f.outputs["plan"],
    engine="h2o", budget_seconds=300)`` after ``engineer_features`` (no config: every
    setting's default). In a cluster the GPU request is a task setting:
    ``autokfp.pipelines.cluster.configure_training_task(task, ClusterOptions.from_env())``.

    Args:
        train: Training rows (Parquet), from ``engineer_features`` (in autokfp's pipeline
            through ``load_training_data``, whose cached, content-addressed copy keeps this
            task's cache key the same in a new run on the same data).
        plan: The feature plan (JSON), from ``engineer_features`` (idem).
        model: Output. The MLflow pyfunc model folder (or a failed/skipped candidate marker);
            its metadata names the engine, status, leader and device.
        leaderboard: Output. The engine's leaderboard (models or trials) as HTML.
        metrics: Output. Cross-validation (or validation) metrics of the leader and
            training figures.
        engine: The engine's registered name (e.g. ``h2o``, ``autokeras``).
        budget_seconds: The engine's search time in seconds (-1: the config's
            ``budget.max_runtime_secs``, default 120).
        config: Optional: what training reads: an item's ``settings`` from
            ``list_engines`` (budget, ``engines.<engine>``, primary metric, calibration), or
            a whole run config; ``budget_seconds`` overrides its budget.

    Returns:
        The candidate's status: ``trained``, ``failed`` or ``skipped``.

    Example:
        >>> t = train_model(config=item.settings, engine=item.engine,
        ...                 train=f.outputs["train"], plan=f.outputs["plan"])
        >>> t = train_model(train=f.outputs["train"], plan=f.outputs["plan"],
        ...                 engine="h2o", budget_seconds=300)              # used alone
    """
    import logging

    from autokfp.steps.form import training_form
    from autokfp.steps.results import publish
    from autokfp.steps.train_model import train_candidate as step

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(training_form(config, budget_seconds), train.path, plan.path, model.path, leaderboard.path,
                        engine=engine), metrics=metrics, model=model)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(train_model, "train_model.yaml")
