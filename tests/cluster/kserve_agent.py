"""KServe's agent with its payload logger, for the cluster in a box (standard library only).

In a cluster, an InferenceService with ``spec.predictor.logger`` gets KServe's agent
(``cmd/agent``, a Go binary in the ``kserve/agent`` image) injected beside the predictor:
``--log-url <logger.url> --source-uri <pod name> --log-mode <logger.mode>
--inference-service <name> --namespace <ns> --endpoint <endpoint label> --component
predictor``, listening on 9081 in front of the predictor's 8080. That image cannot be
pulled here (no public registry), so this stand-in does what its logger does
(``pkg/logger/handler.go`` and ``worker.go``), and the box runs it in a container of its own.
It was last checked against KServe's source for the ``kserve`` release the lock pins
(``LOCKED_KSERVE``; tests/engine/test_images.py fails when the lock moves): the tag v0.20.0
and master of 2026-08-21 (aaac4e2), whose ``cmd/agent`` and ``pkg/logger`` handler, worker
and dispatcher are the same; no later Go source is reachable here.

- a kubelet probe (``User-Agent: kube-probe/...`` or a ``K-Kubelet-Probe`` header) is only
  proxied;
- otherwise the request body is read; its id is the ``Ce-Id`` request header, else a new
  UUID; with mode ``all`` or ``request`` a request event is queued *before* the request is
  proxied to ``127.0.0.1:<component port>``; the predictor's answer goes back to the caller
  unchanged and, only when its status is 200 and the mode is ``all`` or ``response``, a
  response event is queued with the same id and the *request's* Content-Type; each event
  carries the time it occurred (the request's arrival, the response's receipt);
- ``--workers`` (5) workers take events from a queue of 100 and post each to the log URL as
  a binary-mode CloudEvent (cloudevents sdk-go): ``Ce-Specversion: 1.0``, ``Ce-Id``,
  ``Ce-Type`` (``org.kubeflow.serving.inference.request``/``...response``), ``Ce-Source``,
  ``Ce-Time`` (when it occurred), the extensions ``Ce-Recordedtime`` (when it is sent),
  ``Ce-Inferenceservicename``, ``Ce-Namespace``,
  ``Ce-Component``, ``Ce-Endpoint``, ``Ce-Metadata`` (the JSON of the logged metadata
  headers: ``{}`` when none are configured), ``Content-Type``, and the payload as sent for
  the body. The receiver's status is only logged: a failed post loses the event, as there.

On SIGTERM it stops listening and lets the workers send what is queued, then exits (the
Go agent keeps serving for a 30 s drain period, long enough for that).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import queue
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
# the kserve release whose agent this stand-in was last checked against (see above)
LOCKED_KSERVE = "0.21.0"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", default="9081")
    parser.add_argument("--component-port", type=int, default=8080)
    parser.add_argument("--log-url", required=True)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--source-uri", default="")
    parser.add_argument("--log-mode", default="all", choices=["all", "request", "response"])
    parser.add_argument("--inference-service", default="")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--component", default="")
    args = parser.parse_args(argv)
    if not args.source_uri:
        args.source_uri = f"http://localhost:{args.port}/"
    return args


class Agent:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work: queue.Queue = queue.Queue(maxsize=100)
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()

    def queue_event(self, kind: str, event_id: str, content_type: str, body: bytes,
                    occurred: datetime.datetime) -> None:
        # blocks when full, as the channel
        self.work.put((kind, event_id, content_type, body, occurred))

    def worker(self) -> None:
        while True:
            item = self.work.get()
            try:
                if item is None:
                    return
                self._send(*item)
            finally:
                self.work.task_done()

    def _send(self, kind: str, event_id: str, content_type: str, body: bytes,
              occurred: datetime.datetime) -> None:
        args = self.args
        headers = {
            "Ce-Specversion": "1.0",
            "Ce-Id": event_id,
            "Ce-Type": kind,
            "Ce-Source": args.source_uri,
            "Ce-Time": _timestamp(occurred),
            "Ce-Recordedtime": _timestamp(_now()),
            "Ce-Inferenceservicename": args.inference_service,
            "Ce-Namespace": args.namespace,
            "Ce-Component": args.component,
            "Ce-Endpoint": args.endpoint,
            "Ce-Metadata": json.dumps({}),
            "Content-Type": content_type,
        }
        request = urllib.request.Request(args.log_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status = response.status
                response.read()
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError as error:
            with self._lock:
                self.failed += 1
            print(f"Failed to send cloud event, url: {args.log_url}: {error}", flush=True)
            return
        with self._lock:
            self.sent += 1
            if status != 200:
                self.failed += 1
        print(f"Sent {kind.rsplit('.', 1)[-1]} {event_id} with status code {status}", flush=True)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, as cloudevents sdk-go writes a time attribute."""
    return moment.isoformat().replace("+00:00", "Z")


def handler_class(agent: Agent) -> type[BaseHTTPRequestHandler]:
    args = agent.args

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *values) -> None:  # noqa: A002 - the stdlib's name
            pass

        def _proxy(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection("127.0.0.1", args.component_port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["X-Forwarded-For"] = self.client_address[0]
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            finally:
                connection.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            arrived = _now()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            probe = (self.headers.get("User-Agent", "").startswith("kube-probe/")
                     or self.headers.get("K-Kubelet-Probe") is not None)
            if probe:
                self._answer(*self._proxy(body or None))
                return
            event_id = self.headers.get("Ce-Id") or str(uuid.uuid4())
            content_type = self.headers.get("Content-Type", "")
            if args.log_mode in ("all", "request"):
                agent.queue_event(REQUEST_TYPE, event_id, content_type, body, arrived)
            try:
                status, headers, answer = self._proxy(body if self.command != "GET" else None)
            except OSError as error:
                self._answer(502, [("Content-Type", "text/plain")], str(error).encode())
                return
            received = _now()
            # the caller is answered by the proxy as the answer streams; the response event
            # is queued once it has been copied
            self._answer(status, headers, answer)
            if status == 200 and args.log_mode in ("all", "response"):
                agent.queue_event(RESPONSE_TYPE, event_id, content_type, answer, received)

        do_GET = do_POST = do_PUT = _handle

    return Handler


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    agent = Agent(args)
    workers = [threading.Thread(target=agent.worker, daemon=True) for _ in range(args.workers)]
    for thread in workers:
        thread.start()
    server = ThreadingHTTPServer(("0.0.0.0", int(args.port)), handler_class(agent))
    server.daemon_threads = True

    def terminate(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, terminate)
    print(f"agent on :{args.port} -> 127.0.0.1:{args.component_port}, logging "
          f"{args.log_mode} to {args.log_url}", flush=True)
    server.serve_forever()
    server.server_close()
    for _ in workers:
        agent.work.put(None)
    for thread in workers:
        thread.join(timeout=60)
    print(f"agent stopped: {agent.sent} events sent, {agent.failed} failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
