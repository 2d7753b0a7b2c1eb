"""A tamper-evident audit trail of every autonomous decision.

Each event is one JSON line in ``<artifact root>/audit/events.jsonl`` carrying the SHA-256
of the event before it, so editing, reordering or deleting any event breaks the chain at
that point and ``verify_trail`` names it. Appends are serialised (a file lock locally, a
generation-checked write on GCS), so concurrent pipeline steps cannot fork the chain.
Events are also mirrored as tags on the MLflow model version they concern.

A hash chain alone cannot show that its end was cut off, that the file was deleted, or
that it was rewritten with every hash recomputed. So the head of the chain (its last
``seq`` and ``hash``) is anchored outside the trail, in the registry: a tag ``audit.head``
on the MLflow experiment ``autokfp-audit``, plus ``audit.last_hash`` on each model version
an event concerns. ``verify_trail`` checks the chain against both anchors.

Someone who can write both the trail and the registry could still rewrite the chain and
then the anchor. With ``AUTOKFP_AUDIT_KEY`` set (from the ``autokfp-credentials`` Secret in
a cluster) the anchor carries an HMAC-SHA256 of its head under that key, so a new head
written without the key fails verification, as does a missing or unsigned anchor.

Anchoring costs registry calls, so a step records its events in a batch (``batched``):
the trail gets each event at once, the registry the step's last head and version tags once,
when the step ends (also when it fails). Outside a batch each event is anchored at once.

Kinds used by the platform: ``data.changed`` (every automatic change to the data: a
detected delimiter or encoding, a renamed duplicate header, dropped rows),
``schema.change_accepted``, ``feature.dropped`` (with the reason: an id, a leak, a
constant...), ``model.selected``, ``model.registered``, ``model.challenger_kept``,
``bias.mitigated``, ``deploy.promoted``, ``deploy.rolled_back``, ``retrain.triggered``,
``retrain.skipped``, ``approval.granted``.
Warnings a person should read (a strong predictor kept, a fairness check that could not run)
are events whose details carry a ``warning`` message (``record_warning``); ``autokfp run``
prints the ones of its run in the summary (``warnings_since``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from autokfp import storage
from autokfp.errors import AutokfpError
from autokfp.settings import Settings

log = logging.getLogger(__name__)

GENESIS = "0" * 64
ANCHOR_EXPERIMENT = "autokfp-audit"
ANCHOR_TAG = "audit.head"
KEY_ENV = "AUTOKFP_AUDIT_KEY"
_MAC_DOMAIN = "autokfp-audit-anchor/v1"


class AuditError(AutokfpError):
    """The audit trail cannot be read or does not verify."""


def json_safe(value: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python (the audit trail refuses NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value


def trail_uri(settings: Settings | None = None) -> str:
    settings = settings or Settings.from_env()
    return storage.join(settings.artifact_root, "audit", "events.jsonl")


def _digest(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _last_event(content: bytes) -> dict[str, Any] | None:
    for line in reversed(content.decode("utf-8", errors="replace").splitlines()):
        if line.strip():
            try:
                return json.loads(line)
            except ValueError:
                raise AuditError("the last line of the audit trail is not JSON: the trail is damaged; "
                                 "run 'autokfp audit --verify'") from None
    return None


def record_event(kind: str, details: dict[str, Any] | None = None, model: str | None = None,
                 version: str | None = None, actor: str | None = None, run_id: str | None = None,
                 settings: Settings | None = None, mirror_to_mlflow: bool = True) -> dict[str, Any]:
    """Append one event to the chain and return it (with its ``seq`` and ``hash``)."""
    uri = trail_uri(settings)
    created: dict[str, Any] = {}

    def build(content: bytes) -> dict[str, Any]:
        last = _last_event(content)
        event = {
            "seq": 1 if last is None else int(last["seq"]) + 1,
            "id": uuid.uuid4().hex,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "kind": kind,
            "actor": actor or os.environ.get("AUTOKFP_ACTOR", "autokfp"),
            "model": model,
            "version": None if version is None else str(version),
            "run_id": run_id or os.environ.get("KFP_RUN_ID"),
            "details": details or {},
            "prev_hash": GENESIS if last is None else last["hash"],
        }
        event["hash"] = _digest(event)
        created.clear()
        created.update(event)
        return event

    storage.append_jsonl(uri, build)
    if mirror_to_mlflow:
        _queue(dict(created), settings, uri)
        if not _state.depth:
            flush()
    log.info("audit #%s %s %s v%s", created["seq"], kind, model or "", version or "")
    return dict(created)


def record_warning(kind: str, message: str, details: dict[str, Any] | None = None,
                   model: str | None = None, version: str | None = None,
                   settings: Settings | None = None) -> dict[str, Any] | None:
    """Log ``message`` as a warning and append it to the trail (``details.warning``).

    A trail that cannot be written costs a logged error, never the step that warns.
    """
    log.warning("%s", message)
    try:
        return record_event(kind, {"warning": message, **(details or {})}, model=model,
                            version=version, settings=settings)
    except Exception as exc:  # noqa: BLE001 - the warning is logged either way
        log.error("warning not recorded in the audit trail (%s): %s", kind, exc)
        return None


def warnings_since(started: str, model: str | None = None,
                   settings: Settings | None = None) -> list[dict[str, Any]]:
    """Warning events recorded at or after ISO time ``started`` (for ``model``, if given)."""
    try:
        events = read_events(settings)
    except AuditError as exc:
        log.warning("audit trail unreadable, run warnings not shown: %s", exc)
        return []
    return [event for event in events
            if event.get("timestamp", "") >= started and (event.get("details") or {}).get("warning")
            and (model is None or event.get("model") in (model, None))]


# ------------------------------------------------------------------ batching the anchor

@dataclass
class _Pending:
    settings: Settings | None
    head: dict[str, Any]
    versions: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


class _BatchState(threading.local):
    depth = 0

    def __init__(self) -> None:
        self.pending: dict[str, _Pending] = {}  # trail uri -> what to anchor there


_state = _BatchState()


def _queue(event: dict[str, Any], settings: Settings | None, uri: str) -> None:
    pending = _state.pending.get(uri)
    if pending is None or int(event["seq"]) > int(pending.head["seq"]):
        versions = pending.versions if pending else {}
        pending = _state.pending[uri] = _Pending(settings, event, versions)
    if event.get("model") and event.get("version"):
        pending.versions.setdefault((event["model"], event["version"]), []).append(event)


def flush() -> None:
    """Anchor what this thread recorded and has not anchored yet: the newest head per trail
    (signed when ``AUTOKFP_AUDIT_KEY`` is set) and the model versions' audit tags."""
    pending, _state.pending = _state.pending, {}
    for item in pending.values():
        _anchor(item.head, item.settings)
        for events in item.versions.values():
            _mirror(sorted(events, key=lambda e: int(e["seq"])), item.settings)


@contextmanager
def batch() -> Iterator[None]:
    """Events recorded inside are anchored once, when the outermost batch ends (also on an
    error: what was recorded stays anchored)."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if not _state.depth:
            flush()


def batched(step: Callable[..., Any]) -> Callable[..., Any]:
    """A step whose audit events are anchored once, at its end (see ``batch``)."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        with batch():
            return step(*args, **kwargs)

    return run


def _mirror(events: list[dict[str, Any]], settings: Settings | None) -> None:
    """One model version's events as tags: a summary per event, and its newest hash."""
    last = events[-1]
    try:
        from autokfp.modeling import registry

        client = registry.configure(settings)
        for event in events:
            summary = json.dumps({"kind": event["kind"], "hash": event["hash"][:16],
                                  "at": event["timestamp"]})
            client.set_model_version_tag(event["model"], event["version"],
                                         f"audit.{event['seq']:06d}", summary)
        client.set_model_version_tag(last["model"], last["version"], "audit.last_hash",
                                     last["hash"])
    except Exception as exc:  # noqa: BLE001 - the trail is the record; the mirror is a convenience
        log.warning("audit event(s) up to #%s not mirrored to MLflow: %s", last.get("seq"), exc)


def _signing_key() -> bytes | None:
    value = os.environ.get(KEY_ENV, "")
    return value.encode("utf-8") if value else None


def anchor_mac(key: bytes, seq: int, digest: str) -> str:
    """The HMAC-SHA256 of an anchored head (not of the trail's location: a home may move)."""
    message = json.dumps({"domain": _MAC_DOMAIN, "seq": int(seq), "hash": digest},
                         sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _anchor_experiment(client: Any, create: bool) -> Any | None:
    experiment = client.get_experiment_by_name(ANCHOR_EXPERIMENT)
    if experiment is None and create:
        try:
            client.create_experiment(ANCHOR_EXPERIMENT)
        except Exception:  # noqa: BLE001 - a concurrent step may have created it first
            pass
        experiment = client.get_experiment_by_name(ANCHOR_EXPERIMENT)
    return experiment


def _anchor(event: dict[str, Any], settings: Settings | None) -> None:
    """Record the chain's new head in the registry (only ever forward: a step that appended
    earlier but anchors later must not move the anchor back)."""
    try:
        from autokfp.modeling import registry

        client = registry.configure(settings)
        experiment = _anchor_experiment(client, create=True)
        if experiment is None:
            raise AuditError(f"experiment '{ANCHOR_EXPERIMENT}' could not be created")
        current = read_anchor(settings, client=client, experiment=experiment)
        if current is not None and int(current["seq"]) >= int(event["seq"]):
            return
        head: dict[str, Any] = {"seq": event["seq"], "hash": event["hash"],
                                "trail": trail_uri(settings), "at": event["timestamp"]}
        key = _signing_key()
        if key is not None:
            head["mac"] = anchor_mac(key, event["seq"], event["hash"])
        client.set_experiment_tag(experiment.experiment_id, ANCHOR_TAG, json.dumps(head))
    except Exception as exc:  # noqa: BLE001 - the event is written; say the anchor lags
        log.warning("audit event #%s not anchored in the registry (verification will only cover "
                    "the chain up to the last anchored event): %s", event.get("seq"), exc)


def read_anchor(settings: Settings | None = None, client: Any = None,
                experiment: Any = None) -> dict[str, Any] | None:
    """The head of the chain as last anchored in the registry, or None (never anchored)."""
    if client is None:
        from autokfp.modeling import registry
        from autokfp.modeling.registry_store import sqlite_path

        settings = settings or Settings.from_env()
        path = sqlite_path(settings.tracking_uri)
        if path is not None and not path.exists():
            return None  # no registry, so nothing was ever anchored
        client = registry.configure(settings)
    if experiment is None:
        experiment = _anchor_experiment(client, create=False)
    if experiment is None:
        return None
    experiment = client.get_experiment(experiment.experiment_id)  # fresh tags
    raw = (experiment.tags or {}).get(ANCHOR_TAG)
    return json.loads(raw) if raw else None


def _version_anchors(settings: Settings | None) -> list[tuple[str, str, str]]:
    """(model, version, hash) of every model version's ``audit.last_hash`` tag."""
    from autokfp.modeling import registry

    client = registry.configure(settings)
    found = []
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            digest = version.tags.get("audit.last_hash")
            if digest:
                found.append((model.name, str(version.version), digest))
    return found


def read_events(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every event, in file order (unparseable lines raise AuditError naming the line)."""
    uri = trail_uri(settings)
    if not storage.exists(uri):
        return []
    events = []
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AuditError(f"audit trail line {number} is not valid JSON: it was edited or truncated") from None
    return events


@dataclass
class Verification:
    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)


def verify_trail(settings: Settings | None = None) -> Verification:
    """Recompute the chain; name the first event that was edited, reordered or deleted; then
    check the chain against the head anchored in the registry (a truncated, emptied,
    deleted or wholly rewritten trail)."""
    try:
        events = read_events(settings)
    except AuditError as exc:
        return Verification(ok=False, events=0, problems=[str(exc)])
    problems = _chain_problems(events)
    if not problems:
        problems = _anchor_problems(events, settings)
    return Verification(ok=not problems, events=len(events), problems=problems)


def _anchor_problems(events: list[dict[str, Any]], settings: Settings | None) -> list[str]:
    try:
        anchor = read_anchor(settings)
        versions = [] if anchor is None else _version_anchors(settings)
    except Exception as exc:  # noqa: BLE001 - an unreadable registry is a finding, not a crash
        return [f"the registry holding the trail's anchor cannot be read ({exc}); the trail "
                "cannot be checked for truncation or a rewrite"]
    key = _signing_key()
    if anchor is None:
        if key is not None and events:
            return [f"the trail holds {len(events)} events but the registry holds no anchor of "
                    f"it (experiment '{ANCHOR_EXPERIMENT}', tag {ANCHOR_TAG}): the anchor was "
                    "removed, or the registry replaced. Restore them from a backup"]
        return []
    seq, digest = int(anchor["seq"]), str(anchor["hash"])
    mac = anchor.get("mac")
    if key is None and mac:
        return [f"the registry's anchor is signed, but {KEY_ENV} is not set here, so the "
                "signature cannot be checked: set it to the key the pipeline's steps use (the "
                "autokfp-credentials Secret) and verify again"]
    if key is not None and not mac:
        return [f"the registry's anchor (head #{seq}) is not signed although {KEY_ENV} is "
                "set: it was written without the key, so the trail and its anchor may both "
                "have been replaced. If the key was only just set, the next recorded event "
                "signs the anchor"]
    if key is not None and not hmac.compare_digest(str(mac), anchor_mac(key, seq, digest)):
        return [f"the registry's anchor (head #{seq}, {digest[:16]}...) does not carry a valid "
                f"signature under {KEY_ENV}: it was rewritten by someone without the key (or "
                "the key differs from the one the steps used). Restore the trail and the "
                "registry from a backup"]
    if len(events) < seq:
        missing = seq - len(events)
        what = ("the trail is empty or was deleted" if not events else
                f"the last {missing} event(s) were deleted or the file was truncated")
        return [f"the registry's anchor records {seq} events (head {digest[:16]}...) but the "
                f"trail {trail_uri(settings)} holds {len(events)}: {what}. Restore the trail "
                "from a backup; the registry's audit.* tags on model versions list what "
                "happened"]
    if events[seq - 1].get("hash") != digest:
        return [f"event #{seq} ({events[seq - 1].get('kind', '?')}) does not match the head "
                f"anchored in the registry ({digest[:16]}...): the trail was rewritten (its "
                "hashes recomputed) or replaced. Restore it from a backup"]
    known = {e.get("hash") for e in events}
    for model, version, version_hash in versions:
        if version_hash not in known:
            return [f"{model} v{version}'s audit.last_hash ({version_hash[:16]}...) is not in the "
                    "trail: events about it were removed or rewritten. Restore the trail from a "
                    "backup"]
    return []


def _chain_problems(events: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    previous_hash = GENESIS
    for position, event in enumerate(events, start=1):
        label = f"event #{event.get('seq', '?')} ({event.get('kind', '?')}, line {position})"
        if event.get("seq") != position:
            problems.append(f"{label}: sequence number should be {position}: an event before it was "
                            "deleted or the events were reordered")
        if event.get("hash") != _digest(event):
            problems.append(f"{label}: its content does not match its hash: it was edited")
        if event.get("prev_hash") != previous_hash:
            problems.append(f"{label}: it does not follow the event before it (chain broken): an "
                            "event was deleted, inserted or reordered here")
        previous_hash = event.get("hash", "")
        if problems:
            break  # everything after the first break is unverifiable
    return problems


def events_for(model: str | None = None, version: str | int | None = None,
               kind: str | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """The events about ``model`` (and ``version``), optionally of one ``kind`` prefix."""
    found = []
    for event in read_events(settings):
        if model is not None and event.get("model") != model:
            continue
        if version is not None and event.get("version") != str(version):
            continue
        if kind is not None and not str(event.get("kind", "")).startswith(kind):
            continue
        found.append(event)
    return found
