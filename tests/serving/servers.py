"""Start and stop the real predictor (``python -m autokfp.serving``) in a subprocess, and
what its tests share: the model's feature plan, rows as plain JSON values."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from autokfp.modeling.features import FeaturePlan
from tests.conftest import _free_port

READY_TIMEOUT = 120.0


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_root: Path
    output: Path

    def output_tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])


def start(model_dir: Path, workdir: Path, model: str = "churn", env: dict[str, str] | None = None,
          command: list[str] | None = None) -> Server:
    """The server on a free port of 127.0.0.1 (not waited for: see ``wait_ready``)."""
    port = _free_port()
    environment = {**os.environ, "MODEL_DIR": str(model_dir), "MODEL_NAME": model,
                   "MODEL_VERSION": "1", "PORT": str(port), "HOST": "127.0.0.1",
                   "AUTOKFP_ARTIFACT_ROOT": str(workdir / "artifacts"), "PYTHONWARNINGS": "ignore"}
    environment.pop("AUTOKFP_PREDICTION_LOG", None)
    environment.update(env or {})
    output = workdir / f"server-{port}.log"
    with open(output, "wb") as sink:
        process = subprocess.Popen(command or [sys.executable, "-m", "autokfp.serving"],
                                   env=environment, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Server(process, f"http://127.0.0.1:{port}", workdir / "artifacts", output)


def ready(server: Server) -> bool:
    try:
        return httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready(server):
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n"
                        f"{server.output_tail()}")
        if time.monotonic() > deadline:
            stop(server)
            pytest.fail(f"the server was not ready after {READY_TIMEOUT:.0f}s:\n"
                        f"{server.output_tail()}")
        time.sleep(0.3)


def stop(server: Server) -> int:
    """SIGTERM, then SIGKILL after 30 s; returns the exit code and checks nothing is left."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
    with pytest.raises(ProcessLookupError):  # no process of the server's group survives it
        os.killpg(server.process.pid, 0)
    return server.process.returncode


@contextlib.contextmanager
def warm_predictor_process(log_path: Path) -> Iterator[Any]:
    """A local run's warm predictor process (``autokfp.serving.warm_predictor``), started and
    named in the environment while open: ``deployment.LocalServing.start`` (the deploy step's
    local predictors) forks each predictor from it, as a local run's deploy step does, instead
    of starting a new interpreter that imports KServe, shap and the model package's modules
    again (~10 CPU-s a predictor). The predictor runs the same ``main`` on the same model
    either way; the new-interpreter path is tests/serving/test_warm_predictor.py's and
    ``start``'s (above). Yields the handle (None where processes cannot fork)."""
    from autokfp.serving.warm_predictor import warm_predictors

    with warm_predictors(log_path) as warm:
        if warm is not None:
            warm.start()
        yield warm


def feature_plan(model_dir: Path) -> FeaturePlan:
    """The feature plan a packaged model carries."""
    return FeaturePlan.from_json((model_dir / "artifacts" / "plan.json").read_text())


def json_value(value: Any) -> Any:
    """A frame's cell as a request carries it: plain Python, missing as None, times as ISO."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
