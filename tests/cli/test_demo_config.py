"""The demo's config: the README shows it as it is, `autokfp demo` writes it (comments kept,
with its --budget) and says where it is, and where the outputs go, before and after the run."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from autokfp.config import load_config
from autokfp.edge import cli
from autokfp.edge.local import LocalRun
from autokfp.examples.demo import demo_config_text, example_config_text, prepare_demo
from tests.conftest import STATE_ENV

README = Path(__file__).resolve().parents[2] / "README.md"
runner = CliRunner()



def _readme_config_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The run config"):]
    return re.search(r"```yaml\n(.*?)```\n", section, re.DOTALL).group(1)


def test_the_readme_shows_the_demos_config_as_it_is() -> None:
    assert _readme_config_block() == example_config_text()


def test_the_demo_writes_the_bundled_config_with_its_budget(tmp_path) -> None:
    assert demo_config_text(120) == example_config_text()  # the default budget: the same file
    config, data = prepare_demo(tmp_path / "demo", rows=1000, budget=45)
    written = (tmp_path / "demo" / "churn.yaml").read_text()
    assert written == demo_config_text(45)
    assert "# registered model name" in written  # the comments a user reads are kept
    assert config.budget.max_runtime_secs == 45
    # apart from the budget, what the demo runs is what the README shows
    shown = yaml.safe_load(_readme_config_block())
    shown["budget"]["max_runtime_secs"] = 45
    (tmp_path / "demo" / "shown.yaml").write_text(yaml.safe_dump(shown))
    assert load_config(tmp_path / "demo" / "shown.yaml").to_dict() == config.to_dict()
    assert data.warehouse_db.parent == tmp_path / "demo"


def test_the_demo_prints_where_its_config_and_outputs_are_at_the_start_and_end(
        tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    seen = {}

    def fake_run(config, settings, verbose, steps=None):  # the pipeline is tested elsewhere
        seen["config"] = config
        return LocalRun(pipeline="autonomous-training", seconds=1.0, run_dir=None,
                        registration={"name": "churn", "version": "1", "aliases": ["champion"],
                                      "decision": "first model"})

    monkeypatch.setattr(cli, "_run", fake_run)
    # a user with no registry of their own set: the demo's registry is under --home (a
    # registry set by MLFLOW_TRACKING_URI would be used instead, and one exported by an
    # earlier module's fixture on this worker was, in CI)
    for name in STATE_ENV:
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(cli.app, ["demo", "--home", str(home), "--budget", "30",
                                     "--rows", "1000"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    config_path = home / "example_data" / "churn.yaml"
    assert seen["config"].budget.max_runtime_secs == 30
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Run config  :"))
    assert f"Run config  : {config_path}" in lines[start]
    assert f"autokfp run {config_path}" in lines[start]
    assert lines[start + 1].startswith(f"Outputs     : {home}")
    assert "registry sqlite:///" in lines[start + 1] and str(home / "logs") in lines[start + 1]
    finished = next(i for i, line in enumerate(lines) if "Pipeline finished" in line)
    assert start < finished
    end = lines.index(f"Run config: {config_path}")  # again in the closing summary
    assert end > finished
    assert lines[end + 1].startswith("Registry  : sqlite:///") and str(home) in lines[end + 1]
    assert lines[end + 2].startswith("Artifacts : ")


def test_the_commands_it_suggests_work_without_an_activated_venv(tmp_path, monkeypatch) -> None:
    """`make demo` runs .venv/bin/autokfp and leaves the venv unactivated: every "run this
    next" line names that path, as long as PATH finds no (or another) autokfp."""
    project = tmp_path / "project"
    script = project / ".venv" / "bin" / "autokfp"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(project)
    monkeypatch.setattr("sys.argv", [".venv/bin/autokfp", "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli.command_name() == ".venv/bin/autokfp"

    def fake_run(config, settings, verbose, steps=None):  # the pipeline is tested elsewhere
        return LocalRun(pipeline="autonomous-training", seconds=1.0, run_dir=None,
                        registration={"name": "churn", "version": "1", "aliases": ["champion"],
                                      "decision": "first model"})

    monkeypatch.setattr(cli, "_run", fake_run)
    result = runner.invoke(cli.app, ["demo", "--budget", "30", "--rows", "1000"],
                           env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "(edit it, then: .venv/bin/autokfp run " in result.output
    assert "Serve it  : .venv/bin/autokfp serve --model churn@champion" in result.output
    assert "(.venv/bin/autokfp models)" in result.output

    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")  # activated: the bare name
    assert cli.command_name() == "autokfp"
    monkeypatch.setattr("sys.argv", [str(script), "demo"])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli.command_name() == str(script)  # outside the project: the absolute path
    monkeypatch.setattr("sys.argv", ["/usr/lib/python3/pytest"])
    assert cli.command_name() == "autokfp"  # not started as autokfp: the documented name
