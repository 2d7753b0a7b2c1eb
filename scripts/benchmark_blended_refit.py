"""How a blended H2O stacked ensemble's recipe does when refitted on every labelled row, two
ways, on a suite table's test rows against H2O AutoML alone (docs/training.md, "Refit for
serving", session 19):

- ``blend``: as the refit did through session 18 (``h2o_automl._fit_recipe``): base models on
  a seeded 80% of the rows, the ensemble's metalearner (``AUTO``) on the other 20%;
- ``cv``: base models on every row with 3-fold cross-validation predictions kept, the
  metalearner on those (a cross-validated ensemble of the same base recipes).

Each base model and each ensemble is scored on the suite's test rows (RMSE; regression
only), with its difference from H2O alone's and that difference's paired bootstrap se as the
suite computes it (``benchmark_suite.paired_difference``: 200 resamples, seed 1), the
metalearner's weights and the wall seconds of each fit (wall: compare only within one run).

    python scripts/benchmark_blended_refit.py --package <gated package> \
        --rows <pipeline train parquet> <pipeline test parquet> --suite <table folder> [--modes blend cv]

The package is a pipeline run's gated H2O package (``bias-check/checked_model``) whose
leader is a blended ensemble; ``--rows`` are the pipeline's labelled rows (its
``engineer-features`` train and test); ``--suite`` holds ``test.parquet``, ``task.json`` and
``h2o.npy`` (``scripts/benchmark_suite.py``). Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_suite import paired_difference, score  # noqa: E402

# the refit's blending share through session 18 (the metalearner's rows)
BLEND_SHARE = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", required=True, type=Path)
    parser.add_argument("--rows", required=True, nargs="+", type=Path)
    parser.add_argument("--suite", required=True, type=Path)
    parser.add_argument("--modes", nargs="+", default=["blend", "cv"], choices=["blend", "cv"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--port", type=int, default=54781)
    args = parser.parse_args(argv)

    import h2o
    from h2o.estimators import H2OStackedEnsembleEstimator, create_estimator

    from autokfp.training.h2o_automl import _blended, recipe_params

    recipe = json.loads((args.package / "artifacts" / "engine" / "recipe.json").read_text())
    plan = json.loads((args.package / "artifacts" / "plan.json").read_text())
    info = json.loads((args.suite / "task.json").read_text())
    if recipe["algo"] != "stackedensemble" or not _blended(recipe) or info["task"] != "regression":
        raise SystemExit(f"{args.package}: the leader is not a blended ensemble of a regression "
                         "(this script measures only those)")
    target, cats = info["target"], list(plan["categorical"])
    x = list(plan["numeric"]) + cats
    labelled = pd.concat([pd.read_parquet(p) for p in args.rows], ignore_index=True)[x + [target]]
    test = pd.read_parquet(args.suite / "test.parquet")
    truth = test[target].to_numpy(float)
    anchor = np.load(args.suite / "h2o.npy").astype(float).ravel()

    h2o.init(nthreads=-1, max_mem_size="2G", name=f"blended-refit-{args.port}", port=args.port,
             verbose=False)
    try:
        frame = h2o.H2OFrame(labelled, column_types={c: "enum" for c in cats})
        test_frame = h2o.H2OFrame(test[x], column_types={c: "enum" for c in cats})

        def report(name: str, model, **extra) -> None:
            predicted = model.predict(test_frame).as_data_frame()["predict"].to_numpy(float)
            gap, se = paired_difference("rmse", truth, predicted, anchor, "regression")
            print(json.dumps({"model": name, "rmse": round(score("rmse", truth, predicted,
                                                                  "regression"), 1),
                              "minus_h2o_alone": round(gap, 1), "paired_se": round(se, 1),
                              **extra}), flush=True)

        for mode in args.modes:
            seed = int(recipe["params"].get("seed") or 1)
            if mode == "blend":
                base_frame, blend = frame.split_frame(ratios=[1.0 - BLEND_SHARE], seed=seed)
            else:
                base_frame, blend = frame, None
            started, bases = time.monotonic(), []
            for base in recipe["base_models"]:
                params = {**recipe_params(base, base_model=True), "max_runtime_secs": 0.0}
                if mode == "cv":
                    params.update(nfolds=args.folds, fold_assignment="Modulo",
                                  keep_cross_validation_predictions=True)
                fit_started = time.monotonic()
                model = create_estimator(base["algo"], **params)
                model.train(x=x, y=target, training_frame=base_frame)
                bases.append(model)
                report(f"{mode}:{base['model_id']}", model, rows=base_frame.nrow,
                       wall_seconds=round(time.monotonic() - fit_started, 1))
            params = recipe_params(recipe)
            params.pop("metalearner_params", None)
            params["base_models"] = [b.model_id for b in bases]
            fit_started = time.monotonic()
            ensemble = H2OStackedEnsembleEstimator(**params)
            ensemble.train(x=x, y=target, training_frame=base_frame,
                           **({"blending_frame": blend} if blend is not None else {}))
            weights = h2o.get_model(ensemble.metalearner().model_id).coef()
            report(f"{mode}:ensemble", ensemble,
                   base_rows=base_frame.nrow, metalearner_rows=(blend or base_frame).nrow,
                   weights={k: round(v, 4) for k, v in weights.items()},
                   wall_seconds=round(time.monotonic() - fit_started, 1),
                   total_wall_seconds=round(time.monotonic() - started, 1))
    finally:
        h2o.cluster().shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
