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
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BUCKET = "autokfp-box"


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


@dataclass
class Box:
    """The running services and the environment every task gets."""

    root: Path
    gcs_host: str
    mlflow_uri: str
    config_env: dict[str, str]  # what the autokfp-config ConfigMap gives each task
    platform_env: dict[str, str]  # what the pod gets from the platform (Workload Identity...)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def task_env(self) -> dict[str, str]:
        return {**self.config_env, **self.platform_env}


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
        mlflow = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--default-artifact-root", f"gs://{BUCKET}/mlflow", "--no-serve-artifacts",
             "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
            stdout=open(logs / "mlflow.log", "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
        processes.append(mlflow)
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        wait_http(f"{mlflow_uri}/health", 120, mlflow)
        config_env = {
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "AUTOKFP_ARTIFACT_ROOT": f"gs://{BUCKET}/autokfp",
            "AUTOKFP_MLFLOW_ARTIFACT_ROOT": f"gs://{BUCKET}/mlflow",
        }
        yield Box(root=root, gcs_host=gcs_host, mlflow_uri=mlflow_uri, config_env=config_env,
                  platform_env=platform_env, processes=processes)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
