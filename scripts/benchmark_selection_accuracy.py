"""Did selection pick the engine that is better on fresh rows? For finished
``scripts/benchmark_suite.py --mode steps`` runs: the H2O and AutoKeras candidates
(``model-<engine>``) on the suite's test rows, the paired bootstrap se of their difference
(200 resamples), the selected engine, and each package's out-of-sample rows (kind/count).

    python scripts/benchmark_selection_accuracy.py <table folder>:<tag> ...

Prints one JSON line per run (docs/training.md, "Session 17").
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from autokfp.modeling.evaluation import encode_labels, metric_value, probability_matrix, rank_key
from autokfp.modeling.model_package import load_model_package


def main(folders):
    for spec in folders:
        table_dir, tag = spec.split(":")
        table = Path(table_dir)
        work = table / f"autokfp-{tag}"
        info = json.loads((table / "task.json").read_text())
        test = pd.read_parquet(table / "test.parquet")
        truth = test[info["target"]]
        ev = json.loads((work / "evaluation.json").read_text())
        metric = ev["primary_metric"]
        preds, meta = {}, None
        for engine in ("h2o", "autokeras"):
            path = work / f"model-{engine}"
            if not (path / "MLmodel").exists():
                continue
            model = load_model_package(str(path))
            meta = json.loads((path / "artifacts" / "meta.json").read_text())
            out = model.predict(test.drop(columns=[info["target"]]))
            preds[engine] = out
        task = meta["task"]
        if task == "regression":
            codes = truth.astype(float).to_numpy()
            scores = {e: p["prediction"].to_numpy(float) for e, p in preds.items()}
        else:
            codes = encode_labels(truth.astype(str), meta)
            scores = {e: probability_matrix(p, meta) for e, p in preds.items()}
        value = {e: metric_value(metric, codes, s, task) for e, s in scores.items()}
        rng = np.random.default_rng(0)
        diffs = []
        for _ in range(200):
            i = rng.integers(0, len(codes), len(codes))
            try:
                diffs.append(metric_value(metric, codes[i], scores["h2o"][i], task)
                             - metric_value(metric, codes[i], scores["autokeras"][i], task))
            except ValueError:  # a resample with one class
                pass
        better = min(value, key=lambda e: rank_key(metric, value[e]))
        selected = ev["selected"]["engine"]
        est = ev.get("estimate", {})
        kinds = {}
        for engine in ("h2o", "autokeras"):
            m = json.loads((work / f"model-{engine}" / "artifacts" / "meta.json").read_text())
            kinds[engine] = m.get("holdout_kind", "(not kept)") + f"/{m.get('holdout_rows')}"
        print(json.dumps({"table": table.name, "tag": tag, "metric": metric, "selected": selected,
                          "better_on_test": better, "right": selected == better,
                          "h2o": round(value["h2o"], 4), "autokeras": round(value["autokeras"], 4),
                          "h2o_minus_autokeras": round(value["h2o"] - value["autokeras"], 4),
                          "paired_se": round(float(np.std(diffs)), 4),
                          "estimate_rows": est.get("rows"), "holdout_rows": est.get("holdout_rows"),
                          "kinds": kinds, "test_rows": len(codes)}))


if __name__ == "__main__":
    main(sys.argv[1:])
