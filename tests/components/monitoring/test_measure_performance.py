"""The ``measure_performance`` component: live metrics on labelled rows and the drop."""

from __future__ import annotations

import json

import pytest

from tests.components.monitoring.conftest import read


def test_measure_performance_compares_live_auc_with_the_champion(monitored) -> None:
    a = monitored.artifacts
    written = json.loads(read(a.performance))
    assert written["available"] and written["labelled_rows"] == monitored.rows
    assert written["champion_test"] == pytest.approx(0.8)
    assert monitored.returned.drop == pytest.approx(written["drop"])
    assert a.performance_metrics.metadata["primary_metric_drop"] == pytest.approx(written["drop"])
    assert 0.6 < a.performance_metrics.metadata["live_auc"] <= 1.0
