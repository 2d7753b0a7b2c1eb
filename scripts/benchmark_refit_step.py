"""The refit step's cost on a finished run's package (`refit_model` as the pipeline runs it):
wall seconds, CPU-seconds of the step's process and of its children (the refit child and
its H2O JVM, reaped), and the step's own figures (the held-out fit, the estimate).

    python scripts/benchmark_refit_step.py RUN_DIR [--label NAME] [--suite-test FOLDER --save NPY]

RUN_DIR is a local run's pipeline_root folder (its resolve-config, select-model,
evaluate-model and engineer-features outputs are read). The package is refitted with
``training.refit_for_serving: always`` into a scratch folder (removed afterwards). Run two
checkouts side by side (PYTHONPATH pointing at each) and compare CPU-seconds: under the
shared machine's load the wall time is noise. A refit child killed at its limit leaves its
JVM's CPU uncounted (it was not reaped by the child). ``--suite-test FOLDER`` (a
``benchmark_suite.py`` table folder: its ``test.parquet`` and ``task.json``) scores the served
package on the suite's test rows too: the RMSE (or the table's metric) in the report, and the
predictions saved to ``--save`` for ``benchmark_suite.paired_difference``.
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
    parser.add_argument("--suite-test", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None)
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
        suite = _suite_score(scratch / "served", args.suite_test, args.save) \
            if args.suite_test else {}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"label": args.label, "autokfp": str(Path(autokfp.__file__).parent),
              "served": result.served, "wall_seconds": round(wall, 1),
              "step_cpu_seconds": round(cpu, 1),
              "children_cpu_seconds": round(children.ru_utime + children.ru_stime, 1),
              "served_fitted_rows": served.get("fitted_rows"), "figures": result.figures,
              **suite}
    print(json.dumps(report), flush=True)


def _suite_score(package: Path, folder: Path, save: Path | None) -> dict[str, float]:
    """The served package's figure on a suite table's test rows (``benchmark_suite.score``),
    its predictions saved to ``save``."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).parent))
    from benchmark_suite import METRIC, score, truth_of  # type: ignore[import-not-found]

    from autokfp.modeling.model_package import load_model_package

    info = json.loads((folder / "task.json").read_text())
    test = pd.read_parquet(folder / "test.parquet")
    out = load_model_package(str(package)).predict(test.drop(columns=[info["target"]]))
    if info["task"] == "regression":
        values = out["prediction"].to_numpy(dtype="float64")
    else:
        values = out[[f"probability_{label}" for label in info["labels"]]].to_numpy(
            dtype="float64")
    if save is not None:
        np.save(save, values)
    metric = METRIC[info["task"]]
    truth = truth_of(test, info["target"], info["task"], info["labels"])
    return {f"suite_test_{metric}": round(score(metric, truth, values, info["task"]), 5)}


if __name__ == "__main__":
    sys.exit(main())
