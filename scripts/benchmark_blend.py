"""Would a weighted average of the two engines beat the best single one? Measured on a
benchmark_suite run (``--mode steps``), nothing retrained.

For each table folder (``<out>/<table>``) and autokfp tag: the two candidate packages of
the run (``autokfp-<tag>/model-h2o`` and ``model-autokeras``), their out-of-sample
predictions (``engine/holdout.npz``, calibrated as ``predict`` would) on the training rows
both scored out of sample (AutoKeras' validation rows), and the benchmark's test rows. The
weight on H2O (a 0.05 grid, blending probabilities or values) is cross-fitted over 5 folds
of the out-of-sample rows (each fold blended with the weight the other folds chose) and
compared there with each engine alone; then fitted on all of them and applied to the test
rows, next to each engine alone; the blend's paired difference (bootstrap standard error
over the same rows) from the better engine out of sample and from the run's champion on the
test rows says whether it wins beyond noise. One JSON line per table::

    python scripts/benchmark_blend.py --out /work/bench-s7 --tag s7 diamonds wine Housing
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
GRID = np.linspace(0.0, 1.0, 21)
FOLDS = 5


def metric(task: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    """The task's primary metric (AUC, log loss, RMSE), scored by benchmark_suite's own
    ``score`` so the blend's figures and the suite's are the same computation."""
    return score(METRIC[task], truth, predicted, task)


def _package(path: Path) -> Any:
    from autokfp.modeling.model_package import AutokfpModel

    artifacts = path / "artifacts"
    model = AutokfpModel()
    model._load(artifacts / "plan.json", artifacts / "meta.json", artifacts / "engine")
    return model


def _held_out(model: Any, path: Path, task: str) -> tuple[dict[int, int], np.ndarray, np.ndarray]:
    from autokfp.modeling.calibration import apply_calibration

    with np.load(path / "artifacts" / "engine" / "holdout.npz") as stored:
        positions, scores, truth = stored["positions"], stored["scores"], stored["truth"]
    scores = (scores.reshape(-1) if task == "regression"
              else apply_calibration(np.atleast_2d(scores), model.meta.get("calibration")))
    return {int(p): i for i, p in enumerate(positions)}, scores, truth


def blend_table(folder: Path, tag: str) -> dict[str, Any]:
    info = json.loads((folder / "task.json").read_text())
    task, work = info["task"], folder / f"autokfp-{tag}"
    greater = task == "binary"
    models = {e: _package(work / f"model-{e}") for e in ENGINES}
    held = {e: _held_out(models[e], work / f"model-{e}", task) for e in ENGINES}
    common = sorted(set(held["h2o"][0]) & set(held["autokeras"][0]))
    oof = {e: held[e][1][[held[e][0][r] for r in common]] for e in ENGINES}
    truth = held["h2o"][2][[held["h2o"][0][r] for r in common]]

    def blended(weight: float, scores: dict[str, np.ndarray], rows: Any = slice(None)) -> np.ndarray:
        return weight * scores["h2o"][rows] + (1.0 - weight) * scores["autokeras"][rows]

    def best_weight(rows: np.ndarray) -> float:
        values = [metric(task, truth[rows], blended(w, oof, rows)) for w in GRID]
        return float(GRID[int(np.argmax(values) if greater else np.argmin(values))])

    fold = np.random.default_rng(0).integers(0, FOLDS, len(common))
    crossed = np.empty_like(oof["h2o"])
    for k in range(FOLDS):
        crossed[fold == k] = blended(best_weight(np.where(fold != k)[0]), oof, fold == k)
    weight = best_weight(np.arange(len(common)))
    test = pd.read_parquet(folder / "test.parquet")
    rows = test.drop(columns=[info["target"]])
    if task == "regression":
        test_truth = test[info["target"]].to_numpy(dtype="float64")
        scored = {e: models[e].predict(None, rows)["prediction"].to_numpy(dtype="float64")
                  for e in ENGINES}
    else:
        labels = info["labels"]
        test_truth = np.array([labels.index(str(v)) for v in test[info["target"]]])
        columns = [f"probability_{label}" for label in labels]
        scored = {e: models[e].predict(None, rows)[columns].to_numpy(dtype="float64")
                  for e in ENGINES}
    figures = {"oof_h2o": metric(task, truth, oof["h2o"]),
               "oof_autokeras": metric(task, truth, oof["autokeras"]),
               "oof_blend_crossfitted": metric(task, truth, crossed),
               "test_h2o": metric(task, test_truth, scored["h2o"]),
               "test_autokeras": metric(task, test_truth, scored["autokeras"]),
               "test_blend": metric(task, test_truth, blended(weight, scored))}
    # beyond noise? the blend against the better engine on the out-of-sample rows, and against
    # the run's champion on the test rows, each paired over the same bootstrap rows
    name = METRIC[task]
    better = max if greater else min
    best = better(ENGINES, key=lambda e: figures[f"oof_{e}"])
    paired = {"oof_blend_minus_best": paired_difference(name, truth, crossed, oof[best], task)}
    champion = folder / f"autokfp-{tag}.npy"
    if champion.exists():
        paired["test_blend_minus_champion"] = paired_difference(
            name, test_truth, blended(weight, scored), np.load(champion), task)
    return {"table": folder.name, "task": task, "oof_rows": len(common),
            "weight_h2o": round(weight, 2), **{k: round(v, 4) for k, v in figures.items()},
            "best_single_oof": best,
            **{k: {"difference": round(v[0], 4), "se": round(v[1], 4)} for k, v in paired.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--tag", required=True, help="the autokfp run's tag (--mode steps)")
    args = parser.parse_args(argv)
    for name in args.tables:
        print(json.dumps(blend_table(args.out / name, args.tag)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
