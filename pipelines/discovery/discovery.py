"""The ``discovery`` pipeline: crawl every configured source into the catalog.

One task, ``catalog_sources``: folders, ``gs://`` prefixes and SQL databases are
profiled, compared with their last catalogued schema versions, and published to the
artifact store, DataHub Lite and (with ``DATAHUB_GMS_URL``) a DataHub GMS. It runs alone,
so a platform team can schedule it (e.g. hourly) and learn about a changed source before a
training run does; the training pipeline's discover step runs the same crawl.

One task rather than one per source on purpose: the catalog index is one file, and on
``gs://`` there is no lock to serialise parallel writers.
"""

from kfp import dsl

from autokfp.components import catalog_sources
from autokfp.pipelines.cluster import ClusterOptions, built_on_first_use, configure_task
from autokfp.pipelines.training.autonomous_training import FROM_CONFIG

PIPELINE_NAME = "discovery"


def build_discovery(options: "ClusterOptions | None" = None):
    """Build the pipeline with ``options`` (cluster settings; ignored by kfp.local)."""
    options = options or ClusterOptions()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Data discovery: crawl every configured source (folders, gs://, SQL), "
                    "record schema versions and breaking changes, tag PII, and publish the "
                    "catalog to DataHub.",
    )
    def discovery(
        sources: str = FROM_CONFIG,
        include: str = FROM_CONFIG,
        config: dict = {},  # noqa: B006 - a KFP default, never mutated
    ) -> int:
        """Crawl every source into the catalog and count the datasets whose schema broke.

        Args:
            sources: Comma-separated locations to crawl, e.g.
                gs://my-bucket/churn,postgresql://reader:${PG_PASSWORD}@db/crm: gs:// or
                s3:// prefixes, absolute folder paths, database URLs (a password only as
                ${VAR}, from the pods' Secret; #<table> for one table). Each is a source
                named after its last path part. "from config": config's sources.
            include: Comma-separated file patterns read in the folders and buckets, e.g.
                *.parquet,*.csv. "from config": the sources' own (default
                *.csv,*.parquet,*.jsonl).
            config: Optional: a full run configuration as JSON (sources with their own
                names and settings; training.target is tagged in the catalog); the fields
                above override it. See the project's README, "The run config".
        """
        crawled = configure_task(catalog_sources(sources=sources, include=include, config=config),
                                 options, name="crawl + catalog all sources")
        return crawled.outputs["Output"]

    return discovery


# ``discovery`` (default options) is built when first read: see built_on_first_use
__getattr__, __dir__ = built_on_first_use(globals(), "discovery", build_discovery)
