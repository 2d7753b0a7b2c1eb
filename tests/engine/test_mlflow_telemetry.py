"""MLflow's usage telemetry is off in every process that imports autokfp (and in the images).

Its client thread sets and unsets ``_MLFLOW_TELEMETRY_SESSION_ID`` in ``os.environ`` while
another thread may iterate ``os.environ`` (requests' proxy lookup on every call to the
tracking server): ``make test-cluster``'s register retry failed with KeyError
'_MLFLOW_TELEMETRY_SESSION_ID' inside ``mlflow.log_params``. Under pytest MLflow turns
telemetry off by itself (PYTEST_CURRENT_TEST), so the check runs in a clean interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHECK = ("import autokfp, mlflow; from mlflow.telemetry.utils import is_telemetry_disabled; "
         "import os; print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), is_telemetry_disabled())")


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"))
           and k not in ("CI", "GITHUB_ACTIONS")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True,
                          text=True, timeout=120, check=True).stdout.strip()


def test_importing_autokfp_turns_mlflow_telemetry_off_unless_the_user_turned_it_on():
    assert _run({}) == "true True"
    assert _run({"MLFLOW_DISABLE_TELEMETRY": "false"}).startswith("false")  # the user's choice


def test_the_images_turn_it_off_too():
    dockerfile = (Path(__file__).parents[2] / "images" / "Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    for stage in ("engine-deps AS engine", "${SERVING_DEPS}-deps AS serving"):
        (body,) = [s for s in stages if s.startswith(stage)]
        assert "ENV MLFLOW_DISABLE_TELEMETRY=true" in body, stage
