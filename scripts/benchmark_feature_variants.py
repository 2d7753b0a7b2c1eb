"""How much one feature decision costs: fixed learners on autokfp's feature plan and on
variants of it that treat one free-text or date column another way, on a suite table's rows.

``scripts/benchmark_suite.py`` compares whole systems under a time budget, where the load of
a shared machine decides how many models H2O builds. This script takes the load out: on the
suite's fixed split (``--out``, the table's ``train.parquet``/``test.parquet``) it makes
autokfp's feature plan from all training rows as the pipeline would (profiling, then
``plan_features``; feature selection left out), then, per free-text and date column, the
variants:

* ``as planned``: the plan as the current code makes it (the anchor);
* ``<col> as a category``: a text column read as one categorical of its 50 most frequent
  values plus ``__other__`` (what the profiler did before session 9 for a column of few
  enough distinct sentences);
* ``<col> dropped``: the column left out.

Each variant trains the same learners, with no time limit and fixed seeds: H2O's GBM with
its defaults and its GLM (lambda search), both with 5-fold cross-validation, and
scikit-learn's HistGradientBoosting (one thread); optionally (``--learners h2o-automl``) H2O
AutoML as autokfp runs it, for ``--budget`` seconds, whose figures do move with the load. It
prints each one's cross-validated
score, its test-row score and its paired difference to the anchor over the same bootstrap
resamples of the test rows (``benchmark_suite.paired_difference``):

    python scripts/benchmark_suite.py --out /work/bench-s9q --tables churn_noleak --systems h2o
    python scripts/benchmark_feature_variants.py --out /work/bench-s9q --tables churn_noleak
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmark_suite as suite  # noqa: E402

from autokfp.modeling.features import (  # noqa: E402
    MAX_CATEGORY_LEVELS,
    FeaturePlan,
    apply_features,
    category_text,
)

BUDGET = [30]  # h2o-automl's max_runtime_secs (--budget)
LEARNERS = ("h2o-gbm", "h2o-glm", "hist-gbm", "h2o-automl")


def planned(train: pd.DataFrame, info: dict[str, Any]) -> FeaturePlan:
    """autokfp's feature plan of all the training rows, as the pipeline makes it."""
    from autokfp.catalog.profiling import profile_frame
    from autokfp.config import FeatureSpec
    from autokfp.modeling.features import plan_features

    schema = profile_frame(train, "bench", "file", "bench")
    return plan_features(train, schema, info["target"], info["task"], FeatureSpec(),
                         id_column=info["id_column"], classes=info["labels"])


def variants(plan: FeaturePlan, train: pd.DataFrame) -> dict[str, FeaturePlan]:
    out = {"as planned": plan}
    for column in plan.text:
        as_category = FeaturePlan.from_json(plan.to_json())
        as_category.text.remove(column)
        as_category.text_vocabulary.pop(column, None)
        as_category.categorical.append(column)
        counts: Counter[str] = Counter(train[column].dropna().map(category_text))
        as_category.categorical_levels[column] = [
            level for level, _ in counts.most_common(MAX_CATEGORY_LEVELS)]
        out[f"{column} as a category"] = as_category
    for column in plan.text + plan.datetime:
        dropped = FeaturePlan.from_json(plan.to_json())
        for group in (dropped.text, dropped.datetime):
            if column in group:
                group.remove(column)
        dropped.text_vocabulary.pop(column, None)
        out[f"{column} dropped"] = dropped
    return out


def _h2o_scores(kind: str, features: pd.DataFrame, y: pd.Series, test: pd.DataFrame,
                plan: FeaturePlan, info: dict[str, Any], seed: int) -> tuple[float, np.ndarray]:
    import h2o
    from h2o.estimators import H2OGeneralizedLinearEstimator, H2OGradientBoostingEstimator

    task, labels = info["task"], info["labels"]
    frame = features.copy()
    frame["__y"] = y.astype(str).to_numpy() if task != "regression" else y.astype(float).to_numpy()
    types = {c: "enum" for c in plan.categorical_features}
    if task != "regression":
        types["__y"] = "enum"
    training = h2o.H2OFrame(frame, column_types=types)
    scoring = h2o.H2OFrame(test, column_types={c: "enum" for c in plan.categorical_features})
    if kind == "h2o-automl":  # as autokfp runs it: 3 folds, no DeepLearning, --budget s
        from h2o.automl import H2OAutoML

        automl = H2OAutoML(max_runtime_secs=BUDGET[0], seed=seed, nfolds=3,
                           exclude_algos=["DeepLearning"], verbosity=None,
                           project_name=f"variants_{time.monotonic_ns()}")
        automl.train(x=list(features.columns), y="__y", training_frame=training)
        board = automl.leaderboard.as_data_frame(use_multi_thread=False)
        print(f"  (AutoML: {len(board)} models, leader {board.iloc[0, 0]}, load "
              + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ")", flush=True)
        model: Any = automl.leader
    elif kind == "h2o-gbm":
        model = H2OGradientBoostingEstimator(seed=seed, nfolds=5)
    else:
        family = {"binary": "binomial", "multiclass": "multinomial"}.get(task, "gaussian")
        model = H2OGeneralizedLinearEstimator(family=family, lambda_search=True, seed=seed,
                                              nfolds=5)
    if kind != "h2o-automl":
        model.train(x=list(features.columns), y="__y", training_frame=training)
    cv = model.model_performance(xval=True)
    cv_score = {"binary": lambda: cv.auc(), "multiclass": lambda: cv.logloss(),
                "regression": lambda: cv.rmse()}[task]()
    predicted = model.predict(scoring).as_data_frame(use_multi_thread=False)
    if task == "regression":
        return float(cv_score), predicted["predict"].to_numpy(dtype="float64")
    predicted = predicted.rename(columns={f"p{label}": str(label) for label in labels
                                          if str(label) not in predicted.columns})
    return float(cv_score), predicted[[str(label) for label in labels]].to_numpy(dtype="float64")


def _hist_scores(features: pd.DataFrame, y: pd.Series, test: pd.DataFrame, plan: FeaturePlan,
                 info: dict[str, Any], seed: int) -> tuple[float, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    def matrix(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for column in plan.categorical_features:
            levels = list(plan.categorical_levels.get(column, [])) + ["__other__"]
            frame[column] = pd.Categorical(frame[column], categories=levels)
        return frame

    task, labels = info["task"], info["labels"]
    x, x_test = matrix(features), matrix(test)
    if task == "regression":
        target = y.astype("float64").to_numpy()
        model: Any = HistGradientBoostingRegressor(categorical_features="from_dtype",
                                                   random_state=seed)
        splitter: Any = KFold(5, shuffle=True, random_state=seed)
    else:
        target = np.array([labels.index(str(v)) for v in y])
        model = HistGradientBoostingClassifier(categorical_features="from_dtype",
                                               random_state=seed)
        splitter = StratifiedKFold(5, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1):
        if task == "regression":
            oof = cross_val_predict(model, x, target, cv=splitter)
            cv_score = float(np.sqrt(np.mean((oof - target) ** 2)))
        else:
            oof = cross_val_predict(model, x, target, cv=splitter, method="predict_proba")
            cv_score = suite.score(suite.METRIC[task], target, oof, task)
        model.fit(x, target)
        values = model.predict(x_test) if task == "regression" else model.predict_proba(x_test)
    return cv_score, np.asarray(values, dtype="float64")


def run_table(folder: Path, learners: list[str], seed: int, rounds: int = 1) -> None:
    info = json.loads((folder / "task.json").read_text())
    train = pd.read_parquet(folder / "train.parquet")
    test = pd.read_parquet(folder / "test.parquet")
    task, metric = info["task"], suite.METRIC[info["task"]]
    truth = suite.truth_of(test, info["target"], task, info["labels"])
    plan = planned(train, info)
    plans = variants(plan, train)
    print(f"\n{info['table']} ({len(train)}/{len(test)} rows, {metric}; text {plan.text}, "
          f"dates {plan.datetime}); load at the start "
          + "/".join(f"{v:.1f}" for v in os.getloadavg()))
    if len(plans) == 1:
        print("no free-text or date column: nothing to vary")
        return
    print(f"| learner | variant | features | {'CV ' + metric} (5 folds; AutoML 3) | test {metric} | "
          "− as planned (paired se) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for round_, learner in ((r, name) for r in range(1, rounds + 1) for name in learners):
        if rounds > 1:
            print(f"| round {round_} | | | | | | |")
        anchor: np.ndarray | None = None
        for name, variant in plans.items():
            started = time.monotonic()
            features = apply_features(train, variant)
            test_features = apply_features(test, variant)
            if learner == "hist-gbm":
                cv_score, values = _hist_scores(features, train[info["target"]], test_features,
                                                variant, info, seed)
            else:
                cv_score, values = _h2o_scores(learner, features, train[info["target"]],
                                               test_features, variant, info, seed)
            score = suite.score(metric, truth, values, task)
            if anchor is None:
                anchor, gap = values, "–"
            else:
                difference, se = suite.paired_difference(metric, truth, values, anchor, task)
                gap = f"{difference:+.4f} ({se:.4f})"
            print(f"| {learner} | {name} | {features.shape[1]} | {cv_score:.4f} | {score:.4f} | "
                  f"{gap} | {time.monotonic() - started:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="benchmark_suite's folder holding the tables' splits")
    parser.add_argument("--tables", nargs="+", default=["churn_noleak"])
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=int, default=30,
                        help="h2o-automl's max_runtime_secs (the one learner with a time limit: "
                             "its figures move with the load)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every learner's variants this often: the first AutoML in a "
                             "fresh H2O cluster runs cold (the JVM's compiler), so with "
                             "h2o-automl compare a later round's variants")
    args = parser.parse_args(argv)
    BUDGET[0] = args.budget
    uses_h2o = any(learner.startswith("h2o") for learner in args.learners)
    if uses_h2o:
        import h2o

        h2o.init(port=54400 + os.getpid() % 500 * 2, nthreads=2, max_mem_size="2G",
                 name=f"variants-{os.getpid()}")
        h2o.no_progress()
    try:
        for table in args.tables:
            folder = args.out.resolve() / table
            if not (folder / "task.json").exists():
                print(f"{table}: no split under {folder} (run benchmark_suite.py --out first)")
                continue
            run_table(folder, args.learners, args.seed, args.rounds)
    finally:
        if uses_h2o:
            import h2o

            h2o.cluster().shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
