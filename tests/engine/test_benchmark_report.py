"""scripts/benchmark_suite.py's report: what a run recorded reaches the printed tables."""

from __future__ import annotations

import importlib.util
import json
import os
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


def test_the_table_prints_each_systems_load_and_the_paired_gap_to_h2o_alone(tmp_path,
                                                                             capsys) -> None:
    """A figure goes out with the load it was measured at, and autokfp's gap to H2O alone
    is paired over the same test rows: a model that is better on every row is better beyond
    noise, whatever each system's own spread."""
    import numpy as np

    suite = _suite()
    folder = tmp_path / "diabetes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    truth = rng.normal(100.0, 30.0, 200)
    (folder / "task.json").write_text(json.dumps({
        "target": "target", "task": "regression", "labels": None, "train_rows": 600,
        "test_rows": 200}))
    pd.DataFrame({"target": truth}).to_parquet(folder / "test.parquet")
    np.save(folder / "autokfp-now.npy", truth + rng.normal(0.0, 10.0, 200))
    np.save(folder / "h2o.npy", truth + rng.normal(0.0, 20.0, 200))
    (folder / "autokfp-now.json").write_text(json.dumps({
        "status": "trained", "load_start": [1.5, 1.0, 1.0], "load_average": [9.6, 4.0, 2.0]}))
    (folder / "h2o.json").write_text(json.dumps({"status": "trained",
                                                 "load_average": [12.5, 5.0, 3.0]}))

    rows = suite.report(tmp_path, ["now"])
    versus = rows[0]["autokfp-now"]["vs_h2o"]
    # RMSE about 10 against about 20: the paired gap is ~-10, many standard errors from 0
    assert -13.0 < versus["difference"] < -7.0 and versus["difference"] + 4 * versus["se"] < 0
    suite.print_table(rows, ["now"])
    printed = capsys.readouterr().out
    assert "[load 1.5→9.6]" in printed and "[load ?→12.5]" in printed
    assert f"{versus['difference']:+.4f} ({versus['se']:.4f})" in printed
    # the same predictions on both sides: no gap, no spread
    gap, spread = suite.paired_difference("rmse", truth, truth + 1.0, truth + 1.0, "regression")
    assert gap == 0.0 and spread == 0.0


def test_task_startup_compare_runs_without_then_with_the_worker_and_prints_both(
        tmp_path, monkeypatch, capsys) -> None:
    """``--compare``: one invocation runs the pipeline with AUTOKFP_LOCAL_FORK=0, then =1, and
    prints each task's wall and import seconds of both runs side by side."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("benchmark_task_startup",
                                                  SCRIPT.parent / "benchmark_task_startup.py")
    assert spec is not None and spec.loader is not None
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    import benchmark_suite

    folder = tmp_path / "wine"
    folder.mkdir()
    (folder / "task.json").write_text("{}")
    switches = []

    def fake_run(kind, name, table_folder, budget, tag, peer_python, autokfp):
        fork = os.environ["AUTOKFP_LOCAL_FORK"]
        switches.append((tag, fork, os.environ.get("PYTHONPROFILEIMPORTTIME")))
        wall, imports = ("9.500", 7_000_000) if fork == "0" else ("2.250", 1_000_000)
        logs = table_folder / f"autokfp-{tag}" / "home" / "logs"
        logs.mkdir(parents=True)
        (logs / "run-1.log").write_text(
            "10:00:00.000 - INFO - Executing task 'select-model'\n"
            f"import time:   {imports} |   {imports} | pandas\n"
            "    INFO autokfp.training.autokeras_engine: AutoKeras leader trial_00 after 1.0s "
            "(1 trials); validation {'cv_logloss': 0.2}; seconds {'import': 5.0, 'search': 1.0}\n"
            f"10:00:0{wall} - INFO - Task 'select-model' finished with status SUCCESS\n")
        return {"status": "trained", "wall_seconds": 100.0 if fork == "0" else 40.0,
                "champion_engine": "h2o"}

    monkeypatch.setattr(benchmark_suite, "run_system", fake_run)
    monkeypatch.setattr(benchmark_suite, "engine_seconds", lambda home: {"h2o": 20.0})
    monkeypatch.setattr(startup, "interpreter_start", lambda python: 0.05)
    monkeypatch.delenv("AUTOKFP_LOCAL_FORK", raising=False)
    code = startup.main(["--table", "wine", "--out", str(tmp_path), "--compare", "--tag", "x"])
    printed = capsys.readouterr().out
    assert code == 0
    assert switches == [("x-nofork", "0", "1"), ("x-fork", "1", "1")]
    assert "AUTOKFP_LOCAL_FORK" not in os.environ  # put back as it was
    assert "| task | no worker wall s | no worker imports s | worker wall s | worker imports s " \
           "| worker − no worker wall s |" in printed
    assert "| select-model | 9.5 | 7.0 | 2.2 | 1.0 | -7.2 |" in printed
    assert "no worker: whole run 100.0 s wall, engines' own 20.0 s" in printed
    assert "worker: whole run 40.0 s wall" in printed
    # the engine's own import is in the anchor: the share is also given with it outside
    assert "engines' own imports (in the anchor): autokeras 5.0; counted outside the " \
           "engines: 85.0 s (85%)" in printed
