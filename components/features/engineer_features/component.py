"""KFP component: fix the held-out split and learn the feature plan."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def engineer_features(
    config: dict,
    dataset: Input[Dataset],
    schema: Input[Artifact],
    train: Output[Dataset],
    test: Output[Dataset],
    plan: Output[Artifact],
    report: Output[Markdown],
) -> NamedTuple("Outputs", [("task", str), ("features", int)]):
    """Split train/test (fixed per dataset) and learn the feature plan from training rows.

    Semantic types decide the features: datetime parts, categories (top levels, unseen
    ones mapped to ``__other__``), text token indicators, missing-value indicators.
    Identifiers, PII (by policy) and columns that leak the target are dropped and reported.

    Args:
        config: The run configuration.
        dataset: The training dataset (Parquet).
        schema: Its schema JSON.
        train: Output. Training rows (raw columns), Parquet.
        test: Output. Held-out test rows (raw columns), Parquet; the same rows every run.
        plan: Output. The fitted feature plan (JSON), packaged into the model later.
        report: Output. Markdown: feature groups, dropped columns and why, leakage scores.

    Returns:
        task: binary, multiclass or regression. features: number of model features.

    Example:
        >>> f = engineer_features(config=cfg, dataset=d.outputs["dataset"], schema=d.outputs["schema"])
    """
    import logging
    from collections import namedtuple

    from autokfp.steps.engineer_features import engineer_features as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    outputs = namedtuple("Outputs", ["task", "features"])
    return outputs(*publish(step(config, dataset.path, schema.path, train.path, test.path,
                                 plan.path, report.path), train=train, test=test))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(engineer_features, "engineer_features.yaml")
