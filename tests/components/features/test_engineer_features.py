"""The ``engineer_features`` component: the split, the plan and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from kfp.dsl import Artifact, Dataset, Markdown

from autokfp.components import engineer_features
from tests.components import artifact


def test_engineer_features_splits_and_plans(discovered, tmp_path) -> None:
    config, dataset, schema, _catalog, _fp = discovered
    train = artifact(Dataset, tmp_path, "train")
    test = artifact(Dataset, tmp_path, "test")
    plan = artifact(Artifact, tmp_path, "plan")
    report = artifact(Markdown, tmp_path, "report")
    task, features = engineer_features.python_func(config=config, dataset=dataset, schema=schema,
                                                   train=train, test=test, plan=plan,
                                                   report=report)
    assert task == "binary"
    assert features > 0
    train_rows, test_rows = len(pd.read_parquet(train.path)), len(pd.read_parquet(test.path))
    assert train_rows + test_rows == 2000
    assert train.metadata["rows"] == train_rows and test.metadata["rows"] == test_rows
    assert json.loads(Path(plan.path).read_text())["target"] == "churned"
    assert Path(report.path).read_text().startswith("# Features for `files/customers.parquet`")
