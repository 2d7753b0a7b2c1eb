"""A local stand-in for the Kubeflow Pipelines API (v2beta1) that checks every call.

The server (127.0.0.1) implements the endpoints kfp.Client uses to upload a pipeline and a
version, create an experiment, a run and a recurring run. Each JSON body is checked field by
field against the kfp_server_api model (no unknown field) and deserialised into it; each
uploaded file must be a valid pipeline spec. KFP's API server cannot run here (it needs a
cluster), so this fake is what ``autokfp schedule``/``submit``/``score --cron`` and the
notebook are tested against, through the ``kfp_api`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import kfp_server_api
import yaml

from autokfp.edge.compilation import validate_pipeline_yaml

API = "/apis/v2beta1"


def check_model(body: dict, model: str) -> object:
    """Every key is a field of ``model`` (recursively); return the deserialised object."""
    cls = getattr(kfp_server_api, model)
    fields = {json_name: python_name for python_name, json_name in cls.attribute_map.items()}
    unknown = set(body) - set(fields)
    assert not unknown, f"{model} has no field(s) {unknown}"
    for key, value in body.items():
        kind = cls.openapi_types[fields[key]]
        if isinstance(value, dict) and hasattr(kfp_server_api, kind):
            check_model(value, kind)

    class Response:
        data = json.dumps(body)

    return kfp_server_api.ApiClient().deserialize(Response(), model)


class FakeKfp:
    """The API state and every call received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.uploads: list[dict] = []
        self.fail_create = False
        self.url = ""


def _matches(items, query) -> list[dict]:
    text = query.get("filter", [""])[0]
    if not text:
        return list(items)
    wanted = json.loads(text)["predicates"][0]["stringValue"]  # EQUALS display_name
    return [i for i in items if i["display_name"] == wanted]


def make_handler(state: FakeKfp):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _upload(self) -> dict:
            raw = (
                b"Content-Type: "
                + self.headers["Content-Type"].encode()
                + b"\r\n\r\n"
                + self._body()
            )
            message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
            (part,) = [
                p
                for p in message.iter_parts()
                if p.get_param("name", header="content-disposition") == "uploadfile"
            ]
            with tempfile.NamedTemporaryFile(suffix=".yaml") as handle:
                handle.write(part.get_payload(decode=True))
                handle.flush()
                spec = validate_pipeline_yaml(handle.name)  # a real, valid pipeline
            state.uploads.append(spec)
            return spec

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.calls.append(("GET", url.path))
            if url.path == f"{API}/healthz":
                return self._send(200, {"multi_user": False})
            if url.path == f"{API}/pipelines":
                found = _matches(state.pipelines.values(), query)
                return self._send(200, {"pipelines": found, "total_size": len(found)})
            if url.path.startswith(f"{API}/pipelines/") and url.path.endswith("/versions"):
                pipeline_id = url.path.split("/")[-2]
                own = [v for v in state.versions.values() if v["pipeline_id"] == pipeline_id]
                found = _matches(own, query)
                return self._send(200, {"pipeline_versions": found, "total_size": len(found)})
            if url.path == f"{API}/experiments":
                found = _matches(state.experiments.values(), query)
                return self._send(200, {"experiments": found, "total_size": len(found)})
            if url.path == f"{API}/recurringruns":
                experiment = query.get("experiment_id", [None])[0]
                own = [r for r in state.recurring.values() if r["experiment_id"] == experiment]
                found = _matches(own, query)
                return self._send(200, {"recurringRuns": found, "total_size": len(found)})
            return self._send(404, {"error": f"no route {url.path}"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.calls.append(("POST", url.path))
            if url.path == f"{API}/pipelines/upload":
                self._upload()
                pipeline = {
                    "pipeline_id": uuid.uuid4().hex,
                    "display_name": query["name"][0],
                    "description": query.get("description", [""])[0],
                }
                state.pipelines[pipeline["pipeline_id"]] = pipeline
                version = {
                    "pipeline_id": pipeline["pipeline_id"],
                    "pipeline_version_id": uuid.uuid4().hex,
                    "display_name": query["name"][0],
                }  # KFP's default first version
                state.versions[version["pipeline_version_id"]] = version
                return self._send(200, pipeline)
            if url.path == f"{API}/pipelines/upload_version":
                self._upload()
                pipeline_id = query["pipelineid"][0]
                assert pipeline_id in state.pipelines
                version = {
                    "pipeline_id": pipeline_id,
                    "pipeline_version_id": uuid.uuid4().hex,
                    "display_name": query["name"][0],
                    "description": query.get("description", [""])[0],
                }
                state.versions[version["pipeline_version_id"]] = version
                return self._send(200, version)
            body = json.loads(self._body() or b"{}")
            if url.path == f"{API}/experiments":
                check_model(body, "V2beta1Experiment")
                experiment = {**body, "experiment_id": uuid.uuid4().hex}
                state.experiments[experiment["experiment_id"]] = experiment
                return self._send(200, experiment)
            if url.path == f"{API}/runs":
                run = check_model(body, "V2beta1Run")
                assert run.experiment_id in state.experiments
                sent = body["pipeline_spec"]  # with a platform spec: both, under two keys
                documents = ([sent["pipeline_spec"], sent["platform_spec"]]
                             if "platform_spec" in sent else [sent])
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
                    yaml.safe_dump_all(documents, handle)
                    handle.flush()
                    state.uploads.append(validate_pipeline_yaml(handle.name))
                created = {**body, "run_id": uuid.uuid4().hex, "state": "PENDING"}
                state.runs[created["run_id"]] = created
                return self._send(200, created)
            if url.path == f"{API}/recurringruns":
                if state.fail_create:
                    return self._send(500, {"error": "scheduler unavailable", "code": 13})
                run = check_model(body, "V2beta1RecurringRun")
                assert run.pipeline_version_reference.pipeline_version_id in state.versions
                assert run.experiment_id in state.experiments
                created = {**body, "recurring_run_id": uuid.uuid4().hex, "status": "ENABLED"}
                state.recurring[created["recurring_run_id"]] = created
                return self._send(200, created)
            return self._send(404, {"error": f"no route {url.path}"})

        def do_DELETE(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            state.calls.append(("DELETE", url.path))
            run_id = url.path.rsplit("/", 1)[-1]
            state.recurring.pop(run_id)
            return self._send(200, {})

    return Handler


@contextlib.contextmanager
def running_kfp_api(monkeypatch, tmp_path) -> Iterator[FakeKfp]:
    """The fake on a free port of 127.0.0.1 (``state.url``); the ``kfp_api`` fixture."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.config/kfp/context.json of the user
    for name in ("KF_PIPELINES_ENDPOINT", "AUTOKFP_GPU_COUNT", "AUTOKFP_GPU_NODE_SELECTOR"):
        monkeypatch.delenv(name, raising=False)
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
