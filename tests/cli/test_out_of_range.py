"""Out-of-range numbers are refused naming what the user typed (the flag, the form field or
the config key) and the allowed range, before anything is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autokfp.config import apply_run_form, parse_config
from autokfp.edge.cli import app
from autokfp.errors import ConfigError

runner = CliRunner()



@pytest.mark.parametrize(("args", "expected"), [
    (["--budget", "0"], ["--budget 0", "10 to 86,400 seconds"]),
    (["--budget", "9"], ["--budget 9", "10 to 86,400 seconds"]),
    (["--budget", "86401"], ["--budget 86401", "10 to 86,400 seconds"]),
    (["--rows", "10"], ["--rows 10", "at least 1,000 rows"]),
])
def test_demo_names_the_flag_and_its_range_and_writes_nothing(args, expected, tmp_path) -> None:
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--home", str(home), *args])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert output.startswith("error:"), output
    for fragment in expected:
        assert fragment in output, output
    assert "max_runtime_secs" not in output  # the user typed a flag, not the config key
    assert not home.exists()  # no example data or config half-written


def test_demo_help_states_the_budget_range() -> None:
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert "each engine's training budget in seconds (10 to 86400)" in result.output
    assert "rows of example data (at least 1000)" in result.output


def _config(**budget):
    return {"name": "x", "sources": [{"name": "f", "kind": "folder", "path": "/tmp"}],
            "training": {"dataset": "f/a.csv", "target": "y"}, "budget": budget}


@pytest.mark.parametrize("seconds", [0, 9, 86_401])
def test_a_config_budget_out_of_range_names_the_key_and_the_range(seconds) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_config(max_runtime_secs=seconds), origin="run.yaml")
    assert "budget.max_runtime_secs" in str(raised.value)
    assert "(allowed: 10 to 86400)" in str(raised.value)


def test_a_budget_in_range_is_kept() -> None:
    assert parse_config(_config(max_runtime_secs=10)).budget.max_runtime_secs == 10
    assert parse_config(_config(max_runtime_secs=86_400)).budget.max_runtime_secs == 86_400


@pytest.mark.parametrize("seconds", [0, 5, 100_000])
def test_the_run_forms_budget_seconds_out_of_range_names_the_field(seconds) -> None:
    with pytest.raises(ConfigError) as raised:
        apply_run_form(None, dataset="gs://b/p/d.parquet", target="y", budget_seconds=seconds,
                       origin="the run form")
    message = str(raised.value)
    assert f"budget_seconds {seconds}" in message and "10 to 86400" in message
    assert "-1 for the config's" in message


def test_the_run_forms_budget_seconds_minus_one_keeps_the_configs() -> None:
    config = apply_run_form(_config(max_runtime_secs=30), budget_seconds=-1)
    assert config.budget.max_runtime_secs == 30
