"""DataHub metadata: datasets (properties, schema, profile, tags, lineage, schema versions),
feature sets, model versions and deployments; and where it goes.

No DataHub server is needed to produce it: ``metadata_proposals`` builds the aspects and
``write_metadata`` writes them as a metadata file that ``datahub check metadata-file``
accepts, that DataHub Lite imports (``datahub lite import --file``) and that a ``file``
ingestion source sends to a real GMS.

``publish`` sends proposals to all three places the catalog lives: a metadata file in the
artifact store, the local DataHub Lite (SQLite, under ``AUTOKFP_HOME/catalog``; opened
through its Python API with an explicit config, so ``~/.datahubenv`` is never read or
written) and, when ``DATAHUB_GMS_URL`` (and ``DATAHUB_GMS_TOKEN``) are set, a DataHub GMS
through the REST emitter. Lite and GMS failures are reported, never raised: the artifact
store holds the truth and the next publish repeats it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from datahub.emitter.mce_builder import (
    make_data_flow_urn,
    make_data_job_urn_with_flow,
    make_data_platform_urn,
    make_dataset_urn,
    make_ml_model_deployment_urn,
    make_ml_model_group_urn,
    make_ml_model_urn,
    make_schema_field_urn,
    make_tag_urn,
)
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    ArrayTypeClass,
    BaseDataClass,
    BooleanTypeClass,
    BytesTypeClass,
    DataFlowInfoClass,
    DataJobInfoClass,
    DataJobInputOutputClass,
    DatasetFieldProfileClass,
    DatasetLineageTypeClass,
    DatasetProfileClass,
    DatasetPropertiesClass,
    DeploymentStatusClass,
    FineGrainedLineageClass,
    FineGrainedLineageDownstreamTypeClass,
    FineGrainedLineageUpstreamTypeClass,
    GlobalTagsClass,
    MLMetricClass,
    MLModelDeploymentPropertiesClass,
    MLModelGroupPropertiesClass,
    MLModelPropertiesClass,
    NullTypeClass,
    NumberTypeClass,
    OtherSchemaClass,
    PartitionSpecClass,
    PartitionTypeClass,
    RecordTypeClass,
    SchemaFieldClass,
    SchemaFieldDataTypeClass,
    SchemaMetadataClass,
    StatusClass,
    StringTypeClass,
    SubTypesClass,
    SystemMetadataClass,
    TagAssociationClass,
    TimeStampClass,
    TimeTypeClass,
    TrainingDataClass,
    UnionTypeClass,
    UpstreamClass,
    UpstreamLineageClass,
    ValueFrequencyClass,
    VersionTagClass,
    ViewPropertiesClass,
)

from autokfp.catalog.schema import ColumnSchema, DatasetSchema
from autokfp.errors import AutokfpError

log = logging.getLogger(__name__)

ENV = "PROD"
FEATURE_PLATFORM = "autokfp"  # engineered feature sets live on autokfp's own platform
MODEL_PLATFORM = "mlflow"
SERVING_PLATFORM = "kserve"
LITE_FILE = "datahub-lite.db"
BREAKING_TAG = "schema:breaking"
_MAX_PROPERTY = 2000


class CatalogPublishError(AutokfpError):
    """Metadata could not be sent to a DataHub catalog (Lite or GMS); ``sent``: how many
    aspects it took before (GMS)."""

    sent = 0

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
    """The DataHub URN of a dataset.

    The source that read it names it as DataHub's own source for the platform does
    (``schema.urn``: ``postgres,<database>.<schema>.<table>``, ``sqlite,main.<table>``,
    ``file,<absolute path without the leading />``, ``s3,<bucket>/<key>``,
    ``gcs,<bucket>/<key>``), so lineage joins the graph DataHub's ingestion built. A schema
    stored before sources named datasets falls back to the id with '/' -> '.'.
    """
    if schema.urn:
        return schema.urn
    return make_dataset_urn(schema.platform, schema.dataset_id.replace("/", "."), env=ENV)


def _avro_json_converter() -> Any:
    """avrogen's JSON converter without its whole-tree validation pass.

    DataHub's ``to_obj`` validates the whole aspect against its Avro schema before it
    converts it, converts every field's default again per record, and a proposal's aspect is
    serialised twice (to a JSON string inside the proposal, which ``simplified_structure``
    parses back). The aspects here are built from DataHub's typed classes, and the output is
    the same (``test_publish.py`` compares every kind of aspect autokfp writes, and the tests
    run ``datahub check metadata-file`` on the files): about a third of the time.
    """
    from avrogen.avrojson import AvroJsonConverter, get_global_json_converter

    class _Converter(AvroJsonConverter):
        _defaults: dict[int, tuple[Any, Any]] = {}

        def to_json_object(self, data_obj: Any, writers_schema: Any = None) -> Any:
            return self._generic_to_json(data_obj, writers_schema or data_obj.RECORD_SCHEMA)

        def _record_to_json(self, data_obj: Any, writers_schema: Any) -> Any:
            result = {}
            for schema_field in writers_schema.fields:
                if schema_field.has_default:
                    known = self._defaults.get(id(schema_field))
                    if known is None:  # (default, field): the field keeps its id unique
                        known = (self.from_json_object(schema_field.default, schema_field.type),
                                 schema_field)
                        self._defaults[id(schema_field)] = known
                    obj = data_obj.get(schema_field.name, known[0])
                    if obj is None and known[0] is None:
                        continue
                else:
                    obj = data_obj.get(schema_field.name)
                result[schema_field.name] = self._generic_to_json(obj, schema_field.type)
            return result

        def _union_to_json(self, data_obj: Any, writers_schema: Any,
                           was_within_array: bool = False) -> Any:
            # avrogen picks a union's branch for a value that is not a record by validating
            # the value against every branch, its whole subtree each time (an optional list
            # of field profiles, each validated, at every level): a sixth of a profiled first
            # ingestion. An optional value (null or one other type) has one branch once it
            # is not None, which avrogen then takes too (the same output, test_publish.py)
            schemas = writers_schema.schemas
            if (len(schemas) == 2 and not self.fastavro
                    and self._get_record_schema_if_available(data_obj) is None
                    and [s.type == "null" for s in schemas].count(True) == 1):
                if data_obj is None:
                    return None
                other = schemas[0] if schemas[1].type == "null" else schemas[1]
                output = self._generic_to_json(data_obj, other)
                return {self._fullname(other): output} if was_within_array else output
            return super()._union_to_json(data_obj, writers_schema, was_within_array)

    base = get_global_json_converter()
    return _Converter(use_logical_types=base.use_logical_types,
                      logical_types=base.logical_types, schema_types=base.schema_types)


_CONVERTER: Any = None


def simplified_obj(proposal: MetadataChangeProposalWrapper) -> dict:
    """``proposal.to_obj(simplified_structure=True)`` (the layout of DataHub's file sink and
    of Lite), converted once without DataHub's validation pass (see _avro_json_converter)."""
    global _CONVERTER
    if (proposal.aspect is None or proposal.entityKeyAspect is not None
            or proposal.auditHeader is not None or proposal.headers):
        return MetadataChangeProposalWrapper.to_obj(proposal, simplified_structure=True)
    from datahub.emitter.serialization_helper import pre_json_transform

    if _CONVERTER is None:
        _CONVERTER = _avro_json_converter()
    out: dict[str, Any] = {
        "entityType": proposal.entityType, "entityUrn": proposal.entityUrn,
        "changeType": proposal.changeType, "aspectName": proposal.aspectName,
        "aspect": {"json": pre_json_transform(_CONVERTER.to_json_object(proposal.aspect))}}
    if proposal.systemMetadata is not None:
        out["systemMetadata"] = _CONVERTER.to_json_object(proposal.systemMetadata)
    return out


def avro_obj(record: Any) -> dict:
    """``record.to_obj()`` of a DataHub record (a ``MetadataChangeEventClass``, as DataHub's SQL
    sources emit their snapshots) converted without avrogen's validation pass (see
    _avro_json_converter): the same dict (``test_ingest.py`` compares the bytes)."""
    global _CONVERTER
    if _CONVERTER is None:
        _CONVERTER = _avro_json_converter()
    return _CONVERTER.to_json_object(record)


class Proposal(MetadataChangeProposalWrapper):
    """A proposal that serialises once.

    Avro serialisation (``to_obj``) is most of the cost of publishing: the metadata file,
    DataHub Lite's ``write`` and the change check of a re-publish each called it again for
    the same proposal. A proposal is never changed after it is built, so the first result is
    kept (callers get their own copy of the mutable top level: Lite adds system metadata).
    """

    def to_obj(self, tuples: bool = False, simplified_structure: bool = False) -> dict:
        if tuples or not simplified_structure:
            return super().to_obj(tuples=tuples, simplified_structure=simplified_structure)
        cached = self.__dict__.get("_autokfp_obj")
        if cached is None:
            cached = simplified_obj(self)
            self.__dict__["_autokfp_obj"] = cached
        out = dict(cached)
        if "systemMetadata" in out:
            out["systemMetadata"] = json.loads(json.dumps(out["systemMetadata"]))
        return out


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


# DataHub's JSON schema inference types (datahub.ingestion.source.schema_inference.json)
_JSON_TYPES = {"list": ArrayTypeClass, "bool": BooleanTypeClass, "NoneType": NullTypeClass,
               "int": NumberTypeClass, "float": NumberTypeClass, "str": StringTypeClass,
               "dict": RecordTypeClass, "mixed": UnionTypeClass}


def _fields(schema: DatasetSchema) -> list[SchemaFieldClass]:
    """The schema's fields: each column, followed by the paths inside it when it holds
    nested JSON objects (parents before children, as DataHub lists them)."""
    children: dict[str, list[list[Any]]] = {}
    for nested in schema.nested_fields:
        children.setdefault(str(nested[0]).split(".", 1)[0], []).append(nested)
    out = []
    for column in schema.columns:
        out.append(_field(column))
        for path, kind, nullable in children.get(column.name, []):
            type_class = _JSON_TYPES.get(kind, NullTypeClass)
            out.append(SchemaFieldClass(
                fieldPath=path, type=SchemaFieldDataTypeClass(type=type_class()),
                nativeDataType=kind, nullable=bool(nullable), recursive=False))
    return out


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


def _millis(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None


def _catalog_properties(schema: DatasetSchema) -> dict[str, str]:
    """Schema-version facts the crawl put in ``schema.catalog``, as custom properties."""
    facts = schema.catalog or {}
    out: dict[str, str] = {}
    if schema.modified_at:
        out["modified_at"] = schema.modified_at
    for key, name in (("schema_version", "schema_version"),
                      ("accepted_version", "accepted_schema_version"),
                      ("verdict", "schema_verdict")):
        if facts.get(key) is not None:
            out[name] = str(facts[key])
    if facts.get("breaking_columns"):
        out["breaking_columns"] = ",".join(facts["breaking_columns"])
    if facts.get("changes"):
        out["schema_changes"] = "; ".join(facts["changes"])[:_MAX_PROPERTY]
    return out


def _dataset_properties(schema: DatasetSchema) -> DatasetPropertiesClass:
    """DatasetProperties: the description and the custom properties autokfp adds."""
    modified = _millis(schema.modified_at)
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
            **_catalog_properties(schema),
        },
        lastModified=TimeStampClass(time=modified) if modified else None,
    )
    return properties


def dataset_profile(schema: DatasetSchema, timestamp_millis: int | None = None
                    ) -> DatasetProfileClass:
    """The DatasetProfile of ``metadata_proposals`` alone (default time: now)."""
    stamp = int(timestamp_millis if timestamp_millis is not None else time.time() * 1000)
    return DatasetProfileClass(
        timestampMillis=stamp,
        # the schema's default, given: the class builds its default from JSON through
        # avrogen's validating converter on every profile (2% of a first crawl)
        partitionSpec=PartitionSpecClass(partition="FULL_TABLE_SNAPSHOT",
                                         type=PartitionTypeClass.FULL_TABLE),
        rowCount=schema.row_count,
        columnCount=len(schema.columns),
        fieldProfiles=[_field_profile(c, schema.sample_rows) for c in schema.columns],
    )


def dataset_facts(schema: DatasetSchema) -> tuple[dict[str, str], list[str]]:
    """(the custom properties, the dataset tag URNs) of ``metadata_proposals``, without
    building its other aspects."""
    return (dict(_dataset_properties(schema).customProperties),
            [make_tag_urn(n) for n in _dataset_tags(schema)])


def _dataset_tags(schema: DatasetSchema) -> list[str]:
    """The dataset's tags: pii (and each PII kind), sensitive, and breaking while a breaking
    schema change is not accepted."""
    pii_kinds = sorted({c.semantic_type for c in schema.columns if c.is_pii})
    dataset_tags = (["pii"] if pii_kinds else []) + [f"pii:{k}" for k in pii_kinds]
    if any(c.is_sensitive for c in schema.columns):
        dataset_tags.append("sensitive")
    if (schema.catalog or {}).get("verdict") == "breaking":
        dataset_tags.append(BREAKING_TAG)
    return dataset_tags


def schema_metadata_aspect(schema: DatasetSchema) -> SchemaMetadataClass:
    """The SchemaMetadata aspect autokfp writes for a dataset: its columns (and nested JSON
    paths) with their physical types, field tags and descriptions, the catalog's schema
    version and the schema's fingerprint."""
    facts = schema.catalog or {}
    return SchemaMetadataClass(
        schemaName=schema.dataset_id,
        platform=make_data_platform_urn(schema.platform),
        version=int(facts.get("schema_version") or 0),
        hash=schema.fingerprint,
        platformSchema=OtherSchemaClass(
            rawSchema=json.dumps([[c.name, c.physical_type] for c in schema.columns])
        ),
        fields=_fields(schema),
    )


def metadata_proposals(
    schema: DatasetSchema,
    upstream_urns: Iterable[str] = (),
    timestamp_millis: int | None = None,
) -> list[MetadataChangeProposalWrapper]:
    """DataHub aspects describing one dataset.

    Args:
        schema: the profiled dataset. What the catalog knows about it (``schema.catalog``:
            schema version, accepted version, verdict, changes) becomes custom properties,
            the SchemaMetadata version, and a ``schema:breaking`` tag while a breaking
            change is not accepted.
        upstream_urns: datasets this one was derived from (adds UpstreamLineage).
        timestamp_millis: profile time; default now.

    Returns:
        Proposals for Status (not removed), DatasetProperties, SchemaMetadata,
        DatasetProfile, GlobalTags and, with upstreams, UpstreamLineage.
    """
    urn = dataset_urn(schema)
    stamp = int(timestamp_millis if timestamp_millis is not None else time.time() * 1000)
    properties = _dataset_properties(schema)
    schema_metadata = schema_metadata_aspect(schema)
    profile = dataset_profile(schema, stamp)
    dataset_tags = _dataset_tags(schema)
    # Status(removed=False) as DataHub's sources send it: a dataset that comes back after it
    # was soft-deleted (``removal_proposals``) is live again
    aspects: list = [StatusClass(removed=False), properties, schema_metadata, profile,
                     _tags(dataset_tags)]
    upstreams = [
        UpstreamClass(dataset=u, type=DatasetLineageTypeClass.TRANSFORMED)
        for u in dict.fromkeys(upstream_urns)
    ]
    if schema.view:  # as DataHub's SQL sources describe a view, with its lineage
        aspects += [SubTypesClass(typeNames=["View"]),
                    ViewPropertiesClass(materialized=False, viewLanguage="SQL",
                                        viewLogic=schema.view.get("definition") or "")]
        upstreams += [UpstreamClass(dataset=u, type=DatasetLineageTypeClass.VIEW)
                      for u in schema.view.get("upstreams", []) if u not in upstream_urns]
    if upstreams:
        aspects.append(UpstreamLineageClass(
            upstreams=upstreams, fineGrainedLineages=_column_lineage(urn, schema.view) or None))
    return [Proposal(entityUrn=urn, aspect=a) for a in aspects]


def _column_lineage(urn: str, view: dict[str, Any]) -> list[FineGrainedLineageClass]:
    """A view's column-level lineage (``view["columns"]``, found by DataHub's SQL parser) as
    DataHub's SQL sources emit it: per view column, the set of upstream fields it is made
    of and the expression (``COPY: <expr>`` for a column passed through, ``SQL: <expr>``)."""
    out = []
    for column in (view or {}).get("columns", []):
        if not column.get("upstreams"):
            continue  # a constant or an unresolved column: nothing to link
        out.append(FineGrainedLineageClass(
            upstreamType=FineGrainedLineageUpstreamTypeClass.FIELD_SET,
            upstreams=[make_schema_field_urn(table, name) for table, name in column["upstreams"]],
            downstreamType=FineGrainedLineageDownstreamTypeClass.FIELD,
            downstreams=[make_schema_field_urn(urn, column["column"])],
            transformOperation=column.get("logic")))
    return out


def removal_proposals(urns: Iterable[str]) -> list[MetadataChangeProposalWrapper]:
    """Soft deletes: ``Status(removed=True)`` for datasets that are gone from their source,
    as DataHub's stateful ingestion marks the entities a run no longer saw. Their history
    stays; the next proposals for the dataset (it came back) carry ``removed=False``."""
    return [Proposal(entityUrn=urn, aspect=StatusClass(removed=True))
            for urn in dict.fromkeys(urns)]


def _record(proposal: MetadataChangeProposalWrapper) -> dict:
    return (proposal.to_obj(simplified_structure=True) if isinstance(proposal, Proposal)
            else simplified_obj(proposal))


def metadata_file_pieces(proposals: Iterable[MetadataChangeProposalWrapper]) -> Iterator[str]:
    """The metadata file of ``metadata_file_text`` in pieces, one record at a time, so a
    file of any number of proposals is written holding one of them."""
    yield "[\n"
    separator = ""
    for proposal in proposals:
        # one record a line: json's indenting encoder is pure Python, five times the C one's
        yield separator + json.dumps(_record(proposal))
        separator = ",\n"
    yield "\n]"


def metadata_file_text(proposals: Iterable[MetadataChangeProposalWrapper]) -> str:
    """The proposals as the JSON array DataHub's file sink writes (the same records, one a
    line).

    Built with one join: the sink's own ``write_metadata_file`` grows one string record by
    record, which took 14 s for 8,000 aspects here.
    """
    return "".join(metadata_file_pieces(proposals))


def write_metadata(
    path: str | os.PathLike, proposals: Iterable[MetadataChangeProposalWrapper]
) -> str:
    """Write proposals as a DataHub metadata file, atomically (a reader never sees half).

    ``path`` may be local or ``gs://``. The file is written a record at a time: given a
    generator, only one proposal is held at once. Returns the path written.
    """
    from autokfp import storage

    target = os.fspath(path)
    storage.write_text_pieces(target, metadata_file_pieces(proposals))
    return target


# --------------------------------------------------------------------------- ML lineage


def feature_set_urn(name: str) -> str:
    """The dataset URN of an engineered feature set (platform ``autokfp``)."""
    return make_dataset_urn(FEATURE_PLATFORM, name, env=ENV)


def model_version_urn(model_name: str, version: str | int) -> str:
    """The MLModel URN of one registered version: ``<name>-v<version>`` on ``mlflow``."""
    return make_ml_model_urn(MODEL_PLATFORM, f"{model_name}-v{version}", ENV)


def model_group_urn(model_name: str) -> str:
    return make_ml_model_group_urn(MODEL_PLATFORM, model_name, ENV)


def deployment_urn(namespace: str, service: str) -> str:
    """The MLModelDeployment URN of a KServe InferenceService."""
    return make_ml_model_deployment_urn(SERVING_PLATFORM, f"{namespace}.{service}", ENV)


def training_job_urn(model_name: str, version: str | int) -> str:
    flow = make_data_flow_urn("autokfp", model_name, ENV.lower())
    return make_data_job_urn_with_flow(flow, f"train-v{version}")


def _plan_type(group: str) -> Any:
    return {"numeric": NumberTypeClass, "boolean": BooleanTypeClass,
            "datetime": TimeTypeClass}.get(group, StringTypeClass)()


def feature_set_proposals(urn: str, name: str, source_urns: Iterable[str],
                          plan: dict[str, Any], properties: dict[str, str] | None = None
                          ) -> list[MetadataChangeProposalWrapper]:
    """A feature set: the input columns a feature plan reads, derived from its sources."""
    fields = []
    for group in ("numeric", "categorical", "boolean", "datetime", "text"):
        for column in plan.get(group, []):
            fields.append(SchemaFieldClass(
                fieldPath=str(column), type=SchemaFieldDataTypeClass(type=_plan_type(group)),
                nativeDataType=group, description=f"{group} feature input"))
    target = plan.get("target")
    aspects: list[Any] = [
        DatasetPropertiesClass(
            name=name, qualifiedName=name,
            description=f"features engineered by autokfp for target '{target}' "
                        f"({len(fields)} input columns)",
            customProperties={k: str(v)[:_MAX_PROPERTY] for k, v in (properties or {}).items()},
        ),
        SchemaMetadataClass(
            schemaName=name, platform=make_data_platform_urn(FEATURE_PLATFORM), version=0,
            hash="", platformSchema=OtherSchemaClass(rawSchema=json.dumps(
                {"target": target, "dropped": plan.get("dropped", {})}, default=str)),
            fields=fields),
        UpstreamLineageClass(upstreams=[
            UpstreamClass(dataset=u, type=DatasetLineageTypeClass.TRANSFORMED)
            for u in dict.fromkeys(source_urns)]),
    ]
    return [MetadataChangeProposalWrapper(entityUrn=urn, aspect=a) for a in aspects]


def model_proposals(model_name: str, version: str | int, feature_urn: str,
                    dataset_urns: Iterable[str], metrics: dict[str, float],
                    properties: dict[str, str], deployment_urns: Iterable[str] = (),
                    description: str | None = None) -> list[MetadataChangeProposalWrapper]:
    """A model version (MLModel), its group and its training job, naming the training data.

    The model's ``trainingJobs`` is a dataJob whose input is the feature set, the
    ``mlModelTrainingData`` aspect lists the feature set and the source datasets, and the
    custom properties repeat them as text (``training_datasets``, ``feature_set``).
    """
    urn = model_version_urn(model_name, version)
    group = model_group_urn(model_name)
    job = training_job_urn(model_name, version)
    flow = make_data_flow_urn("autokfp", model_name, ENV.lower())
    datasets = list(dict.fromkeys(dataset_urns))
    custom = {**{k: str(v)[:_MAX_PROPERTY] for k, v in properties.items()},
              "training_datasets": ",".join(datasets), "feature_set": feature_urn}
    model = MLModelPropertiesClass(
        name=f"{model_name}-v{version}",
        description=description or f"{model_name} version {version}, registered by autokfp",
        version=VersionTagClass(versionTag=str(version)),
        customProperties=custom,
        trainingJobs=[job],
        trainingMetrics=[MLMetricClass(name=k, value=f"{float(v):.6g}")
                         for k, v in sorted(metrics.items())],
        groups=[group],
        deployments=list(dict.fromkeys(deployment_urns)) or None,
    )
    return [
        MetadataChangeProposalWrapper(entityUrn=group, aspect=MLModelGroupPropertiesClass(
            name=model_name, description=f"every registered version of {model_name}")),
        MetadataChangeProposalWrapper(entityUrn=flow, aspect=DataFlowInfoClass(
            name=f"autokfp training of {model_name}")),
        MetadataChangeProposalWrapper(entityUrn=job, aspect=DataJobInfoClass(
            name=f"train {model_name} v{version}", type="COMMAND",
            customProperties={"model": urn})),
        MetadataChangeProposalWrapper(entityUrn=job, aspect=DataJobInputOutputClass(
            inputDatasets=[feature_urn], outputDatasets=[])),
        MetadataChangeProposalWrapper(entityUrn=urn, aspect=model),
        MetadataChangeProposalWrapper(entityUrn=urn, aspect=TrainingDataClass(
            trainingData=[BaseDataClass(dataset=d) for d in [feature_urn, *datasets]])),
    ]


def deployment_proposals(urn: str, model_urn: str, version: str | int, namespace: str,
                         service: str) -> list[MetadataChangeProposalWrapper]:
    """A KServe deployment serving one model version."""
    return [MetadataChangeProposalWrapper(entityUrn=urn, aspect=MLModelDeploymentPropertiesClass(
        description=f"KServe InferenceService {namespace}/{service}",
        version=VersionTagClass(versionTag=str(version)),
        status=DeploymentStatusClass.IN_SERVICE,
        customProperties={"model": model_urn, "namespace": namespace, "service": service},
    ))]


# --------------------------------------------------------------------------- publishing


def lite_path(catalog_dir: str | os.PathLike) -> Path:
    return Path(catalog_dir) / LITE_FILE


def lite_config(catalog_dir: str | os.PathLike, read_only: bool = False) -> dict[str, Any]:
    """DataHub Lite's config for the local catalog: SQLite under ``catalog_dir``.

    WAL with normal sync commits each write without an fsync per aspect (14x faster
    here); the busy timeout lets pipeline tasks and the CLI share the file.
    """
    options = {"busy_timeout": 30000}
    if not read_only:
        options.update({"journal_mode": "WAL", "synchronous": "NORMAL"})
    return {"type": "sqlite", "config": {"file": str(lite_path(catalog_dir)),
                                         "read_only": read_only, "options": options}}


def lite_home(catalog_dir: str | os.PathLike) -> Path:
    """A HOME for the ``datahub`` CLI whose ``.datahubenv`` points at the local Lite.

    ``HOME=<this> datahub lite ls /`` browses the catalog without touching the user's own
    ``~/.datahubenv``.
    """
    import yaml

    home = Path(catalog_dir) / "datahub-home"
    env_file = home / ".datahubenv"
    content = yaml.safe_dump({"gms": {"server": "http://localhost:8080"},
                              "lite": lite_config(catalog_dir, read_only=False)})
    if not env_file.exists() or env_file.read_text() != content:
        home.mkdir(parents=True, exist_ok=True)
        from autokfp import storage

        storage.write_text(str(env_file), content)
    return home


def load_into_lite(proposals: Iterable[MetadataChangeProposalWrapper],
                   catalog_dir: str | os.PathLike) -> int:
    """Write proposals into the local DataHub Lite in one transaction; return how many were
    written.

    Lite commits after every aspect and every edge it adds (a thousand commits for a batch
    of 2,000 proposals' worth of a crawl: 8-12% of a first crawl). Here its commits wait,
    and the whole call (the aspects, their edges and the browse edges of ``_close_lite``)
    is one transaction: a process killed part-way leaves Lite as it was before the call
    (SQLite drops the unfinished transaction when the file is next opened), an error rolls
    the call's aspects back and is raised, and what an earlier call wrote stays.

    Raises:
        CatalogPublishError: the Lite database cannot be opened or written (nothing of
            this call's proposals is then in it).
    """
    from datahub.lite.lite_util import get_datahub_lite

    Path(catalog_dir).mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        # Lite's own code calls deprecated URN helpers on every write; that is not ours to fix
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            lite = get_datahub_lite(lite_config(catalog_dir))
            commit = getattr(lite, "_commit", None)
            if commit is not None:
                lite._commit = _no_commit  # one commit, at the end (see the docstring)
            written: dict[str, None] = {}
            try:
                for proposal in proposals:
                    if (isinstance(proposal, MetadataChangeProposalWrapper)
                            and proposal.systemMetadata is None):
                        # what Lite's write sets itself (its time now, no properties),
                        # converted without avrogen's validation pass
                        proposal.systemMetadata = _LiteSystemMetadata(
                            lastObserved=int(time.time() * 1000.0), properties={})
                    lite.write(proposal)
                    written[str(proposal.entityUrn)] = None
                    count += 1
            except BaseException:
                _close_lite(lite, None, commit)  # closed unfinished: rolled back
                raise
            _close_lite(lite, list(written), commit)
    except Exception as exc:
        raise CatalogPublishError(
            f"DataHub Lite at '{lite_path(catalog_dir)}' refused the metadata after {count} "
            f"aspect(s) of a batch: {type(exc).__name__}: {exc}. None of the batch was "
            "written (the batches before it were). Delete the file to rebuild it from the "
            "next crawl"
        ) from exc
    lite_home(catalog_dir)
    return count


class _LiteSystemMetadata(SystemMetadataClass):
    """The system metadata DataHub Lite's ``write`` gives a proposal that has none
    (``SystemMetadataClass(lastObserved=<now>, properties={})``), whose ``to_obj`` (Lite
    calls it once per aspect) skips avrogen's validation pass and its per-record conversion
    of every field's default: 0.09 ms an aspect, 3% of a first crawl. The same dict, key
    order included (``test_publish.py``)."""

    def to_obj(self, tuples: bool = False) -> dict:
        if tuples:
            return super().to_obj(tuples=True)
        return avro_obj(self)


def _no_commit() -> None:
    """Lite's per-write commit, while ``load_into_lite`` holds one transaction open."""


def _hook_aspects() -> list[str]:
    """The aspects Lite's global_post_update_hook reads (datahub/lite/sql_backed_lite.py)."""
    from datahub.emitter.aspect import ASPECT_MAP
    from datahub.metadata.schema_classes import (
        ContainerClass,
        DataPlatformInstanceClass,
        SubTypesClass,
    )

    wanted = (ContainerClass, SubTypesClass, DataPlatformInstanceClass)
    return [name for name, cls in ASPECT_MAP.items() if cls in wanted]


def _close_lite(lite: Any, urns: list[str] | None, commit: Any) -> None:
    """Index the entities just written, commit them with ``commit`` (Lite's own, which
    ``load_into_lite`` held back) and close Lite; ``urns`` None: close without committing.

    Lite's ``close()`` rebuilds the browse index of the whole catalog (all entities, every
    time: seconds per thousand datasets). Running its per-entity hook for what was written
    builds the same edges for those; if this Lite has no such hook, fall back to close().
    The hook reads only the container, sub-types and platform-instance aspects, so only
    those are read back (reading whole entities, schemas and profiles included, through
    Avro was a quarter of a first crawl).
    """
    hook = getattr(lite, "global_post_update_hook", None)
    close_connection = getattr(lite, "_close_connection", None)
    if urns is None:  # a failed call: its open transaction goes with the connection
        (close_connection or lite.close)()
        return
    if hook is None or close_connection is None:
        if commit is not None:
            lite._commit = commit  # close() commits what it does itself
            commit()
        lite.close()
        return
    try:
        names = _hook_aspects()
        for urn in urns:
            aspects = lite.get(urn, names, typed=True) or {}
            aspects.pop("urn", None)
            hook(urn, aspects)
        if commit is not None:
            commit()
    finally:
        close_connection()


def read_lite(catalog_dir: str | os.PathLike, urn: str) -> dict[str, Any] | None:
    """One entity's aspects from the local DataHub Lite (None when it is not there)."""
    from datahub.lite.lite_util import get_datahub_lite

    if not lite_path(catalog_dir).exists():
        return None
    lite = get_datahub_lite(lite_config(catalog_dir, read_only=True), read_only=True)
    try:
        return lite.get(urn, None)
    finally:
        lite.close()


def gms_settings() -> tuple[str, str | None] | None:
    """(server URL, token) of a DataHub GMS from DATAHUB_GMS_URL / DATAHUB_GMS_TOKEN."""
    url = os.environ.get("DATAHUB_GMS_URL", "").strip()
    if not url:
        return None
    return url.rstrip("/"), (os.environ.get("DATAHUB_GMS_TOKEN") or None)


def _safe_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        parts = parts._replace(netloc=f"***@{host}" + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


_GMS_BATCH = 100  # proposals per request (DataHub's REST sink's max_per_batch)
# batch requests in flight at once, each thread with its own emitter (DataHub's REST sink
# does the same with 15 threads: DATAHUB_REST_SINK_DEFAULT_MAX_THREADS)
GMS_WORKERS = 4


class GmsSender:
    """One publication's connection to a DataHub GMS: ``workers`` threads, each with its own
    REST emitter (one requests session, as DataHub's REST sink keeps them), made on the
    first ``send`` and kept until ``close()``, so a crawl that publishes 2,000 aspects at a
    time checks the server (``GET /config``) once and reuses its connections throughout.
    Use it as a context manager: the threads and sessions are closed at the end and when
    an error leaves the ``with`` block.

    What a failed batch leaves: GMS checks a batch against its schemas before it writes any
    of it, so a batch refused for what it holds (422, 400) is not written. A batch that
    fails later may be written in part or whole: GMS writes time-series aspects apart from
    the others, in async mode it queues each aspect on its own, and an answer lost to a
    timeout or a proxy's 502/504 after GMS committed reads as a failure. That is safe to
    send again: every aspect autokfp sends is an UPSERT of a whole aspect value (no PATCH,
    no CREATE), so GMS writing it a second time leaves the same value (an unchanged value
    makes no new version; a time-series value with the same timestamp replaces the
    first). The emitter's own retries (429 and 5xx) and the next crawl re-send such
    batches whole.
    """

    def __init__(self, url: str, token: str | None = None, timeout_sec: float = 30.0,
                 workers: int | None = None):
        import threading

        self.url, self.token, self.timeout_sec = url, token, timeout_sec
        self.workers = max(1, workers or GMS_WORKERS)
        self._local = threading.local()
        self._guard = threading.Lock()
        self._emitters: list[Any] = []
        self._pool: Any = None
        self._closed = False

    def __enter__(self) -> GmsSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emitter(self) -> Any:
        from datahub.emitter.rest_emitter import DataHubRestEmitter

        if not hasattr(self._local, "emitter"):
            self._local.emitter = DataHubRestEmitter(
                gms_server=self.url, token=self.token, openapi_ingestion=False,
                retry_max_times=2, timeout_sec=self.timeout_sec)
            with self._guard:
                self._emitters.append(self._local.emitter)
        return self._local.emitter

    def _safe(self, exc: BaseException) -> str:
        text = " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(".")
        return text.replace(self.token, "***") if self.token else text

    def send(self, proposals: Iterable[MetadataChangeProposalWrapper]) -> int:
        """Send proposals in batches of up to ``_GMS_BATCH`` to
        ``/aspects?action=ingestProposalBatch`` (GMS's batch endpoint, as DataHub's REST
        sink does), ``workers`` batches at a time; return how many aspects GMS acknowledged.
        Returns once every batch it started has been answered.

        A batch holding an aspect of an entity that a batch in flight also holds waits for
        that batch, so a later value of an aspect is written after an earlier one (DataHub's
        REST sink keeps each URN's records in order too; keyed here by entity and aspect,
        since a dataset's aspects often span two batches). When a batch fails, no further
        batch is started; those already in flight finish.

        Raises:
            CatalogPublishError: the server cannot be reached, is not a GMS, or a batch
                failed. Its ``sent`` counts the aspects of the batches GMS acknowledged; a
                failed batch may still have been written in part (class docstring). The
                message never contains the token.
        """
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        if self._closed:
            raise RuntimeError("this GmsSender is closed")

        def post(batch: list[MetadataChangeProposalWrapper]) -> int:
            self._emitter().emit_mcps(batch)
            return len(batch)

        sent = 0
        failed: list[tuple[int, int, int, BaseException]] = []  # (batch, first, last, error)
        # batch future -> (batch, first, last, its (entity, aspect) keys)
        in_flight: dict[Future[int], tuple[int, int, int, set[tuple[Any, Any]]]] = {}

        def settle(done: Iterable[Future[int]]) -> None:
            nonlocal sent
            for future in done:
                index, first, last, _ = in_flight.pop(future)
                error = future.exception()
                if error is None:
                    sent += future.result()
                else:
                    failed.append((index, first, last, error))

        try:
            if self._pool is None:
                self._emitter().test_connection()  # a wrong URL or token fails here
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="autokfp-gms")
            try:
                count = 0
                stream = iter(proposals)
                batches = iter(lambda: list(itertools.islice(stream, _GMS_BATCH)), [])
                for index, batch in enumerate(batches):
                    keys = {(p.entityUrn, p.aspectName) for p in batch}
                    while not failed and (len(in_flight) >= self.workers or any(
                            keys & held for *_, held in in_flight.values())):
                        settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
                    if failed:
                        break  # no batch starts once one failed
                    in_flight[self._pool.submit(post, batch)] = (
                        index, count + 1, count + len(batch), keys)
                    count += len(batch)
            finally:
                settle(wait(in_flight).done)
        except Exception as exc:
            failed.append((-1, 0, 0, exc))
        if failed:
            failed.sort(key=lambda f: f[0])
            where = "; ".join(
                (f"batch {index + 1} (aspects {first}-{last}) failed: " if index >= 0 else "")
                + self._safe(error)[:800] for index, first, last, error in failed[:3])
            more = f"; and {len(failed) - 3} more batch(es) failed" if len(failed) > 3 else ""
            error = CatalogPublishError(
                f"DataHub GMS at {_safe_url(self.url)} acknowledged {sent} aspect(s), then "
                f"failed: {where}{more}. Check DATAHUB_GMS_URL (the GMS, usually :8080) and "
                "DATAHUB_GMS_TOKEN")
            error.sent = sent
            raise error from None
        return sent

    def close(self) -> None:
        """Wait for nothing more (``send`` returns with its batches answered), stop the
        threads and close every emitter's session. Safe to call twice."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._guard:
            emitters, self._emitters = self._emitters, []
        for made in emitters:
            with contextlib.suppress(Exception):
                made.close()


def emit_to_gms(proposals: Iterable[MetadataChangeProposalWrapper], url: str,
                token: str | None = None, timeout_sec: float = 30.0,
                workers: int | None = None) -> int:
    """Send proposals to a DataHub GMS with the REST emitter; return how many GMS
    acknowledged. One ``GmsSender`` for this call (``publish`` keeps one for a whole
    publication): ``GET /config`` first, then batches, ``workers`` at a time (default
    ``GMS_WORKERS``), with ``Authorization: Bearer <token>``. A 429 or 5xx answer is retried
    by the emitter (with backoff), which re-sends the batch whole: harmless, as
    ``GmsSender`` explains.

    Raises:
        CatalogPublishError: the server cannot be reached, is not a GMS, or a batch failed
            (``sent``: the aspects GMS acknowledged). The message never contains the token.
    """
    with GmsSender(url, token, timeout_sec, workers) as gms:
        sent = gms.send(proposals)
    log.info("sent %d aspect(s) to DataHub GMS at %s", sent, _safe_url(url))
    return sent


@dataclass
class PublishResult:
    """Where a batch of metadata went."""

    proposals: int
    metadata_uri: str | None = None
    lite_path: str | None = None
    lite_written: int = 0
    lite_error: str | None = None
    gms_url: str | None = None
    gms_sent: int = 0
    gms_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# proposals sent on to DataHub Lite and GMS at a time (about 400 datasets' aspects): what
# publishing holds, whatever the number of datasets
PUBLISH_BATCH = 2000


def publish(proposals: Iterable[MetadataChangeProposalWrapper], metadata_uri: str | None,
            catalog_dir: str | os.PathLike | None) -> PublishResult:
    """Write proposals to the artifact store, then to DataHub Lite and (if configured) a GMS.

    The metadata file is written first, whole and atomically (a temporary file put in place
    once complete): nothing is sent to Lite or GMS unless it is in place, so a failed write
    sends nothing and the file always holds at least what was sent. Memory stays bounded:
    the proposals are taken one at a time into the file and into a local spool file, then
    read back from the spool ``PUBLISH_BATCH`` at a time and sent, so given a generator
    publishing holds one batch, not every dataset's aspects (a crawl of 1,000 datasets held
    43 MB more at its peak publishing them all at once). A Lite or GMS error stops sending to
    that target (the batches before it were sent) and is reported in the result. One
    ``GmsSender`` serves the whole publication (its threads and sessions closed at the end,
    also when an error ends it); ``gms_sent`` counts what GMS acknowledged (a failed batch
    may be written in part: see ``GmsSender``).

    Args:
        proposals: what to publish.
        metadata_uri: where the metadata file goes (local or ``gs://``); None skips it.
        catalog_dir: the local catalog folder holding DataHub Lite; None skips Lite.

    Returns:
        What went where; Lite and GMS errors are in the result (and logged), not raised.

    Raises:
        StorageError: the metadata file cannot be written to the artifact store (then
            nothing was sent to Lite or GMS).
    """
    result = PublishResult(proposals=0)
    stream = iter(proposals)
    first = next(stream, None)
    if first is None:
        return result
    if catalog_dir is not None:
        result.lite_path = str(lite_path(catalog_dir))
    target = gms_settings()
    if target is not None:
        result.gms_url = _safe_url(target[0])
    with contextlib.ExitStack() as stack:
        gms = stack.enter_context(GmsSender(*target)) if target is not None else None
        _publish_stream(first, stream, metadata_uri, catalog_dir, gms, result)
    if result.gms_url is not None and result.gms_error is None:
        log.info("sent %d aspect(s) to DataHub GMS at %s", result.gms_sent, result.gms_url)
    return result


def _publish_stream(first: MetadataChangeProposalWrapper,
                    stream: Iterator[MetadataChangeProposalWrapper], metadata_uri: str | None,
                    catalog_dir: str | os.PathLike | None, gms: GmsSender | None,
                    result: PublishResult) -> None:
    """``publish``'s body: the file, the spool, then Lite and ``gms`` a batch at a time."""
    import pickle
    import tempfile

    def send(batch: list[MetadataChangeProposalWrapper]) -> None:
        if catalog_dir is not None and result.lite_error is None:
            try:
                result.lite_written += load_into_lite(batch, catalog_dir)
            except CatalogPublishError as exc:
                result.lite_error = str(exc)
                log.warning("%s", exc)
        if gms is not None and result.gms_error is None:
            try:
                result.gms_sent += gms.send(batch)
            except CatalogPublishError as exc:
                result.gms_sent += exc.sent
                result.gms_error = str(exc)
                log.warning("%s", exc)

    def send_in_batches(items: Iterator[MetadataChangeProposalWrapper]) -> None:
        while batch := list(itertools.islice(items, PUBLISH_BATCH)):
            send(batch)

    every = itertools.chain([first], stream)
    if not metadata_uri:
        def counted() -> Iterator[MetadataChangeProposalWrapper]:
            for proposal in every:
                result.proposals += 1
                yield proposal

        send_in_batches(counted())
        return

    # the spool is this process's own unnamed temporary file: what is unpickled is what was
    # pickled a moment ago (each proposal carries its serialised form, so Lite reuses it)
    with tempfile.TemporaryFile(prefix="autokfp-publish-") as spool:
        def spooled() -> Iterator[MetadataChangeProposalWrapper]:
            for proposal in every:
                yield proposal  # into the file (which serialises it) ...
                pickle.dump(proposal, spool, protocol=pickle.HIGHEST_PROTOCOL)  # ... then here
                result.proposals += 1

        result.metadata_uri = write_metadata(metadata_uri, spooled())
        spool.seek(0)

        def unspooled() -> Iterator[MetadataChangeProposalWrapper]:
            for _ in range(result.proposals):
                yield pickle.load(spool)  # our own spool, written above

        send_in_batches(unspooled())
