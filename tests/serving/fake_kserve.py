"""A fake Kubernetes API with a KServe controller that behaves like the real one where a
rollout depends on it (no cluster can run here).

* The API: create / get / merge-patch / delete of InferenceServices (bodies validated
  against KServe's own models by the caller's assertions), ``metadata.generation`` bumped
  on every spec change, ``GET /apis`` listing ``serving.knative.dev`` or not.
* The controller, lazily on every read: a spec change is *observed* only after
  ``observe_delay`` seconds (until then the status is the old one: Ready=True, the old
  revision, ``observedGeneration`` one behind). Serverless: each observed generation is a
  new revision, ready ``ready_delay`` seconds later if its predictor answers; traffic is
  split between the rolled-out revision and the latest ready one by
  ``canaryTrafficPercent``; with tag routing the status lists ``latest`` and ``prev``
  routes. Standard (RawDeployment): one URL, serving the newest ready generation.
* The network: every InferenceService gets real HTTP routes on 127.0.0.1 (``service``,
  ``latest``, ``prev``) that proxy to real predictor processes (one per model version,
  given by the test) and record which version answered which request. A revision whose
  predictor environment differs from the default (``pods``: the test's factory, given the
  version and the revision's ``env``) gets the predictor the factory starts for it, as a
  changed pod template gets new pods.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/apis/serving.kserve.io/v1beta1/namespaces/"


@dataclass
class Revision:
    name: str
    generation: int
    version: str
    created_at: float  # when the controller observed the generation
    env: dict[str, str] = field(default_factory=dict)  # the predictor container's env


@dataclass
class Service:
    obj: dict[str, Any]
    changed_at: dict[int, float] = field(default_factory=dict)  # generation -> spec change time
    # generations whose pod template changed (a new revision), with the model version they name;
    # a canaryTrafficPercent-only change moves traffic and makes no revision, as in Knative
    template_of: dict[int, str] = field(default_factory=dict)
    env_of: dict[int, dict[str, str]] = field(default_factory=dict)  # generation -> env
    revisions: list[Revision] = field(default_factory=list)
    rolled_out: Revision | None = None
    previous_rolled_out: Revision | None = None
    routes: dict[str, ThreadingHTTPServer] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    shares: dict[str, int] = field(default_factory=dict)  # revision name -> percent


def _merge_patch(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))


def _version(obj: dict) -> str:
    return obj["metadata"]["annotations"]["autokfp/model-version"]


def _env(obj: dict) -> dict[str, str]:
    model = obj["spec"]["predictor"].get("model") or {}
    return {e["name"]: e.get("value") for e in model.get("env") or []}


def _template(obj: dict) -> str:
    predictor = {k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
    return json.dumps(predictor, sort_keys=True)


class FakeKServe:
    def __init__(self, backends: dict[str, str], knative: bool = True,
                 observe_delay: float = 1.0, ready_delay: float = 1.5,
                 pods: Callable[[str, dict[str, str]], str | None] | None = None):
        self.backends = backends  # model version -> a real predictor's URL
        self.pods = pods  # (version, env) -> the URL of a predictor started with that env
        self.knative = knative
        self.observe_delay = observe_delay
        self.ready_delay = ready_delay
        self.services: dict[str, Service] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.served: list[dict[str, Any]] = []  # every proxied request: route, version, id
        self.urls: dict[str, str] = {}  # service name -> its address (the last one created)
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._api_handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKServe:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        for service in self.services.values():
            for route in service.routes.values():
                route.shutdown()

    def kubeconfig(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "users": [{"name": "fake", "user": {"token": "fake-token"}}]}

    # ----------------------------------------------------------------------- controller

    def backend(self, revision: Revision) -> str | None:
        """The predictor a revision's pods are: the version's, or (``pods``) one started
        for the revision's environment."""
        if self.pods is not None:
            return self.pods(revision.version, revision.env)
        return self.backends.get(revision.version)

    def _healthy(self, revision: Revision) -> bool:
        url = self.backend(revision)
        if url is None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _ready(self, revision: Revision, now: float) -> bool:
        return now >= revision.created_at + self.ready_delay and self._healthy(revision)

    def reconcile(self, name: str) -> dict[str, Any]:
        """The object as the API would return it now (status computed from time)."""
        with self.lock:
            service = self.services[name]
            obj, now = service.obj, time.monotonic()
            observed = max(g for g, t in service.changed_at.items()
                           if now >= t + self.observe_delay or g == 0)
            if observed == 0:
                obj["status"] = {"observedGeneration": 0, "conditions": [
                    {"type": "Ready", "status": "Unknown", "reason": "Creating"}]}
                return json.loads(json.dumps(obj))
            annotations = obj["metadata"].get("annotations") or {}
            serverless = annotations.get("serving.kserve.io/deploymentMode") == "Serverless"
            known = {r.generation for r in service.revisions}
            for g, version in sorted(service.template_of.items()):
                if g <= observed and g not in known:
                    service.revisions.append(Revision(
                        f"{name}-predictor-{len(service.revisions) + 1:05d}", g, version,
                        service.changed_at[g] + self.observe_delay, service.env_of.get(g, {})))
            latest_created = service.revisions[-1] if service.revisions else None
            ready = [r for r in service.revisions if self._ready(r, now)]
            latest_ready = ready[-1] if ready else None
            canary = (obj["spec"]["predictor"] or {}).get("canaryTrafficPercent")
            shares: dict[str, int] = {}
            if latest_ready is not None:
                rolled = service.rolled_out
                if serverless and canary is not None and canary < 100 and rolled is not None \
                        and rolled is not latest_ready:
                    if canary > 0:
                        shares[latest_ready.name] = canary
                    shares[rolled.name] = 100 - canary
                else:
                    if rolled is not latest_ready:
                        service.previous_rolled_out, service.rolled_out = rolled, latest_ready
                    shares[latest_ready.name] = 100
            service.shares = shares
            ok = latest_created is not None and latest_ready is latest_created
            status: dict[str, Any] = {
                "observedGeneration": observed,
                "deploymentMode": "Serverless" if serverless else "RawDeployment",
                "url": self._route_url(service, "service"),
                "address": {"url": self._route_url(service, "service")},
                "conditions": [
                    {"type": "PredictorReady", "status": "True" if ok else "False",
                     "reason": None if ok else "RevisionMissing"},
                    {"type": "Ready", "status": "True" if ok else "False"}],
                "components": {"predictor": {"url": self._route_url(service, "service")}},
            }
            predictor = status["components"]["predictor"]
            if serverless:
                predictor.update({
                    "latestCreatedRevision": latest_created.name if latest_created else None,
                    "latestReadyRevision": latest_ready.name if latest_ready else None,
                    "latestRolledoutRevision": service.rolled_out.name if service.rolled_out else None,
                    "previousRolledoutRevision": (service.previous_rolled_out.name
                                                  if service.previous_rolled_out else None)})
                tagged = annotations.get("serving.kserve.io/enable-tag-routing") == "true"
                traffic = []
                for revision_name, percent in shares.items():
                    entry = {"revisionName": revision_name, "percent": percent,
                             "latestRevision": latest_ready is not None
                             and revision_name == latest_ready.name}
                    if tagged:
                        is_latest = entry["latestRevision"]
                        entry["tag"] = "latest" if is_latest else "prev"
                        entry["url"] = self._route_url(service, entry["tag"])
                    traffic.append(entry)
                if tagged and latest_ready is not None and latest_ready.name not in shares:
                    traffic.append({"revisionName": latest_ready.name, "percent": 0,
                                    "latestRevision": True, "tag": "latest",
                                    "url": self._route_url(service, "latest")})
                predictor["traffic"] = traffic
            obj["status"] = status
            return json.loads(json.dumps(obj))

    def route_revision(self, name: str, route: str) -> Revision | None:
        """Which revision a request on ``route`` reaches now (service: by traffic share)."""
        self.reconcile(name)
        with self.lock:
            service = self.services[name]
            by_name = {r.name: r for r in service.revisions}
            if route == "latest":
                now = time.monotonic()
                ready = [r for r in service.revisions if self._ready(r, now)]
                return ready[-1] if ready else None
            if route == "prev":
                return service.rolled_out
            if not service.shares:
                return None
            pick, total = random.uniform(0, 100), 0
            for revision_name, percent in service.shares.items():
                total += percent
                if pick <= total:
                    return by_name[revision_name]
            return by_name[list(service.shares)[-1]]

    # ------------------------------------------------------------------------- routes

    def _route_url(self, service: Service, route: str) -> str:
        return f"http://127.0.0.1:{service.routes[route].server_address[1]}"

    def _open_routes(self, name: str) -> dict[str, ThreadingHTTPServer]:
        routes = {}
        for route in ("service", "latest", "prev"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), self._proxy_handler(name, route))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            routes[route] = server
        return routes

    def _proxy_handler(self, name: str, route: str) -> type:
        fake = self

        class Proxy(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                revision = fake.route_revision(name, route) if name in fake.services else None
                backend = fake.backend(revision) if revision else None
                fake.served.append({"service": name, "route": route, "path": self.path,
                                    "version": revision.version if revision else None,
                                    "request_id": self.headers.get("x-request-id")})
                if backend is None:
                    return self._reply(503, b'{"error": "no revision is ready"}')
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "x-request-id", "authorization")}
                request = urllib.request.Request(f"{backend}{self.path}", data=body,
                                                 headers=headers, method=method)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        return self._reply(response.status, response.read())
                except urllib.error.HTTPError as error:
                    return self._reply(error.code, error.read())
                except (urllib.error.URLError, OSError):
                    return self._reply(503, b'{"error": "revision unreachable"}')

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

        return Proxy

    # ---------------------------------------------------------------------------- API

    def _api_handler(self) -> type:
        fake = self

        class Api(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _missing(self) -> None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404})

            def _name(self) -> str | None:
                rest = self.path.split("?")[0][len(API_PREFIX):].split("/")
                return rest[2] if len(rest) > 2 else None

            def do_GET(self) -> None:  # noqa: N802
                fake.calls.append(("GET", self.path, None))
                if self.path.split("?")[0].rstrip("/") == "/apis":
                    groups = [{"name": "serving.kserve.io",
                               "versions": [{"groupVersion": "serving.kserve.io/v1beta1",
                                             "version": "v1beta1"}]}]
                    if fake.knative:
                        groups.append({"name": "serving.knative.dev",
                                       "versions": [{"groupVersion": "serving.knative.dev/v1",
                                                     "version": "v1"}]})
                    return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                            "groups": groups})
                name = self._name()
                if name not in fake.services:
                    return self._missing()
                return self._send(200, fake.reconcile(name))

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                fake.calls.append(("POST", self.path, json.loads(json.dumps(body))))
                name = body["metadata"]["name"]
                with fake.lock:
                    if name in fake.services:
                        return self._send(409, {"kind": "Status", "reason": "AlreadyExists",
                                                "code": 409})
                    body["metadata"]["generation"] = 1
                    service = Service(obj=body, changed_at={0: 0.0, 1: time.monotonic()},
                                      template_of={1: _version(body)}, env_of={1: _env(body)})
                    service.routes = fake._open_routes(name)
                    fake.services[name] = service
                    fake.urls[name] = fake._route_url(service, "service")
                return self._send(201, fake.reconcile(name))

            def do_PATCH(self) -> None:  # noqa: N802
                body = self._body()
                fake.calls.append(("PATCH", self.path, json.loads(json.dumps(body))))
                name = self._name()
                if name not in fake.services:
                    return self._missing()
                with fake.lock:
                    service = fake.services[name]
                    before = json.dumps(service.obj.get("spec"), sort_keys=True)
                    template = _template(service.obj)
                    body.pop("status", None)
                    _merge_patch(service.obj, body)
                    if json.dumps(service.obj.get("spec"), sort_keys=True) != before:
                        generation = service.obj["metadata"]["generation"] + 1
                        service.obj["metadata"]["generation"] = generation
                        service.changed_at[generation] = time.monotonic()
                        if _template(service.obj) != template:
                            service.template_of[generation] = _version(service.obj)
                            service.env_of[generation] = _env(service.obj)
                return self._send(200, fake.reconcile(name))

            def do_DELETE(self) -> None:  # noqa: N802
                fake.calls.append(("DELETE", self.path, None))
                name = self._name()
                with fake.lock:
                    service = fake.services.pop(name, None)
                if service is None:
                    return self._missing()
                for route in service.routes.values():
                    route.shutdown()
                return self._send(200, {"kind": "Status", "status": "Success"})

        return Api
