"""Compiled pipelines parse with the platform spec of the oldest supported KFP backend.

KFP 2.2.0 (Kubeflow 1.9) pairs with kfp-kubernetes 1.2.0 and kfp-pipeline-spec 0.3.0; its
driver rejects fields it does not know (``optional``, ``secretNameParameter``...). Those
wheels go into a venv of their own (they need protobuf 4), cached under
``.cache/kfp-backend-<version>``, and scripts/check_kfp_backend_protos.py parses every
compiled spec and executor there. Skipped only when that venv cannot be built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autokfp.edge.compilation import MINIMUM_KFP_BACKEND, compile_all

REPO = Path(__file__).resolve().parents[2]
# what the KFP 2.2.0 backend was built with
OLD_WHEELS = ["kfp-kubernetes==1.2.0", "kfp-pipeline-spec==0.3.0", "protobuf>=4.21.1,<5",
              "googleapis-common-protos==1.63.2"]
CHECK = REPO / "scripts" / "check_kfp_backend_protos.py"


@pytest.fixture(scope="module")
def old_backend_python() -> Path:
    venv = REPO / ".cache" / f"kfp-backend-{MINIMUM_KFP_BACKEND}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != json.dumps(OLD_WHEELS):
        # no pip of its own (ensurepip: 6.6 CPU-s of the 8.0 this took): this venv's pip
        # (constraints.txt pins 26.3; --python since 22.3) installs the wheels into it
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip",
                            str(venv)], check=True, capture_output=True, timeout=120)
            subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                            "-q", "--no-deps", "--disable-pip-version-check", *OLD_WHEELS],
                           check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"cannot build the KFP {MINIMUM_KFP_BACKEND} proto venv: {exc} "
                        f"{detail.decode(errors='replace')[-500:]}")
        stamp.write_text(json.dumps(OLD_WHEELS))
    return python


def _check(python: Path, specs: dict[str, Path]) -> tuple[int, dict[str, list[str]]]:
    payload = {}
    for name, path in specs.items():
        docs = list(yaml.safe_load_all(path.read_text()))
        executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] \
            if len(docs) > 1 else {}
        payload[name] = {"pipeline_spec": docs[0], "executors": executors}
    done = subprocess.run([str(python), str(CHECK)], input=json.dumps(payload), text=True,
                          capture_output=True, timeout=120)
    assert done.stdout, done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def test_every_pipeline_parses_on_the_oldest_supported_backend(old_backend_python, tmp_path,
                                                                monkeypatch):
    for name in ("AUTOKFP_OPTIONAL_ENV", "AUTOKFP_GCP_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOKFP_GCP_SECRET", "autokfp-gcp-key")  # the volume mount too
    code, problems = _check(old_backend_python, compile_all(tmp_path))
    assert code == 0 and not any(problems.values()), problems


def test_the_old_protos_do_reject_what_kfp_2_2_refuses(old_backend_python, tmp_path,
                                                      monkeypatch):
    """The check is real: the optional switch (for KFP 2.5+) fails it."""
    monkeypatch.setenv("AUTOKFP_OPTIONAL_ENV", "true")
    written = compile_all(tmp_path)
    code, problems = _check(old_backend_python, {"autonomous-training":
                                                 written["autonomous-training"]})
    assert code == 1
    assert any("optional" in problem for problem in problems["autonomous-training"])
