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


# ------------------------------------------------------------------ signed anchor (HMAC)

KEY = "audit-key-for-tests-7f3a"


def _rewrite_chain_and_anchor(settings: Settings, key: str | None = None) -> None:
    """What someone who can write both the trail and the registry does: edit an event,
    recompute every hash, and move the registry's anchor onto the new head (signing it
    only if they hold ``key``)."""
    trail = _trail(settings)
    events = [json.loads(line) for line in trail.read_text().splitlines()]
    events[1]["details"]["reason"] = "nothing to see here"
    previous = audit.GENESIS
    for event in events:
        event["prev_hash"] = previous
        event["hash"] = audit._digest(event)
        previous = event["hash"]
    trail.write_text("".join(json.dumps(e) + "\n" for e in events))
    from autokfp.modeling import registry

    client = registry.configure(settings)
    experiment = client.get_experiment_by_name(audit.ANCHOR_EXPERIMENT)
    head = {"seq": events[-1]["seq"], "hash": events[-1]["hash"],
            "trail": audit.trail_uri(settings), "at": events[-1]["timestamp"]}
    if key is not None:
        head["mac"] = audit.anchor_mac(key.encode(), head["seq"], head["hash"])
    client.set_experiment_tag(experiment.experiment_id, audit.ANCHOR_TAG, json.dumps(head))


def test_a_rewrite_of_chain_and_anchor_is_caught_only_by_the_signature(home):
    os.environ[audit.KEY_ENV] = KEY
    audit.record_event("retrain.skipped", {}, model="churn", settings=home)
    anchor = audit.read_anchor(home)
    assert anchor["seq"] == 6
    assert anchor["mac"] == audit.anchor_mac(KEY.encode(), 6, anchor["hash"])
    assert audit.verify_trail(home).ok

    _rewrite_chain_and_anchor(home)  # without the key: an unsigned anchor
    problems = audit.verify_trail(home).problems
    assert problems and "not signed although AUTOKFP_AUDIT_KEY is set" in problems[0]

    _rewrite_chain_and_anchor(home, key="a-guessed-key")
    problems = audit.verify_trail(home).problems
    assert problems and "does not carry a valid signature" in problems[0]
    result = _verify_cli(home)
    assert result.exit_code == 1 and "valid signature" in result.stdout

    # the contrast: without a key, the same rewrite passes (the chain and anchor agree)
    del os.environ[audit.KEY_ENV]
    _rewrite_chain_and_anchor(home)
    assert audit.verify_trail(home).ok


def test_a_removed_anchor_or_a_missing_key_is_reported(home):
    os.environ[audit.KEY_ENV] = KEY
    audit.record_event("retrain.skipped", {}, model="churn", settings=home)
    assert audit.verify_trail(home).ok

    del os.environ[audit.KEY_ENV]  # a signed anchor cannot be checked without the key
    problems = audit.verify_trail(home).problems
    assert problems and "AUTOKFP_AUDIT_KEY is not set here" in problems[0]

    os.environ[audit.KEY_ENV] = KEY
    from autokfp.modeling import registry

    client = registry.configure(home)
    experiment = client.get_experiment_by_name(audit.ANCHOR_EXPERIMENT)
    client.delete_experiment_tag(experiment.experiment_id, audit.ANCHOR_TAG)
    problems = audit.verify_trail(home).problems
    assert problems and "holds 6 events but the registry holds no anchor" in problems[0]


# ------------------------------------------------------------------ batched anchoring


def test_a_batch_anchors_once_and_stays_tamper_evident(home, monkeypatch):
    from mlflow import MlflowClient

    calls: list[str] = []
    for name in ("set_experiment_tag", "set_model_version_tag"):
        real = getattr(MlflowClient, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, name, counted)
    from autokfp.modeling import registry

    client = registry.configure(home)
    client.create_registered_model("churn-b")
    run = client.create_run(client.create_experiment("b")).info.run_id
    client.create_model_version("churn-b", f"runs:/{run}/model", run_id=run)
    calls.clear()

    with audit.batch():
        for n in range(4):
            audit.record_event("model.documented", {"n": n}, model="churn-b", version="1",
                               settings=home)
        assert calls == []  # nothing written to the registry yet
        assert audit.read_anchor(home)["seq"] == 5
    # one anchor tag, then per version one summary tag per event and one last_hash
    assert calls.count("set_experiment_tag") == 1
    assert calls.count("set_model_version_tag") == 4 + 1
    assert audit.read_anchor(home)["seq"] == 9
    tags = client.get_model_version("churn-b", "1").tags
    assert tags["audit.last_hash"] == audit.read_events(home)[-1]["hash"]
    assert {f"audit.{seq:06d}" for seq in range(6, 10)} <= set(tags)
    assert audit.verify_trail(home).ok

    # a step that fails part-way still anchors what it recorded; a trail cut meanwhile is
    # caught, because the anchor records the head the step wrote
    trail = _trail(home)
    with pytest.raises(RuntimeError), audit.batch():
        audit.record_event("model.selected", {}, model="churn", settings=home)
        audit.record_event("model.registered", {}, model="churn", settings=home)
        trail.write_text("\n".join(trail.read_text().splitlines()[:9]) + "\n")
        raise RuntimeError("the step broke")
    assert audit.read_anchor(home)["seq"] == 11
    problems = audit.verify_trail(home).problems
    assert problems and "the last 2 event(s) were deleted" in problems[0]

