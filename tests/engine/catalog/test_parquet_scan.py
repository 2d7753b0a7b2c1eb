"""parquet_scan: a single Parquet file read without pyarrow.dataset's thread pools, as the
dataset reads it (the scan behind sample_rows and the streamed drift verdicts)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from autokfp.catalog.batches import ParquetFileScan, parquet_scan, sample_rows

THREADS = """
import os, sys
import pyarrow.dataset as ds
from autokfp.catalog.batches import parquet_scan
threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
if sys.argv[2] == "scan":
    scan = parquet_scan(sys.argv[1], ["city"])
    for _ in scan.to_batches(columns=["x", "city"], batch_size=1000):
        pass
    scan.to_table(columns=["x"])
elif sys.argv[2] == "sample":  # what the data summary reads and writes before its child
    from autokfp.catalog.batches import sample_rows
    drawn = sample_rows(sys.argv[1], ["x", "n", "city"], 500)  # drawn, file_dtypes
    whole = sample_rows(sys.argv[1], ["x", "n", "city"], 10**9)  # the whole file
    drawn.to_parquet(sys.argv[1] + ".sample.parquet", index=False)
else:
    for _ in ds.dataset(sys.argv[1]).to_batches(columns=["x", "city"], use_threads=False):
        pass
# a thread that is ending (a ThreadPoolExecutor's, joined: its OS thread can still be listed
# for a moment on a loaded machine) is not one that stays: wait up to 2 s for those to go
import time
for _ in range(40):
    if threads() <= before:
        break
    time.sleep(0.05)
print(threads() - before)
"""


def _table(tmp_path, rows: int = 20_000):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "n": rng.integers(0, 9, rows),
                          "city": rng.choice(["oslo", "rome", "lima"], rows)})
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path, index=False, row_group_size=3_000)
    return frame, path


def _new_threads(path, how: str) -> int:
    done = subprocess.run([sys.executable, "-c", THREADS, str(path), how], capture_output=True,
                          text=True, timeout=300, check=True)
    return int(done.stdout.strip())


def test_a_file_scan_starts_no_arrow_thread_where_a_dataset_scan_starts_its_pools(tmp_path):
    """A thread of Arrow's I/O pool releasing a dataset scan while the interpreter exits
    killed a step in std::terminate after its work was done (ParquetFileScan's docstring):
    reading one file must leave no Arrow thread behind. The dataset scan, for contrast,
    starts its pools, so the count is able to see them."""
    _, path = _table(tmp_path)
    assert _new_threads(path, "scan") == 0
    assert _new_threads(path, "dataset") > 0


def test_a_sample_is_drawn_and_written_without_starting_an_arrow_thread(tmp_path):
    """A threaded conversion to pandas starts Arrow's CPU pool, which stays: a local task
    running one starts its children (Evidently's data summary) as new interpreters, not as
    forks (``lifeline.fork_wanted``), ~4 CPU-s more for each profile step. Converted on one
    thread (samples are small), the sample leaves none."""
    _, path = _table(tmp_path)
    assert _new_threads(path, "sample") == 0


def test_a_file_scan_reads_what_the_dataset_reads(tmp_path):
    frame, path = _table(tmp_path)
    scan, dataset = parquet_scan(path, ["city"]), ds.dataset(str(path), format="parquet")
    assert isinstance(scan, ParquetFileScan)
    assert scan.count_rows() == dataset.count_rows() == len(frame)
    assert scan.schema.names == dataset.schema.names
    assert scan.schema.metadata == dataset.schema.metadata  # pandas' own metadata kept
    assert pa.types.is_dictionary(scan.schema.field("city").type)  # codes, not strings
    batches = list(scan.to_batches(columns=["x", "city"], batch_size=1_000))
    assert max(batch.num_rows for batch in batches) <= 1_000
    streamed = pa.Table.from_batches(batches).to_pandas()
    pd.testing.assert_series_equal(streamed["x"], frame["x"])
    assert streamed["city"].astype(str).tolist() == frame["city"].tolist()
    pd.testing.assert_frame_equal(scan.to_table(columns=["n"]).to_pandas(), frame[["n"]])
    # a second stream while the first is open (drift_stream reads columns on threads)
    first, second = scan.to_batches(columns=["n"]), scan.to_batches(columns=["n"])
    assert next(first).equals(next(second))


def test_a_folder_of_parts_is_still_read_as_one_dataset(tmp_path):
    frame, path = _table(tmp_path)
    folder = tmp_path / "parts"
    folder.mkdir()
    path.rename(folder / "part-0.parquet")
    frame.head(10).to_parquet(folder / "part-1.parquet", index=False)
    scan = parquet_scan(folder, ["city"])
    assert scan.count_rows() == len(frame) + 10
    assert pa.types.is_dictionary(scan.schema.field("city").type)


def test_sample_rows_draws_from_the_file_scan_as_before(tmp_path):
    frame, path = _table(tmp_path)
    drawn = sample_rows(path, ["x", "n", "city", "absent"], 500, seed=4)
    assert len(drawn) == 500 and list(drawn.columns) == ["x", "n", "city"]
    assert drawn["n"].dtype == frame["n"].dtype and drawn["city"].dtype == object
    # every drawn row is a row of the file, none twice
    merged = drawn.merge(frame.drop_duplicates(), on=["x", "n", "city"], how="left",
                         indicator=True)
    assert (merged["_merge"] == "both").all() and not drawn.duplicated().any()
    whole = sample_rows(path, ["x"], len(frame) + 1)  # all rows asked: the whole column
    pd.testing.assert_frame_equal(whole, frame[["x"]])
