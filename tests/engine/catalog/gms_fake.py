"""A DataHub GMS stand-in on 127.0.0.1 (GMS itself needs Kafka, OpenSearch and MySQL).

It answers what DataHub's Python clients call: ``GET /config`` (the emitter's and the
graph client's connection check), ``POST /aspects?action=ingestProposal`` (the REST
emitter), and ``GET /aspects/<urn>?aspect=<name>&version=0`` (``DataHubGraph.get_aspect``):
the latest aspect it was sent, as a rest.li VersionedAspect keyed by the aspect's full
record name, or 404. Every request is recorded; with a token, any other bearer gets 401.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def _record_name(aspect_name: str) -> str | None:
    from datahub.metadata.schema_classes import ASPECT_NAME_MAP

    cls = ASPECT_NAME_MAP.get(aspect_name)
    return None if cls is None else cls.RECORD_SCHEMA.fullname.replace(".pegasus2avro", "")


class FakeGms:
    """A GMS stand-in that records every request, checks the token and keeps the aspects."""

    def __init__(self, token: str | None):
        self.requests: list[dict] = []
        self.aspects: dict[tuple[str, str], dict] = {}  # (urn, aspect name) -> latest value
        gms = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: bytes | None) -> bool:
                gms.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization"),
                                     "body": json.loads(body) if body else None})
                if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    self._reply(401, {"message": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if not self._record(None):
                    return
                url = urlparse(self.path)
                if url.path == "/config":
                    return self._reply(200, {"noCode": "true", "versions": {
                        "acryldata/datahub": {"version": "v1.1.0"}}})
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
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self._record(body):
                    return
                proposal = (json.loads(body) if body else {}).get("proposal") or {}
                if proposal.get("changeType") == "UPSERT" and proposal.get("aspect"):
                    gms.aspects[(proposal["entityUrn"], proposal["aspectName"])] = json.loads(
                        proposal["aspect"]["value"])
                self._reply(200, {"value": "ok"})

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGms:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def proposals(self) -> list[dict]:
        return [r["body"]["proposal"] for r in self.requests
                if r["method"] == "POST" and r["body"]]
