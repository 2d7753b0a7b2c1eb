"""Does an H2O tree recipe refitted on its gated model's own rows reproduce that model?

A GBM fitted as AutoML fits its GBMs (3-fold cross-validation, early stopping choosing the
trees from 10,000 asked for, ``keep_cross_validation_predictions``), its recipe kept as
training keeps it (``h2o_automl._recipe``: the actual parameters), then refitted by
``h2o_automl._fit_recipe`` on the same rows under a per-model time limit: ``--limits`` (0.2 s
cuts any fit that still runs its folds; 600 s cuts none). For each seed it prints the gated
model's trees and AUC on 400 rows neither saw, and the refit's trees, AUC and largest
difference in predictions, side by side per limit (docs/training.md, "Refit for serving",
issue 17). Run the parent commit the same way (its ``git archive`` on PYTHONPATH) for the
anchor: there the 0.2 s refit kept 1 tree of 46-70.

    python scripts/benchmark_h2o_refit_reproduction.py --seeds 1 2 3 4 --limits 0.2 600
"""

import argparse
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from autokfp.training import h2o_automl
from autokfp.training.h2o_automl import H2OCluster


def rows(count: int, seed: int) -> pd.DataFrame:
    """``tests/engine/training/test_h2o_refit_reproduces.py``'s rows: five inputs, a binary
    label with interactions and a non-linear term."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 5))
    logit = 1.5 * x[:, 0] - x[:, 1] + np.sin(2 * x[:, 2]) + 0.5 * x[:, 3] * x[:, 4]
    y = np.where(rng.random(count) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(5)]).assign(y=y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--limits", type=float, nargs="+", default=[0.2, 600.0])
    args = parser.parse_args()
    import h2o
    from h2o.estimators import H2OGradientBoostingEstimator

    print(f"module {h2o_automl.__file__}")
    x = [f"x{i}" for i in range(5)]
    cluster = SimpleNamespace(run_job=lambda model, job: job())
    with H2OCluster(2, "1G", 300):
        for seed in args.seeds:
            gate_rows, test_rows = rows(1600, seed), rows(400, seed + 100)
            frame, test = h2o.H2OFrame(gate_rows), h2o.H2OFrame(test_rows)
            frame["y"], test["y"] = frame["y"].asfactor(), test["y"].asfactor()
            gated = H2OGradientBoostingEstimator(
                ntrees=10_000, nfolds=3, stopping_rounds=3, stopping_metric="logloss",
                stopping_tolerance=0.001, score_tree_interval=5, sample_rate=0.8,
                col_sample_rate=0.8, keep_cross_validation_predictions=True, seed=seed)
            gated.train(x=x, y="y", training_frame=frame)
            recipe = h2o_automl._recipe(gated)
            truth = (test_rows["y"] == "yes").to_numpy()
            before = gated.predict(test).as_data_frame(use_multi_thread=False)["yes"].to_numpy()
            line = [f"seed {seed}: gated {recipe['params']['ntrees']} trees, AUC "
                    f"{roc_auc_score(truth, before):.4f}"]
            for limit in args.limits:
                try:
                    refit = h2o_automl._fit_recipe(cluster, recipe, x, "y", frame, limit)
                except Exception as exc:  # noqa: BLE001 - a figure of its own
                    line.append(f"| limit {limit:g} s: {type(exc).__name__}: {exc}")
                    continue
                after = refit.predict(test).as_data_frame(use_multi_thread=False)["yes"]
                after = after.to_numpy()
                line.append(f"| limit {limit:g} s: refit {h2o_automl._built_trees(refit)} trees, "
                            f"AUC {roc_auc_score(truth, after):.4f}, max |difference| "
                            f"{np.max(np.abs(before - after)):.3g}")
            print(" ".join(line), flush=True)


if __name__ == "__main__":
    main()
