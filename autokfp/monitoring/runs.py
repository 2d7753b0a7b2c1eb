"""What one monitoring run records about itself: audit events once per run (a retried task
does not record twice) and the champion when the run started (the exit handler restores it
if a deploy in the run breaks)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from autokfp import storage
from autokfp.governance.audit import json_safe, read_events, record_event
from autokfp.settings import Settings


def record_once(
    kind: str,
    details: dict[str, Any],
    model: str,
    version: str | None,
    run_id: str,
    key: str,
    settings: Settings | None = None,
) -> dict[str, Any] | None:
    """Record an audit event unless this run already recorded it (same kind and key)."""
    if run_id:
        for event in read_events(settings):
            if (
                event.get("run_id") == run_id
                and event.get("kind") == kind
                and (event.get("details") or {}).get("key") == key
            ):
                return None
    return record_event(
        kind,
        json_safe({**details, "key": key}),
        model=model,
        version=version,
        run_id=run_id or None,
        settings=settings,
    )


def run_state_uri(settings: Settings, model: str, run_id: str) -> str:
    return storage.join(settings.artifact_root, "monitoring", model, "runs", f"{run_id}.json")


def remember_run_start(settings: Settings, model: str, run_id: str, champion_version: str) -> None:
    """The champion when the run started: the exit handler restores it if a deploy breaks."""
    if not run_id:
        return
    uri = run_state_uri(settings, model, run_id)
    if not storage.exists(uri):  # a retried task keeps the first answer
        storage.write_text(
            uri,
            json.dumps(
                {
                    "run_id": run_id,
                    "champion_at_start": champion_version,
                    "started": datetime.now(timezone.utc).isoformat(),
                }
            ),
        )
