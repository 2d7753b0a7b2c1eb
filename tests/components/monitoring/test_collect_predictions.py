"""The ``collect_predictions`` component: the window, the reference and the status."""

from __future__ import annotations

import json

import pandas as pd

from tests.components.monitoring.conftest import read


def test_collect_predictions_reads_the_window_and_the_reference(monitored) -> None:
    a = monitored.artifacts
    assert monitored.returned.status == "ok"
    assert a.collection.metadata == {"status": "ok", "rows": monitored.rows,
                                     "labelled_rows": monitored.rows}
    assert len(pd.read_parquet(a.current.path)) == monitored.rows
    assert len(pd.read_parquet(a.reference.path)) > 0
    assert json.loads(read(a.collection))["status"] == "ok"


def test_collect_predictions_without_a_champion_says_so(trained_package, autokfp_home,
                                                        tmp_path) -> None:
    from kfp.dsl import Artifact, Dataset

    from autokfp.components import collect_predictions
    from tests.components import artifact
    from tests.conftest import small_config

    collection = artifact(Artifact, tmp_path, "collection")
    status = collect_predictions.python_func(
        config=small_config(trained_package.folder).to_dict(), run_id="run-1", window_end="",
        current=artifact(Dataset, tmp_path, "current"),
        reference=artifact(Dataset, tmp_path, "reference"), collection=collection)
    assert status == "no-champion"
    assert collection.metadata["status"] == "no-champion" and collection.metadata["rows"] == 0
