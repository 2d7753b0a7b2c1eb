"""KFP component: crawl every configured source into the catalog (the discovery pipeline)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def catalog_sources(
    report: Output[HTML],
    catalog: Output[Artifact],
    metrics: Output[Metrics],
    sources: str = "from config",
    include: str = "from config",
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> int:
    """Crawl the given sources (or the config's) into the catalog and report what changed.

    Every file and table is profiled (semantic types, PII tags), compared with its last
    catalogued schema version, and published to the artifact store, DataHub Lite and (when
    ``DATAHUB_GMS_URL`` is set) a DataHub GMS. Unchanged inputs are not read again. Bad
    files, tables and sources are reported, never fatal: this step fails only when the
    catalog itself cannot be written.

    Usable alone: ``catalog_sources(sources="gs://my-bucket/churn,postgresql://...")`` needs
    no run config.

    Args:
        report: Output. The crawl report as HTML: every dataset with its status, schema
            version, verdict (compatible / breaking), tags and errors.
        catalog: Output. DataHub metadata-change proposals for every dataset read (JSON,
            accepted by ``datahub check metadata-file``).
        metrics: Output. Counts: catalogued, new, changed, breaking, reused, failed.
        sources: Comma-separated locations to crawl, each a ``gs://`` or ``s3://`` prefix,
            an absolute folder path, or a database URL (passwords as ``${VAR}``; ``#table``
            for one table); they replace the config's sources. "from config": config's.
        include: Comma-separated file patterns of the folders and buckets crawled (e.g.
            ``*.parquet,*.csv``). "from config": the sources' own (default
            ``*.csv,*.parquet,*.jsonl``).
        config: Optional: a run configuration (its ``sources``; ``training`` tags the
            target column).

    Returns:
        The number of datasets whose schema broke their accepted version.

    Raises:
        ConfigError: a location that is none of the above, or an invalid config.
        StorageError: the artifact store holding the catalog cannot be written.

    Example:
        >>> crawl = catalog_sources(sources="gs://my-bucket/churn", include="*.parquet")
    """
    import logging

    from autokfp.steps.catalog_sources import catalog_sources as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, report.path, catalog.path, sources=sources, include=include),
                   metrics=metrics, catalog=catalog)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(catalog_sources, "catalog_sources.yaml")
