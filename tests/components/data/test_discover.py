"""The ``discover`` component: dataset, schema and catalog artifacts, and the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def test_discover_writes_dataset_schema_and_catalog(discovered, churn_frame) -> None:
    _config, dataset, schema, catalog, fingerprint = discovered
    frame = pd.read_parquet(dataset.path)
    assert frame.shape == churn_frame.shape
    assert dataset.metadata["rows"] == len(churn_frame)
    assert dataset.metadata["columns"] == churn_frame.shape[1]
    assert dataset.metadata["dataset_id"] == "files/customers.parquet"
    assert dataset.metadata["urn"].startswith("urn:li:dataset:")

    schema_json = json.loads(Path(schema.path).read_text())
    assert schema_json["fingerprint"] == fingerprint
    assert isinstance(fingerprint, str) and fingerprint

    proposals = json.loads(Path(catalog.path).read_text())
    assert isinstance(proposals, list) and proposals
    assert catalog.metadata == {"datasets_found": 1, "datasets_failed": 0}


def test_used_alone_a_file_and_its_target_are_enough(churn_frame, autokfp_home, tmp_path,
                                                     monkeypatch) -> None:
    """No run config: the file is the only source crawled, loaded with its schema."""
    import pytest
    from kfp.dsl import Artifact, Dataset

    from autokfp.components import discover
    from autokfp.errors import ConfigError
    from tests.components import artifact

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    data = tmp_path / "lake"
    data.mkdir()
    churn_frame.head(500).to_parquet(data / "customers.parquet", index=False)
    churn_frame.head(50).to_parquet(data / "other.parquet", index=False)
    outputs = {"dataset": artifact(Dataset, tmp_path / "out", "dataset"),
               "schema": artifact(Artifact, tmp_path / "out", "schema"),
               "catalog": artifact(Artifact, tmp_path / "out", "catalog")}
    discover.python_func(dataset_uri=str(data / "customers.parquet"), target="churned",
                         **outputs)
    assert len(pd.read_parquet(outputs["dataset"].path)) == 500
    assert outputs["dataset"].metadata["dataset_id"] == "run-form/customers.parquet"
    schema = json.loads(Path(outputs["schema"].path).read_text())
    assert "target" in next(c for c in schema["columns"] if c["name"] == "churned")["tags"]
    assert outputs["catalog"].metadata["datasets_found"] == 1  # not other.parquet
    with pytest.raises(ConfigError, match="no dataset"):
        discover.python_func(target="churned", **outputs)
