"""KFP component: discover data sources and load the training dataset."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def discover(
    dataset: Output[Dataset],
    schema: Output[Artifact],
    catalog: Output[Artifact],
    dataset_uri: str = "from config",
    target: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Crawl every configured source, catalog it, and load the training dataset.

    Folders, ``gs://`` prefixes and SQL databases named in ``config.sources`` are crawled;
    every table or file is profiled with semantic types (id, numeric, categorical,
    datetime, text, PII kinds) and written as DataHub metadata-change proposals. Each
    dataset's schema is compared with its last catalogued version and a new schema version
    is recorded when it changed (artifact store, DataHub Lite, and a DataHub GMS when
    ``DATAHUB_GMS_URL`` is set). Unchanged inputs are not read again.

    Usable alone: ``discover(dataset_uri="gs://my-bucket/churn/customers.parquet",
    target="churned")`` (no run config: the file is the only source crawled); its
    ``dataset`` and ``schema`` feed ``profile`` and ``engineer_features``.

    Args:
        dataset: Output. The training dataset (``config.training.dataset``) as Parquet.
        schema: Output. Its schema with semantic types and profile, as JSON.
        catalog: Output. DataHub metadata-change proposals for every dataset found (JSON,
            accepted by ``datahub check metadata-file``).
        dataset_uri: The dataset to load: a ``gs://`` or ``s3://`` URI or an absolute path of
            one Parquet/CSV file, ``<database URL>#<table>``, ``<source>/<table or file>`` of
            the config's sources, or a DataHub dataset URN. "from config":
            ``config.training.dataset``.
        target: The column to predict (tagged in the catalog). "from config":
            ``config.training.target``.
        config: Optional: the run configuration (the YAML run config as a dict; autokfp's
            pipelines pass the resolved one); the inputs above override it.

    Returns:
        The training dataset's schema fingerprint (changes iff its columns or types change).

    Raises:
        ConfigError: a bad input or setting (no dataset, a URN the catalog does not know).
        DataError: the training dataset is missing, empty or unreadable.
        SchemaError: the training dataset's schema broke its accepted version (a used
            column was removed, renamed or changed type); the message names the columns.
            Fix the source, or accept the new schema with ``autokfp catalog accept DATASET``.

    Example:
        >>> task = discover(config=run_config)
        >>> task = discover(dataset_uri="gs://my-bucket/churn/customers.parquet",
        ...                 target="churned")                          # used alone
    """
    import logging

    from autokfp.steps.discover import discover as step
    from autokfp.steps.form import located_config
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(located_config(config, dataset_uri, target), dataset.path, schema.path,
                        catalog.path), dataset=dataset, catalog=catalog)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(discover, "discover.yaml")
