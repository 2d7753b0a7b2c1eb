"""Parse compiled pipeline specs with an older KFP backend's protos (run in their own venv).

The KFP driver of an older backend parses each task's Kubernetes platform spec with its own
``KubernetesExecutorConfig`` and rejects fields it does not know, so a pipeline compiled by
a newer SDK can fail every task there. This script runs in a venv that holds only the old
``kfp-kubernetes`` and ``kfp-pipeline-spec`` wheels (installed with ``--no-deps``, next to
a matching protobuf) and loads their generated ``_pb2`` modules by path, without importing
the rest of kfp.

Input on stdin: JSON ``{"name": {"pipeline_spec": {...}, "executors": {...}}, ...}``.
Output: JSON ``{"name": ["problem", ...], ...}``; exit code 0 when every list is empty.

Used by tests/compile/test_backend_compat.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import sysconfig
from pathlib import Path


def _load(name: str, relative: str):
    path = Path(sysconfig.get_paths()["purelib"]) / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    from google.protobuf import json_format

    pipeline_pb2 = _load("old_pipeline_spec_pb2", "kfp/pipeline_spec/pipeline_spec_pb2.py")
    kubernetes_pb2 = _load("old_kubernetes_executor_config_pb2",
                           "kfp/kubernetes/kubernetes_executor_config_pb2.py")
    problems: dict[str, list[str]] = {}
    for name, compiled in json.load(sys.stdin).items():
        found = problems.setdefault(name, [])
        try:
            json_format.ParseDict(compiled["pipeline_spec"], pipeline_pb2.PipelineSpec())
        except json_format.ParseError as exc:
            found.append(f"PipelineSpec: {exc}")
        for executor, config in (compiled.get("executors") or {}).items():
            try:
                json_format.ParseDict(config, kubernetes_pb2.KubernetesExecutorConfig())
            except json_format.ParseError as exc:
                found.append(f"{executor}: {exc}")
    print(json.dumps(problems))
    return 0 if not any(problems.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
