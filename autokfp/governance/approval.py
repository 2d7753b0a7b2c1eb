"""Human oversight: a person's approval of a model version before it reaches production.

By default the platform runs autonomously (``governance.require_approval: false``). When a
policy requires approval, ``autokfp approve MODEL VERSION`` records it as an
``approval.granted`` event in the tamper-evident audit trail (mirrored as the MLflow
model-version tags ``governance.approved*``), and the deploy side asks ``is_approved`` or
calls ``ensure_approved``. The audit trail is the record: a tag set by hand in MLflow
without the matching, verifying event does not count.
"""

from __future__ import annotations

import getpass
import logging
import os
from typing import Any

from autokfp.config import GovernanceSpec
from autokfp.errors import RegistryError
from autokfp.governance import PolicyError, audit
from autokfp.settings import Settings

log = logging.getLogger(__name__)

APPROVAL_KIND = "approval.granted"


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("AUTOKFP_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


def approve(model: str, version: str | int, actor: str | None = None, note: str | None = None,
            settings: Settings | None = None) -> dict[str, Any]:
    """Record a person's approval of ``model`` ``version``; return the audit event.

    Raises:
        RegistryError: the version is not registered.
    """
    from autokfp.modeling import registry

    settings = settings or Settings.from_env()
    client = registry.configure(settings)
    try:
        registered = client.get_model_version(model, str(version))
    except Exception:  # noqa: BLE001 - MLflow raises its own types for an unknown version
        raise RegistryError(f"model '{model}' has no version {version}; see 'autokfp models' for the "
                            "registered versions") from None
    person = _actor(actor)
    details = {"note": note or "", "run_id": registered.run_id,
               "package_sha256": (registered.tags or {}).get(registry.PACKAGE_HASH_TAG, ""),
               "compliance": (registered.tags or {}).get("governance.compliance", "")}
    event = audit.record_event(APPROVAL_KIND, details, model=model, version=str(version),
                               actor=person, settings=settings)
    client.set_model_version_tag(model, str(version), "governance.approved", "true")
    client.set_model_version_tag(model, str(version), "governance.approved_by", person)
    client.set_model_version_tag(model, str(version), "governance.approval_event",
                                 f"#{event['seq']} {event['hash']}")
    log.info("%s approved %s v%s (audit event #%s)", person, model, version, event["seq"])
    return event


def approval_event(model: str, version: str | int,
                   settings: Settings | None = None) -> dict[str, Any] | None:
    """The latest approval event of the version, if the audit trail verifies; else None."""
    verification = audit.verify_trail(settings)
    if not verification.ok:
        log.warning("audit trail does not verify, so no approval in it counts: %s",
                    "; ".join(verification.problems))
        return None
    events = audit.events_for(model, version, kind=APPROVAL_KIND, settings=settings)
    return events[-1] if events else None


def is_approved(model: str, version: str | int, settings: Settings | None = None) -> bool:
    """Whether a person approved this version (an ``approval.granted`` event in a trail that
    verifies)."""
    return approval_event(model, version, settings) is not None


def ensure_approved(policy: GovernanceSpec, model: str, version: str | int,
                    settings: Settings | None = None) -> None:
    """Raise PolicyError when the policy requires approval and the version has none."""
    if policy.require_approval and not is_approved(model, version, settings):
        raise PolicyError(
            f"{model} v{version} needs a person's approval before production "
            "(governance.require_approval is true): review its model card and compliance report, "
            f"then run 'autokfp approve {model} {version}'")
