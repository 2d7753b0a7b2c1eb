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
from autokfp.pipelines.cluster import ClusterOptions, configure_task
from autokfp.pipelines.training.autonomous_training import EXAMPLE_CONFIG

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
    def discovery(config: dict = EXAMPLE_CONFIG) -> int:
        """Crawl every source of ``config`` into the catalog and count the changed datasets.

        Args:
            config: The run configuration as JSON; discovery reads its sources (folders,
                gs:// or s3:// prefixes, SQL databases with passwords as ${VAR}) and
                training.target (tagged in the catalog). The default is an example:
                replace its bucket. See the project's README, "The run config".
        """
        crawled = configure_task(catalog_sources(config=config), options, name="crawl + catalog all sources")
        return crawled.outputs["Output"]

    return discovery


discovery = build_discovery()
