"""``autokfp monitor``: once, on a timer (bounded with --max-runs), and its errors."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from autokfp.edge.cli import app
from autokfp.edge.local import MonitoringRun
from autokfp.edge.monitoring_commands import parse_duration, run_on_timer
from autokfp.errors import ConfigError, DataError
from tests.conftest import small_config


def test_durations():
    assert parse_duration("90") == 90
    assert parse_duration("30s") == 30
    assert parse_duration("10m") == 600
    assert parse_duration("6h") == 21600
    assert parse_duration("1.5d") == 129600
    for bad in ("", "10 minutes", "-5m", "0s"):
        with pytest.raises(ConfigError, match="not a duration"):
            parse_duration(bad)


def test_the_timer_runs_start_to_start_and_survives_a_failed_run():
    clock = {"now": 0.0}
    sleeps, runs, errors = [], [], []

    def run_once(number):
        runs.append(number)
        clock["now"] += 4.0  # each run takes 4 s
        if number == 2:
            raise DataError("the label store is down")

    def sleep(seconds):
        sleeps.append(seconds)
        clock["now"] += seconds

    total, failures = run_on_timer(
        run_once,
        every=10.0,
        max_runs=3,
        on_error=lambda n, e: errors.append(n),
        sleep=sleep,
        clock=lambda: clock["now"],
    )
    assert (total, failures) == (3, 1) and runs == [1, 2, 3] and errors == [2]
    assert sleeps == [6.0, 6.0]  # 10 s start to start
    assert run_on_timer(lambda n: None, every=None, max_runs=None, on_error=print) == (1, 0)


def _config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(small_config(tmp_path).to_dict()))
    return path


def test_monitor_every_with_max_runs(tmp_path, monkeypatch, autokfp_home):
    calls = []

    def fake(config, settings, window_end="", log_path=None, on_task=None):
        calls.append(window_end)
        decision = {
            "retrain": False,
            "summary": "no retraining: the window is empty",
            "status": "empty",
            "rows": 0,
            "champion": "1",
            "checks": [],
            "blockers": ["the window is empty"],
        }
        return MonitoringRun(seconds=0.1, decision=decision, retraining=None, run_dir=None)

    monkeypatch.setattr("autokfp.edge.local.run_monitoring", fake)
    monkeypatch.setattr("autokfp.edge.monitoring_commands.time.sleep", lambda s: None)
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            str(_config_file(tmp_path)),
            "--every",
            "10m",
            "--max-runs",
            "3",
            "--window-end",
            "2025-06-30T00:00:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    assert calls == ["2025-06-30T00:00:00Z"] * 3
    assert result.output.count("no retraining: the window is empty") == 3


def test_monitor_reports_bad_options_plainly(tmp_path):
    result = CliRunner().invoke(app, ["monitor", str(_config_file(tmp_path)), "--every", "soon"])
    assert result.exit_code == 2 and "not a duration" in " ".join(result.output.split())
    missing = CliRunner().invoke(app, ["monitor", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_monitor_runs_the_real_pipeline_without_a_champion(tmp_path, autokfp_home):
    result = CliRunner().invoke(app, ["monitor", str(_config_file(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    assert '"retrain": false' in result.output and "train one first" in result.output
