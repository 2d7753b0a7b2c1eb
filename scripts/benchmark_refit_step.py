"""The refit step's cost on a finished run's package (`refit_model` as the pipeline runs it):
wall seconds, CPU-seconds of the step's process and of its children (the refit child and
its H2O JVM, reaped), and the step's own figures (the held-out fit, the estimate).

    python scripts/benchmark_refit_step.py RUN_DIR [--label NAME]

RUN_DIR is a local run's pipeline_root folder (its resolve-config, select-model,
evaluate-model and engineer-features outputs are read). The package is refitted with
``training.refit_for_serving: always`` into a scratch folder (removed afterwards). Run two
checkouts side by side (PYTHONPATH pointing at each) and compare CPU-seconds: under the
shared machine's load the wall time is noise. A refit child killed at its limit leaves its
JVM's CPU uncounted (it was not reaped by the child).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    run = args.run_dir
    import autokfp
    from autokfp.steps.refit_model import refit_model

    config = json.loads((run / "resolve-config" / "executor_output.json").read_text())
    config = config["parameterValues"]["Output"]
    config["training"] = {**config["training"], "refit_for_serving": "always"}
    scratch = Path(tempfile.mkdtemp(prefix="autokfp-bench-refit-"))
    try:
        wall, cpu = time.monotonic(), time.process_time()
        result = refit_model(config, str(run / "select-model" / "model"),
                             str(run / "evaluate-model" / "evaluation"),
                             str(run / "engineer-features" / "train"),
                             str(run / "engineer-features" / "test"), str(scratch / "served"))
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        served = json.loads((scratch / "served" / "artifacts" / "meta.json").read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"label": args.label, "autokfp": str(Path(autokfp.__file__).parent),
              "served": result.served, "wall_seconds": round(wall, 1),
              "step_cpu_seconds": round(cpu, 1),
              "children_cpu_seconds": round(children.ru_utime + children.ru_stime, 1),
              "served_fitted_rows": served.get("fitted_rows"), "figures": result.figures}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
