"""Time spent outside the engines by scoring: one packaged model, before and after, side by side.

The steps after training (selection, fairness, explanation, evaluation) score a packaged
model many times; Kernel SHAP alone scores ``nsamples x background`` synthetic rows (about
10,800) for each explained row. This script times, in one process on the same rows:

* **frame scoring**: ``MojoScorer.predict`` before (each row turned into a dict and scored
  through ``predict_rows``, what ``predict`` did until this change) and after (each column
  coded at once, each distinct row scored once, the Java arrays reused), on distinct rows
  (the test rows, then copies with their numbers jittered); the answers must be equal to
  the bit;
* **Kernel SHAP**: ``explain.kernel_shap`` on ``--shap-rows`` rows with either scorer
  (seconds per explained row, the largest difference between the two sets of values; numpy
  seeded alike, since Kernel SHAP samples from its global generator). Its synthetic rows
  repeat (a coalition's columns from the row, the rest from 20 background rows), so here
  scoring each distinct row once counts too;
* the anchor: the same model's ``predict_records`` on one row (the serving fast path, which
  this change does not touch), so a busy machine shows as a slower anchor.

The model is an H2O package (an AutoKeras one has no MOJO: it is reported and skipped).
Pass a run folder of ``autokfp run`` (``<home>/pipeline_root/autonomous-training-...``):
the packages of both engines, the features' train and test rows are found in it.

    python scripts/benchmark_scoring_overhead.py --run-dir ~/.autokfp/pipeline_root/autonomous-training-...
    python scripts/benchmark_scoring_overhead.py --run-dir DIR --rows 20000 --shap-rows 5

It always exits 0 (a benchmark reports, it does not gate).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _old_predict(scorer: Any, features: pd.DataFrame) -> np.ndarray:
    """``MojoScorer.predict`` as it was: a dict per row through ``predict_rows``."""
    columns = [c for c in scorer._columns if c in features.columns]
    values = [features[c].to_numpy(dtype=object) for c in columns]
    rows = ({name: column[i] for name, column in zip(columns, values)} for i in range(len(features)))
    return scorer.predict_rows(rows, len(features))


def _timed(function: Any, repeats: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def _packages(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("for-loop-*/train-model/model/MLmodel"))


def bench_package(folder: Path, train: pd.DataFrame, test: pd.DataFrame, rows: int,
                  shap_rows: int) -> None:
    from autokfp.governance import explain
    from autokfp.modeling.features import apply_features
    from autokfp.modeling.model_package import load_model_package

    model = load_model_package(str(folder)).unwrap_python_model()
    meta, plan = model.meta, model.plan
    print(f"\n{folder}: {meta['engine']} {meta['task']} model, leader {meta.get('leader')}")
    if meta["engine"] != "h2o":
        print("  not an H2O package: its scoring does not go through the MOJO (skipped)")
        return
    scorer = model.scorer
    inputs = test[list(plan.input_columns)]
    frame = pd.concat([inputs] * (rows // len(inputs) + 1), ignore_index=True).head(rows)
    # distinct rows (the scorer scores a repeated row once): the copies' numbers jittered
    rng = np.random.default_rng(0)
    for column in plan.numeric:
        if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column]):
            values = frame[column].astype("float64")
            jitter = rng.normal(0.0, 0.01 * (values.std() or 1.0), len(frame))
            jitter[: len(inputs)] = 0.0
            frame[column] = values + jitter
    features = apply_features(frame, plan)
    distinct = len(features.drop_duplicates())
    record = inputs.head(1).astype(object).where(inputs.head(1).notna(), None).to_dict("records")
    anchor, _ = _timed(lambda: model.predict_records(record), repeats=50)
    before, old = _timed(lambda: _old_predict(scorer, features))
    after, new = _timed(lambda: scorer.predict(features))
    print(f"  anchor: predict_records of one row {anchor * 1e3:.2f} ms")
    print(f"  {'':28} {'before':>10} {'after':>10} {'ratio':>7}")
    print(f"  {f'frame scoring, {len(features)} rows (s)':28} {before:10.3f} {after:10.3f} "
          f"{before / after:6.1f}x   equal to the bit: {bool(np.array_equal(old, new))} "
          f"({distinct} distinct rows)")
    if explain.output_name(meta) is None or shap_rows <= 0:
        print(f"  Kernel SHAP: not run for a {meta['task']} model")
        return
    background = train.sample(n=min(20, len(train)), random_state=0)
    explained = test.head(shap_rows)
    timings, values = {}, {}
    explain.kernel_shap(model, plan, meta, background, explained.head(1))  # warm both paths up
    for label, predict in (("before", lambda f: _old_predict(scorer, f)), ("after", None)):
        if predict is not None:
            model.scorer.predict = predict  # the instance attribute shadows the method
        np.random.seed(0)  # Kernel SHAP samples coalitions from numpy's global generator
        started = time.perf_counter()
        result = explain.kernel_shap(model, plan, meta, background, explained)
        timings[label] = (time.perf_counter() - started) / len(explained)
        values[label] = np.asarray(result["values"])
        model.scorer.__dict__.pop("predict", None)
    difference = float(np.max(np.abs(values["before"] - values["after"])))
    print(f"  {f'Kernel SHAP, s per row ({shap_rows} rows)':28} {timings['before']:10.3f} "
          f"{timings['after']:10.3f} {timings['before'] / timings['after']:6.1f}x   "
          f"largest difference in a SHAP value: {difference:.3g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="a run folder under <home>/pipeline_root")
    parser.add_argument("--rows", type=int, default=10_800,
                        help="rows of frame scoring (default: one Kernel SHAP row's batch)")
    parser.add_argument("--shap-rows", type=int, default=3)
    args = parser.parse_args(argv)
    train = pd.read_parquet(args.run_dir / "engineer-features" / "train")
    test = pd.read_parquet(args.run_dir / "engineer-features" / "test")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.run_dir}: {len(train)} training, {len(test)} test rows; "
          f"{os.cpu_count()} cores, load average {load:.1f}")
    packages = _packages(args.run_dir)
    if not packages:
        print("no trained packages under for-loop-*/train-model/model", file=sys.stderr)
    for folder in packages:
        bench_package(folder, train, test, args.rows, args.shap_rows)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
