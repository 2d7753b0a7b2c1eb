"""A DataHub GMS stand-in on 127.0.0.1 (GMS itself needs Kafka, OpenSearch and MySQL).

It answers what DataHub's Python clients call, as GMS answers it:

- ``GET /config``: the emitter's and graph client's connection check (``noCode``,
  ``statefulIngestionCapable`` for DataHub's ``datahub`` state provider);
- ``POST /aspects?action=ingestProposal`` (one proposal: the REST emitter's ``emit_mcp``)
  and ``POST /aspects?action=ingestProposalBatch`` (``{"proposals": [...]}``: ``emit_mcps``
  and the REST sink's default ASYNC_BATCH mode). Every proposal is checked against the
  schemas shipped in acryl-datahub, as GMS checks them against the same PDL models: the
  envelope against MetadataChangeProposal (a field it does not have, or a missing
  ``entityType``/``changeType``, is refused with 400, rest.li's "unrecognized field found
  but not allowed"); the entity type against the URN's; the aspect name against the
  entity's registered aspects (its key aspect's ``entityAspects``); an UPSERT's value
  against the aspect's Avro schema (types, required fields, and no field the schema does
  not define); a PATCH's value must be a JSON Patch list. A failure is
  422 (GMS's ValidationException) with rest.li's error body, and nothing of the batch is
  stored (GMS builds and checks the whole batch before it writes any of it). What it
  stores, it stores as GMS does where a re-sent aspect is concerned: a versioned aspect's
  UPSERT replaces the latest value and makes a new version only when the value changed
  (``versions``); a time-series value replaces the one with the same document key
  (timestamp, granularity, URN, message id and partition, GMS's Elasticsearch document
  id), so sending the same aspect twice leaves the same state;
- ``GET /aspects/<urn>?aspect=<name>&version=0`` (``DataHubGraph.get_aspect``): the latest
  aspect, as a rest.li VersionedAspect keyed by the aspect's full record name, or 404;
- ``POST /aspects?action=getTimeseriesAspectValues`` (the state provider's checkpoint
  read): a timeseries aspect's values, newest first, filtered on equal fields.

``latency`` seconds pass before each POST is answered (a real GMS writes the batch to its
database and search index before it answers), so a test can tell batches sent together
from batches sent one after another (``most_in_flight``: the most POSTs answered at once).
With ``together`` n, a POST also waits (up to ``TOGETHER_WAIT`` s) until n POSTs have been in
flight at once, so a sender that sends n batches at a time is seen doing so however late a
loaded machine starts its threads (0.15 s of latency alone saw 3 of 4 under load 16).
``fail_next`` queues statuses (503, 429, 500) answered to the next POSTs instead of taking
them, to test the emitter's retries. ``fail_after_writing`` queues ``(n, status)`` for the
next batch POSTs: the batch is checked, its first ``n`` aspects are stored (``None``: all of
them), then ``status`` is answered, as when a GMS fails part-way after its checks (a
time-series aspect written to its search index before the database write failed; async
mode queueing each aspect on its own) or its answer is lost after it committed (a proxy's
502/504, a timeout). Every request is recorded; with a token, any other bearer gets 401.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

_CONFIG = {"noCode": "true", "statefulIngestionCapable": True, "patchCapable": True,
           "supportsImpactAnalysis": True, "timeZone": "GMT",
           "datahub": {"serverType": "quickstart"},
           "versions": {"acryldata/datahub": {"version": "v1.1.0"}}}


def _record_name(aspect_name: str) -> str | None:
    from datahub.metadata.schema_classes import ASPECT_NAME_MAP

    cls = ASPECT_NAME_MAP.get(aspect_name)
    return None if cls is None else cls.RECORD_SCHEMA.fullname.replace(".pegasus2avro", "")


class Refused(Exception):
    """GMS refusing a request: ``status`` and rest.li's message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _entity_aspects(entity_type: str) -> set[str] | None:
    """The aspects DataHub's entity registry allows for ``entity_type`` (None: no such
    entity), from the key aspects' schemas shipped in acryl-datahub."""
    from datahub.metadata.schema_classes import KEY_ASPECTS

    for key in KEY_ASPECTS.values():
        info = key.RECORD_SCHEMA.get_prop("Aspect") or {}
        if info.get("keyForEntity") == entity_type:
            return {info["name"], *info.get("entityAspects", [])}
    return None


def validate_proposal(proposal: Any) -> tuple[str, str, str, dict | list]:
    """(urn, aspect name, change type, value) of a proposal GMS would take.

    Raises:
        Refused: 400 for an envelope that is not a MetadataChangeProposal, 422 for what
            GMS's validation refuses.
    """
    from datahub.emitter.serialization_helper import post_json_transform
    from datahub.metadata.schema_classes import ASPECT_NAME_MAP, MetadataChangeProposalClass
    from datahub.utilities.urns.urn import Urn

    if not isinstance(proposal, dict):
        raise Refused(400, "proposal: not a record")
    fields = {f.name for f in MetadataChangeProposalClass.RECORD_SCHEMA.fields}
    for name in proposal:
        if name not in fields:
            raise Refused(400, f"ERROR :: /proposal/{name} :: unrecognized field found but "
                               "not allowed")
    for name in ("entityType", "changeType"):
        if not isinstance(proposal.get(name), str):
            raise Refused(400, f"ERROR :: /proposal/{name} :: field is required but not found "
                               "and has no default value")
    urn, aspect_name = proposal.get("entityUrn"), proposal.get("aspectName")
    try:
        entity_type = Urn.from_string(urn).entity_type
    except Exception:
        raise Refused(422, f"Failed to validate entity URN {urn!r}") from None
    if entity_type != proposal["entityType"]:
        raise Refused(422, f"entityType {proposal['entityType']!r} does not match the URN's "
                           f"{entity_type!r}: {urn}")
    allowed = _entity_aspects(entity_type)
    if allowed is None or aspect_name not in allowed or aspect_name not in ASPECT_NAME_MAP:
        raise Refused(422, f"Unknown aspect {aspect_name} for entity {entity_type}")
    aspect = proposal.get("aspect") or {}
    try:
        value = json.loads(aspect["value"])
    except (KeyError, TypeError, ValueError):
        raise Refused(400, "ERROR :: /proposal/aspect/value :: not a JSON string") from None
    change = proposal["changeType"]
    if change == "PATCH":
        if aspect.get("contentType") != "application/json-patch+json" or not isinstance(
                value, list) or not all(isinstance(op, dict) and "op" in op and "path" in op
                                        for op in value):
            raise Refused(422, f"{aspect_name} of {urn}: a PATCH needs a JSON Patch list")
        return urn, aspect_name, change, value
    if change not in ("UPSERT", "CREATE", "CREATE_ENTITY", "DELETE"):
        raise Refused(422, f"Unsupported change type {change}")
    if aspect.get("contentType") != "application/json":
        raise Refused(422, f"{aspect_name} of {urn}: contentType {aspect.get('contentType')!r}")
    cls = ASPECT_NAME_MAP[aspect_name]
    try:
        parsed = cls.from_obj(post_json_transform(value), tuples=False)
        valid = parsed.validate()
    except Exception as exc:
        raise Refused(422, f"Failed to validate {aspect_name} of {urn}: "
                           f"{type(exc).__name__}: {exc}") from None
    if not valid or not isinstance(value, dict):
        raise Refused(422, f"Failed to validate {aspect_name} of {urn} against "
                           f"{cls.RECORD_SCHEMA.fullname}")
    from datahub.emitter.serialization_helper import pre_json_transform

    extra = _unknown_field(value, pre_json_transform(parsed.to_obj()), "")
    if extra is not None:  # rest.li refuses a field its schema does not have
        raise Refused(422, f"ERROR :: /{aspect_name}{extra} :: unrecognized field found but "
                           "not allowed")
    return urn, aspect_name, change, value


def _unknown_field(sent: Any, known: Any, path: str) -> str | None:
    """The path of a field in ``sent`` that the schema's own serialisation of it
    (``known``) does not have: one the aspect's schema does not define."""
    if isinstance(sent, dict) and isinstance(known, dict):
        for key, value in sent.items():
            if key not in known:
                return f"{path}/{key}"
            found = _unknown_field(value, known[key], f"{path}/{key}")
            if found is not None:
                return found
    elif isinstance(sent, list) and isinstance(known, list):
        for index, (a, b) in enumerate(zip(sent, known)):
            found = _unknown_field(a, b, f"{path}/{index}")
            if found is not None:
                return found
    return None


TOGETHER_WAIT = 10.0  # seconds a POST waits for ``together`` POSTs in flight at once


class FakeGms:
    """A GMS stand-in that records every request, checks the token, validates what it is
    sent against DataHub's schemas and keeps the aspects."""

    def __init__(self, token: str | None, latency: float = 0.0, together: int = 0):
        self.latency = latency
        self.together = together
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests: list[dict] = []
        self.aspects: dict[tuple[str, str], dict] = {}  # (urn, aspect name) -> latest value
        self.versions: dict[tuple[str, str], int] = {}  # values written that changed it
        # (urn, aspect name) -> {GMS's document key: value}
        self.timeseries: dict[tuple[str, str], dict[tuple, dict]] = {}
        self.patches: list[tuple[str, str, list]] = []
        self.taken: list[dict] = []  # every proposal taken, as sent
        self.refused: list[dict] = []  # {"status", "message"} of every 4xx answered
        self.fail_next: list[int] = []  # statuses for the next POSTs (transient failures)
        # (aspects stored first, status answered) for the next batch POSTs
        self.fail_after_writing: list[tuple[int | None, int]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)  # notified as POSTs come in
        gms = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self, status: int, message: str) -> None:
                gms.refused.append({"status": status, "message": message})
                self._reply(status, {  # rest.li's error body (GMS's RestLiServiceException)
                    "exceptionClass": "com.linkedin.restli.server.RestLiServiceException",
                    "stackTrace": f"com.linkedin.restli.server.RestLiServiceException "
                                  f"[HTTP Status:{status}]: {message}",
                    "message": message, "status": status})

            def _record(self, body: bytes | None) -> bool:
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = body
                gms.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization"),
                                     "body": parsed})
                if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    self._reply(401, {"message": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if not self._record(None):
                    return
                url = urlparse(self.path)
                if url.path == "/config":
                    return self._reply(200, _CONFIG)
                if url.path.startswith("/aspects/"):
                    urn = unquote(url.path[len("/aspects/"):])
                    name = parse_qs(url.query).get("aspect", [""])[0]
                    value = gms.aspects.get((urn, name))
                    if value is None or _record_name(name) is None:
                        return self._reply(404, {"message": f"{name} of {urn} not found",
                                                 "status": 404})
                    return self._reply(200, {"aspect": {_record_name(name): value},
                                             "version": 0})
                return self._reply(404, {})

            def do_POST(self) -> None:  # noqa: N802
                with gms.lock:
                    gms.in_flight += 1
                    gms.most_in_flight = max(gms.most_in_flight, gms.in_flight)
                    gms.arrived.notify_all()
                    gms.arrived.wait_for(lambda: gms.most_in_flight >= gms.together,
                                         timeout=TOGETHER_WAIT)
                try:
                    if gms.latency:
                        time.sleep(gms.latency)
                    self._post()
                finally:
                    with gms.lock:
                        gms.in_flight -= 1

            def _post(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self._record(body):
                    return
                with gms.lock:
                    failure = gms.fail_next.pop(0) if gms.fail_next else None
                if failure is not None:
                    return self._reply(failure, {"message": "unavailable", "status": failure})
                action = parse_qs(urlparse(self.path).query).get("action", [""])[0]
                try:
                    data = json.loads(body) if body else {}
                except ValueError:
                    return self._refuse(400, "request body is not JSON")
                if action == "getTimeseriesAspectValues":
                    return self._reply(200, {"value": gms.timeseries_values(data)})
                if action == "ingestProposal":
                    proposals = [data.get("proposal")]
                elif action == "ingestProposalBatch":
                    proposals = data.get("proposals")
                    if not isinstance(proposals, list):
                        return self._refuse(400, "ERROR :: /proposals :: field is required")
                else:
                    return self._refuse(400, f"unknown action {action!r}")
                try:
                    checked = [validate_proposal(p) for p in proposals]
                except Refused as exc:
                    return self._refuse(exc.status, str(exc))
                with gms.lock:
                    partly = (gms.fail_after_writing.pop(0) if gms.fail_after_writing
                              and action == "ingestProposalBatch" else None)
                if partly is not None:
                    written, status = partly
                    end = len(checked) if written is None else written
                    gms.store(checked[:end], proposals[:end])
                    return self._reply(status, {
                        "message": f"failed after writing {end} of {len(checked)} aspect(s)",
                        "status": status})
                gms.store(checked, proposals)
                self._reply(200, {"value": "success"})

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def store(self, checked: list[tuple[str, str, str, Any]], raw: list[dict]) -> None:
        from datahub.metadata.schema_classes import ASPECT_NAME_MAP

        with self.lock:
            self.taken += raw
            for urn, name, change, value in checked:
                if change == "PATCH":
                    self.patches.append((urn, name, value))
                elif change == "DELETE":
                    self.aspects.pop((urn, name), None)
                elif ASPECT_NAME_MAP[name].get_aspect_type() == "timeseries":
                    key = tuple(json.dumps(value.get(field), sort_keys=True) for field in (
                        "timestampMillis", "eventGranularity", "messageId", "partitionSpec"))
                    self.timeseries.setdefault((urn, name), {})[key] = value
                else:
                    if self.aspects.get((urn, name)) != value:
                        self.versions[(urn, name)] = self.versions.get((urn, name), 0) + 1
                    self.aspects[(urn, name)] = value

    def timeseries_values(self, query: dict) -> dict:
        """GMS's getTimeseriesAspectValues: newest first, equal-field filters applied."""
        values = list(self.timeseries.get((query.get("urn"), query.get("aspect")), {}).values())
        clauses = ((query.get("filter") or {}).get("or") or [{"and": []}])

        def matches(value: dict) -> bool:
            return any(all(str(value.get(c["field"])) in c["values"] for c in clause["and"])
                       for clause in clauses)

        values = sorted((v for v in values if matches(v)),
                        key=lambda v: v.get("timestampMillis", 0), reverse=True)
        limit = int(query.get("limit") or 10000)
        return {"entityName": query.get("entity"), "aspectName": query.get("aspect"),
                "limit": limit, "values": [{"aspect": {"value": json.dumps(v),
                                                       "contentType": "application/json"}}
                                           for v in values[:limit]]}

    def __enter__(self) -> FakeGms:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def proposals(self) -> list[dict]:
        """Every proposal GMS took (either endpoint), as sent, in order."""
        return list(self.taken)
