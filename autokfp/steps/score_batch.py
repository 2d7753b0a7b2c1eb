"""The `score_batch` step: score a dataset with a registered model, chunk by chunk, resumably,
and record dataset -> model version -> predictions in the catalog."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autokfp.config import FROM_CONFIG
from autokfp.errors import ConfigError, DataError
from autokfp.steps.io import write_json
from autokfp.steps.results import Publication, StepResult, finite_metrics

if TYPE_CHECKING:
    from autokfp.modeling.registry import ModelRef

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "artifact store"  # <AUTOKFP_ARTIFACT_ROOT>/scores
FROM_MODEL = "from model"  # keys: the columns the model's feature plan dropped as identifiers


@dataclass(frozen=True)
class BatchScored(StepResult):
    """One batch-scoring run: where the predictions went and what was (re)scored."""

    model: str
    version: str
    dataset: str
    output: str
    batch_id: str
    rows: int
    chunks: int
    scored_chunks: int
    skipped_chunks: int
    seconds: float
    keys: tuple[str, ...]

    def publication(self) -> Publication:
        counts = finite_metrics({"rows": self.rows, "chunks": self.chunks,
                                 "scored_chunks": self.scored_chunks,
                                 "skipped_chunks": self.skipped_chunks, "seconds": self.seconds})
        return Publication(metrics=counts, metadata={"summary": {
            "model": self.model, "model_version": self.version, "dataset": self.dataset,
            "output": self.output, "batch_id": self.batch_id, "keys": list(self.keys)}},
            returns=(self.output,))


def parse_model(spec: str, config: dict[str, Any] | None, what: str = "model") -> ModelRef:
    """The ``model`` parameter as a registered model's reference (``registry.parse_model_ref``:
    ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME``, its champion); ``from config`` (or empty):
    the champion of the config's ``name``."""
    from autokfp.modeling.registry import CHAMPION, ModelRef, parse_model_ref

    if (spec or "").strip() in ("", FROM_CONFIG):
        name = (config or {}).get("name")
        if not name:
            raise ConfigError(f"{what}: give the registered model as NAME@ALIAS (e.g. "
                              "churn@champion), NAME (its champion) or NAME/VERSION; none was "
                              "given and the config names no model ('name')")
        return ModelRef(str(name), alias=CHAMPION)
    return parse_model_ref(spec, what=what)


def _load_model(ref: ModelRef) -> tuple[str, Any]:
    """(version, pyfunc) of ``ref`` from the registry."""
    from autokfp.modeling import registry
    from autokfp.modeling.model_package import load_model_package

    client = registry.configure()
    try:
        version = (ref.version if ref.version is not None
                   else str(client.get_model_version_by_alias(ref.name, ref.alias).version))
        client.get_model_version(ref.name, version)
    except Exception:  # noqa: BLE001 - MLflow raises its own exception types
        raise ConfigError(f"model '{ref}' is not in the registry (MLFLOW_TRACKING_URI); "
                          "see autokfp models for the registered names, versions and aliases"
                          ) from None
    return version, load_model_package(f"models:/{ref.name}/{version}")


def _output_platform(target: Any) -> str:
    if target.kind == "sql":
        dialect = target.location.split("://", 1)[0].split("+", 1)[0]
        return "postgres" if dialect == "postgresql" else dialect
    scheme = target.location.split("://", 1)[0] if "://" in target.location else "file"
    return {"gs": "gcs", "minio": "s3"}.get(scheme, scheme)


def score_batch(dataset: str, model: str = FROM_CONFIG, output: str = DEFAULT_OUTPUT,
                keys: str = FROM_MODEL, chunk_rows: int = 50_000,
                config: dict[str, Any] | None = None,
                summary_path: str | None = None) -> BatchScored:
    """Score ``dataset`` with the registered ``model`` and write the predictions, next to the
    input's key columns, to ``output`` (see ``autokfp.serving.batch``).

    ``dataset`` is ``<source>/<table or file>`` of ``config``'s sources, a ``gs://``/
    ``s3://`` URI or absolute path of one file, a folder of Parquet parts (an absolute path,
    or a ``gs://``/``s3://`` prefix ending in ``/``: ``parts_folder``),
    ``<database URL>#<table>``, or a DataHub dataset URN (looked up in the catalog, ``autokfp.catalog.locations``). ``keys`` is
    a comma-separated list of columns (default: the model's identifier columns, else the
    row number). A rerun of the same batch skips the chunks already written.
    """
    from autokfp.catalog.lineage import record_scoring_lineage
    from autokfp.catalog.sources.base import open_source
    from autokfp.serving.batch import parse_target, score_frame, score_parts
    from autokfp.serving.parts import open_parts
    from autokfp.settings import Settings, require_shared_state
    from autokfp.storage import join

    config = config or {}
    _refuse_literal_passwords(dataset, output, config)
    require_shared_state()
    settings = Settings.from_env()
    folder = parts_folder(dataset)
    if folder is None:  # a file or table: through a source, as discovery reads it
        source, dataset_id, relative = _source_of(dataset, config, settings)
    else:  # listed and footers read first: a folder that cannot be scored fails before
        parts, dataset_id = open_parts(folder), folder  # the model downloads
    ref = parse_model(model, config)
    name = ref.name
    target = parse_target(join(settings.artifact_root, "scores")
                          if output.strip() in ("", DEFAULT_OUTPUT) else output)
    version, package = _load_model(ref)
    if folder is not None:  # streamed: one chunk of rows held at a time
        platform = parts.platform
        result = score_parts(parts, package.predict, model=name, version=version,
                             target=target, keys=_key_columns(keys, parts.columns, package),
                             chunk_rows=int(chunk_rows))
    else:
        loaded = open_source(source).load(dataset_id, relative)
        frame, platform = loaded.frame, loaded.platform
        key_columns = _key_columns(keys, list(frame.columns), package)
        if not len(frame):
            raise DataError(f"dataset '{dataset_id}' has no rows to score")
        result = score_frame(frame, package.predict, model=name, version=version,
                             dataset=dataset_id, target=target, keys=key_columns,
                             chunk_rows=int(chunk_rows))
    lineage = record_scoring_lineage(
        dataset_id, platform, name, version, result.output, _output_platform(target),
        properties={"batch_id": result.batch_id, "rows": str(result.rows)}, settings=settings)
    if summary_path:
        write_json(summary_path, {**result.to_dict(), "lineage": {
            k: v for k, v in lineage.items() if k != "published"}})
    log.info("scored %d rows of %s with %s v%s into %s (%d chunks, %d skipped)", result.rows,
             dataset_id, name, version, result.output, result.chunks, result.skipped_chunks)
    return BatchScored(model=name, version=version, dataset=dataset_id, output=result.output,
                       batch_id=result.batch_id, rows=result.rows, chunks=result.chunks,
                       scored_chunks=result.scored_chunks, skipped_chunks=result.skipped_chunks,
                       seconds=result.seconds, keys=tuple(result.keys))


_FOLDER_SCHEMES = ("gs", "s3", "minio")


def parts_folder(dataset: str) -> str | None:
    """``dataset`` as a folder of Parquet parts (how Spark, Dask or a partitioned export
    write a table), or None: an existing local directory (an absolute path or ``file://``),
    or a ``gs://``/``s3://`` prefix written with a trailing ``/``. Returned without the
    trailing ``/``."""
    text = (dataset or "").strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in _FOLDER_SCHEMES:
        return text.rstrip("/") if text.endswith("/") and text.count("/") > 3 else None
    path = text[len("file://"):] if scheme == "file" else text
    if path.startswith("/") and Path(path).is_dir():
        return path.rstrip("/") or "/"
    return None


def _refuse_literal_passwords(dataset: str, output: str, config: dict[str, Any]) -> None:
    """In a pipeline's pod, a literal password in the ``dataset`` or ``output`` URL, or in a
    SQL source of ``config``, is refused as the run forms refuse it (a run's parameters are
    stored and shown by Kubeflow); ``${VAR}`` from the pods' Secret is the way."""
    from autokfp.steps.form import refuse_literal_urls_in_pod

    urls = {"dataset": dataset, "output": output}
    sources = config.get("sources")
    for source in sources if isinstance(sources, list) else []:
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            urls[f"config source {source.get('name', '?')}"] = source["url"]
    refuse_literal_urls_in_pod(urls, "score_batch")


def _source_of(dataset: str, config: dict[str, Any], settings: Any) -> tuple[Any, str, str]:
    """The validated source that holds ``dataset`` (the config's training dataset when it is
    not given; a DataHub URN looked up in the catalog), the dataset's id and its path inside
    the source."""
    from pydantic import TypeAdapter, ValidationError

    from autokfp.catalog.locations import (
        check_same_dataset,
        is_dataset_urn,
        locate_dataset,
        source_names,
    )
    from autokfp.config import Source, resolve_dataset

    if not dataset or dataset.strip() == FROM_CONFIG:
        dataset = str((config.get("training") or {}).get("dataset") or "")
        if not dataset:
            raise ConfigError("dataset: give the data to score (a gs:// or s3:// URI, "
                              "<source>/<table> of the config's sources, or <database URL>#<table>)")
    urn = dataset.strip() if is_dataset_urn(dataset) else None
    if urn:
        dataset = locate_dataset(urn, settings).run_dataset(source_names(config))
    sources, dataset_id = resolve_dataset(dataset, config.get("sources"))
    source_name, _, relative = dataset_id.partition("/")
    try:
        source = TypeAdapter(Source).validate_python(
            next(s for s in sources if (s.get("name") if isinstance(s, dict) else s.name) == source_name))
    except ValidationError as exc:
        raise ConfigError(f"dataset '{dataset}': {exc.errors()[0]['msg']}") from None
    if urn:
        check_same_dataset(source, relative, urn)
    return source, dataset_id, relative


def _key_columns(keys: str, columns: list[str], package: Any) -> list[str]:
    """The columns written next to each prediction: the given ones, else the model's
    identifier columns (else the row number)."""
    from autokfp.serving.batch import default_keys

    if keys.strip() in ("", FROM_MODEL):
        plan = getattr(package.unwrap_python_model(), "plan", None)
        return default_keys(columns, dict(getattr(plan, "dropped", {}) or {}))
    return [k.strip() for k in keys.split(",") if k.strip()]
