"""The ``decide_retraining`` component: the decision it returns, and the audit record."""

from __future__ import annotations

import json

from autokfp.governance.audit import read_events
from tests.components.monitoring.conftest import read


def test_decide_retraining_keeps_a_stable_champion(monitored) -> None:
    a = monitored.artifacts
    written = json.loads(read(a.decision))
    # held-out rows of the training data, scored by the champion: nothing to retrain for
    assert monitored.returned.retrain is False and written["retrain"] is False
    assert a.decision.metadata == {"retrain": False, "summary": written["summary"]}
    skipped = [e for e in read_events(monitored.settings) if e["kind"] == "retrain.skipped"]
    assert len(skipped) == 1 and skipped[0]["run_id"] == "run-1"
