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
import re
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
        # with execute_runs, a created run really runs: its pipeline spec under kfp.local
        # (SubprocessRunner, pipeline_root below), PENDING -> RUNNING -> SUCCEEDED or FAILED
        self.execute_runs = False
        # and with fork_tasks, each task is a child forked from a warm worker that imported
        # the common modules once (autokfp.edge.taskfork, as `autokfp run` runs tasks): still
        # a process per task, as a pod per task on the backend, without each importing
        # pandas, MLflow, scikit-learn... again (for runs of many tasks: the worker's own
        # imports are a cost for a run of one or two)
        self.fork_tasks = False
        self.forked = 0  # tasks the warm worker ran
        # and with share_scorer, the tasks of a run with H2O among its engines score H2O
        # models through one MOJO scorer (one JVM) started for the run, as `autokfp run`'s
        # tasks do (autokfp.training.mojo_service), not each task a JVM of its own (select,
        # bias check, evaluation, explanation, model card: 2-3 s each on an idle core)
        self.share_scorer = False
        self.pipeline_root = ""
        self.lock = threading.Lock()  # guards the runs' states (the HTTP threads read them)
        # kfp.local's settings are process-wide: submitted runs execute one after the other
        self.executing = threading.Lock()
        self.url = ""


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# what the API server accepts for a root parameter of each type (a JSON value's kind, as
# structpb sees it: a bool is not a number)
_PARAMETER_KINDS = {
    "NUMBER_INTEGER": (int, float), "NUMBER_DOUBLE": (int, float), "STRING": (str,),
    "BOOLEAN": (bool,), "LIST": (list,), "STRUCT": (dict,),
}


def invalid_parameters(spec: dict, parameters: dict) -> str | None:
    """Why the API server refuses a run's parameters, or None.

    The checks of the backend's ``validatePipelineJobInputs`` (apiserver/template/v2_template.go):
    every root parameter without a default or ``isOptional`` is given, each given value has
    its declared type, and no parameter the pipeline does not declare is given.
    """
    declared = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for name, definition in declared.items():
        if name not in parameters:
            if not definition.get("isOptional") and "defaultValue" not in definition:
                return (f"parameter {name} is not optional, yet has neither default value nor "
                        "user provided value")
            continue
        kind = definition.get("parameterType")
        value = parameters[name]
        allowed = _PARAMETER_KINDS.get(kind)
        if allowed is None:
            return f"input parameter {name} requires type unknown"
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            return (f"input parameter {name} requires type {kind.split('_')[-1].lower()}, but "
                    "the parameter value is not of that value type")
    extra = sorted(set(parameters) - set(declared))
    if extra:
        return f"parameter(s) provided are not required by pipeline: {', '.join(extra)}"
    return None


def _set_state(state: FakeKfp, run: dict, value: str, **fields) -> None:
    with state.lock:
        run.update({"state": value, **fields})
        run["state_history"] = [*run.get("state_history", []),
                                {"update_time": _now(), "state": value}]


def _execute(state: FakeKfp, run_id: str, documents: list[dict]) -> None:
    """Run a submitted pipeline as the backend would: the job's placeholders are resolved
    (its run id is the API's run id), then every task runs under kfp.local."""
    from kfp import components, local

    run = state.runs[run_id]
    text = yaml.safe_dump_all(documents)
    # the placeholders the backend resolves for a run (kfp.local would use its own run id,
    # and cannot resolve the schedule time: kfp 2.17 raises IndexError); a one-off run's
    # scheduled time is its creation time, as the API reports it in scheduled_at
    for placeholder, value in (("{{$.pipeline_job_uuid}}", run_id),
                               ("{{$.pipeline_job_create_time_utc}}", run["created_at"]),
                               ("{{$.pipeline_job_schedule_time_utc}}", run["scheduled_at"])):
        text = text.replace(placeholder, value)
    with state.executing:
        _set_state(state, run, "RUNNING")
        try:
            with tempfile.TemporaryDirectory(prefix="kfp-api-run-") as scratch:
                path = f"{scratch}/pipeline.yaml"
                with open(path, "w") as handle:
                    handle.write(text)
                pipeline = components.load_component_from_file(path)
                local.init(runner=local.SubprocessRunner(use_venv=False),
                           pipeline_root=state.pipeline_root, raise_on_error=True)
                parameters = (run.get("runtime_config") or {}).get("parameters", {})
                with contextlib.ExitStack() as stack:
                    worker = None
                    if state.fork_tasks:
                        from autokfp.edge.taskfork import forked_tasks, preload_for_run

                        preload = preload_for_run(parameters)
                        if state.share_scorer:  # named in the environment the worker takes
                            from autokfp.training.mojo_service import shared_mojo_scorer

                            stack.enter_context(shared_mojo_scorer("h2o" in preload))
                        worker = stack.enter_context(forked_tasks(preload))
                    try:
                        pipeline(**parameters)
                    finally:
                        state.forked += worker.forked if worker is not None else 0
        except Exception as exc:  # noqa: BLE001 - the run failed, as a backend reports it
            # a google.rpc.Status, as the API server fills a failed run's error (2: UNKNOWN)
            message = _ANSI.sub("", str(exc))[:2000]
            _set_state(state, run, "FAILED", finished_at=_now(),
                       error={"code": 2, "message": message})
        else:
            _set_state(state, run, "SUCCEEDED", finished_at=_now())


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

        def _error(self, status: int, code: int, message: str) -> None:
            """A failed call as the API server's gateway answers it (a google.rpc.Status)."""
            return self._send(status, {"error": message, "code": code, "message": message,
                                       "details": []})

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
            if url.path.startswith(f"{API}/runs/"):
                run_id = url.path.rsplit("/", 1)[-1]
                if run_id not in state.runs:
                    return self._error(404, 5, f"Failed to get run {run_id}: ResourceNotFoundError: "
                                               f"Run {run_id} not found")
                with state.lock:
                    found = json.loads(json.dumps(state.runs[run_id]))
                check_model(found, "V2beta1Run")  # what it answers is a valid run too
                return self._send(200, found)
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
                refused = invalid_parameters(documents[0],
                                             (body.get("runtime_config") or {}).get("parameters") or {})
                if refused:
                    return self._error(400, 3, f"Failed to create a run: Invalid input error: {refused}")
                now = _now()
                created = {**body, "run_id": uuid.uuid4().hex, "state": "PENDING",
                           "storage_state": "AVAILABLE", "created_at": now, "scheduled_at": now,
                           "state_history": [{"update_time": now, "state": "PENDING"}]}
                with state.lock:
                    state.runs[created["run_id"]] = created
                    answer = json.loads(json.dumps(created))
                if state.execute_runs:
                    threading.Thread(target=_execute, args=(state, created["run_id"], documents),
                                     name=f"run-{created['run_id']}", daemon=True).start()
                return self._send(200, answer)
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
