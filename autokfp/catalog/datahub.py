"""DataHub metadata for discovered datasets: properties, schema, profile, tags, lineage.

No DataHub server is needed to produce it: ``metadata_proposals`` builds the aspects and
``write_metadata`` writes them as a metadata file that ``datahub check metadata-file``
accepts, that DataHub Lite imports (``datahub lite import --file``) and that a ``file``
ingestion source sends to a real GMS.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from datahub.emitter.mce_builder import make_data_platform_urn, make_dataset_urn, make_tag_urn
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    BooleanTypeClass,
    BytesTypeClass,
    DatasetFieldProfileClass,
    DatasetLineageTypeClass,
    DatasetProfileClass,
    DatasetPropertiesClass,
    GlobalTagsClass,
    NullTypeClass,
    NumberTypeClass,
    OtherSchemaClass,
    RecordTypeClass,
    SchemaFieldClass,
    SchemaFieldDataTypeClass,
    SchemaMetadataClass,
    StringTypeClass,
    TagAssociationClass,
    TimeTypeClass,
    UpstreamClass,
    UpstreamLineageClass,
    ValueFrequencyClass,
)

from autokfp.catalog.schema import ColumnSchema, DatasetSchema

ENV = "PROD"

_FIELD_TYPES = {
    "int64": NumberTypeClass,
    "float64": NumberTypeClass,
    "timedelta64": NumberTypeClass,
    "complex128": NumberTypeClass,
    "bool": BooleanTypeClass,
    "datetime64": TimeTypeClass,
    "string": StringTypeClass,
    "category": StringTypeClass,
    "bytes": BytesTypeClass,
    "json": RecordTypeClass,
}


def dataset_urn(schema: DatasetSchema) -> str:
    """The DataHub URN of a dataset: platform from the schema, name = id with '/' → '.'."""
    return make_dataset_urn(schema.platform, schema.dataset_id.replace("/", "."), env=ENV)


def _tags(names: Iterable[str]) -> GlobalTagsClass:
    return GlobalTagsClass(tags=[TagAssociationClass(tag=make_tag_urn(n)) for n in names])


def column_tags(column: ColumnSchema) -> list[str]:
    """Tag names for a field: its own tags (pii, pii:<kind>, sensitive, target...) and
    ``semantic:<type>``."""
    names = list(dict.fromkeys(column.tags))
    if column.is_pii and "pii" not in names:
        names += ["pii", f"pii:{column.semantic_type}"]
    names.append(f"semantic:{column.semantic_type}")
    return names


def _field(column: ColumnSchema) -> SchemaFieldClass:
    type_class = _FIELD_TYPES.get(column.physical_type, NullTypeClass)
    description = f"{column.semantic_type} column"
    if column.is_pii:
        description += " (personal data)"
    return SchemaFieldClass(
        fieldPath=column.name,
        type=SchemaFieldDataTypeClass(type=type_class()),
        nativeDataType=column.physical_type,
        nullable=column.nullable,
        description=description,
        globalTags=_tags(column_tags(column)),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _field_profile(column: ColumnSchema, sample_rows: int) -> DatasetFieldProfileClass:
    return DatasetFieldProfileClass(
        fieldPath=column.name,
        uniqueCount=column.distinct_count,
        uniqueProportion=column.distinct_count / sample_rows if sample_rows else None,
        nullCount=column.null_count,
        nullProportion=column.null_count / sample_rows if sample_rows else None,
        min=_text(column.min),
        max=_text(column.max),
        mean=_text(column.mean),
        distinctValueFrequencies=[
            ValueFrequencyClass(value=str(value), frequency=int(count))
            for value, count in column.top_values
        ]
        or None,
    )


def metadata_proposals(
    schema: DatasetSchema,
    upstream_urns: Iterable[str] = (),
    timestamp_millis: int | None = None,
) -> list[MetadataChangeProposalWrapper]:
    """DataHub aspects describing one dataset.

    Args:
        schema: the profiled dataset.
        upstream_urns: datasets this one was derived from (adds UpstreamLineage).
        timestamp_millis: profile time; default now.

    Returns:
        Proposals for DatasetProperties, SchemaMetadata, DatasetProfile, GlobalTags and,
        with upstreams, UpstreamLineage.
    """
    urn = dataset_urn(schema)
    stamp = int(timestamp_millis if timestamp_millis is not None else time.time() * 1000)
    pii_kinds = sorted({c.semantic_type for c in schema.columns if c.is_pii})
    properties = DatasetPropertiesClass(
        name=schema.dataset_id,
        qualifiedName=schema.dataset_id,
        description=(
            f"{schema.dataset_id}: {schema.row_count} rows x {len(schema.columns)} columns "
            f"({schema.platform}"
            + (f", {schema.format}" if schema.format else "")
            + f"), profiled on {schema.sample_rows} rows by autokfp"
        ),
        customProperties={
            "dataset_id": schema.dataset_id,
            "platform": schema.platform,
            "location": schema.location,
            "format": schema.format or "",
            "row_count": str(schema.row_count),
            "sample_rows": str(schema.sample_rows),
            "fingerprint": schema.fingerprint,
            "pii_columns": ",".join(c.name for c in schema.columns if c.is_pii),
            "sensitive_columns": ",".join(c.name for c in schema.columns if c.is_sensitive),
        },
    )
    schema_metadata = SchemaMetadataClass(
        schemaName=schema.dataset_id,
        platform=make_data_platform_urn(schema.platform),
        version=0,
        hash=schema.fingerprint,
        platformSchema=OtherSchemaClass(
            rawSchema=json.dumps([[c.name, c.physical_type] for c in schema.columns])
        ),
        fields=[_field(c) for c in schema.columns],
    )
    profile = DatasetProfileClass(
        timestampMillis=stamp,
        rowCount=schema.row_count,
        columnCount=len(schema.columns),
        fieldProfiles=[_field_profile(c, schema.sample_rows) for c in schema.columns],
    )
    dataset_tags = (["pii"] if pii_kinds else []) + [f"pii:{k}" for k in pii_kinds]
    if any(c.is_sensitive for c in schema.columns):
        dataset_tags.append("sensitive")
    aspects: list = [properties, schema_metadata, profile, _tags(dataset_tags)]
    upstreams = [
        UpstreamClass(dataset=u, type=DatasetLineageTypeClass.TRANSFORMED)
        for u in dict.fromkeys(upstream_urns)
    ]
    if upstreams:
        aspects.append(UpstreamLineageClass(upstreams=upstreams))
    return [MetadataChangeProposalWrapper(entityUrn=urn, aspect=a) for a in aspects]


def write_metadata(
    path: str | os.PathLike, proposals: Iterable[MetadataChangeProposalWrapper]
) -> str:
    """Write proposals as a DataHub metadata file, atomically (a reader never sees half).

    ``path`` may be local or ``gs://``. Returns the path written.
    """
    from datahub.ingestion.sink.file import write_metadata_file

    target = os.fspath(path)
    remote = target.startswith("gs://")
    folder = Path(tempfile.gettempdir()) if remote else Path(target).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".autokfp-tmp-metadata.", suffix=".json", dir=folder)
    os.close(fd)
    try:
        write_metadata_file(Path(tmp), list(proposals))
        if remote:
            from autokfp import storage

            storage.write_bytes(target, Path(tmp).read_bytes())
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
