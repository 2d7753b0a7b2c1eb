"""H2O AutoML alone on a benchmark table, with H2O's defaults and one setting changed at a
time, one cluster, one after the other (session 11: on diamonds, ``nfolds=3`` and
``keep_cross_validation_predictions=True``, both autokfp's, gave every model a fraction of
the time H2O's defaults give it). Prints each run's load, model count, best cross-validated
figure and the first models' training milliseconds.

Why (session 12): H2O's default ``nfolds=-1`` blends instead of cross-validating a table too
large for cross-validation within the budget (predictors x rows / (seconds x threads) >
2064), and either setting switches that rule off. autokfp now applies the rule itself
(``engines.h2o.validation: auto``, docs/training.md).

    python scripts/benchmark_suite.py --out OUT --tables diamonds --systems h2o   # the split
    python scripts/benchmark_h2o_settings.py OUT diamonds default nf3 keep autokfp default

The first run of a fresh cluster runs cold: repeat ``default`` at the end. BUDGET=SECS
changes the 60 s search.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import pandas as pd


def main(out: str, table: str, variants: list[str]) -> None:
    import h2o
    from h2o.automl import H2OAutoML

    from autokfp.training.h2o_automl import H2OCluster

    info = json.loads(open(f"{out}/{table}/task.json").read())
    train = pd.read_parquet(f"{out}/{table}/train.parquet").drop(columns=[info["id_column"]])
    target = info["target"]
    with H2OCluster(nthreads=-1, max_mem_size="2G"):
        for variant in variants:
            started, load = time.monotonic(), os.getloadavg()[0]
            frame = h2o.H2OFrame(train)
            if info["task"] != "regression":
                frame[target] = frame[target].asfactor()
            settings: dict[str, Any] = {"max_runtime_secs": int(os.environ.get("BUDGET", "60")), "seed": 1, "verbosity": None}
            changes: dict[str, dict[str, Any]] = {
                "default": {}, "nf3": {"nfolds": 3}, "nf5": {"nfolds": 5},
                "keep": {"keep_cross_validation_predictions": True},
                "nodl": {"exclude_algos": ["DeepLearning"]},
                "autokfp": {"nfolds": 3, "keep_cross_validation_predictions": True,
                            "exclude_algos": ["DeepLearning"]},
            }
            settings.update(changes[variant])
            automl = H2OAutoML(**settings)
            automl.train(y=target, training_frame=frame)
            board = h2o.automl.get_leaderboard(automl, extra_columns="ALL").as_data_frame()
            metric = board.columns[1]
            print(f"{table} {variant}: load {load:.0f}->{os.getloadavg()[0]:.0f}, "
                  f"{time.monotonic() - started:.0f} s, {len(board)} models, best {metric} "
                  f"{float(board[metric][0]):.4f}, ms per model "
                  f"{board['training_time_ms'].tolist()[:8]}", flush=True)
            h2o.remove_all()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
