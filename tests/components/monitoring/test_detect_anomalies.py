"""The ``detect_anomalies`` component: the count it returns matches what it wrote."""

from __future__ import annotations

import json

from tests.components.monitoring.conftest import read


def test_detect_anomalies_counts_what_it_found(monitored) -> None:
    a = monitored.artifacts
    written = json.loads(read(a.anomalies))
    assert monitored.returned.anomalies == len(written["anomalies"])
    assert a.anomalies.metadata["anomalies"] == monitored.returned.anomalies
