"""How much search H2O AutoML gets from a budget: its JVM started cold inside the training
call (the anchor, ``engines.h2o.warm_start: false``) against started early and warmed while
the training step prepares its rows (``warm_start: true``, the default).

Per public table bundled in an installed package (``scripts/benchmark_suite.py``'s loaders
and fixed split: fair from statsmodels, breast_cancer and diabetes from scikit-learn), the
training rows go through the pipeline's own steps (profile, ``engineer_features``) once, then
``train_model`` with the H2O engine and ``--budget`` seconds (default 60, no model cap) runs
in a fresh process per trial, both ways, interleaved (the order alternates per table and
round) because the machine is shared and its load moves. Each trial records the models
AutoML built, its search seconds against the budget, the cluster's start and warm-up seconds
and whether they overlapped the step's data preparation, the train step's wall seconds, the
leader and its cross-validated metric, and the 1-minute load average before and after.

    nice -n 10 python scripts/benchmark_h2o_warm.py --out /work/bench-warm --rounds 2
    python scripts/benchmark_h2o_warm.py --out /work/bench-warm --report
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TABLES = ["fair", "breast_cancer", "diabetes"]
MODES = {"cold": False, "warm": True}


def prepare(name: str, out: Path) -> Path:
    """The table's training rows through profile + engineer_features, once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark_suite import load_table, split

    from autokfp.catalog.profiling import profile_frame
    from autokfp.steps.engineer_features import engineer_features

    work = out / name
    if (work / "plan.json").is_file():
        return work
    frame, target, id_column, task = load_table(name)
    train, _test = split(frame, target, task)
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    train.to_parquet(data / f"{name}.parquet", index=False)
    (work / "task.json").write_text(json.dumps({"target": target, "id_column": id_column,
                                                "task": task}))
    config = _config(name, work, 60, True)
    schema = profile_frame(train, f"files/{name}.parquet", "file", str(data))
    (work / "schema.json").write_text(schema.to_json())
    engineer_features(config, str(data / f"{name}.parquet"), str(work / "schema.json"),
                      str(work / "train.parquet"), str(work / "holdout.parquet"),
                      str(work / "plan.json"))
    return work


def _config(name: str, work: Path, budget: int, warm: bool) -> Any:
    from autokfp.config import parse_config

    info = json.loads((work / "task.json").read_text())
    return parse_config({
        "name": f"warm-{name.lower().replace('_', '-')}",
        "sources": [{"name": "files", "kind": "folder", "path": str(work / "data")}],
        "training": {"dataset": f"files/{name}.parquet", "target": info["target"],
                     "id_column": info["id_column"], "task": info["task"]},
        "budget": {"max_runtime_secs": budget},
        "engines": {"h2o": {"max_mem_size": "2G", "warm_start": warm}},
        "quality": {"min_rows": 100},
    })


def trial(name: str, work: Path, mode: str, budget: int, tag: str) -> dict[str, Any]:
    """(in a fresh process) ``train_model`` with H2O, ``mode`` cold or warm."""
    from autokfp.steps.train_model import train_model

    load_before = os.getloadavg()[0]
    config = _config(name, work, budget, MODES[mode])
    model = work / f"model-{tag}-{mode}"
    started = time.monotonic()
    summary = train_model(config, str(work / "train.parquet"), str(work / "plan.json"),
                          str(model), engine="h2o")
    wall = time.monotonic() - started
    engine = json.loads((model / "artifacts" / "engine" / "engine.json").read_text())
    meta = json.loads((model / "artifacts" / "meta.json").read_text())
    cv = meta.get("cv_metrics") or {}
    metric = meta["primary_metric"]
    return {"table": name, "mode": mode, "tag": tag, "budget": budget,
            "models_trained": int(summary.get("models_trained") or 0),
            "automl_secs": engine.get("automl_secs"), "seconds": engine.get("seconds"),
            "warm": engine.get("warm_start"), "train_step_wall": round(wall, 1),
            "leader": engine.get("leader"), "algo": engine.get("algo"),
            "cv_metric": metric, "cv": cv.get(f"cv_{metric}"),
            "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1)}


def run(out: Path, tables: list[str], rounds: int, budget: int, tag: str) -> None:
    for name in tables:
        prepare(name, out)
    for number in range(rounds):
        for index, name in enumerate(tables):
            order = ["cold", "warm"] if (number + index) % 2 == 0 else ["warm", "cold"]
            for mode in order:
                label = f"{tag}{number}"
                result_path = out / name / f"result-{label}-{mode}.json"
                if result_path.is_file():
                    continue
                completed = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--trial", name, mode,
                     "--out", str(out), "--budget", str(budget), "--tag", label],
                    capture_output=True, text=True, timeout=10 * budget + 900)
                if completed.returncode != 0:
                    print(f"{name} {mode}: failed\n{completed.stderr[-2000:]}", flush=True)
                    continue
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                result_path.write_text(json.dumps(result, indent=2))
                print(_line(result), flush=True)


def _line(r: dict[str, Any]) -> str:
    seconds = r.get("seconds") or {}
    warm = r.get("warm") or {}
    return (f"| {r['table']} | {r['mode']} | {r['tag']} | {r['models_trained']} | "
            f"{seconds.get('automl', '-')} / {r['automl_secs']} | "
            f"{seconds.get('cluster_start', '-')} | {warm.get('cluster_start', '-')} / "
            f"{warm.get('overlapped', '-')} / {warm.get('waited', '-')} / "
            f"{warm.get('warm_up', '-')} ({int(warm.get('warm_models', 0))}) | "
            f"{r['train_step_wall']} | {r['algo']} | {r['cv_metric']} {_fmt(r['cv'])} | "
            f"{r['load_before']}→{r['load_after']} |")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def report(out: Path) -> None:
    print("| table | mode | round | models built | AutoML s / budget | cold: JVM start s in "
          "train | warm: JVM start / beside the preparation / waited by train / warm-up s "
          "(models) | train step wall s | leader | cv | load 1-min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(out.glob("*/result-*.json")):
        result = json.loads(path.read_text())
        if result.get("cv") is None:  # (a trial recorded before the cv_ key was read)
            meta = path.parent / f"model-{result['tag']}-{result['mode']}" / "artifacts" / "meta.json"
            if meta.is_file():
                cv = json.loads(meta.read_text()).get("cv_metrics") or {}
                result["cv"] = cv.get(f"cv_{result['cv_metric']}")
        print(_line(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-warm"))
    parser.add_argument("--tables", nargs="+", default=TABLES)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--tag", default="r")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--trial", nargs=2, metavar=("TABLE", "MODE"))
    args = parser.parse_args(argv)
    # a throw-away home of the benchmark's own, never the user's or a server's
    os.environ["AUTOKFP_HOME"] = str((args.out / "home").resolve())
    for variable in ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT",
                     "AUTOKFP_MLFLOW_ARTIFACT_ROOT"):
        os.environ.pop(variable, None)
    if args.trial:
        name, mode = args.trial
        print(json.dumps(trial(name, args.out / name, mode, args.budget, args.tag)))
        return 0
    if args.report:
        report(args.out)
        return 0
    run(args.out, args.tables, args.rounds, args.budget, args.tag)
    report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
