"""KFP component: the champion's metric on labelled live rows, against its test value."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def measure_performance(
    config: dict,
    current: Input[Dataset],
    collection: Input[Artifact],
    performance: Output[Artifact],
    metrics: Output[Metrics],
) -> float:
    """Score the champion's live predictions against the labels that arrived.

    Needs at least ``monitoring.min_labelled_rows`` labelled rows; otherwise it reports
    why (no label source, labels not arrived yet, ids not logged) and measures nothing.

    Args:
        config: The run configuration (``monitoring``).
        current: The window's rows with their labels, from ``collect_predictions``.
        collection: The collection JSON from ``collect_predictions``.
        performance: Output. JSON: live metrics, the champion's test metric, the drop.
        metrics: Output. Live metrics and the relative drop of the primary metric.

    Returns:
        The relative drop of the primary metric (0 when not measured).

    Example:
        >>> p = measure_performance(config=cfg, current=c.outputs["current"],
        ...                         collection=c.outputs["collection"])
    """
    import logging

    from autokfp.steps.measure_performance import measure_performance as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, current.path, collection.path, performance.path),
                   metrics=metrics, performance=performance)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(measure_performance, "measure_performance.yaml")
