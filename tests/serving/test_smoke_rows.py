"""The rows a rollout's smoke test sends: the test file's first rows, read without loading
the file whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autokfp.serving import rollout
from tests.conftest import small_config


def test_the_smoke_rows_are_the_first_test_rows_without_the_target(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    rows = 5_000
    frame = pd.DataFrame({"customer_id": np.arange(rows), "tenure": rng.normal(size=rows),
                          "plan": rng.choice(["basic", "plus"], size=rows),
                          "churned": rng.integers(0, 2, rows)})
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100)
    config = small_config(tmp_path, deploy={"target": "manifest", "smoke_rows": 150})
    expected = pd.read_parquet(path).drop(columns=["churned"]).head(150)

    def whole_read(*args, **kwargs):
        raise AssertionError("the smoke rows were read from the whole file")

    monkeypatch.setattr(pd, "read_parquet", whole_read)
    monkeypatch.setattr(pq, "read_table", whole_read)
    rows_sent = rollout._smoke_rows(config, {"target": "churned"}, str(path))
    pd.testing.assert_frame_equal(rows_sent, expected)
