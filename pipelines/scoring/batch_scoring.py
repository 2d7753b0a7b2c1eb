"""The ``batch-scoring`` pipeline: score a dataset with a registered model.

One task, ``score_batch``: the dataset (a file, or a folder of Parquet parts, local or
``gs://``/``s3://``; or a SQL table) is scored in chunks by the model (``NAME@ALIAS``, the champion by default) and
the predictions are written next to the input's keys to the object store or a SQL table.
A rerun skips the chunks already written; lineage dataset -> model -> predictions goes to
the catalog. Run it from the Kubeflow UI, with ``autokfp score``, or as a recurring run
(``autokfp schedule --pipeline batch-scoring``).
"""

from kfp import dsl

from autokfp.components import score_batch
from autokfp.pipelines.cluster import ClusterOptions, built_on_first_use, configure_task

PIPELINE_NAME = "batch-scoring"
# not "": the KFP UI reports a falsy default as "Missing parameter" (kubeflow/pipelines#11515)
FROM_CONFIG = "from config"


def build_batch_scoring(options: "ClusterOptions | None" = None):
    """Build the pipeline with ``options`` (cluster settings; ignored by kfp.local)."""
    options = options or ClusterOptions()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Batch scoring: score a dataset (folder, gs:// or s3:// Parquet, SQL table) "
                    "with a registered model, chunked and resumable, and write the predictions "
                    "next to the input's keys to the object store or a SQL table.",
    )
    def batch_scoring(
        dataset: str = FROM_CONFIG,
        model: str = FROM_CONFIG,
        output: str = "artifact store",
        keys: str = "from model",
        chunk_rows: int = 50000,
        config: dict = {},  # noqa: B006 - a KFP default, never mutated
    ) -> dsl.Artifact:
        """Score a dataset with a registered model.

        Args:
            dataset: The data to score: a gs:// or s3:// URI of a Parquet/CSV file (e.g.
                gs://my-bucket/churn/new_customers.parquet) or of a folder of Parquet parts
                (ending in /, e.g. s3://lake/churn/2026-06-30/), <database URL>#<table>,
                <source>/<table or file> of the sources in config, or a DataHub dataset URN
                (urn:li:dataset:...) that the catalog knows. "from config": config's
                training.dataset.
            model: The registered model: NAME@ALIAS (e.g. churn@champion), NAME (its
                champion) or NAME/VERSION. "from config": the champion of config's name.
            output: Where the predictions go: a gs:// or s3:// prefix, or
                <database URL>#<table> (e.g. postgresql://scorer:${PG_PASSWORD}@db/crm#churn_scores).
                "artifact store": <AUTOKFP_ARTIFACT_ROOT>/scores.
            keys: Comma-separated key columns written next to each prediction. "from model":
                the columns the model dropped as identifiers (else the row number).
            chunk_rows: Rows scored and written at a time; a rerun skips finished chunks.
            config: Optional: a run configuration as JSON, for its sources (e.g. a SQL
                source whose password is a ${VAR}) and its model name.
        """
        scored = configure_task(
            score_batch(dataset=dataset, model=model, output=output, keys=keys,
                        chunk_rows=chunk_rows, config=config),
            options, name="score the dataset (chunked, resumable)")
        # a retried task resumes: the chunks already written are skipped
        scored.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0)
        return scored.outputs["summary"]

    return batch_scoring


# ``batch_scoring`` (default options) is built when first read: see built_on_first_use
__getattr__, __dir__ = built_on_first_use(globals(), "batch_scoring", build_batch_scoring)
