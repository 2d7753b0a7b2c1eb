"""The ``load_training_data`` component: the training inputs from their content-addressed folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset

from autokfp.components import load_training_data
from autokfp.errors import StorageError
from autokfp.storage.content import MANIFEST, put_content_addressed
from tests.components import artifact


def _inputs(folder: Path, rows: int = 5) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"x": range(rows), "y": [0, 1] * (rows // 2) + [0] * (rows % 2)}).to_parquet(
        folder / "train.parquet", index=False)
    (folder / "plan.json").write_text(json.dumps({"target": "y"}))
    return {"train.parquet": folder / "train.parquet", "plan.json": folder / "plan.json"}


def _outputs(folder: Path) -> dict:
    return {"train": artifact(Dataset, folder, "train"), "plan": artifact(Artifact, folder, "plan")}


def test_it_loads_what_was_stored_and_the_same_content_has_the_same_uri(tmp_path) -> None:
    root = str(tmp_path / "store" / "training-data")
    uri = put_content_addressed(root, _inputs(tmp_path / "run-1"))
    # the same rows and plan written again by another run: the same folder
    assert put_content_addressed(root, _inputs(tmp_path / "run-2")) == uri
    # one more row: another folder
    assert put_content_addressed(root, _inputs(tmp_path / "run-3", rows=6)) != uri
    outputs = _outputs(tmp_path / "loaded")
    load_training_data.python_func(training_data=uri, **outputs)
    assert Path(outputs["train"].path).read_bytes() == (tmp_path / "run-1" / "train.parquet").read_bytes()
    assert json.loads(Path(outputs["plan"].path).read_text()) == {"target": "y"}
    assert outputs["train"].metadata == {"rows": 5, "digest": uri.rsplit("sha256-", 1)[1]}


def test_a_changed_incomplete_or_foreign_folder_is_refused_with_what_to_do(tmp_path) -> None:
    root = str(tmp_path / "store" / "training-data")
    uri = put_content_addressed(root, _inputs(tmp_path / "run"))
    (Path(uri) / "plan.json").write_text(json.dumps({"target": "x"}))  # edited in the store
    with pytest.raises(StorageError, match="other content than its name says.*run engineer_features again"):
        load_training_data.python_func(training_data=uri, **_outputs(tmp_path / "a"))
    (Path(uri) / MANIFEST).unlink()  # a writer stopped before its manifest
    with pytest.raises(StorageError, match="never completely written"):
        load_training_data.python_func(training_data=uri, **_outputs(tmp_path / "b"))
    with pytest.raises(StorageError, match="not a content-addressed folder"):
        load_training_data.python_func(training_data=str(tmp_path / "run"), **_outputs(tmp_path / "c"))


def test_an_incomplete_folder_is_written_again(tmp_path) -> None:
    root = str(tmp_path / "store" / "training-data")
    uri = put_content_addressed(root, _inputs(tmp_path / "run"))
    (Path(uri) / MANIFEST).unlink()
    (Path(uri) / "train.parquet").write_bytes(b"half")
    assert put_content_addressed(root, _inputs(tmp_path / "again")) == uri
    outputs = _outputs(tmp_path / "loaded")
    load_training_data.python_func(training_data=uri, **outputs)
    assert len(pd.read_parquet(outputs["train"].path)) == 5
