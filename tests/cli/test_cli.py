"""The ``autokfp`` command line: bad input is one clear message, exit 2, and no side effects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autokfp import __version__
from autokfp.edge.cli import app

AUTOKFP_BIN = Path(sys.executable).with_name("autokfp")
runner = CliRunner()



@pytest.fixture
def data_folder(tmp_path, churn_frame) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    churn_frame.head(300).to_parquet(folder / "customers.parquet", index=False)
    (folder / "empty.csv").write_text("")
    return folder


def _write_config(folder: Path, path: Path, **overrides) -> Path:
    config = {
        "name": "churn-cli",
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/customers.parquet", "target": "churned"},
        "budget": {"max_runtime_secs": 10},
        "engines": {"h2o": {"max_models": 1}},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


def _nothing_happened(settings) -> None:
    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
    root = Path(settings.pipeline_root)
    assert not root.exists() or list(root.iterdir()) == []


def _case_typo(folder: Path, tmp_path: Path):
    path = _write_config(folder, tmp_path / "typo.yaml")
    data = yaml.safe_load(path.read_text())
    data["trainng"] = data.pop("training")
    path.write_text(yaml.safe_dump(data))
    return path, ["trainng", "unknown setting", "allowed here:", "training", "budget"]


def _case_missing_file(folder: Path, tmp_path: Path):
    path = tmp_path / "nowhere" / "run.yaml"
    return path, [str(path), "does not exist"]


def _case_empty_file(folder: Path, tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("\n")
    return path, [str(path), "is empty"]


def _case_missing_dataset(folder: Path, tmp_path: Path):
    training = {"dataset": "files/customer.parquet", "target": "churned"}
    path = _write_config(folder, tmp_path / "run.yaml", training=training)
    return path, ["files/customer.parquet", "does not exist", "files/customers.parquet"]


def _case_empty_csv(folder: Path, tmp_path: Path):
    training = {"dataset": "files/empty.csv", "target": "churned"}
    path = _write_config(folder, tmp_path / "run.yaml", training=training)
    return path, ["empty.csv", "0 rows"]


def _case_absent_target(folder: Path, tmp_path: Path):
    training = {"dataset": "files/customers.parquet", "target": "churnd"}
    path = _write_config(folder, tmp_path / "run.yaml", training=training)
    return path, ["'churnd'", "its columns are", "churned", "customer_id"]


def _case_missing_source_folder(folder: Path, tmp_path: Path):
    gone = tmp_path / "no-such-folder"
    sources = [{"name": "files", "kind": "folder", "path": str(gone)}]
    path = _write_config(folder, tmp_path / "run.yaml", sources=sources)
    # the folder and its key, not "source 'files' has: (none)"
    return path, [f"folder '{gone}' does not exist", "sources[0].path (source 'files')",
                  "training.dataset 'files/customers.parquet' is read from it", "Fix that path"]


BAD_INPUTS = [_case_typo, _case_missing_file, _case_empty_file, _case_missing_dataset,
              _case_empty_csv, _case_absent_target, _case_missing_source_folder]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.__name__[len("_case_"):])
def test_bad_input_is_one_message_with_exit_2(case, autokfp_home, data_folder,
                                               tmp_path) -> None:
    config_path, expected = case(data_folder, tmp_path)
    result = runner.invoke(app, ["run", str(config_path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    output = " ".join(result.output.split())  # undo terminal wrapping
    assert output.startswith("error:")
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in {output!r}"
    _nothing_happened(autokfp_home)


def test_console_script_exits_2_without_a_traceback(autokfp_home, data_folder,
                                                    tmp_path) -> None:
    config_path, _ = _case_absent_target(data_folder, tmp_path)
    result = subprocess.run([str(AUTOKFP_BIN), "run", str(config_path)], capture_output=True,
                            text=True, env=dict(os.environ), timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "training.target 'churnd' is not a column" in message
    _nothing_happened(autokfp_home)


# ------------------------------------------------------------------------------ models


def test_models_on_an_empty_home_says_there_are_none(autokfp_home) -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "No registered models yet" in result.output


def test_models_lists_a_registered_champion(autokfp_home, trained_package) -> None:
    from autokfp.modeling import registry

    registered = registry.register_model(
        trained_package.paths.model, "churn-cli", metrics={"test_auc": 0.83},
        params={"engine": "h2o"}, tags={"engine": "h2o", "dataset": "files/customers.parquet",
                                        "primary_metric": "auc"},
        promote=True, decision="first model", compared_champion=None)
    assert registered.version == "1"

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    (model,) = json.loads(result.stdout)
    assert model["name"] == "churn-cli"
    # MLflow returns alias targets as ints; versions are strings elsewhere
    assert {alias: str(v) for alias, v in model["aliases"].items()} == {"champion": "1"}
    (version,) = model["versions"]
    assert version["aliases"] == ["champion"]
    assert version["metrics"]["test_auc"] == pytest.approx(0.83)

    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0, table.output
    assert "churn-cli" in table.output and "champion" in table.output
    assert "auc=0.8300" in table.output


# ------------------------------------------------------------------ compile and version


def test_compile_writes_the_pipeline_yaml(tmp_path) -> None:
    out = tmp_path / "compiled"
    result = runner.invoke(app, ["compile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    target = out / "autonomous-training.yaml"
    assert target.exists()
    assert result.output.startswith("autonomous-training: ")
    spec = next(yaml.safe_load_all(target.read_text()))
    assert spec["pipelineInfo"]["name"] == "autonomous-training"


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__
