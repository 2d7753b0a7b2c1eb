"""KFP component: the training inputs from their content-addressed folder (cached)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def load_training_data(
    training_data: str,
    train: Output[Dataset],
    plan: Output[Artifact],
) -> None:
    """Load the training rows and the feature plan from the folder whose URI names their digest.

    ``engineer_features`` stores what training reads under
    ``<AUTOKFP_ARTIFACT_ROOT>/training-data/sha256-<digest>/`` and returns that URI as
    ``training_data``. This task's only input is that URI, and autokfp's pipeline caches it:
    in a new run on the same data KFP's cache key of this task is the same, KFP reuses its
    earlier ``train`` and ``plan`` artifacts, and the GPU training tasks fed from them (whose
    key holds those artifacts' ids) are not run again. A changed row, or a changed feature
    plan, is another digest, another URI, and training runs.

    Usable alone: ``load_training_data(training_data=f.outputs["training_data"])`` after
    ``engineer_features``; enable caching on the task (``task.set_caching_options(True)``).

    Args:
        training_data: The content-addressed folder, from ``engineer_features``.
        train: Output. Training rows (raw columns), Parquet; its metadata holds the digest.
        plan: Output. The feature plan (JSON).

    Raises:
        StorageError: the folder is missing, incomplete, or its content no longer matches its
            digest.

    Example:
        >>> data = load_training_data(training_data=f.outputs["training_data"])
        >>> t = train_model(config=item.settings, engine=item.engine,
        ...                 train=data.outputs["train"], plan=data.outputs["plan"])
    """
    import logging

    from autokfp.steps.load_training_data import load_training_data as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    publish(step(training_data, train.path, plan.path), train=train, plan=plan)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(load_training_data, "load_training_data.yaml")
