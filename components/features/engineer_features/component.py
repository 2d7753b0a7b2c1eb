"""KFP component: fix the held-out split and learn the feature plan."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def engineer_features(
    dataset: Input[Dataset],
    train: Output[Dataset],
    test: Output[Dataset],
    plan: Output[Artifact],
    report: Output[Markdown],
    schema: Input[Artifact] = None,
    target: str = "from config",
    task: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> NamedTuple("Outputs", [("task", str), ("features", int), ("training_data", str)]):
    """Split train/test (fixed per dataset) and learn the feature plan from training rows.

    Semantic types decide the features: datetime parts, categories (top levels, unseen
    ones mapped to ``__other__``), text token indicators, missing-value indicators.
    Identifiers, PII (by policy) and columns that leak the target are dropped and reported.

    Usable alone, on any Parquet or CSV ``Dataset``:
    ``engineer_features(dataset=d, target="churned")`` (no run config, no schema: the
    dataset is profiled here); its ``train`` and ``plan`` feed ``train_model``.

    The train rows and the plan (what training reads) are also stored in the artifact store
    under ``<AUTOKFP_ARTIFACT_ROOT>/training-data/sha256-<digest>/``, returned as
    ``training_data``: autokfp's pipeline hands that URI to ``load_training_data`` (cached),
    so that a new run on unchanged data does not train again.

    Args:
        dataset: The training dataset (Parquet, or CSV when used alone).
        train: Output. Training rows (raw columns), Parquet.
        test: Output. Held-out test rows (raw columns), Parquet; the same rows every run.
        plan: Output. The fitted feature plan (JSON), packaged into the model later.
        report: Output. Markdown: feature groups, dropped columns and why, leakage scores.
        schema: Optional: its schema JSON (from ``discover``); without it the dataset is
            profiled here (semantic types, PII tags).
        target: The column to predict. "from config": ``config.training.target``.
        task: ``auto``, ``binary``, ``multiclass`` or ``regression``. "from config":
            ``config.training.task`` (default auto).
        config: Optional: the run configuration (``split``, ``features``; autokfp's pipelines
            pass the resolved one); ``target`` and ``task`` override it.

    Returns:
        task: binary, multiclass or regression. features: number of model features.
        training_data: the URI of the content-addressed folder holding the train rows and
        the plan (for ``load_training_data``).

    Example:
        >>> f = engineer_features(config=cfg, dataset=d.outputs["dataset"], schema=d.outputs["schema"])
        >>> f = engineer_features(dataset=my_task.outputs["data"], target="churned")  # alone
    """
    import logging
    from collections import namedtuple

    from autokfp.steps.engineer_features import engineer_features as step
    from autokfp.steps.form import standalone
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    inputs = standalone(config, dataset.path, schema.path if schema is not None else None,
                        target=target, task=task)
    outputs = namedtuple("Outputs", ["task", "features", "training_data"])
    return outputs(*publish(step(inputs.config, inputs.dataset_path, inputs.schema_path,
                                 train.path, test.path, plan.path, report.path,
                                 store_training_data=True),
                            train=train, test=test))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(engineer_features, "engineer_features.yaml")
