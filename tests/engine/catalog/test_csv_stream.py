"""A CSV training file copied to Parquet in Arrow blocks (``copy_csv_dataset``): the same
frame and profile as ``load_dataset`` (``pd.read_csv`` of the whole file), or, when Arrow
cannot promise that, nothing written and the file left to ``load_dataset``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.csv_stream import copy_csv_dataset
from autokfp.catalog.discovery import load_dataset
from autokfp.catalog.sources.files import DATA_CHANGES
from autokfp.config import parse_config
from autokfp.examples.churn import generate_churn


def _config(folder: Path, dataset: str):
    return parse_config({"name": "csv", "sources": [{"name": "files", "kind": "folder",
                                                     "path": str(folder)}],
                         "training": {"dataset": f"files/{dataset}", "target": "churned"}})


def _frame(rows: int = 3_000) -> pd.DataFrame:
    frame = generate_churn(rows, seed=4)
    rng = np.random.default_rng(4)
    frame["paperless"] = np.where(rng.random(rows) < 0.5, "true", "false")
    frame.loc[::41, "paperless"] = ""
    frame["code"] = rng.integers(0, 9, rows)
    frame.loc[2_000::53, "code"] = None  # missing values only after the first blocks
    frame.loc[::17, "region"] = "NA"  # pandas' missing spelling
    return frame


@pytest.mark.parametrize("sep", [",", ";"])
def test_blocks_give_the_whole_files_frame_and_profile(tmp_path: Path, sep: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _frame().to_csv(folder / "customers.csv", index=False, sep=sep)
    config = _config(folder, "customers.csv")
    frame, loaded = load_dataset(config)
    out = tmp_path / "dataset.parquet"
    changes: list[str] = []
    # blocks of 64 kB: ~10 of them for this file
    schema = copy_csv_dataset(config, config.training.dataset, str(out), block_bytes=64 << 10,
                              changes=changes)
    assert schema is not None
    assert changes == frame.attrs[DATA_CHANGES] and (sep == ",") == (not changes)
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert schema.to_dict() == loaded.to_dict()
    assert schema.column("churned").tags == ["target"]
    small = copy_csv_dataset(config, config.training.dataset, str(out), sample_rows=500,
                             block_bytes=64 << 10)
    assert small is not None and (small.row_count, small.sample_rows) == (3_000, 500)


def test_a_file_arrow_would_read_differently_is_left_to_load_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame()
    frame["code"] = frame["code"].astype(object)
    frame.loc[2_500, "code"] = "n/k"  # text after the first blocks: pandas makes it object
    frame.to_csv(folder / "late.csv", index=False)
    frame.to_csv(folder / "repeated.csv", index=False,
                 header=[*frame.columns[:-1], frame.columns[0]])
    out = tmp_path / "dataset.parquet"
    for name in ("late.csv", "repeated.csv", "missing.csv"):
        config = _config(folder, name)
        assert copy_csv_dataset(config, config.training.dataset, str(out),
                                block_bytes=64 << 10) is None
        assert not out.exists() and not list(tmp_path.glob(".*tmp"))


_PROBE = """
import json, sys
from pathlib import Path

from autokfp.catalog.csv_stream import copy_csv_dataset
from autokfp.catalog.discovery import load_dataset
from autokfp.config import parse_config

def peak_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

folder, name, out, how = sys.argv[1:]
config = parse_config({"name": "csv", "sources": [{"name": "files", "kind": "folder",
                                                   "path": folder}],
                       "training": {"dataset": "files/warm.csv", "target": "churned"}})
copy_csv_dataset(config, "files/warm.csv", out, sample_rows=2_000)  # imports, pools
load_dataset(config, "files/warm.csv", sample_rows=2_000)
before = peak_kb()
if how == "blocks":
    assert copy_csv_dataset(config, f"files/{name}", out, sample_rows=2_000,
                            block_bytes=1 << 20) is not None
else:  # the whole file through pandas, as discover read it before
    frame, _ = load_dataset(config, f"files/{name}", sample_rows=2_000)
    frame.to_parquet(out, index=False)
print(json.dumps({"growth_mb": (peak_kb() - before) / 1024}))
"""


def test_memory_stays_bounded_by_the_block(tmp_path: Path) -> None:
    """Copying a CSV in 1 MB blocks: tripling the file (200,000 -> 600,000 rows, 38 -> 113 MB)
    adds less than a quarter to the peak's growth (Arrow's reader keeps a bounded read-ahead,
    ~40 MB here), which stays under the growth of reading the smaller file whole. Each in a
    fresh process (~60 s under load)."""
    import json
    import subprocess
    import sys

    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame(200_000)
    frame.to_csv(folder / "big.csv", index=False)
    frame.head(3_000).to_csv(folder / "warm.csv", index=False)
    text = (folder / "big.csv").read_text()
    body = text.split("\n", 1)[1]
    (folder / "triple.csv").write_text(text + body + body)

    def growth(how: str, name: str) -> float:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(folder), name,
                               str(tmp_path / f"{how}-{name}.parquet"), how],
                              capture_output=True, text=True, check=True, timeout=600)
        return json.loads(done.stdout.strip().splitlines()[-1])["growth_mb"]

    whole = growth("whole", "big.csv")
    blocks, triple = growth("blocks", "big.csv"), growth("blocks", "triple.csv")
    print(f"peak growth: whole 200k rows {whole:.1f} MB; blocks 200k {blocks:.1f} MB, "
          f"600k {triple:.1f} MB")
    assert triple < 1.25 * blocks + 10, (blocks, triple)
    assert triple < whole, (triple, whole)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "blocks-big.csv.parquet"),
                                  pd.read_parquet(tmp_path / "whole-big.csv.parquet"))
    assert len(pd.read_parquet(tmp_path / "blocks-triple.csv.parquet")) == 600_000
