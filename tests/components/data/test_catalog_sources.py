"""The ``catalog_sources`` component: counts for the UI, the report, the proposals, and the
number of breaking schema changes it returns."""

from __future__ import annotations

import json
from pathlib import Path

from kfp.dsl import HTML, Artifact, Metrics

from autokfp.components import catalog_sources
from tests.components import artifact
from tests.conftest import small_config


def _crawl(config: dict, folder: Path):
    outputs = {"report": artifact(HTML, folder, "report"),
               "catalog": artifact(Artifact, folder, "catalog"),
               "metrics": artifact(Metrics, folder, "metrics")}
    breaking = catalog_sources.python_func(config=config, **outputs)
    return breaking, outputs


def test_catalog_sources_counts_what_it_found_and_what_broke(autokfp_home, churn_frame,
                                                             tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    churn_frame.to_parquet(data / "customers.parquet", index=False)
    (data / "broken.parquet").write_bytes(b"not parquet")
    config = small_config(data).to_dict()

    breaking, first = _crawl(config, tmp_path / "first")
    assert breaking == 0
    counts = first["metrics"].metadata
    assert counts["new"] == 1 and counts["catalogued"] == 1 and counts["failed"] == 1
    assert first["catalog"].metadata["new"] == 1
    assert "broken.parquet" in Path(first["report"].path).read_text()
    proposals = json.loads(Path(first["catalog"].path).read_text())
    assert any("customers.parquet" in json.dumps(p) for p in proposals)

    # the target column disappears: a breaking change, counted and returned
    churn_frame.drop(columns=["churned"]).to_parquet(data / "customers.parquet", index=False)
    breaking, second = _crawl(config, tmp_path / "second")
    assert breaking == 1
    assert second["metrics"].metadata["breaking"] == 1
    assert second["metrics"].metadata["changed"] == 1
