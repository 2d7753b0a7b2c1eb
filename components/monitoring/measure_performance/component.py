"""KFP component: the champion's metric on labelled live rows, against its test value."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def measure_performance(
    current: Input[Dataset],
    collection: Input[Artifact],
    performance: Output[Artifact],
    metrics: Output[Metrics],
    min_labelled_rows: int = -1,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> float:
    """Score the champion's live predictions against the labels that arrived.

    Needs at least ``monitoring.min_labelled_rows`` labelled rows; otherwise it reports
    why (no label source, labels not arrived yet, ids not logged) and measures nothing.

    Usable alone: ``measure_performance(current=c.outputs["current"],
    collection=c.outputs["collection"])`` after ``collect_predictions`` given ``labels``
    (no run config: the model is the one the collection names).

    Args:
        current: The window's rows with their labels, from ``collect_predictions``.
        collection: The collection JSON from ``collect_predictions``.
        performance: Output. JSON: live metrics, the champion's test metric, the drop.
        metrics: Output. Live metrics and the relative drop of the primary metric.
        min_labelled_rows: Fewer labelled rows give no verdict, e.g. 100; -1: the config's
            ``monitoring.min_labelled_rows`` (default 100, at least 10).
        config: Optional: the run configuration (autokfp's pipeline passes the resolved
            one); ``min_labelled_rows`` overrides it.

    Returns:
        The relative drop of the primary metric (0 when not measured).

    Raises:
        ConfigError: no config and a collection that names no model, or a value out of
            range.

    Example:
        >>> p = measure_performance(config=cfg, current=c.outputs["current"],
        ...                         collection=c.outputs["collection"])
        >>> p = measure_performance(current=c.outputs["current"],
        ...                         collection=c.outputs["collection"])  # used alone
    """
    import logging

    from autokfp.steps.form import monitoring_config
    from autokfp.steps.measure_performance import measure_performance as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_config = monitoring_config(config, what="measure_performance", named_in=collection.path,
                                   min_labelled_rows=min_labelled_rows)
    return publish(step(run_config, current.path, collection.path, performance.path),
                   metrics=metrics, performance=performance)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(measure_performance, "measure_performance.yaml")
