"""The whole loop as a cluster runs it, on one machine (`make test-cluster`).

Every pipeline task runs in its own image from ``images/`` through
``kfp.local.DockerRunner``, as a random non-root UID in group 0 (as OpenShift runs pods),
with the configuration a namespace's ``autokfp-config`` ConfigMap gives it as environment
variables. Tasks share no folder but KFP's pipeline root: data, models, reports, prediction
logs and the registry live in gcp-storage-emulator (gs://) and a real ``mlflow server`` over
HTTP.

1. ``autonomous-training`` trains, registers and deploys v1 (verified inside its task).
2. v1 is served by the serving image exactly as KServe would: the InferenceService's
   ``storageUri`` is fetched with KServe's own storage code (``kserve_storage.Storage``, the
   storage initializer's) into a folder mounted at ``/mnt/models``, and the container starts
   with the ServingRuntime's args. Shifted traffic goes through KServe's agent in front of
   it, whose payload logger posts each request and response as CloudEvents to the
   payload-log receiver (its own container, as ``manifests/serving/payload-log.yaml``
   deploys it); the receiver writes the prediction log to the object store.
3. ``drift-monitoring`` reads that log, finds drift and a performance drop, and takes its
   retraining branch: v2 is trained, registered, deployed as a canary and promoted.
4. The new champion is served the same way; v1 and v2 protocol answers equal the offline
   predictions of the model package.

The same services on S3 (moto_server) run a shorter loop with an AutoKeras champion,
served by the serving-keras image: ``test_cluster_on_s3.py``. The two files are the two
loops scripts/test_cluster.sh runs side by side (pytest-xdist ``--dist loadfile``: each
file's tests on one worker, so each box's services start once).
"""

# no `from __future__ import annotations`: kfp reads pipeline annotations as types
import json
import os
import random
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.cluster.conftest import Box, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
MODEL = "churn-box"
SERVING_RUNTIME = ROOT / "manifests" / "serving" / "servingruntime.yaml"
PAYLOAD_LOG = ROOT / "manifests" / "serving" / "payload-log.yaml"
AGENT = Path(__file__).resolve().parent / "kserve_agent.py"
# a random UID in group 0, the way OpenShift's restricted SCC runs every container
RUN_AS = f"{random.randint(1_000_100_000, 1_000_900_000)}:0"


def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def _note(message: str) -> None:
    """A figure of the run: printed, and added to $AUTOKFP_BOX_TIMINGS when set (the loops
    run under pytest-xdist, which shows no output of a passing test; scripts/test_cluster.sh
    prints that file at the end)."""
    print(message)
    if path := os.environ.get("AUTOKFP_BOX_TIMINGS"):
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} (load {load}) {message}\n")


def _reach(box: Box):
    """This process reaches the box's services (to seed data, read the registry, compare)."""
    from autokfp import storage

    saved = {key: os.environ.get(key) for key in box.task_env}
    os.environ.update(box.task_env)
    storage.reset_client()
    yield box.task_env
    storage.reset_client()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def host_env(box: Box):
    yield from _reach(box)



def _shift_period(frame: pd.DataFrame, seed: int, id_prefix: str) -> pd.DataFrame:
    from tests.pipelines.test_monitoring_pipeline import shift_period

    return shift_period(frame, seed=seed, id_prefix=id_prefix)


H2O = {"h2o": {"max_models": 2, "nfolds": 2, "max_mem_size": "1G",
               "include_algos": ["GLM", "GBM"]}}
# one small network, a few epochs: what matters here is where it is trained, registered and
# served, not how good it is
AUTOKERAS = {"autokeras": {"max_trials": 1, "epochs": 8, "patience": 3}}


def _config(data_uri: str, labels_uri: str, payload_log: str, engines: dict = H2O,
            max_runtime_secs: int = 10) -> dict:
    from autokfp.config import parse_config

    return parse_config({
        "name": MODEL,
        "sources": [{"name": "lake", "kind": "gcs" if data_uri.startswith("gs://") else "s3",
                     "uri": data_uri}],
        "training": {"dataset": "lake/customers.parquet", "target": "churned",
                     "id_column": "customer_id"},
        "budget": {"max_runtime_secs": max_runtime_secs},
        "engines": engines,
        "quality": {"min_rows": 100},
        # deploy runs inside the deploy task's container (no Kubernetes API here): it starts
        # the predictor there, verifies it against the offline predictions, then stops it
        # (latency is measured by scripts/benchmark_container_serving.py, not judged here)
        "deploy": {"target": "local", "smoke_rows": 20, "latency_budget_ms": 10000,
                   # kserve: KServe's agent posts the traffic to the payload-log receiver,
                   # which writes the prediction log; predictor: the predictor writes it
                   "payload_log": payload_log},
        "governance": {"block_deploy_on_bias": False, "mitigate": False, "shap_rows": 0,
                       "explain_rows": 50},
        "monitoring": {"window_days": 1, "min_window_rows": 300, "drift_share": 0.25,
                       "min_labelled_rows": 200, "labels": {"path": labels_uri}},
    }).to_dict()


def _init_docker_runner(box: Box, pipeline_root: Path) -> None:
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    # group 0 may write, as on a cluster's shared volume for a random UID in group 0
    pipeline_root.chmod(0o2775)
    local.init(runner=local.DockerRunner(network_mode="host", environment=box.pod_env,
                                         user=RUN_AS),
               pipeline_root=str(pipeline_root), raise_on_error=True)


def _newest_run(pipeline_root: Path, prefix: str, before: set[str]) -> Path:
    runs = sorted((p for p in pipeline_root.glob(f"{prefix}-*") if p.name not in before),
                  key=lambda p: p.stat().st_mtime)
    assert runs, f"no {prefix} run folder under {pipeline_root}"
    return runs[-1]


def _one(run_dir: Path, pattern: str) -> Path:
    found = sorted(run_dir.rglob(pattern))
    assert found, f"{pattern} not found under {run_dir}"
    return found[0]


# ---------------------------------------------------------------- serving as KServe does


def _resolve_env(box: Box, items: list[dict]) -> list[str]:
    """``docker run -e`` arguments for a container's env list, each value resolved as the
    kubelet does (literal values, ConfigMap and Secret keys; a missing optional key is
    left out), then what the platform gives every pod."""
    env = []
    for item in items:
        source = item.get("valueFrom", {})
        if "configMapKeyRef" in source:
            value = box.config_env.get(source["configMapKeyRef"]["key"])
        elif "secretKeyRef" in source:
            value = box.secret_env.get(source["secretKeyRef"]["key"])
        else:
            value = item.get("value")
        if value is not None:
            env += ["-e", f"{item['name']}={value}"]
    for key, value in box.platform_env.items():
        env += ["-e", f"{key}={value}"]
    return env


class Container:
    """A detached container of the box, on the host's network, as a random UID in group 0."""

    name: str

    def logs(self) -> str:
        result = _docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self) -> str:
        """docker stop (SIGTERM, as the kubelet does); returns the container's log."""
        _docker("stop", "--time", "30", self.name, check=False, timeout=60)
        logs = self.logs()
        _docker("rm", "-f", self.name, check=False)
        return logs


class KServePredictor(Container):
    """The serving image started as KServe starts it for an InferenceService."""

    def __init__(self, box: Box, image: str, manifest: dict, models_dir: Path):
        self.box, self.manifest, self.models_dir = box, manifest, models_dir
        model = manifest["spec"]["predictor"]["model"]
        # the InferenceService's own image (an AutoKeras champion's) over the runtime's
        self.image = model.get("image") or image
        self.service = manifest["metadata"]["name"]
        self.storage_uri = model["storageUri"]
        self.name = f"autokfp-box-{self.service}-{uuid.uuid4().hex[:6]}"
        self.port = 8080
        self.front: str | None = None  # KServe's agent in front of it, when it runs

    def fetch_model(self) -> None:
        """What KServe's storage initializer does: Storage.download(storageUri, /mnt/models)."""
        python = os.environ.get("KSERVE_STORAGE_PYTHON")
        assert python, "KSERVE_STORAGE_PYTHON must name a Python with kserve-storage installed"
        self.models_dir.mkdir(parents=True)
        subprocess.run(
            [python, "-c", "import sys; from kserve_storage import Storage; "
             "Storage.download(sys.argv[1], sys.argv[2])", self.storage_uri, str(self.models_dir)],
            env={**os.environ, **self.box.storage_init_env}, check=True, timeout=300)
        assert (self.models_dir / "MLmodel").exists(), sorted(os.listdir(self.models_dir))
        os.chmod(self.models_dir, 0o755)

    def start(self) -> None:
        runtime = yaml.safe_load(SERVING_RUNTIME.read_text())
        container = runtime["spec"]["containers"][0]
        args = [arg.replace("{{.Name}}", self.service) for arg in container["args"]]
        # the container shares the host's network (the emulator and MLflow are on 127.0.0.1):
        # move it off 8080 when that port is taken here, or when the other loop's predictor
        # may take it at the same moment (the loops run side by side under pytest-xdist)
        port_arg = next(a for a in args if a.startswith("--http_port="))
        wanted = int(port_arg.split("=", 1)[1])
        alone = not os.environ.get("PYTEST_XDIST_WORKER")
        self.port = wanted if alone and _port_free(wanted) else free_port()
        args = [f"--http_port={self.port}" if a == port_arg else a for a in args]
        # as KServe builds the pod: the runtime's env, then the InferenceService's model env
        # over it; each resolved as the kubelet does (ConfigMap and Secret keys)
        model_env = self.manifest["spec"]["predictor"]["model"].get("env", [])
        env = _resolve_env(self.box, [*container.get("env", []), *model_env])
        _docker("run", "-d", "--name", self.name, "--network", "host", "--user", RUN_AS,
                "-v", f"{self.models_dir}:/mnt/models:ro", *env, self.image, *args)
        probe = container["readinessProbe"]["httpGet"]["path"]
        try:
            wait_http(f"{self.url}{probe}", 180)
            wait_http(f"{self.url}/v2/models/{self.service}/ready", 60)
        except Exception:
            print(self.logs())
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def v1(self, records: list[dict]) -> list[dict]:
        return _post(f"{self.front or self.url}/v1/models/{self.service}:predict",
                     {"instances": records})["predictions"]

    def v2(self, inputs: list[dict]) -> dict:
        return _post(f"{self.front or self.url}/v2/models/{self.service}/infer",
                     {"id": "box", "inputs": inputs})


class PayloadLogReceiver(Container):
    """The receiver of KServe's payload logger, started as manifests/serving/payload-log.yaml
    deploys it (its command and env, resolved from the ConfigMap and Secret), in the
    serving image."""

    def __init__(self, box: Box, image: str):
        self.box, self.image = box, image
        deployment = next(d for d in yaml.safe_load_all(PAYLOAD_LOG.read_text())
                          if d["kind"] == "Deployment")
        self.container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.name = f"autokfp-box-payload-log-{uuid.uuid4().hex[:6]}"
        self.port = free_port()  # its Service maps port 80 to it; 8080 may be the predictor's

    def start(self) -> None:
        env = _resolve_env(self.box, [item for item in self.container["env"]
                                      if item["name"] != "PORT"])
        command = self.container["command"]  # a pod's command replaces the image's entrypoint
        _docker("run", "-d", "--name", self.name, "--network", "host", "--user", RUN_AS,
                *env, "-e", f"PORT={self.port}", "--entrypoint", command[0], self.image,
                *command[1:], *self.container.get("args", []))
        probe = self.container["readinessProbe"]["httpGet"]["path"]
        try:
            wait_http(f"http://127.0.0.1:{self.port}{probe}", 180)
        except Exception:
            print(self.logs())
            raise

    def url_for(self, logger_url: str) -> str:
        """The InferenceService's logger URL as cluster DNS would resolve it: the
        receiver's Service, here this container's port."""
        parts = urllib.parse.urlsplit(logger_url)
        assert parts.hostname == f"autokfp-payload-log.{parts.hostname.split('.')[1]}.svc.cluster.local", (
            logger_url)
        return urllib.parse.urlunsplit(
            (parts.scheme, f"127.0.0.1:{self.port}", parts.path, parts.query, ""))


class KServeAgent(Container):
    """KServe's agent in front of a predictor, with the args KServe's webhook gives it for
    the InferenceService's ``spec.predictor.logger`` (tests/cluster/kserve_agent.py: the
    agent's image cannot be pulled here), in a container of its own on the pod's network."""

    def __init__(self, predictor: KServePredictor, image: str, log_url: str):
        self.predictor, self.image = predictor, image
        manifest = predictor.manifest
        self.logger = manifest["spec"]["predictor"]["logger"]
        self.name = f"autokfp-box-agent-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.log_url = log_url

    def start(self) -> None:
        # the predictor's port as it started (it moves off 8080 when that is taken)
        predictor, manifest = self.predictor, self.predictor.manifest
        args = ["--port", str(self.port), "--component-port", str(predictor.port),
                "--log-url", self.log_url, "--source-uri", f"{predictor.service}-predictor-0",
                "--log-mode", self.logger["mode"],
                "--inference-service", manifest["metadata"]["name"],
                "--namespace", manifest["metadata"]["namespace"],
                "--endpoint", "default", "--component", "predictor"]
        _docker("run", "-d", "--name", self.name, "--network", "host", "--user", RUN_AS,
                "-v", f"{AGENT}:/agent/kserve_agent.py:ro", "--entrypoint", "python",
                self.image, "/agent/kserve_agent.py", *args)
        # the kubelet's probe (User-Agent kube-probe/...), which the agent proxies unlogged
        deadline = time.monotonic() + 60
        while True:
            probe = urllib.request.Request(f"http://127.0.0.1:{self.port}/v2/health/ready",
                                           headers={"User-Agent": "kube-probe/1.30"})
            try:
                with urllib.request.urlopen(probe, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print(self.logs())
                raise TimeoutError(f"KServe's agent on {self.port} did not become ready")
            time.sleep(0.3)
        self.predictor.front = f"http://127.0.0.1:{self.port}"


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _v2_inputs(frame: pd.DataFrame, plan) -> list[dict]:
    inputs = []
    for column in plan.input_columns:
        values = json.loads(frame[column].to_json(orient="values", date_format="iso"))
        if column in plan.numeric:
            inputs.append({"name": column, "datatype": "FP64", "shape": [len(values)],
                           "data": [None if v is None else float(v) for v in values]})
        else:
            inputs.append({"name": column, "datatype": "BYTES", "shape": [len(values)],
                           "data": [None if v is None else str(v) for v in values]})
    return inputs


def _assert_same(served: list[dict], expected: pd.DataFrame, what: str,
                 atol: float = 1e-9) -> None:
    frame = pd.DataFrame(served)
    assert frame["prediction"].astype(str).tolist() == expected["prediction"].astype(str).tolist(), what
    probabilities = [c for c in expected.columns if c.startswith("probability_")]
    assert probabilities and set(probabilities) <= set(frame.columns), (what, list(frame.columns))
    np.testing.assert_allclose(frame[probabilities].to_numpy(dtype=float),
                               expected[probabilities].to_numpy(dtype=float), rtol=0, atol=atol,
                               err_msg=what)


def _check_served_champion(predictor: KServePredictor, rows: pd.DataFrame,
                           atol: float = 1e-9) -> None:
    """v1 and v2 answers equal the offline predictions of the fetched model package (H2O's
    MOJO scores in float64: 1e-9; a Keras network in float32, the same TensorFlow build in
    the image as here: ``atol`` 1e-6, where a different model is off by 1e-2 and more)."""
    from autokfp.modeling.model_package import load_model_package

    package = load_model_package(str(predictor.models_dir))
    offline = package.predict(rows).reset_index(drop=True)
    _assert_same(predictor.v1(_records(rows)), offline, "v1 :predict", atol)
    plan = package.unwrap_python_model().plan
    body = predictor.v2(_v2_inputs(rows, plan))
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    _assert_same([dict(zip(outputs, values)) for values in zip(*outputs.values())], offline,
                 "v2 /infer", atol)


# --------------------------------------------------------------------------------- the loop


def _monitor(pipeline_root: Path, config: dict) -> dict:
    from autokfp.pipelines import PIPELINES, ClusterOptions

    before = {p.name for p in pipeline_root.glob("drift-monitoring-*")}
    started = time.monotonic()
    PIPELINES["drift-monitoring"](ClusterOptions(schedule_time=False))(config=config, window_end="")
    _note(f"drift-monitoring in containers: {time.monotonic() - started:.0f} s")
    run_dir = _newest_run(pipeline_root, "drift-monitoring", before)
    return {"run_dir": run_dir,
            "decision": json.loads(_one(run_dir, "decide-retraining/decision").read_text())}


def _train_first_champion(box: Box, config: dict, pipeline_root: Path) -> dict:
    """autonomous-training in containers: v1 trained, registered, deployed; its manifest."""
    from mlflow import MlflowClient

    from autokfp.pipelines import PIPELINES

    started = time.monotonic()
    output = PIPELINES["autonomous-training"]()(config=config)
    _note(f"autonomous-training in containers ({box.store}): {time.monotonic() - started:.0f} s")
    registration = json.loads(Path(output.output.path).read_text())
    assert registration["version"] == "1" and registration["aliases"] == ["champion"]
    training_run = _newest_run(pipeline_root, "autonomous-training", set())
    decision = json.loads(_one(training_run, "deploy-model/decision").read_text())
    assert decision["outcome"] == "promoted", decision
    manifest = yaml.safe_load(_one(training_run, "deploy-model/manifest").read_text())
    storage_uri = manifest["spec"]["predictor"]["model"]["storageUri"]
    # the model lives in the shared store, where KServe's storage initializer can reach it
    assert storage_uri.startswith(f"{box.bucket_uri}/mlflow/"), storage_uri
    client = MlflowClient(box.mlflow_uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    return manifest


def test_train_serve_drift_retrain_and_serve_again_on_gcs_in_containers(
        box, images, host_env, tmp_path) -> None:
    from mlflow import MlflowClient

    from autokfp import storage
    from autokfp.examples.churn import generate_churn
    from autokfp.monitoring.window import read_window

    data_uri, labels_uri = f"{box.bucket_uri}/lake", f"{box.bucket_uri}/labels"
    period_a = generate_churn(1500, seed=3)
    storage.write_bytes(f"{data_uri}/customers.parquet", period_a.to_parquet(index=False))
    config = _config(data_uri, labels_uri, payload_log="kserve")
    pipeline_root = tmp_path / "pipeline_root"
    _init_docker_runner(box, pipeline_root)

    # 1. train, register and deploy v1, every task in its image
    manifest = _train_first_champion(box, config, pipeline_root)
    client = MlflowClient(box.mlflow_uri)

    # the recurring run before any traffic: nothing to judge; it stores v1's reference rows
    # (its training data) in the object store for the next runs
    first = _monitor(pipeline_root, config)
    assert first["decision"]["retrain"] is False and first["decision"]["status"] == "empty", first

    # 2. v1 served as KServe serves it, behind KServe's agent, whose payload logger posts
    # every request and response as CloudEvents to the payload-log receiver (its own
    # container, deployed as manifests/serving/payload-log.yaml); the receiver, not the
    # predictor, writes the prediction log. Shifted traffic goes through it.
    logger = manifest["spec"]["predictor"]["logger"]
    assert logger["mode"] == "all", logger
    model_env = {e["name"]: e.get("value") for e in manifest["spec"]["predictor"]["model"]["env"]}
    assert model_env.get("AUTOKFP_PREDICTION_LOG") == "off", model_env  # the predictor logs nothing
    period_b = _shift_period(generate_churn(1500, seed=4), seed=5, id_prefix="B")
    requests = period_b.drop(columns=["churned"]).reset_index(drop=True)
    traffic_started = datetime.now(timezone.utc) - timedelta(minutes=1)
    receiver = PayloadLogReceiver(box, images["serving"])
    v1 = KServePredictor(box, images["serving"], manifest, tmp_path / "models-v1")
    agent = KServeAgent(v1, images["serving"], receiver.url_for(logger["url"]))
    answered: dict[str, str] = {}
    try:
        receiver.start()
        v1.fetch_model()
        v1.start()
        agent.start()
        _check_served_champion(v1, requests.head(25))
        for begin in range(0, len(requests), 100):
            batch = requests.iloc[begin:begin + 100]
            answers = v1.v1(_records(batch))
            answered.update(zip(batch["customer_id"], (str(a["prediction"]) for a in answers)))
    finally:
        agent_log = agent.stop()  # SIGTERM: it sends what is queued, then exits
        served_log = v1.stop()
        receiver_log = receiver.stop()  # SIGTERM: the receiver writes what it holds
    logs = (f"agent:\n{agent_log[-2000:]}\npredictor:\n{served_log[-2000:]}\n"
            f"receiver:\n{receiver_log[-3000:]}")
    assert "0 failed" in agent_log, logs
    # what the receiver wrote is what monitoring reads: every request of the traffic, each
    # with the answer its caller got (the receiver paired request and response by Ce-Id)
    window = read_window(box.config_env["AUTOKFP_ARTIFACT_ROOT"], v1.service, "1",
                         traffic_started, datetime.now(timezone.utc) + timedelta(minutes=1))
    frame = window.frame
    assert not frame.empty, logs
    traffic = frame[frame["customer_id"].astype(str).str.startswith("B")]
    assert set(traffic["customer_id"]) == set(requests["customer_id"]), logs
    assert (traffic["customer_id"].map(answered) == traffic["output_prediction"].astype(str)).all()
    # one id per request (the agent's, shared by its request and response events), each row
    # written once: the v1 check's 25 rows (its v2 request carries no id) and 15 batches of
    # 100, so 1,525 rows under 16 distinct ids; a receiver that wrote a row twice, or an agent
    # that gave every request one id, fails here
    sizes = sorted(traffic.groupby("request_id").size().tolist())
    assert sizes == [25] + [100] * (len(requests) // 100), (sizes, logs)
    assert len(traffic) == len(requests) + 25, (len(traffic), logs)
    assert not traffic.duplicated(["request_id", "customer_id"]).any(), logs
    keep = os.environ.get("AUTOKFP_BOX_KEEP_LOG")
    if keep:  # the served prediction log, for a look at what the receiver wrote
        Path(keep).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(Path(keep, "window.parquet"), index=False)

    # the labels of period B arrive and the training table is refreshed
    storage.write_bytes(f"{labels_uri}/period-b.parquet",
                        period_b[["customer_id", "churned"]].to_parquet(index=False))
    storage.write_bytes(f"{data_uri}/customers.parquet", period_b.to_parquet(index=False))

    # 3. drift-monitoring finds drift and retrains, in containers
    second = _monitor(pipeline_root, config)
    decision, run_dir = second["decision"], second["run_dir"]
    assert decision["retrain"] is True, decision["summary"]
    assert decision["reference"] == "stored", decision
    assert decision["rows"] >= len(requests), decision
    drift = next(c for c in decision["checks"] if c["trigger"] == "drift")
    assert drift["fired"], drift
    # the labels join the served log (v2 requests carry no id; they stay unlabelled)
    performance = next(c for c in decision["checks"] if c["trigger"] == "performance")
    assert performance["evaluated"], performance
    outcome = json.loads(_one(run_dir, "record-retraining/outcome").read_text())
    assert outcome["registered_version"] == "2" and outcome["champion"] == "2", outcome
    assert outcome["deployment"] == "serving", outcome
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    manifest = yaml.safe_load(_one(run_dir, "deploy-model/manifest").read_text())
    assert manifest["spec"]["predictor"]["model"]["storageUri"].startswith(
        f"{box.bucket_uri}/mlflow/")

    # 4. the new champion, served as KServe would, answers as the model does offline
    v2 = KServePredictor(box, images["serving"], manifest, tmp_path / "models-v2")
    v2.fetch_model()
    v2.start()
    try:
        _check_served_champion(v2, requests.sample(40, random_state=1).reset_index(drop=True))
    finally:
        v2.stop()
    champion_dir = os.environ.get("AUTOKFP_BOX_KEEP_CHAMPION")
    if champion_dir:  # for scripts/benchmark_container_serving.py
        import shutil

        shutil.rmtree(champion_dir, ignore_errors=True)
        shutil.copytree(v2.models_dir, champion_dir)
        Path(champion_dir, "box.json").write_text(json.dumps({"service": v2.service}))

