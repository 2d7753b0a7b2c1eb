"""KFP component: score a dataset with a registered model, chunked and resumable."""

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def score_batch(
    dataset: str,
    summary: Output[Artifact],
    metrics: Output[Metrics],
    model: str = "from config",
    output: str = "artifact store",
    keys: str = "from model",
    chunk_rows: int = 50000,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Score a dataset with a registered model and write the predictions next to its keys.

    The rows are scored in chunks of ``chunk_rows``; each chunk's predictions (the key
    columns, ``prediction``, ``probability_<class>`` and ``model_version``) are written as
    one Parquet part, staged under ``<output>/<model>/v<version>/_temporary/<batch id>/``
    until every chunk is there, then moved to ``<output>/<model>/v<version>/<batch id>/``;
    for a SQL table each chunk goes to ``<table>__staging`` in one transaction and the whole
    batch into the table in one more. The batch id hashes the model version, the input's content, the keys
    and the chunk size: a rerun of the same batch (a retried task, a preempted pod) skips
    the chunks already written. Lineage dataset -> model version -> predictions goes to the
    catalog (DataHub Lite, and a GMS when ``DATAHUB_GMS_URL`` is set).

    Args:
        dataset: The data to score: a ``gs://`` or ``s3://`` URI or an absolute path of one
            Parquet/CSV file, a folder of Parquet parts (an absolute path, or a ``gs://`` or
            ``s3://`` prefix ending in ``/``; read as ``pyarrow.dataset`` reads it: hive
            folders such as ``day=2/`` give a ``day`` column, names starting with ``_`` or
            ``.`` such as ``_SUCCESS`` and ``_temporary/`` are skipped; streamed in chunks), ``<source>/<table or file>`` of ``config``'s sources,
            ``<database URL>#<table>``, or a DataHub dataset URN the catalog knows.
        summary: Output. What was scored and where (JSON: model, version, output, batch id,
            chunks scored and skipped, lineage URNs).
        metrics: Output. Rows, chunks, chunks scored and skipped, seconds.
        model: The registered model: ``NAME@ALIAS``, ``NAME`` (its champion) or
            ``NAME/VERSION``; ``from config``: the champion of ``config``'s name.
        output: Where predictions go: a folder, a ``gs://``/``s3://`` prefix, or
            ``<database URL>#<table>``; ``artifact store``: ``<AUTOKFP_ARTIFACT_ROOT>/scores``.
        keys: Comma-separated key columns written next to the predictions; ``from model``:
            the columns the model's feature plan dropped as identifiers (else the row number).
        chunk_rows: Rows per chunk (the unit that is written, and skipped on a rerun).
        config: Optional run configuration: its sources (SQL URLs with ``${VAR}`` secrets,
            folders) and name.

    Returns:
        Where the predictions were written.

    Raises:
        ConfigError: a bad dataset, model or output; the message names it. In a cluster, a
            literal password in ``dataset``, ``output`` or a source of ``config`` (a run's
            parameters are stored and shown by Kubeflow): write ``${VAR}`` from the Secret.
        DataError: the dataset is missing or empty, or a key column is not in it.

    Example:
        >>> scored = score_batch(dataset="gs://bucket/churn/new_customers.parquet",
        ...                      model="churn@champion", output="gs://bucket/scores")
    """
    import logging

    from autokfp.steps.results import publish
    from autokfp.steps.score_batch import score_batch as step

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return publish(step(dataset, model=model, output=output, keys=keys, chunk_rows=chunk_rows,
                        config=config, summary_path=summary.path),
                   metrics=metrics, summary=summary)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(score_batch, "score_batch.yaml")
