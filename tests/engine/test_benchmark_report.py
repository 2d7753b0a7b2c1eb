"""scripts/benchmark_suite.py's report: what a run recorded reaches the printed tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_suite.py"


def _suite():
    spec = importlib.util.spec_from_file_location("benchmark_suite", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_step_table_shows_each_runs_seconds_and_load_average(tmp_path, capsys) -> None:
    suite = _suite()
    folder = tmp_path / "diabetes"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({
        "target": "target", "task": "regression", "labels": None, "train_rows": 3,
        "test_rows": 3}))
    pd.DataFrame({"target": [1.0, 2.0, 3.0]}).to_parquet(folder / "test.parquet")
    for tag, load in (("before", [31.5, 28.0, 20.2]), ("after", [2.1, 3.0, 4.4])):
        (folder / f"autokfp-{tag}.json").write_text(json.dumps({
            "status": "trained", "wall_seconds": 100.0, "outside_share": 0.4,
            "engine_seconds": {"h2o": 60.0}, "load_average": load,
            "step_seconds": {"train-model-1": 60.0, "cli": 40.0}}))

    rows = suite.report(tmp_path, ["before", "after"])
    assert rows[0]["autokfp-before"]["load_average"] == [31.5, 28.0, 20.2]
    suite.print_steps(rows, ["before", "after"])
    printed = capsys.readouterr().out
    assert "| load average (1/5/15 min, at the end) | 31.5/28.0/20.2 | 2.1/3.0/4.4 |" in printed
    assert "| train-model-1 | 60.0 | 60.0 |" in printed
