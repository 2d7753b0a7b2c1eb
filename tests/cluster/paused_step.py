"""The ``register_model`` step as its task's container runs it, held at one moment so the test
can ``docker kill`` it there: ``python paused_step.py SPEC.json`` (mounted into the runtime
image by tests/cluster/test_cluster_on_s3.py).

SPEC.json holds the step's arguments (config, model_path, evaluation_path, schema_path,
registration_path) and ``pause``: ``["module:Class.method", n]`` or null. Just before the
n-th call of that method the step prints ``PAUSED`` and waits, everything before that call
done and nothing of it, until the container is killed (SIGKILL: no ``finally`` or
``atexit`` runs, as when the kubelet or the OOM killer ends a pod). With ``pause`` null the
step runs to its end: the retry KFP's ``set_retry`` would run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def pause_before(target: str, n: int) -> None:
    module, qualified = target.split(":")
    owner: Any = importlib.import_module(module)
    *path, attribute = qualified.split(".")
    for part in path:
        owner = getattr(owner, part)
    method = getattr(owner, attribute)
    calls = 0

    def paused(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            print(f"PAUSED before call {n} of {qualified}", flush=True)
            while True:
                time.sleep(60)
        return method(*args, **kwargs)

    setattr(owner, attribute, paused)


def main(spec_path: str) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("pause"):
        pause_before(spec["pause"][0], int(spec["pause"][1]))
    from autokfp.steps.register_model import register_model

    register_model(spec["config"], spec["model_path"], spec["evaluation_path"],
                   spec["schema_path"], spec["registration_path"])
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
