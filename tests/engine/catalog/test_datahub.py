"""DataHub metadata: URNs, aspects, and a file the real `datahub` CLI accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.datahub import dataset_urn, metadata_proposals, write_metadata
from autokfp.catalog.profiling import profile_frame
from autokfp.catalog.schema import DatasetSchema


def _schema(
    dataset_id: str = "files/raw/customers.parquet", platform: str = "file"
) -> DatasetSchema:
    rng = np.random.default_rng(3)
    n = 60
    df = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "email": [f"p{i}@example.com" for i in range(n)],
            "gender": rng.choice(["f", "m"], n),
            "spend": rng.normal(10, 2, n),
            "joined": pd.date_range("2024-01-01", periods=n),
            "active": rng.choice([True, False], n),
        }
    )
    df.loc[:4, "spend"] = np.nan
    schema = profile_frame(
        df, dataset_id, platform, "/data/customers.parquet", fmt="parquet", row_count=1_000
    )
    schema.column("active").tags.append("target")
    return schema


def _aspects(proposals) -> dict[str, object]:
    return {type(p.aspect).__name__: p.aspect for p in proposals}


def test_dataset_urn_is_the_sources_name_else_the_dotted_id() -> None:
    named = _schema()
    named.urn = "urn:li:dataset:(urn:li:dataPlatform:file,data/raw/customers.parquet,PROD)"
    assert dataset_urn(named) == named.urn
    # a schema stored before sources named datasets keeps the old form
    assert dataset_urn(_schema()) == (
        "urn:li:dataset:(urn:li:dataPlatform:file,files.raw.customers.parquet,PROD)"
    )
    assert dataset_urn(_schema("wh/customers", "sqlite")) == (
        "urn:li:dataset:(urn:li:dataPlatform:sqlite,wh.customers,PROD)"
    )


def test_aspects_carry_schema_profile_tags_and_lineage() -> None:
    schema = _schema()
    upstream = dataset_urn(_schema("wh/customers", "sqlite"))
    proposals = metadata_proposals(schema, upstream_urns=[upstream], timestamp_millis=1234)
    assert {p.entityUrn for p in proposals} == {dataset_urn(schema)}
    aspects = _aspects(proposals)
    assert set(aspects) == {
        "StatusClass",
        "DatasetPropertiesClass",
        "SchemaMetadataClass",
        "DatasetProfileClass",
        "GlobalTagsClass",
        "UpstreamLineageClass",
    }
    props = aspects["DatasetPropertiesClass"].customProperties
    assert props["row_count"] == "1000" and props["sample_rows"] == "60"
    assert props["fingerprint"] == schema.fingerprint
    assert props["location"] == "/data/customers.parquet"

    meta = aspects["SchemaMetadataClass"]
    assert meta.hash == schema.fingerprint
    fields = {f.fieldPath: f for f in meta.fields}
    assert list(fields) == schema.column_names
    assert type(fields["spend"].type.type).__name__ == "NumberTypeClass"
    assert type(fields["email"].type.type).__name__ == "StringTypeClass"
    assert type(fields["joined"].type.type).__name__ == "TimeTypeClass"
    assert type(fields["active"].type.type).__name__ == "BooleanTypeClass"
    assert fields["spend"].nativeDataType == "float64"

    def tags(field: str) -> set[str]:
        return {t.tag for t in fields[field].globalTags.tags}

    assert {"urn:li:tag:pii", "urn:li:tag:pii:email", "urn:li:tag:semantic:email"} <= tags("email")
    assert "urn:li:tag:sensitive" in tags("gender")
    assert "urn:li:tag:target" in tags("active")
    assert "urn:li:tag:pii" not in tags("spend")

    profile = aspects["DatasetProfileClass"]
    assert profile.rowCount == 1000 and profile.columnCount == 6
    assert profile.timestampMillis == 1234
    spend = {f.fieldPath: f for f in profile.fieldProfiles}["spend"]
    assert spend.nullCount == 5 and spend.uniqueCount == 55
    assert float(spend.mean) == pytest.approx(schema.column("spend").mean)
    assert isinstance(spend.min, str) and isinstance(spend.max, str)
    # the partition spec given is the class's own default, byte for byte
    from datahub.metadata.schema_classes import DatasetProfileClass

    default = DatasetProfileClass(timestampMillis=1234, rowCount=1000, columnCount=6,
                                  fieldProfiles=profile.fieldProfiles)
    assert profile.to_obj() == default.to_obj()

    dataset_tags = {t.tag for t in aspects["GlobalTagsClass"].tags}
    assert dataset_tags == {"urn:li:tag:pii", "urn:li:tag:pii:email", "urn:li:tag:sensitive"}
    (up,) = aspects["UpstreamLineageClass"].upstreams
    assert up.dataset == upstream

    assert "UpstreamLineageClass" not in _aspects(metadata_proposals(schema))


def _datahub_check(path: Path, home: Path) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("datahub")
    env = {**os.environ, "HOME": str(home), "DATAHUB_TELEMETRY_ENABLED": "false"}
    return subprocess.run(
        [str(cli), "check", "metadata-file", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_written_file_passes_datahub_check(tmp_path: Path) -> None:
    source = _schema("wh/customers", "sqlite")
    derived = _schema()
    proposals = metadata_proposals(source) + metadata_proposals(
        derived, upstream_urns=[dataset_urn(source)]
    )
    path = tmp_path / "catalog" / "metadata.json"
    path.parent.mkdir()
    assert write_metadata(path, proposals) == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["metadata.json"]  # no temp left over
    records = json.loads(path.read_text())
    assert len(records) == len(proposals) == 11

    home = tmp_path / "home"
    home.mkdir()
    result = _datahub_check(path, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 MCEs found - all valid" in result.stdout + result.stderr

    # the check is not a rubber stamp: a schema without its required hash is refused
    schema_record = next(r for r in records if r["aspectName"] == "schemaMetadata")
    schema_record["aspect"]["json"].pop("hash")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records))
    assert _datahub_check(broken, home).returncode != 0
