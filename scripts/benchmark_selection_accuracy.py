"""Did selection pick the engine that is better on fresh rows? For finished
``scripts/benchmark_suite.py`` runs, ``--mode steps`` or ``autokfp run`` (``--mode pipeline``):
the H2O and AutoKeras candidates (the gated packages selection compared: ``model-<engine>``
of a steps run, each engine's ``train-model/model`` of the pipeline run under
``autokfp-<tag>/home/pipeline_root``) on the suite's test rows, the paired bootstrap se of
their difference (200 resamples), the selected engine, and each package's out-of-sample rows
(kind/count). Where the suite ran H2O AutoML alone (``h2o.npy``), each candidate and the
served model (``autokfp-<tag>.npy``) against it too, paired on the same resamples: a served
model behind H2O alone whose other candidate is level with it lost on selection; one whose
candidates are both behind lost on the engines.

    python scripts/benchmark_selection_accuracy.py <table folder>:<tag> ...

Prints one JSON line per run (docs/training.md, "Session 17", "Session 18").
"""

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.modeling.evaluation import encode_labels, metric_value, probability_matrix, rank_key
from autokfp.modeling.model_package import load_model_package

ENGINES = ("h2o", "autokeras")


def _candidates(work: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """(selection's evaluation, {engine: gated package folder}) of a steps or pipeline run."""
    if (work / "evaluation.json").exists():  # --mode steps
        paths = {
            e: work / f"model-{e}" for e in ENGINES if (work / f"model-{e}" / "MLmodel").exists()
        }
        return json.loads((work / "evaluation.json").read_text()), paths
    runs = sorted((work / "home" / "pipeline_root").glob("*"))
    if len(runs) != 1:
        raise SystemExit(
            f"{work}: neither evaluation.json (a steps run) nor one pipeline run "
            f"under home/pipeline_root (found {len(runs)}); is the run finished?"
        )
    paths = {}
    for model_dir in runs[0].glob("for-loop-*/train-model/model"):
        meta = json.loads((model_dir / "artifacts" / "meta.json").read_text())
        paths[meta["engine"]] = model_dir
    return json.loads((runs[0] / "select-model" / "evaluation").read_text()), paths


def main(folders):
    for spec in folders:
        table_dir, tag = spec.split(":")
        table = Path(table_dir)
        work = table / f"autokfp-{tag}"
        info = json.loads((table / "task.json").read_text())
        test = pd.read_parquet(table / "test.parquet")
        truth = test[info["target"]]
        ev, paths = _candidates(work)
        if set(paths) != set(ENGINES):
            raise SystemExit(f"{work}: gated candidates {sorted(paths)}, need both {list(ENGINES)}")
        metric = ev["primary_metric"]
        preds, metas = {}, {}
        for engine, path in paths.items():
            model = load_model_package(str(path))
            metas[engine] = json.loads((path / "artifacts" / "meta.json").read_text())
            preds[engine] = model.predict(test.drop(columns=[info["target"]]))
        meta = metas["h2o"]
        task = meta["task"]
        if task == "regression":
            codes = truth.astype(float).to_numpy()
            scores = {e: p["prediction"].to_numpy(float) for e, p in preds.items()}
        else:
            codes = encode_labels(truth.astype(str), meta)
            scores = {e: probability_matrix(p, meta) for e, p in preds.items()}
        # the suite's own files (task.json's label order, put in the package's)
        order = (
            [info["labels"].index(label) for label in meta["class_labels"]]
            if task != "regression"
            else None
        )
        for name, file in (("h2o_alone", "h2o.npy"), ("served", f"autokfp-{tag}.npy")):
            if (table / file).exists():
                values = np.load(table / file)
                scores[name] = values[:, order] if order is not None else values
        value = {e: metric_value(metric, codes, s, task) for e, s in scores.items()}
        rng = np.random.default_rng(0)
        pairs = [("h2o", "autokeras")] + [
            (e, "h2o_alone") for e in (*ENGINES, "served") if "h2o_alone" in scores and e in scores
        ]
        diffs: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        for _ in range(200):
            i = rng.integers(0, len(codes), len(codes))
            try:
                drawn = {e: metric_value(metric, codes[i], s[i], task) for e, s in scores.items()}
            except ValueError:  # a resample with one class
                continue
            for a, b in pairs:
                diffs[(a, b)].append(drawn[a] - drawn[b])
        better = min(ENGINES, key=lambda e: rank_key(metric, value[e]))
        selected = ev["selected"]["engine"]
        est = ev.get("estimate", {})
        kinds = {
            e: metas[e].get("holdout_kind", "(not kept)") + f"/{metas[e].get('holdout_rows')}"
            for e in ENGINES
        }
        out = {
            "table": table.name,
            "tag": tag,
            "metric": metric,
            "selected": selected,
            "better_on_test": better,
            "right": selected == better,
            **{name: round(v, 4) for name, v in value.items()},
            "h2o_minus_autokeras": round(value["h2o"] - value["autokeras"], 4),
            "paired_se": round(float(np.std(diffs[("h2o", "autokeras")])), 4),
            "estimate_rows": est.get("rows"),
            "holdout_rows": est.get("holdout_rows"),
            "kinds": kinds,
            # why AutoKeras's rows are (not) out of fold: the k-fold refits' note
            "autokeras_out_of_sample": metas["autokeras"].get("params", {}).get("out_of_sample"),
            "test_rows": len(codes),
        }
        for a, b in pairs[1:]:
            out[f"{a}_minus_h2o_alone"] = {
                "difference": round(value[a] - value[b], 4),
                "se": round(float(np.std(diffs[(a, b)])), 4),
            }
        print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
