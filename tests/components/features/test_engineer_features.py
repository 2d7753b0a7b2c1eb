"""The ``engineer_features`` component: the split, the plan and the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from kfp.dsl import Artifact, Dataset, Markdown

from autokfp.components import engineer_features, load_training_data
from tests.components import artifact


def test_engineer_features_splits_and_plans(discovered, tmp_path) -> None:
    config, dataset, schema, _catalog, _fp = discovered
    train = artifact(Dataset, tmp_path, "train")
    test = artifact(Dataset, tmp_path, "test")
    plan = artifact(Artifact, tmp_path, "plan")
    report = artifact(Markdown, tmp_path, "report")
    task, features, training_data = engineer_features.python_func(
        config=config, dataset=dataset, schema=schema, train=train, test=test, plan=plan,
        report=report)
    assert task == "binary"
    assert features > 0
    train_rows, test_rows = len(pd.read_parquet(train.path)), len(pd.read_parquet(test.path))
    assert train_rows + test_rows == 2000
    assert train.metadata["rows"] == train_rows and test.metadata["rows"] == test_rows
    assert json.loads(Path(plan.path).read_text())["target"] == "churned"
    assert Path(report.path).read_text().startswith("# Features for `files/customers.parquet`")
    # what training reads is also kept where its digest names it, for load_training_data
    assert "/training-data/sha256-" in training_data
    loaded = {"train": artifact(Dataset, tmp_path / "loaded", "train"),
              "plan": artifact(Artifact, tmp_path / "loaded", "plan")}
    load_training_data.python_func(training_data=training_data, **loaded)
    assert Path(loaded["train"].path).read_bytes() == Path(train.path).read_bytes()
    assert Path(loaded["plan"].path).read_bytes() == Path(plan.path).read_bytes()
    assert loaded["train"].metadata == {"rows": train_rows,
                                        "digest": training_data.rsplit("sha256-", 1)[1]}


def test_a_table_above_the_plan_sample_is_split_whole_and_planned_on_a_sample(
        discovered, tmp_path, monkeypatch) -> None:
    """Above PLAN_MAX_ROWS the plan is learnt on a sample, but every row is split and the
    facts that a sample could miss (a numeric column's rare missing value) come from all."""
    from autokfp.modeling.features import FeaturePlan
    from autokfp.steps import engineer_features as step

    config, dataset, schema, _catalog, _fp = discovered
    frame = pd.read_parquet(dataset.path)
    numeric = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])
               and c != "churned" and frame[c].notna().all()][0]
    frame.loc[frame.index[-3:], numeric] = None  # missing in the last three rows only
    data = tmp_path / "data.parquet"
    frame.to_parquet(data, index=False)
    monkeypatch.setattr(step, "PLAN_MAX_ROWS", 300)
    paths = {name: str(tmp_path / name) for name in ("train", "test", "plan", "report")}
    result = step.engineer_features(config, str(data), schema.path, paths["train"],
                                    paths["test"], paths["plan"], paths["report"])
    train, test = pd.read_parquet(paths["train"]), pd.read_parquet(paths["test"])
    assert len(train) + len(test) == len(frame) == 2000
    assert (result.train_rows, result.test_rows) == (len(train), len(test))
    plan = FeaturePlan.from_json(Path(paths["plan"]).read_text())
    assert train[numeric].isna().any()  # (the split is fixed: at least one is a train row)
    assert numeric in plan.missing_indicators
    assert "uniform sample of 300 training rows" in Path(paths["report"]).read_text()


def test_used_alone_a_csv_dataset_and_a_target_are_enough(churn_frame, autokfp_home,
                                                          tmp_path) -> None:
    """No run config, no schema: the CSV is converted, profiled (the id column is found by
    its semantic type, as discovery would) and split by the id."""
    data = tmp_path / "data"
    churn_frame.head(600).to_csv(data, index=False)  # an artifact path: no file suffix
    outputs = {name: artifact(kind, tmp_path / "alone", name) for name, kind in (
        ("train", Dataset), ("test", Dataset), ("plan", Artifact), ("report", Markdown))}
    task, features, _training_data = engineer_features.python_func(
        dataset=artifact(Dataset, tmp_path, "data"), target="churned", task="binary", **outputs)
    assert task == "binary" and features > 0
    plan = json.loads(Path(outputs["plan"].path).read_text())
    assert plan["target"] == "churned"
    assert "customer_id" in plan["dropped"]  # the id, found by profiling, is no feature
    train = pd.read_parquet(outputs["train"].path)
    test = pd.read_parquet(outputs["test"].path)
    assert len(train) + len(test) == 600 and set(train["customer_id"]).isdisjoint(test["customer_id"])
    # a bad value is named, as `autokfp run` names it
    import pytest

    from autokfp.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="training.task"):
        engineer_features.python_func(dataset=artifact(Dataset, tmp_path, "data"),
                                      target="churned", task="binar", **outputs)
    (tmp_path / "empty").write_text("")
    with pytest.raises(DataError, match="neither Parquet nor CSV"):
        engineer_features.python_func(dataset=artifact(Dataset, tmp_path, "empty"),
                                      target="churned", **outputs)


def test_used_alone_a_folder_of_csv_parts_is_named(churn_frame, autokfp_home, tmp_path) -> None:
    """A folder is read as Parquet parts only when every file in it is Parquet: a folder of
    CSV parts is a DataError that says what to pass, not a pandas traceback."""
    import pytest

    from autokfp.errors import DataError

    folder = tmp_path / "parts"
    folder.mkdir()
    churn_frame.head(50).to_csv(folder / "part-0.csv", index=False)
    outputs = {name: artifact(kind, tmp_path / "out", name) for name, kind in (
        ("train", Dataset), ("test", Dataset), ("plan", Artifact), ("report", Markdown))}
    with pytest.raises(DataError, match="not of Parquet parts only"):
        engineer_features.python_func(dataset=artifact(Dataset, tmp_path, "parts"),
                                      target="churned", **outputs)


def test_used_alone_leaves_no_copy_of_the_data_behind(churn_frame, autokfp_home,
                                                      tmp_path) -> None:
    """The CSV's Parquet copy and the schema made for it live in temporary folders that are
    gone when the task's process ends."""
    import subprocess
    import sys

    data = tmp_path / "data.csv"
    churn_frame.head(200).to_csv(data, index=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    code = ("import sys, pathlib\n"
            "from autokfp.steps.form import standalone\n"
            f"s = standalone(None, {str(data)!r}, None, target='churned')\n"
            "assert pathlib.Path(s.dataset_path).is_file() and pathlib.Path(s.schema_path).is_file()\n"
            "print(s.dataset_path)\n")
    env = {**os.environ, "TMPDIR": str(scratch)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(str(scratch))  # the copy was made there ...
    assert list(scratch.iterdir()) == []  # ... and is gone


def test_a_large_table_holds_out_split_max_test_rows_and_trains_on_the_rest(tmp_path) -> None:
    """Above split.max_test_rows the test split is about that many rows, not test_fraction
    of them: the rows the gate does not need train the models."""
    import numpy as np

    from autokfp.catalog.profiling import profile_frame
    from autokfp.modeling.partition import holdout_mask
    from autokfp.steps import engineer_features as step
    from tests.conftest import small_config

    rng = np.random.default_rng(5)
    n = 6_000
    frame = pd.DataFrame({"customer_id": [f"C{i:06d}" for i in range(n)],
                          "size": rng.normal(size=n), "colour": rng.choice(["a", "b"], n)})
    frame["price"] = 3 * frame["size"] + (frame["colour"] == "a") + rng.normal(size=n)
    frame.to_parquet(tmp_path / "items.parquet", index=False)
    (tmp_path / "schema.json").write_text(
        profile_frame(frame, "files/items.parquet", "file", str(tmp_path)).to_json())
    config = small_config(tmp_path, "files/items.parquet",
                          training={"dataset": "files/items.parquet", "target": "price",
                                    "id_column": "customer_id", "task": "regression"},
                          split={"test_fraction": 0.2, "seed": 42, "max_test_rows": 1_000},
                          selection={"feature_selection": "off"})
    paths = {name: str(tmp_path / name) for name in ("train", "test", "plan")}
    result = step.engineer_features(config, str(tmp_path / "items.parquet"),
                                    str(tmp_path / "schema.json"), paths["train"],
                                    paths["test"], paths["plan"])
    held = set(pd.read_parquet(paths["test"])["customer_id"])
    assert 950 < result.test_rows == len(held) < 1_050  # not 20% of 6,000 (about 1,200)
    assert result.train_rows + result.test_rows == n
    # the smaller test split is part of the one test_fraction gives
    assert held <= set(frame["customer_id"][holdout_mask(frame, 0.2, 42, "customer_id")])
