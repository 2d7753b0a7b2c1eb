"""The crawl catalogues exactly what it did before session 15's speed-ups (see
``catalog_snapshot.py``): schema versions, index, crawl cache, report, metadata-file
records, DataHub Lite's aspects and edges and the datasets handed on, first crawl and
unchanged re-crawl, on a small workload of varied columns (a few seconds)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.engine.catalog.catalog_snapshot import crawl_snapshots, differences

EXPECTED = Path(__file__).parent / "data" / "catalog_snapshot.json.gz"


def test_the_crawl_catalogues_what_the_code_before_its_speed_ups_did(tmp_path, catalog_home):
    expected = json.loads(gzip.decompress(EXPECTED.read_bytes()))
    actual = json.loads(json.dumps(crawl_snapshots(tmp_path), sort_keys=True))
    assert actual["first"]["found"], "the workload was crawled"
    assert all(d["reused"] for d in actual["again"]["found"])  # the re-crawl read nothing
    assert actual == expected, "\n".join(differences(expected, actual))
