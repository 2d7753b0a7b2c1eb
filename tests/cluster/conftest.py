"""Cluster in a box: the services a namespace would have, on 127.0.0.1, for `make test-cluster`.

These tests need Docker and the images built by ``scripts/build_images.sh`` (``make
test-cluster`` builds them, then runs this folder with ``AUTOKFP_CLUSTER_TESTS=1``). Under a
plain ``make test`` they are skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autokfp.lifeline import stop_processes

BUCKET = "autokfp-box"
# the registry the test images are tagged with (scripts/test_cluster.sh sets it)
IMAGE_REGISTRY = os.environ.get("AUTOKFP_IMAGE_REGISTRY", "autokfp.test")


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("AUTOKFP_CLUSTER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="cluster in a box: run `make test-cluster` (needs Docker)")
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The four test images, built by scripts/build_images.sh, each running as non-root."""
    from autokfp.settings import image

    registry = os.environ.get("AUTOKFP_IMAGE_REGISTRY", "")
    found = {}
    for name in ("runtime", "training", "serving", "serving-keras"):
        ref = image(name)
        assert registry and ref.startswith(registry + "/"), (
            f"set AUTOKFP_IMAGE_REGISTRY to the test images' registry before importing autokfp "
            f"(got {ref}); run through `make test-cluster`")
        result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Config.User}}", ref],
                                capture_output=True, text=True, check=False, timeout=120)
        assert result.returncode == 0, f"{ref} is not built: run scripts/build_images.sh"
        user = result.stdout.strip()
        assert user and user.split(":")[0] not in ("", "0", "root"), f"{ref} runs as root ({user})"
        found[name] = ref
    return found


@dataclass
class Box:
    """The running services and the environment every task gets."""

    root: Path
    store: str  # "gcs" or "s3"
    mlflow_uri: str
    config_env: dict[str, str]  # what the autokfp-config ConfigMap gives each task
    secret_env: dict[str, str]  # what the autokfp-credentials Secret gives each task
    platform_env: dict[str, str]  # what the pod gets from the platform (Workload Identity...)
    # what KServe's credential builder gives the storage initializer (from the serving
    # account's Secret and its serving.kserve.io/s3-* annotations)
    storage_init_env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def bucket_uri(self) -> str:
        return f"{'gs' if self.store == 'gcs' else 's3'}://{BUCKET}"

    @property
    def task_env(self) -> dict[str, str]:
        return {**self.config_env, **self.secret_env, **self.platform_env}

    @property
    def pod_env(self) -> dict[str, str]:
        """What a task's container gets in a pod: ``task_env`` and the variables the kubelet
        sets in every container, so the steps take their in-pod paths (the shared-state
        check of their first task, literal passwords refused, the run's namespace). This
        process, which seeds and reads the box, is no pod: it uses ``task_env``."""
        return {**self.task_env, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": "443"}


_EMULATOR = """
import sys, threading
from gcp_storage_emulator.server import create_server
server = create_server("127.0.0.1", int(sys.argv[1]), in_memory=True, default_bucket=sys.argv[2])
server.start()
threading.Event().wait()
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> Iterator[Box]:
    """gcp-storage-emulator (gs://) and an `mlflow server` over HTTP whose artifacts go to gs://."""
    root = tmp_path_factory.mktemp("box")
    logs = root / "logs"
    logs.mkdir()
    gcs_port, mlflow_port = free_port(), free_port()
    gcs_host = f"http://127.0.0.1:{gcs_port}"
    platform_env = {
        "STORAGE_EMULATOR_HOST": gcs_host,
        "GOOGLE_CLOUD_PROJECT": "autokfp-box",
        "DATAHUB_TELEMETRY_ENABLED": "false",
    }
    env = {**os.environ, **platform_env}
    processes = []
    try:
        emulator = subprocess.Popen(
            [sys.executable, "-c", _EMULATOR, str(gcs_port), BUCKET],
            stdout=open(logs / "gcs.log", "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
        processes.append(emulator)
        wait_http(f"{gcs_host}/storage/v1/b", 60, emulator)
        mlflow_uri = _start_mlflow(processes, root, mlflow_port, f"gs://{BUCKET}/mlflow", env)
        config_env = {
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "AUTOKFP_ARTIFACT_ROOT": f"gs://{BUCKET}/autokfp",
            "AUTOKFP_MLFLOW_ARTIFACT_ROOT": f"gs://{BUCKET}/mlflow",
            "AUTOKFP_IMAGE_REGISTRY": IMAGE_REGISTRY,
        }
        yield Box(root=root, store="gcs", mlflow_uri=mlflow_uri, config_env=config_env,
                  secret_env={}, platform_env=platform_env, storage_init_env=platform_env,
                  processes=processes)
    finally:
        _stop(processes)


def _start_mlflow(processes: list[subprocess.Popen], root: Path, port: int, artifact_root: str,
                  env: dict[str, str]) -> str:
    """An `mlflow server` over HTTP on ``port``, its runs in SQLite under ``root`` and its
    artifacts at ``artifact_root`` (not served through it), added to ``processes`` once it
    answers; its log is ``root/logs/mlflow.log``. Returns its address."""
    mlflow = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", artifact_root, "--no-serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(root / "logs" / "mlflow.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
        env=env)
    processes.append(mlflow)
    mlflow_uri = f"http://127.0.0.1:{port}"
    # a start-up check, not a speed limit: on the shared 2-core machine under load ~23 the
    # server (imports, then the SQLite migrations) took more than 120 s to answer
    wait_http(f"{mlflow_uri}/health", 360, mlflow)
    return mlflow_uri


def _stop(processes: list[subprocess.Popen]) -> None:
    stop_processes(reversed(processes), grace=20)


@pytest.fixture(scope="module")
def s3_box(tmp_path_factory) -> Iterator[Box]:
    """moto_server (the S3 API, as MinIO speaks it) and an `mlflow server` over HTTP whose
    artifacts go to s3://, configured the way a MinIO-backed Kubeflow namespace is."""
    import boto3

    root = tmp_path_factory.mktemp("s3box")
    logs = root / "logs"
    logs.mkdir()
    s3_port, mlflow_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    # the ConfigMap names MinIO's address and the registry the images were pushed to
    config_env = {"AWS_ENDPOINT_URL": endpoint, "AUTOKFP_IMAGE_REGISTRY": IMAGE_REGISTRY}
    secret_env = {"AWS_ACCESS_KEY_ID": "box-key", "AWS_SECRET_ACCESS_KEY": "box-secret"}
    platform_env = {"AWS_DEFAULT_REGION": "us-east-1", "DATAHUB_TELEMETRY_ENABLED": "false"}
    env = {**os.environ, **config_env, **secret_env, **platform_env}
    processes: list[subprocess.Popen] = []
    try:
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=open(logs / "moto.log", "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
        processes.append(moto)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if moto.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server on {endpoint} did not start") from None
                time.sleep(0.3)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=secret_env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=secret_env["AWS_SECRET_ACCESS_KEY"],
                     ).create_bucket(Bucket=BUCKET)
        mlflow_uri = _start_mlflow(processes, root, mlflow_port, f"s3://{BUCKET}/mlflow", env)
        config_env.update({
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "AUTOKFP_ARTIFACT_ROOT": f"s3://{BUCKET}/autokfp",
            "AUTOKFP_MLFLOW_ARTIFACT_ROOT": f"s3://{BUCKET}/mlflow",
        })
        # KServe's S3 credential builder: the Secret's keys, and from its annotations
        # (serving.kserve.io/s3-endpoint: 127.0.0.1:<port>, s3-usehttps: "0", s3-region)
        storage_init_env = {**secret_env, "S3_ENDPOINT": f"127.0.0.1:{s3_port}",
                            "AWS_ENDPOINT_URL": endpoint, "S3_USE_HTTPS": "0",
                            "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
        yield Box(root=root, store="s3", mlflow_uri=mlflow_uri, config_env=config_env,
                  secret_env=secret_env, platform_env=platform_env,
                  storage_init_env=storage_init_env, processes=processes)
    finally:
        _stop(processes)
