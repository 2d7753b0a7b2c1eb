"""The ``detect_drift`` component: the drifted share it returns and the metrics for the UI."""

from __future__ import annotations

import json

from tests.components.monitoring.conftest import read


def test_detect_drift_logs_the_share_of_drifted_features(monitored) -> None:
    a = monitored.artifacts
    written = json.loads(read(a.drift))
    assert written["available"] is True
    share = written["features"]["share_of_drifted_columns"]
    assert monitored.returned.drift_share == share
    assert a.drift_metrics.metadata["drifted_feature_share"] == share
    assert a.drift_metrics.metadata["features_tested"] >= 5
    assert "prediction_drift" in a.drift_metrics.metadata
    assert a.drift.metadata["drifted"] == ",".join(written["features"]["drifted_columns"])
    assert "monthly_charges" in read(a.report)  # Evidently's report
