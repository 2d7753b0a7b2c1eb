"""The ``record_retraining`` component: which version serves after the nested training."""

from __future__ import annotations

import json

from kfp.dsl import Artifact

from autokfp.components import record_retraining
from autokfp.governance.audit import read_events
from tests.components import artifact
from tests.components.monitoring.conftest import read


def test_record_retraining_reports_the_champion(monitored, tmp_path) -> None:
    registration = artifact(Artifact, tmp_path, "registration")
    registration_json = {"version": "1", "promoted": True, "aliases": "champion",
                         "decision": "first"}
    (tmp_path / "registration").write_text(json.dumps(registration_json))
    outcome = artifact(Artifact, tmp_path, "outcome")
    champion = record_retraining.python_func(config=monitored.config, run_id="run-1",
                                             registration=registration, outcome=outcome)
    assert champion == "1"
    assert outcome.metadata["champion"] == "1"
    written = json.loads(read(outcome))
    assert written["registered_version"] == "1" and written["promoted"] is True
    # the same run again (a retried task) records nothing twice
    record_retraining.python_func(config=monitored.config, run_id="run-1",
                                  registration=registration, outcome=outcome)
    completed = [e for e in read_events(monitored.settings) if e["kind"] == "retrain.completed"]
    assert len(completed) == 1
