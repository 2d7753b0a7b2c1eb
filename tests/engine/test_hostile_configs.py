"""Hostile configs: any size runs or is refused clearly (never ``Argument list too long``),
non-UTF-8 text is named, and a flood of unknown keys is bounded in time and output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autokfp.config import MAX_CONFIG_JSON_BYTES, expand_env, load_config, parse_config
from autokfp.edge.cli import app
from autokfp.errors import ConfigError

CORPUS = Path(__file__).parents[1] / "data" / "hostile" / "configs"
runner = CliRunner()
BASE = {"name": "hostile", "sources": [{"name": "files", "kind": "folder", "path": "."}],
        "training": {"dataset": "files/x.csv", "target": "label"}}


def _write(tmp_path: Path, data, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_config_too_large_for_a_task_command_line_is_refused_naming_the_part(tmp_path):
    data = {**BASE, "governance": {"intended_use": "x" * 200_000}}
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"at most {MAX_CONFIG_JSON_BYTES // 1024} KiB" in message
    assert "governance (195 KiB)" in message
    result = runner.invoke(app, ["run", str(path), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "Argument list too long" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "home" / "pipeline_root").exists() or \
        not any((tmp_path / "home" / "pipeline_root").iterdir())


def test_a_large_config_under_the_limit_is_accepted(tmp_path):
    data = {**BASE, "governance": {"intended_use": "y" * 60_000}}
    config = load_config(_write(tmp_path, data))
    assert len(config.governance.intended_use) == 60_000


def test_a_non_utf8_config_is_named():
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 on line 1\)"):
        load_config(CORPUS / "latin1.yaml")
    result = runner.invoke(app, ["run", str(CORPUS / "latin1.yaml")])
    assert result.exit_code == 2 and "save it as UTF-8" in result.output


def test_a_million_unknown_keys_is_refused_fast_with_a_short_message(tmp_path):
    path = tmp_path / "flood.yaml"
    with open(path, "w") as handle:
        handle.write(yaml.safe_dump(BASE))
        for i in range(1_000_000):
            handle.write(f"unknown_{i}: 1\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.monotonic() - started < 5
    assert len(str(caught.value)) < 1000
    assert "is at most 1024 KiB" in str(caught.value)


def test_many_unknown_keys_list_a_bounded_number_of_errors():
    data = {**BASE, "training": {**BASE["training"], **{f"typo_{i}": 1 for i in range(5000)}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert "has 5000 invalid setting(s)" in message
    assert "... and 4980 more" in message
    assert len(message) < 20_000
    with pytest.raises(ConfigError, match="top-level settings"):
        parse_config({**BASE, **{f"k{i}": 1 for i in range(100_000)}})


def test_a_variable_in_a_sqlite_path_is_expanded_before_any_resolution(tmp_path, monkeypatch):
    database = tmp_path / "warehouse" / "data.db"
    monkeypatch.setenv("WAREHOUSE_DB", str(database))
    data = {**BASE, "sources": [{"name": "db", "kind": "sql", "url": "sqlite:///${WAREHOUSE_DB}"}],
            "training": {"dataset": "db/customers", "target": "label"}}
    config = load_config(_write(tmp_path / "", data))
    (source,) = config.sources
    assert source.url == "sqlite:///${WAREHOUSE_DB}"  # still a reference in the config
    assert expand_env(source.url) == f"sqlite:///{database}"
