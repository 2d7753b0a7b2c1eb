"""``autokfp discover / catalog / lineage / impact``: what a user sees, and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autokfp.edge.cli import app
from tests.engine.catalog.conftest import write_table

AUTOKFP_BIN = Path(sys.executable).with_name("autokfp")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_environ(monkeypatch):
    saved = dict(os.environ)
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that names are not wrapped
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def config_file(churn_sources, tmp_path) -> Path:
    config, *_ = churn_sources
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def test_discover_prints_the_crawl_and_schema_changes(config_file, churn_sources,
                                                      catalog_home) -> None:
    _config, folder, db, frame = churn_sources
    (folder / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    empty = runner.invoke(app, ["catalog"])
    assert empty.exit_code == 0 and "The catalog is empty" in empty.output

    first = runner.invoke(app, ["discover", str(config_file)])
    assert first.exit_code == 0, first.output
    assert "warehouse/customers" in first.output and "new" in first.output
    assert "Could not be catalogued" in first.output and "broken.parquet" in first.output
    assert "datahub lite ls /" in first.output

    write_table(db, "customers", frame.drop(columns=["contract_type"]))
    second = runner.invoke(app, ["discover", str(config_file), "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert report["counts"]["reused"] >= 2 and report["counts"]["breaking"] == 1
    customers = next(d for d in report["datasets"] if d["dataset_id"] == "warehouse/customers")
    assert customers["breaking_columns"] == ["contract_type"]

    table = runner.invoke(app, ["discover", str(config_file), "--refresh"])
    assert table.exit_code == 0, table.output
    assert "BREAKING" in table.output and "'contract_type' was removed" in table.output
    assert "autokfp catalog accept warehouse/customers" in " ".join(table.output.split())

    listing = runner.invoke(app, ["catalog", "--json"])
    datasets = {d["dataset_id"]: d for d in json.loads(listing.stdout)}
    assert datasets["warehouse/customers"]["latest_version"] == 2
    assert datasets["warehouse/customers"]["accepted_version"] == 1
    assert {"pii:email", "sensitive", "schema:breaking"} <= set(
        datasets["warehouse/customers"]["tags"])
    assert datasets["files/broken.parquet"]["last_error"]

    shown = runner.invoke(app, ["catalog", "show", "warehouse/customers"])
    assert shown.exit_code == 0, shown.output
    assert "v1 (accepted)" in shown.output and "v2" in shown.output
    assert "'contract_type' was removed" in shown.output

    accepted = runner.invoke(app, ["catalog", "accept", "warehouse/customers"])
    assert accepted.exit_code == 0 and "Accepted warehouse/customers schema v2" in accepted.output
    again = runner.invoke(app, ["catalog", "accept", "warehouse/customers"])
    assert "already accepted" in again.output


@pytest.mark.parametrize("args, fragments", [
    (["catalog", "accept", "warehouse/nope"], ["'warehouse/nope' is not in the catalog"]),
    (["catalog", "show", "nope"], ["'nope' is not in the catalog"]),
    (["impact", "nope/table"], ["'nope/table' is not in the catalog"]),
    (["lineage", "no-such-model"], ["'no-such-model' names no dataset", "(none registered yet)"]),
])
def test_unknown_names_are_one_message_and_exit_2(args, fragments, catalog_home) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert output.startswith("error:") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in output


def test_console_script_discover_with_a_bad_config_exits_2(tmp_path, catalog_home) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsources: []\ntraining: {dataset: a/b, target: y}\n")
    result = subprocess.run([str(AUTOKFP_BIN), "discover", str(path)], capture_output=True,
                            text=True, env=dict(os.environ), timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "sources" in result.stderr
