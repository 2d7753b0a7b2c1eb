"""``autokfp approve MODEL VERSION``: a person's approval, recorded where it cannot be faked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autokfp.config import GovernanceSpec
from autokfp.edge.cli import app
from autokfp.errors import RegistryError
from autokfp.governance import PolicyError, approval, audit
from autokfp.modeling import registry

runner = CliRunner()


@pytest.fixture
def version(autokfp_home, tmp_path) -> str:
    """A registered version (the registry only needs a source for it)."""
    client = registry.configure(autokfp_home)
    client.create_registered_model("churn")
    source = tmp_path / "model"
    source.mkdir()
    return str(client.create_model_version("churn", source=str(source)).version)


def test_approval_is_an_audit_event_and_an_mlflow_tag(autokfp_home, version) -> None:
    assert not approval.is_approved("churn", version)
    with pytest.raises(PolicyError, match=f"autokfp approve churn {version}"):
        approval.ensure_approved(GovernanceSpec(require_approval=True), "churn", version)
    approval.ensure_approved(GovernanceSpec(), "churn", version)  # autonomous by default

    result = runner.invoke(app, ["approve", "churn", version, "--note", "card reviewed",
                                 "--by", "ana"])
    assert result.exit_code == 0, result.output
    assert "Approved churn v1 by ana" in result.output
    assert approval.is_approved("churn", version)
    approval.ensure_approved(GovernanceSpec(require_approval=True), "churn", version)
    (event,) = audit.events_for("churn", version, kind="approval.granted")
    assert event["actor"] == "ana" and event["details"]["note"] == "card reviewed"
    tags = registry.configure(autokfp_home).get_model_version("churn", version).tags
    assert tags["governance.approved"] == "true" and tags["governance.approved_by"] == "ana"
    assert tags["audit.last_hash"] == event["hash"]


def test_a_tampered_trail_voids_approvals(autokfp_home, version) -> None:
    approval.approve("churn", version, actor="ana")
    trail = audit.trail_uri()
    with open(trail, encoding="utf-8") as handle:
        text = handle.read()
    with open(trail, "w", encoding="utf-8") as handle:
        handle.write(text.replace('"actor":"ana"', '"actor":"eve"').replace('"ana"', '"eve"'))
    assert not approval.is_approved("churn", version)


def test_approving_an_unknown_version_names_it(autokfp_home, version) -> None:
    with pytest.raises(RegistryError, match="no version 7"):
        approval.approve("churn", "7")
    result = runner.invoke(app, ["approve", "churn", "7"])
    assert result.exit_code == 2
    assert "autokfp models" in result.output
