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
