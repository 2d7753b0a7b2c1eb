"""The `discover` step: files in, files out, one call into the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autokfp.config import RunConfig
from autokfp.governance.audit import batched, record_warning
from autokfp.steps.io import read_config, record_data_changes, write_parquet, write_text
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Discovered(StepResult):
    """What ``discover`` found: the crawl's counts and the training dataset's facts."""

    datasets_found: int
    datasets_failed: int
    training_dataset: str
    training_urn: str
    rows: int
    columns: int
    fingerprint: str
    schema_version: int | None
    accepted_schema_version: int | None
    data_changes: list[dict[str, Any]]
    """Every automatic change made to the data while reading it (audited)."""

    def publication(self) -> Publication:
        return Publication(
            metadata={"dataset": {"rows": self.rows, "columns": self.columns,
                                  "dataset_id": self.training_dataset, "urn": self.training_urn,
                                  "schema_version": self.schema_version or 0},
                      "catalog": {"datasets_found": self.datasets_found,
                                  "datasets_failed": self.datasets_failed}},
            returns=(self.fingerprint,))


@batched
def discover(config: dict[str, Any] | RunConfig, dataset_path: str, schema_path: str,
             catalog_path: str) -> Discovered:
    """Crawl every configured source into the catalog, then load the training dataset.

    The crawl records schema versions in the catalog (artifact store, DataHub Lite, and a
    DataHub GMS when ``DATAHUB_GMS_URL`` is set). If the training dataset's schema broke
    the accepted version, training stops here with a SchemaError naming the columns.

    Writes the training data as Parquet (``dataset_path``), its schema with semantic types
    and catalog facts (schema version, previous row count) as JSON (``schema_path``) and
    the metadata-change proposals for every discovered dataset (``catalog_path``, a file
    ``datahub check metadata-file`` accepts).
    """
    from autokfp.catalog.crawl import catalog_proposals, check_training_schema, crawl_sources
    from autokfp.catalog.datahub import dataset_urn, write_metadata
    cfg = read_config(config)
    if cfg.catalog.ingestion == "datahub":  # DataHub's own sources, autokfp's aspects on top
        from autokfp.catalog.ingest import ingest

        ingested = ingest(cfg, recipe=cfg.catalog.recipe)
        report = ingested.report
        for source, what in ingested.fallbacks.items():
            # DataHub's source ran in a child that hung; its recipe ran in this process
            record_warning("discovery.source_child_stalled", f"source '{source}': {what}",
                           {"source": source}, model=cfg.model_name)
    else:
        report = crawl_sources(cfg, training=cfg.training)
    failed = [d for d in report.datasets if d.status == "failed"]
    for dataset in failed:  # one dataset of a source
        log.warning("discovery could not read %s: %s", dataset.dataset_id, dataset.error)
    for source, error in report.source_errors.items():
        # a whole source (a folder that does not exist, a database out of reach): one of the
        # run's warnings (`autokfp run` lists them), unless training reads it, which fails
        # below with the error that names it
        record_warning("discovery.source_failed", f"source '{source}' was not catalogued: {error}",
                       {"source": source}, model=cfg.model_name)
    check_training_schema(report, cfg.training.dataset)
    schema, rows, columns, changes = _write_training_data(cfg, dataset_path)
    record_data_changes(cfg.model_name, "discover", changes, dataset=schema.dataset_id)
    crawled = next((d for d in report.found if d.ok and d.dataset_id == schema.dataset_id), None)
    if crawled is not None:
        schema.catalog = dict(crawled.schema.catalog)
        schema.modified_at = crawled.schema.modified_at
        schema.nested_fields = list(crawled.schema.nested_fields)
    write_metadata(catalog_path, catalog_proposals(report, replace={schema.dataset_id: schema}))
    write_text(schema_path, schema.to_json())
    return Discovered(
        datasets_found=sum(1 for d in report.found if d.ok),
        datasets_failed=len(failed) + len(report.source_errors),
        training_dataset=schema.dataset_id,
        training_urn=dataset_urn(schema),
        rows=rows,
        columns=columns,
        fingerprint=schema.fingerprint,
        schema_version=schema.catalog.get("schema_version"),
        accepted_schema_version=schema.catalog.get("accepted_version"),
        data_changes=changes,
    )


def _write_training_data(cfg: RunConfig, dataset_path: str) -> tuple[Any, int, int, list[Any]]:
    """Write the training dataset as Parquet: (its schema, rows, columns, what reading it
    changed). A Parquet, CSV or JSON-lines file of a folder and a SQL table are copied in
    batches, never whole in memory (one whose later rows cannot be copied as pandas reads the
    whole is loaded whole: see catalog/csv_stream.py and catalog/chunk_copy.py). An object
    of a bucket (gcs, s3) is downloaded to a local temporary file, written as it arrives,
    and copied from there the same way."""
    from autokfp.catalog.chunk_copy import copy_jsonl_dataset, copy_sql_dataset
    from autokfp.catalog.csv_stream import copy_csv_dataset
    from autokfp.catalog.discovery import copy_parquet_dataset, load_dataset, object_file
    from autokfp.catalog.sources.files import DATA_CHANGES

    streamed: list[Any] = []  # what reading a streamed dataset changed (latin-1, dates)
    dataset = cfg.training.dataset
    with object_file(cfg, dataset) as local:
        schema = (copy_parquet_dataset(cfg, dataset, dataset_path, local=local)
                  or copy_csv_dataset(cfg, dataset, dataset_path, changes=streamed, local=local)
                  or copy_jsonl_dataset(cfg, dataset, dataset_path, local=local,
                                        changes=streamed)
                  or copy_sql_dataset(cfg, dataset, dataset_path, changes=streamed))
    if schema is not None:
        return schema, schema.row_count, len(schema.columns), streamed
    frame, schema = load_dataset(cfg, cfg.training.dataset)
    changes = list(frame.attrs.pop(DATA_CHANGES, [])) + _mixed_as_text(frame, dataset)
    write_parquet(dataset_path, frame)
    return schema, len(frame), len(frame.columns), changes


def _mixed_as_text(frame: Any, dataset: str) -> list[str]:
    """Columns that mix text with numbers or booleans (pandas' object column of a JSON-lines
    file with text in a number column), which Parquet cannot hold, made text in place (each
    value as Python writes it: 3, 2.5, True), as pd.read_csv makes such a CSV column; a note
    for each. Nested values (objects, lists) are left as they are."""
    import pandas as pd

    from autokfp.catalog.sources.files import mixed_text_note

    notes = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) not in (
                "mixed", "mixed-integer"):
            continue
        present = column.dropna()
        kinds = {type(value) for value in present}
        if str not in kinds or not kinds <= {str, int, float, bool}:
            continue
        shown = present[present.map(lambda v: isinstance(v, str))].iloc[0]
        frame[name] = column.map(lambda v: v if v is None or isinstance(v, str)
                                 or (isinstance(v, float) and v != v) else str(v))
        notes.append(mixed_text_note(name, dataset, str(shown)))
    return notes
