"""The audit trail's head is anchored in the registry: truncation, deletion and a full rewrite
with recomputed hashes fail verification (a hash chain alone passes all three)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autokfp.edge.cli import app
from autokfp.governance import audit
from autokfp.settings import Settings

runner = CliRunner()
KINDS = ("data.changed", "feature.dropped", "model.selected", "model.registered",
         "deploy.promoted")


def _settings_of(home: Path) -> Settings:
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "AUTOKFP_"))]:
        del os.environ[name]
    os.environ["AUTOKFP_HOME"] = str(home)
    return Settings.from_env(home)


@pytest.fixture(scope="module")
def template_home(tmp_path_factory) -> Path:
    """A home whose trail holds five anchored events (a new registry takes ~15 s here)."""
    saved = dict(os.environ)
    try:
        settings = _settings_of(tmp_path_factory.mktemp("audit-anchor") / "home")
        settings.ensure_local_dirs()
        for kind in KINDS:
            audit.record_event(kind, {"reason": f"because {kind}"}, model="churn",
                               settings=settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return settings.home


@pytest.fixture
def home(template_home, tmp_path):
    saved = dict(os.environ)
    copy = tmp_path / "home"
    shutil.copytree(template_home, copy)
    settings = _settings_of(copy)
    yield settings
    os.environ.clear()
    os.environ.update(saved)


def _trail(settings: Settings) -> Path:
    return Path(audit.trail_uri(settings))


def _verify_cli(settings: Settings):
    return runner.invoke(app, ["audit", "--verify", "--json", "--home", str(settings.home)])


def test_an_intact_trail_verifies_against_its_anchor(home):
    anchor = audit.read_anchor(home)
    assert anchor["seq"] == len(KINDS)
    assert anchor["hash"] == audit.read_events(home)[-1]["hash"]
    result = _verify_cli(home)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verification"] == {"ok": True, "events": 5, "problems": []}


def test_deleting_the_last_events_is_detected(home):
    trail = _trail(home)
    lines = trail.read_text().splitlines()
    trail.write_text("\n".join(lines[:3]) + "\n")
    verification = audit.verify_trail(home)
    assert not verification.ok
    assert "records 5 events" in verification.problems[0]
    assert "holds 3" in verification.problems[0]
    assert "the last 2 event(s) were deleted" in verification.problems[0]
    assert _verify_cli(home).exit_code == 1


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_deleted_or_emptied_trail_is_detected(home, how):
    trail = _trail(home)
    if how == "deleted":
        trail.unlink()
    else:
        trail.write_bytes(b"")
    verification = audit.verify_trail(home)
    assert not verification.ok
    assert "the trail is empty or was deleted" in verification.problems[0]
    result = _verify_cli(home)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verification"]["ok"] is False


def test_a_rewrite_with_recomputed_hashes_is_detected(home):
    """Edit one event and recompute every hash: the chain is self-consistent again."""
    trail = _trail(home)
    events = [json.loads(line) for line in trail.read_text().splitlines()]
    events[1]["details"]["reason"] = "nothing to see here"
    previous = audit.GENESIS
    for event in events:
        event["prev_hash"] = previous
        event["hash"] = audit._digest(event)
        previous = event["hash"]
    trail.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert audit._chain_problems(audit.read_events(home)) == []  # the chain alone is fooled

    verification = audit.verify_trail(home)

    assert not verification.ok
    assert "event #5 (deploy.promoted) does not match the head anchored" in \
        verification.problems[0]
    assert "rewritten" in verification.problems[0]


def test_the_anchor_moves_forward_with_new_events(home):
    audit.record_event("retrain.skipped", {}, model="churn", settings=home)
    assert audit.read_anchor(home)["seq"] == 6
    assert audit.verify_trail(home).ok
    trail = _trail(home)
    lines = trail.read_text().splitlines()
    trail.write_text("\n".join(lines[:5]) + "\n")  # drop just the newest
    assert "the last 1 event(s) were deleted" in audit.verify_trail(home).problems[0]
