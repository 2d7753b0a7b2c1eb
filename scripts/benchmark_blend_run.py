"""Would a cross-engine blend, chosen as selection would choose it, beat the selected engine?
Measured on finished ``autokfp run`` folders of ``scripts/benchmark_suite.py``; nothing
retrained.

For each table folder (``<out>/<table>``, with ``task.json``, ``test.parquet``, ``h2o.npy``
and ``autokfp-<tag>/home/pipeline_root/<run>``): the run's two gated candidate packages
(``train-model/model`` of each engine, before the bias check and the refit) and their
out-of-sample predictions of training rows (``engine/holdout.npz``, calibrated as ``predict``
applies it). The blend is ``w * H2O + (1 - w) * AutoKeras`` on the probability vectors (or
values), ``w`` in [0, 1] on a 0.01 grid minimising log loss (classifiers) or RMSE on the
training rows **both** engines scored out of sample (AutoKeras's validation rows: H2O's
cross-validation covers every row).

What selection would do with it: the blend is compared with the selected engine on
selection's pooled rows (those out-of-sample rows, with the blend cross-fitted over 5 folds so
its weight never saw the row it scores, plus the pipeline's own held-out rows, scored by each
package), a paired bootstrap of the primary metric; it would be taken only when P(blend
better) >= 0.9 (``selection.confidence``), else the single model (simpler) stays.

On the suite's test rows (which no model of the run saw): H2O's candidate, AutoKeras's, the
selected one, the blend with the weight fitted on all out-of-sample rows, the served model
(the suite's autokfp figure, ``autokfp-<tag>.npy``: refitted on every labelled row where the
refit ran) and H2O AutoML alone (``h2o.npy``), with paired standard errors over the same
bootstrap test rows. One JSON line per table::

    python scripts/benchmark_blend_run.py /work/bench-s15/Mroz_noleak:s15base \\
        /work/bench-s13/Housing:s13
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_suite import METRIC, paired_difference, score  # noqa: E402  (a sibling script)

ENGINES = ("h2o", "autokeras")
GRID = np.linspace(0.0, 1.0, 101)
FOLDS = 5
CONFIDENCE = 0.9
SAMPLES = 500


def _package(path: Path) -> Any:
    from autokfp.modeling.model_package import AutokfpModel

    artifacts = path / "artifacts"
    model = AutokfpModel()
    model._load(artifacts / "plan.json", artifacts / "meta.json", artifacts / "engine")
    return model


def _objective(task: str) -> str:
    return "rmse" if task == "regression" else "logloss"


def _scores(model: Any, rows: pd.DataFrame, task: str, labels: list[str]) -> np.ndarray:
    out = model.predict(None, rows)
    if task == "regression":
        return out["prediction"].to_numpy(dtype="float64")
    return out[[f"probability_{label}" for label in labels]].to_numpy(dtype="float64")


def _codes(values: pd.Series, task: str, labels: list[str]) -> np.ndarray:
    if task == "regression":
        return values.astype("float64").to_numpy()
    return np.array([labels.index(str(v)) for v in values])


def _blend(weight: float, h2o: np.ndarray, autokeras: np.ndarray) -> np.ndarray:
    return weight * h2o + (1.0 - weight) * autokeras


def best_weight(task: str, truth: np.ndarray, h2o: np.ndarray, autokeras: np.ndarray) -> float:
    """The weight on H2O that minimises log loss / RMSE on the rows (the lower weight of ties)."""
    objective = _objective(task)
    values = [score(objective, truth, _blend(w, h2o, autokeras), task) for w in GRID]
    return float(GRID[int(np.argmin(values))])


def p_better(
    metric: str, truth: np.ndarray, ours: np.ndarray, theirs: np.ndarray, task: str
) -> float:
    """Share of paired bootstrap resamples where ``ours`` beats ``theirs`` on the metric."""
    greater = metric == "auc"
    rng = np.random.default_rng(0)
    wins = total = 0
    for _ in range(SAMPLES):
        rows = rng.integers(0, len(truth), len(truth))
        if task != "regression" and len(np.unique(truth[rows])) < 2:
            continue
        a = score(metric, truth[rows], ours[rows], task)
        b = score(metric, truth[rows], theirs[rows], task)
        wins += (a > b) if greater else (a < b)
        total += 1
    return wins / total if total else float("nan")


def _run_folder(folder: Path, tag: str) -> Path:
    runs = sorted((folder / f"autokfp-{tag}" / "home" / "pipeline_root").glob("*"))
    if len(runs) != 1:
        raise SystemExit(
            f"{folder}: expected one pipeline run under autokfp-{tag}, found {len(runs)}"
        )
    return runs[0]


def blend_table(folder: Path, tag: str, dump: Path | None = None) -> dict[str, Any]:
    from autokfp.modeling.estimate import load_holdout

    info = json.loads((folder / "task.json").read_text())
    task, target = info["task"], info["target"]
    metric = METRIC[task]
    run = _run_folder(folder, tag)
    paths: dict[str, Path] = {}
    for model_dir in run.glob("for-loop-*/train-model/model"):
        meta = json.loads((model_dir / "artifacts" / "meta.json").read_text())
        paths[meta["engine"]] = model_dir
    if set(paths) != set(ENGINES):
        raise SystemExit(f"{folder}: candidates {sorted(paths)}, need both {ENGINES}")
    evaluation = json.loads((run / "select-model" / "evaluation").read_text())
    selected = evaluation["selected"]["engine"]
    models = {e: _package(paths[e]) for e in ENGINES}
    labels = models["h2o"].meta.get("class_labels") or []

    # the out-of-sample training rows both engines scored
    held = {}
    for e in ENGINES:
        found = load_holdout(paths[e], models[e].meta)
        if found is None:
            raise SystemExit(f"{paths[e]} kept no out-of-sample predictions")
        held[e] = found
    position = {e: {int(p): i for i, p in enumerate(held[e][0])} for e in ENGINES}
    common = sorted(set(position["h2o"]) & set(position["autokeras"]))
    oof = {e: held[e][1][[position[e][r] for r in common]] for e in ENGINES}
    oof_truth = held["h2o"][2][[position["h2o"][r] for r in common]]
    if task != "regression":
        oof_truth = oof_truth.astype("int64")
    weight = best_weight(task, oof_truth, oof["h2o"], oof["autokeras"])
    fold = np.random.default_rng(0).integers(0, FOLDS, len(common))
    crossed = np.empty_like(oof["h2o"])
    fold_weights = []
    for k in range(FOLDS):
        train = fold != k
        w = best_weight(task, oof_truth[train], oof["h2o"][train], oof["autokeras"][train])
        fold_weights.append(w)
        crossed[fold == k] = _blend(w, oof["h2o"][fold == k], oof["autokeras"][fold == k])

    # the pipeline's own held-out rows (selection's test rows)
    gate = pd.read_parquet(run / "engineer-features" / "test")
    gate_truth = _codes(gate[target], task, labels)
    gate_rows = gate.drop(columns=[target])
    gated = {e: _scores(models[e], gate_rows, task, labels) for e in ENGINES}
    pooled_truth = np.concatenate([oof_truth, gate_truth])
    pooled = {e: np.concatenate([oof[e], gated[e]]) for e in ENGINES}
    pooled_blend = np.concatenate([crossed, _blend(weight, gated["h2o"], gated["autokeras"])])
    p_blend = {e: p_better(metric, pooled_truth, pooled_blend, pooled[e], task) for e in ENGINES}

    # the suite's test rows
    test = pd.read_parquet(folder / "test.parquet")
    test_truth = _codes(test[target], task, labels)
    rows = test.drop(columns=[target])
    scored = {e: _scores(models[e], rows, task, labels) for e in ENGINES}
    scored["selected"] = scored[selected]
    scored["blend"] = _blend(weight, scored["h2o"], scored["autokeras"])
    # the suite's files are in task.json's label order; put them in the package's
    order = [info["labels"].index(label) for label in labels] if labels else None
    for name, file in (("served", f"autokfp-{tag}.npy"), ("h2o_alone", "h2o.npy")):
        values = np.load(folder / file)
        scored[name] = values[:, order] if order is not None else values

    if dump is not None:  # every score set, for other weightings without loading the models
        dump.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"oof_truth": oof_truth, "gate_truth": gate_truth,
                                  "test_truth": test_truth}
        arrays |= {f"oof_{e}": oof[e] for e in ENGINES} | {f"gate_{e}": gated[e] for e in ENGINES}
        arrays |= {f"test_{k}": v for k, v in scored.items()}
        np.savez_compressed(dump / f"{folder.name}.npz", **arrays)

    def figure(truth: np.ndarray, values: np.ndarray, which: str = metric) -> float:
        return round(score(which, truth, values, task), 4)

    def paired(ours: str, theirs: str) -> dict[str, float]:
        gap, se = paired_difference(metric, test_truth, scored[ours], scored[theirs], task)
        return {"difference": round(gap, 4), "se": round(se, 4)}

    out: dict[str, Any] = {
        "table": folder.name,
        "task": task,
        "metric": metric,
        "selected": selected,
        "oof_rows": len(common),
        "gate_rows": len(gate_truth),
        "test_rows": len(test_truth),
        "weight_h2o": round(weight, 2),
        "fold_weights": [round(w, 2) for w in fold_weights],
        "oof": {e: figure(oof_truth, oof[e]) for e in ENGINES}
        | {"blend_crossfitted": figure(oof_truth, crossed)},
        "pooled": {e: figure(pooled_truth, pooled[e]) for e in ENGINES}
        | {"blend": figure(pooled_truth, pooled_blend)},
        "pooled_p_blend_better": {e: round(p, 3) for e, p in p_blend.items()},
        "selection_takes_blend": bool(p_blend[selected] >= CONFIDENCE),
        "test": {name: figure(test_truth, values) for name, values in scored.items()},
    }
    if task != "regression":
        out["test_logloss"] = {
            name: figure(test_truth, values, "logloss") for name, values in scored.items()
        }
    out["test_paired"] = {
        f"blend-{other}": paired("blend", other)
        for other in ("selected", "h2o", "autokeras", "h2o_alone", "served")
    }
    out["test_paired"]["served-h2o_alone"] = paired("served", "h2o_alone")
    out["test_paired"]["selected-h2o_alone"] = paired("selected", "h2o_alone")
    return out


def _figure_text(metric: str, value: float, sign: bool = False) -> str:
    if metric == "rmse" and abs(value) >= 100:
        return format(value, "+,.1f" if sign else ",.1f")
    return format(value, "+.4f" if sign else ".4f")


def print_report(lines: list[dict[str, Any]]) -> None:
    """The Markdown table of docs/training.md from the JSON lines."""
    print("| table (metric; rows out of sample / gate / test) | selected | weight on H2O | "
          "P(blend better than selected), pooled rows | H2O candidate | AutoKeras candidate | "
          "blend | served (suite) | H2O alone | blend − selected (paired se) | "
          "blend − H2O alone (paired se) | served − H2O alone (paired se) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in lines:
        if "error" in row:
            continue
        m, test, pair = row["metric"], row["test"], row["test_paired"]

        def gap(key: str, m: str = m, pair: dict = pair) -> str:
            return (f"{_figure_text(m, pair[key]['difference'], sign=True)} "
                    f"({_figure_text(m, pair[key]['se'])})")

        cells = [f"{row['table']} ({m}; {row['oof_rows']}/{row['gate_rows']}/{row['test_rows']})",
                 row["selected"], f"{row['weight_h2o']:.2f}",
                 f"{row['pooled_p_blend_better'][row['selected']]:.2f}",
                 *(_figure_text(m, test[k]) for k in ("h2o", "autokeras", "blend", "served",
                                                       "h2o_alone")),
                 gap("blend-selected"), gap("blend-h2o_alone"), gap("served-h2o_alone")]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help="<table folder>:<autokfp tag>")
    parser.add_argument("--report", type=Path, help="print the Markdown table of these JSON lines")
    parser.add_argument("--dump", type=Path, help="a folder for each table's score sets (.npz)")
    args = parser.parse_args(argv)
    if args.report is not None:
        print_report([json.loads(line) for line in args.report.read_text().splitlines() if line])
        return 0
    for entry in args.tables:
        folder, tag = entry.rsplit(":", 1)
        try:
            print(json.dumps(blend_table(Path(folder), tag, args.dump)), flush=True)
        except Exception as error:  # one table's failure must not lose the others
            print(json.dumps({"table": folder, "error": repr(error)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
