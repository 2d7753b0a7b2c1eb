"""``autokfp audit [--verify]``: list the trail, and name any edited, reordered or deleted event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autokfp.edge.cli import app
from autokfp.governance import audit

runner = CliRunner()


@pytest.fixture
def trail(autokfp_home) -> Path:
    for kind in ("schema.change_accepted", "feature.dropped", "model.selected", "bias.mitigated"):
        audit.record_event(kind, {"reason": f"because {kind}"}, model="churn",
                           mirror_to_mlflow=False)
    return Path(audit.trail_uri())


def _invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_audit_lists_events_and_verifies_an_intact_trail(trail) -> None:
    result = _invoke("audit", "--verify")
    assert result.exit_code == 0, result.output
    assert "bias.mitigated" in result.output and "because model.selected" in result.output
    assert "verified: 4 events" in result.output

    result = _invoke("audit", "--json", "--verify")
    data = json.loads(result.stdout)
    assert [e["kind"] for e in data["events"]][0] == "schema.change_accepted"
    assert data["verification"] == {"ok": True, "events": 4, "problems": []}


def test_editing_one_byte_fails_verification_naming_the_event(trail) -> None:
    lines = trail.read_text().splitlines()
    assert '"because feature.dropped"' in lines[1]
    lines[1] = lines[1].replace("because feature.dropped", "because feature.droppeD")
    trail.write_text("\n".join(lines) + "\n")
    result = _invoke("audit", "--verify")
    assert result.exit_code == 1
    assert "event #2 (feature.dropped, line 2)" in result.output
    assert "edited" in result.output


def test_deleting_an_event_fails_verification_naming_where(trail) -> None:
    lines = trail.read_text().splitlines()
    del lines[2]
    trail.write_text("\n".join(lines) + "\n")
    verification = audit.verify_trail()
    assert not verification.ok
    assert "event #4 (bias.mitigated, line 3)" in verification.problems[0]
    assert "deleted" in verification.problems[0]
    assert _invoke("audit", "--verify").exit_code == 1


def test_swapping_two_events_fails_verification(trail) -> None:
    lines = trail.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    trail.write_text("\n".join(lines) + "\n")
    verification = audit.verify_trail()
    assert not verification.ok
    assert "event #2 (feature.dropped, line 1)" in verification.problems[0]
    result = _invoke("audit", "--verify", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verification"]["ok"] is False


def test_a_line_that_is_no_longer_json_is_named(trail) -> None:
    content = trail.read_bytes()
    trail.write_bytes(content[:10] + b"}" + content[11:])
    result = _invoke("audit", "--verify")
    assert result.exit_code == 1
    assert "line 1" in result.output


def test_empty_trail_and_model_filter(autokfp_home) -> None:
    assert "No audit events yet" in _invoke("audit").output
    audit.record_event("model.selected", {}, model="a", mirror_to_mlflow=False)
    audit.record_event("model.selected", {}, model="b", mirror_to_mlflow=False)
    data = json.loads(_invoke("audit", "--json", "--model", "b").stdout)
    assert [e["model"] for e in data["events"]] == ["b"]
    assert [e["model"] for e in audit.events_for(model="a")] == ["a"]
