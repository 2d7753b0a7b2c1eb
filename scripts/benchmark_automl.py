"""Benchmark the training path: the selected champion against each engine alone, same rows.

For each dataset (sklearn's bundled breast_cancer, wine and diabetes, and the example churn
data) this runs what the ``autonomous-training`` pipeline runs, through the same stage
functions: the fixed held-out split and feature plan (``engineer_features``), every engine
of ``--engines`` (default: the registry's default engines, H2O AutoML and AutoKeras) at the
same ``--budget`` seconds each (``train``), and selection (``select_model``: every candidate
on the same test rows, paired bootstrap, validation reports). It prints per dataset the
primary metric on the test rows of (a) the selected champion, (b) each engine alone, then
the wall times: each engine's
against its budget, and the time spent outside the engines (features, packaging,
selection) as a share of the whole. Everything runs in a throw-away AUTOKFP_HOME, so there
is no earlier champion.

Targets (from the issue): the champion is never worse than the best single engine beyond
noise; time outside the engines is under 10% of the wall time; every engine keeps its
budget within 10%. The engines run one after the other here (in a cluster they run in
parallel, each on its own node), so the pipeline's wall time is about one budget less.

    python scripts/benchmark_automl.py --budget 60
    python scripts/benchmark_automl.py --budget 30 --datasets breast_cancer churn --json out.json
    python scripts/benchmark_automl.py --engines h2o --engine-setting h2o.max_mem_size=3G

With ``--isolate`` each engine runs in a child process as the training components do
(adds a Python start-up per engine to the time outside the engines).

Other AutoML systems, for comparison: ``--baselines flaml`` also runs FLAML with its default
learners (LightGBM, XGBoost, random forest, extra trees, …) for the same budget on the same
training rows and the same engineered features, scored on the same test rows
(``pip install -e '.[bench]'`` installs it); ``--baselines gbm`` fits one
scikit-learn HistGradientBoosting model with default settings (no search), a floor any
AutoML system should beat.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

DATASETS = ("breast_cancer", "wine", "diabetes", "churn")
BASELINES = ("flaml", "gbm")
FLAML_METRICS = {"auc": "roc_auc", "logloss": "log_loss", "accuracy": "accuracy", "f1": "f1",
                 "rmse": "rmse", "mae": "mae", "r2": "r2"}


def load_frame(name: str) -> tuple[pd.DataFrame, str, str | None]:
    """(frame, target column, id column) of a bundled dataset."""
    if name == "churn":
        from autokfp.examples.churn import generate_churn

        return generate_churn(6000, seed=7), "churned", "customer_id"
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "diabetes": datasets.load_diabetes}[name]
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    frame.insert(0, "row_id", range(len(frame)))
    return frame, "target", "row_id"


def run_baseline(kind: str, work: Path, budget: int, metric: str, seed: int = 1) -> dict[str, Any]:
    """Another system on the pipeline's own split and engineered features: test metric, seconds."""
    import numpy as np

    from autokfp.modeling.evaluation import metric_value
    from autokfp.modeling.features import FeaturePlan, apply_features

    plan = FeaturePlan.from_json((work / "plan.json").read_text())
    train, test = pd.read_parquet(work / "train.parquet"), pd.read_parquet(work / "test.parquet")
    x_train, x_test = apply_features(train, plan), apply_features(test, plan)
    for column in plan.categorical_features:  # both systems take pandas categoricals
        categories = pd.Index(x_train[column].dropna().astype(str).unique())
        x_train[column] = pd.Categorical(x_train[column].astype("string"), categories=categories)
        x_test[column] = pd.Categorical(x_test[column].astype("string"), categories=categories)
    task = plan.task
    if task == "regression":
        y_train = train[plan.target].astype("float64").to_numpy()
        truth = test[plan.target].astype("float64").to_numpy()
    else:
        labels = [str(c) for c in plan.classes]
        y_train = np.array([labels.index(str(v)) for v in train[plan.target]])
        truth = np.array([labels.index(str(v)) for v in test[plan.target]])
    started = time.monotonic()
    if kind == "flaml":
        try:
            from flaml import AutoML
        except ImportError:
            return {"status": "not installed: pip install -e '.[bench]'", "metric": None,
                    "wall_seconds": 0.0}
        model: Any = AutoML()
        flaml_metric = FLAML_METRICS[metric]
        if metric == "auc" and task == "multiclass":
            flaml_metric = "roc_auc_ovr"
        model.fit(x_train, y_train, task="regression" if task == "regression" else "classification",
                  metric=flaml_metric, time_budget=budget, seed=seed, verbose=0, n_jobs=-1)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        estimator = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
        model = estimator(categorical_features="from_dtype", random_state=seed).fit(x_train, y_train)
    wall = time.monotonic() - started
    scores = model.predict(x_test) if task == "regression" else model.predict_proba(x_test)
    return {"status": "trained", "metric": metric_value(metric, truth, np.asarray(scores), task),
            "wall_seconds": round(wall, 1)}


def run_dataset(name: str, budget: int, root: Path, isolate: bool,
                baselines: tuple[str, ...] = (),
                engines: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    from autokfp.catalog.profiling import profile_frame
    from autokfp.config import parse_config
    from autokfp.steps import engineer_features as engineer_features_step
    from autokfp.steps import select_model as select_model_step
    from autokfp.steps import train_model as train_step

    frame, target, id_column = load_frame(name)
    folder = root / name / "data"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / f"{name}.parquet", index=False)
    config = parse_config({
        "name": f"bench-{name.replace('_', '-')}",
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": f"files/{name}.parquet", "target": target,
                     "id_column": id_column},
        "budget": {"max_runtime_secs": budget},
        **({"engines": engines} if engines else {}),
        "quality": {"min_rows": 100},
    })
    names = config.engine_names()
    work = root / name
    schema = profile_frame(frame, f"files/{name}.parquet", "file", str(folder))
    (work / "schema.json").write_text(schema.to_json())
    frame.to_parquet(work / "dataset.parquet", index=False)

    started = time.monotonic()
    engineered = engineer_features_step.engineer_features(config, work / "dataset.parquet", work / "schema.json",
                                       work / "train.parquet", work / "test.parquet",
                                       work / "plan.json")
    feature_seconds = time.monotonic() - started
    candidates, walls, inside = {}, {}, {}
    for engine in names:
        mark = time.monotonic()
        summary = train_step.train_model(config, str(work / "train.parquet"), str(work / "plan.json"),
                                     str(work / f"model-{engine}"), engine=engine,
                                     isolate=isolate, tolerate_failure=True)
        walls[engine] = time.monotonic() - mark
        inside[engine] = float(summary.get("engine_seconds") or walls[engine])
        candidates[engine] = str(work / f"model-{engine}")
    mark = time.monotonic()
    document = select_model_step.select_model(config, candidates, str(work / "test.parquet"),
                                   str(work / "evaluation.json"), str(work / "selected")).record
    select_seconds = time.monotonic() - mark
    total = time.monotonic() - started

    metric = document["primary_metric"]
    rows = {row["engine"]: row for row in document["candidates"]}
    comparison = {}
    best_single = document["selected"]["engine"]
    for engine in names:
        row = rows.get(engine, {})
        comparison[engine] = {"status": row.get("status"), "metric": row.get(f"test_{metric}"),
                              "p_better_than_selected": row.get("p_better_than_selected"),
                              "wall_seconds": round(walls[engine], 1),
                              "engine_seconds": round(inside[engine], 1),
                              "budget_ratio": round(walls[engine] / budget, 3),
                              "reason": row.get("reason") or ""}
    outside = total - sum(inside.values())
    others = {kind: run_baseline(kind, work, budget, metric) for kind in baselines}
    return {
        "dataset": name, "task": engineered.task, "metric": metric,
        "train_rows": engineered.train_rows, "test_rows": engineered.test_rows,
        "features": engineered.features, "budget_secs": budget,
        "champion": {"engine": best_single, "metric": document["metrics"].get(metric)},
        "engines": comparison, "baselines": others,
        "seconds": {"total": round(total, 1), "features": round(feature_seconds, 1),
                    "select": round(select_seconds, 1), "outside_engines": round(outside, 1),
                    "outside_share": round(outside / total, 3)},
    }


def print_report(results: list[dict[str, Any]]) -> None:
    engines = list(dict.fromkeys(e for result in results for e in result["engines"]))
    header = (f"{'dataset':14} {'task':10} {'metric':7} {'champion':>16} "
              + "".join(f"{e[:10]:>11}" for e in engines)
              + "".join(f"{(e[:7] + ' s'):>10}" for e in engines)
              + f" {'budget':>6} {'total s':>8} {'outside':>8}")
    print(header)
    print("-" * len(header))
    for result in results:
        def value(entry: dict[str, Any] | None) -> str:
            if entry is None:
                return "-"
            return f"{entry['metric']:.4f}" if entry["metric"] is not None else entry["status"]

        def wall(entry: dict[str, Any] | None) -> str:
            return "-" if entry is None else f"{entry['wall_seconds']:.1f}"

        rows = [result["engines"].get(e) for e in engines]
        champion = f"{result['champion']['metric']:.4f} ({result['champion']['engine']})"
        seconds = result["seconds"]
        print(f"{result['dataset']:14} {result['task']:10} {result['metric']:7} {champion:>16} "
              + "".join(f"{value(row):>11}" for row in rows)
              + "".join(f"{wall(row):>10}" for row in rows)
              + f" {result['budget_secs']:6d} {seconds['total']:8.1f} "
              f"{seconds['outside_share']:8.1%}")
    print()
    if any(result.get("baselines") for result in results):
        print("other systems, same budget, training rows, features and test rows:")
        for result in results:
            for kind, entry in result.get("baselines", {}).items():
                figure = f"{entry['metric']:.4f}" if entry["metric"] is not None else entry["status"]
                champion = result["champion"]["metric"]
                print(f"  {result['dataset']:14} {kind:6} {result['metric']:7} {figure:>10} "
                      f"(champion {champion:.4f})  {entry['wall_seconds']:.1f}s")
        print()
    for result in results:
        for engine, entry in result["engines"].items():
            if entry["budget_ratio"] > 1.1:
                print(f"over budget: {result['dataset']} {engine} took {entry['wall_seconds']}s "
                      f"for a {result['budget_secs']}s budget ({entry['budget_ratio']:.0%})")
            if entry["reason"]:
                print(f"{result['dataset']} {engine}: {entry['reason']}")
        if result["seconds"]["outside_share"] > 0.10:
            print(f"outside the engines: {result['dataset']} spent "
                  f"{result['seconds']['outside_engines']}s ({result['seconds']['outside_share']:.0%})"
                  " in features, packaging and selection")


def engine_settings(names: list[str] | None, settings: list[str]) -> dict[str, dict[str, Any]]:
    """``engines`` of the run config from --engines and --engine-setting ENGINE.KEY=VALUE."""
    import yaml

    from autokfp.engine_registry import default_engines

    engines: dict[str, dict[str, Any]] = {name: {} for name in (names or default_engines())}
    for item in settings:
        key, sep, value = item.partition("=")
        engine, dot, setting = key.partition(".")
        if not (sep and dot and setting):
            raise SystemExit(f"--engine-setting {item!r}: write ENGINE.KEY=VALUE, e.g. "
                             "h2o.max_mem_size=3G")
        if engine in engines:  # a setting of an engine that is not trained is ignored
            engines[engine][setting] = yaml.safe_load(value)
    return engines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=60, help="seconds per engine (default 60)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--isolate", action="store_true",
                        help="run each engine in a child process, as the components do")
    parser.add_argument("--baselines", nargs="*", default=[], choices=BASELINES,
                        help="also run other systems on the same rows (flaml needs '.[bench]')")
    parser.add_argument("--engines", nargs="+", default=None,
                        help="engines to train (default: the registry's default engines)")
    parser.add_argument("--engine-setting", action="append", default=[], metavar="ENGINE.KEY=VALUE",
                        help="an engine setting (YAML value), e.g. h2o.max_mem_size=3G; repeatable")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the engines' logs")
    args = parser.parse_args(argv)
    engines = engine_settings(args.engines, args.engine_setting)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="autokfp-bench-") as scratch:
        root = Path(scratch)
        os.environ["AUTOKFP_HOME"] = str(root / "home")
        for name in ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AUTOKFP_MLFLOW_ARTIFACT_ROOT"):
            os.environ.pop(name, None)
        results = []
        for name in args.datasets:
            print(f"... {name} ({args.budget}s per engine)", file=sys.stderr, flush=True)
            results.append(run_dataset(name, args.budget, root, args.isolate,
                                       tuple(args.baselines), engines))
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
