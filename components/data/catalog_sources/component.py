"""KFP component: crawl every configured source into the catalog (the discovery pipeline)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def catalog_sources(
    config: dict,
    report: Output[HTML],
    catalog: Output[Artifact],
    metrics: Output[Metrics],
) -> int:
    """Crawl every source of ``config`` into the catalog and report what changed.

    Every file and table is profiled (semantic types, PII tags), compared with its last
    catalogued schema version, and published to the artifact store, DataHub Lite and (when
    ``DATAHUB_GMS_URL`` is set) a DataHub GMS. Unchanged inputs are not read again. Bad
    files, tables and sources are reported, never fatal: this step fails only when the
    catalog itself cannot be written.

    Args:
        config: The run configuration (its ``sources``; ``training`` tags the target).
        report: Output. The crawl report as HTML: every dataset with its status, schema
            version, verdict (compatible / breaking), tags and errors.
        catalog: Output. DataHub metadata-change proposals for every dataset read (JSON,
            accepted by ``datahub check metadata-file``).
        metrics: Output. Counts: catalogued, new, changed, breaking, reused, failed.

    Returns:
        The number of datasets whose schema broke their accepted version.

    Raises:
        StorageError: the artifact store holding the catalog cannot be written.

    Example:
        >>> crawl = catalog_sources(config=run_config)
    """
    import logging

    from autokfp.steps.catalog_sources import catalog_sources as step
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(config, report.path, catalog.path), metrics=metrics, catalog=catalog)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(catalog_sources, "catalog_sources.yaml")
