"""A fake Kubernetes API with a KServe controller that behaves like the real one where a
rollout depends on it (no cluster can run here).

* The API: create / get / merge-patch / delete of InferenceServices, ``metadata.generation``
  bumped on every spec change, ``GET /apis`` listing ``serving.knative.dev`` or not. Every
  body is checked against the InferenceService schema as the kserve package's generated
  models give it (they are generated from the CRD's OpenAPI schema; the walk here is the
  fake's own, not autokfp's ``validate_manifest``), with the API server's default
  (``fieldValidation: Warn``) semantics: a field the schema does not know is *dropped* from
  the stored object with a ``Warning`` header, a value of the wrong JSON type is refused
  with 422 Invalid, and a PATCH that is not a JSON merge patch gets 415 (the client's
  ``patch_namespaced_custom_object`` sends ``application/merge-patch+json``). A fake that
  dropped or refused anything fails the test when it is closed (``strict``).
* The controller, lazily on every read: a spec change is *observed* only after
  ``observe_delay`` seconds (until then the status is the old one: Ready=True, the old
  revision, ``observedGeneration`` one behind). Serverless: each observed generation is a
  new revision, ready ``ready_delay`` seconds later if its predictor answers; traffic is
  split between the rolled-out revision and the latest ready one by
  ``canaryTrafficPercent``; with tag routing the status lists ``latest`` and ``prev``
  routes. Standard (RawDeployment): one URL, serving the newest ready generation.
* The network: every InferenceService gets real HTTP routes on 127.0.0.1 (``service``,
  ``latest``, ``prev``) that proxy to real predictor processes (one per model version,
  given by the test) and record which version answered which request. Serverless status
  names the tagged routes as Knative does: ``traffic[].url`` on the *external* domain
  (``http://latest-<name>-predictor.<ns>.example.com``, Kubeflow's default, which no pod
  can resolve) and the predictor's ``address.url`` cluster-local
  (``http://<name>-predictor.<ns>.svc.cluster.local``); Knative also makes a Kubernetes
  Service ``<tag>-<route>`` per tag, so ``latest-<name>-predictor.<ns>.svc.cluster.local``
  reaches the tagged revision inside the cluster. Those cluster-local names are served by
  ``gateway``, an HTTP proxy that routes by host as the cluster's DNS and Knative's local
  gateway do (``proxy_env``: the variables that send a client's requests through it); a
  host it does not know (the external domain) gets 502, as a name that does not resolve. A revision whose
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
EXTERNAL_DOMAIN = "example.com"  # Knative's default domain (Kubeflow keeps it): not resolvable
MERGE_PATCH = "application/merge-patch+json"
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "datetime": (str,),
    "date": (str,)}


def _model(type_name: str) -> Any:
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        cls = getattr(module, type_name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return cls
    return None


def schema_findings(value: Any, type_name: str = "V1beta1InferenceService",
                    path: str = "") -> tuple[list[str], list[str]]:
    """(unknown fields, type errors) of ``value`` against KServe's schema, as paths like
    ``spec.predictor.canaryTrafficPercnt``; unknown fields are removed from ``value``."""
    unknown: list[str] = []
    invalid: list[str] = []
    if value is None:
        return unknown, invalid
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return unknown, [f"{path}: must be of type array"]
        for i, item in enumerate(value):
            u, e = schema_findings(item, type_name[5:-1], f"{path}[{i}]")
            unknown += u
            invalid += e
        return unknown, invalid
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return unknown, [f"{path}: must be of type object"]
        inner = type_name[5:-1].split(",", 1)[1].strip()
        for key, item in value.items():
            u, e = schema_findings(item, inner, f"{path}.{key}")
            unknown += u
            invalid += e
        return unknown, invalid
    if type_name in _JSON_TYPES:
        kinds = _JSON_TYPES[type_name]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            invalid.append(f"{path}: {value!r} must be of type {type_name}")
        return unknown, invalid
    cls = _model(type_name)
    if cls is None:  # 'object', int-or-string, quantities: anything JSON
        return unknown, invalid
    if not isinstance(value, dict):
        return unknown, [f"{path}: must be of type object ({type_name})"]
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key in list(value):
        where = f"{path}.{key}" if path else key
        if key not in by_json:
            unknown.append(where)
            del value[key]  # pruned, as the API server prunes fields a structural schema lacks
            continue
        u, e = schema_findings(value[key], cls.openapi_types[by_json[key]], where)
        unknown += u
        invalid += e
    return unknown, invalid


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
    namespace: str = "default"


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
                 pods: Callable[[str, dict[str, str]], str | None] | None = None,
                 strict: bool = True):
        self.strict = strict
        self.dropped: list[str] = []  # unknown fields pruned from bodies (a Warning each)
        self.refused: list[str] = []  # bodies answered 4xx for their content
        self.unresolved: list[str] = []  # hosts the gateway was asked for and does not know
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
        self.gateway = ThreadingHTTPServer(("127.0.0.1", 0), self._proxy_handler(None, None))

    # ------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKServe:
        self.thread.start()
        threading.Thread(target=self.gateway.serve_forever, daemon=True).start()
        return self

    def proxy_env(self) -> dict[str, str]:
        """Environment that sends a client's requests to cluster names through ``gateway``
        (httpx and urllib honour it); 127.0.0.1 stays direct."""
        gateway = f"http://127.0.0.1:{self.gateway.server_address[1]}"
        return {"HTTP_PROXY": gateway, "http_proxy": gateway,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def cluster_host(self, name: str, route: str) -> str:
        """The cluster-local host of ``route`` of InferenceService ``name``."""
        namespace = self.services[name].namespace
        tag = "" if route == "service" else f"{route}-"
        return f"{tag}{name}-predictor.{namespace}.svc.cluster.local"

    def resolve(self, host: str) -> tuple[str, str] | None:
        """(service, route) a cluster-local host reaches, as DNS and the local gateway do."""
        with self.lock:
            for name in self.services:
                for route in ("latest", "prev", "service"):
                    if host == self.cluster_host(name, route):
                        return name, route
        return None

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.server.shutdown()
        self.gateway.shutdown()
        for service in self.services.values():
            for route in service.routes.values():
                route.shutdown()
        if self.strict and exc_type is None and (self.dropped or self.refused):
            raise AssertionError(f"the Kubernetes API dropped unknown fields {self.dropped} and "
                                 f"refused {self.refused}: what was sent is not a valid "
                                 "InferenceService")

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
                predictor["address"] = {"url": f"http://{self.cluster_host(name, 'service')}"}
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
                        entry["url"] = self._external_url(service, name, entry["tag"])
                    traffic.append(entry)
                if tagged and latest_ready is not None and latest_ready.name not in shares:
                    traffic.append({"revisionName": latest_ready.name, "percent": 0,
                                    "latestRevision": True, "tag": "latest",
                                    "url": self._external_url(service, name, "latest")})
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

    @staticmethod
    def _external_url(service: Service, name: str, tag: str) -> str:
        return f"http://{tag}-{name}-predictor.{service.namespace}.{EXTERNAL_DOMAIN}"

    def _route_url(self, service: Service, route: str) -> str:
        return f"http://127.0.0.1:{service.routes[route].server_address[1]}"

    def _open_routes(self, name: str) -> dict[str, ThreadingHTTPServer]:
        routes = {}
        for route in ("service", "latest", "prev"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), self._proxy_handler(name, route))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            routes[route] = server
        return routes

    def _proxy_handler(self, fixed_name: str | None, fixed_route: str | None) -> type:
        """A route's server (``fixed_name``/``fixed_route``), or with None the gateway, which
        takes proxy requests (``GET http://host/path``) and routes them by host."""
        from urllib.parse import urlsplit

        fake = self

        class Proxy(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                name, route, path = fixed_name, fixed_route, self.path
                if fixed_name is None:
                    target = urlsplit(self.path)
                    path = target.path + (f"?{target.query}" if target.query else "")
                    found = fake.resolve(target.hostname or "")
                    if found is None:
                        fake.unresolved.append(target.hostname or self.path)
                        return self._reply(502, json.dumps(
                            {"error": f"{target.hostname}: name does not resolve"}).encode())
                    name, route = found
                revision = fake.route_revision(name, route) if name in fake.services else None
                backend = fake.backend(revision) if revision else None
                fake.served.append({"service": name, "route": route, "path": path,
                                    "version": revision.version if revision else None,
                                    "request_id": self.headers.get("x-request-id")})
                if backend is None:
                    return self._reply(503, b'{"error": "no revision is ready"}')
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "x-request-id", "authorization")}
                request = urllib.request.Request(f"{backend}{path}", data=body,
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

            def _send(self, status: int, body: dict, warnings: list[str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for field_path in warnings or []:
                    self.send_header("Warning", f'299 - "unknown field \\"{field_path}\\""')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _missing(self) -> None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404})

            def _checked(self, body: Any, patch: bool) -> tuple[list[str], bool]:
                """Prune unknown fields (returned), or answer 415/422 (then False)."""
                if patch and (self.headers.get("Content-Type") or "").split(";")[0] != MERGE_PATCH:
                    fake.refused.append(f"PATCH as {self.headers.get('Content-Type')}")
                    self._send(415, {"kind": "Status", "status": "Failure", "code": 415,
                                     "reason": "UnsupportedMediaType",
                                     "message": "the body of the request was in an unknown "
                                                "format - accepted media types include: "
                                                f"application/json-patch+json, {MERGE_PATCH}"})
                    return [], False
                if not isinstance(body, dict):
                    fake.refused.append("a body that is not a JSON object")
                    self._send(400, {"kind": "Status", "code": 400, "reason": "BadRequest"})
                    return [], False
                unknown, invalid = schema_findings(body)
                fake.dropped += unknown
                if invalid:
                    fake.refused += invalid
                    self._send(422, {"kind": "Status", "status": "Failure", "code": 422,
                                     "reason": "Invalid", "message": "InferenceService is "
                                     "invalid: " + "; ".join(invalid)})
                    return unknown, False
                return unknown, True

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
                warnings, ok = self._checked(body, patch=False)
                if not ok:
                    return None
                name = body["metadata"]["name"]
                with fake.lock:
                    if name in fake.services:
                        return self._send(409, {"kind": "Status", "reason": "AlreadyExists",
                                                "code": 409})
                    body["metadata"]["generation"] = 1
                    service = Service(obj=body, changed_at={0: 0.0, 1: time.monotonic()},
                                      template_of={1: _version(body)}, env_of={1: _env(body)},
                                      namespace=self.path[len(API_PREFIX):].split("/")[0])
                    service.routes = fake._open_routes(name)
                    fake.services[name] = service
                    fake.urls[name] = fake._route_url(service, "service")
                return self._send(201, fake.reconcile(name), warnings)

            def do_PATCH(self) -> None:  # noqa: N802
                body = self._body()
                fake.calls.append(("PATCH", self.path, json.loads(json.dumps(body))))
                name = self._name()
                if name not in fake.services:
                    return self._missing()
                warnings, ok = self._checked(body, patch=True)
                if not ok:
                    return None
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
                return self._send(200, fake.reconcile(name), warnings)

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
