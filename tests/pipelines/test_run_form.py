"""The run form under kfp.local: a bad value fails the first task within seconds, with the
message ``autokfp run`` prints for the same config, and no other task starts."""

from __future__ import annotations

import re
import time

import pytest
import yaml
from typer.testing import CliRunner

from autokfp.edge.cli import app
from autokfp.edge.local import PipelineRunError, run_training


@pytest.fixture
def form_data(tmp_path, churn_frame):
    folder = tmp_path / "data"
    folder.mkdir()
    churn_frame.head(300).to_parquet(folder / "customers.parquet", index=False)
    return folder / "customers.parquet"


def _cli_error(tmp_path, config: dict) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(path), "--home", str(tmp_path / "cli-home")])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


# A run refused at its first task ends within this: it starts kfp.local, the task worker and
# that one task (the tests' whole calls took 39.3 s and 23.0 s at load ~17, the first with
# its CLI run too; the old bound was 60 s). A run that went on would start the next tasks
# (the tasks' own check) and train for minutes.
REFUSED_WITHIN = 120


def _pipeline_error(autokfp_home, tmp_path, form: dict) -> tuple[str, float, list[str]]:
    """The run's error message, its seconds, and the tasks it started (from its log)."""
    log = tmp_path / "run.log"
    started = time.monotonic()
    with pytest.raises(PipelineRunError) as raised:
        run_training(None, autokfp_home, log_path=log, form=form)
    seconds = time.monotonic() - started
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())
    tasks = re.findall(r"Executing task '([\w-]+)'", plain)
    return " ".join(str(raised.value).split()), seconds, tasks


def test_a_bad_target_fails_the_first_task_with_the_cli_message(autokfp_home, tmp_path,
                                                                 form_data) -> None:
    form = {"dataset": str(form_data), "target": "churn", "budget_seconds": 10, "engines": "h2o"}
    message, seconds, tasks = _pipeline_error(autokfp_home, tmp_path, form)
    assert tasks == ["resolve-config"], tasks  # nothing else started
    assert seconds < REFUSED_WITHIN, seconds
    assert "resolve-config" in message
    expected = ("training.target 'churn' is not a column of dataset "
                "'run-form/customers.parquet'; its columns are: customer_id,")
    assert f"SchemaError: {expected}" in message
    # `autokfp run` on the config the form stands for prints the same message
    cli = _cli_error(tmp_path, {
        "name": "customers",
        "sources": [{"name": "run-form", "kind": "folder", "path": str(form_data.parent),
                     "include": [form_data.name]}],
        "training": {"dataset": "run-form/customers.parquet", "target": "churn"}})
    assert expected in cli
    assert message.split("SchemaError: ", 1)[1].split(" Full log:")[0] in cli


def test_a_bad_setting_fails_the_first_task_naming_it(autokfp_home, tmp_path, form_data) -> None:
    form = {"dataset": str(form_data), "target": "churned", "task": "binar"}
    message, seconds, tasks = _pipeline_error(autokfp_home, tmp_path, form)
    assert tasks == ["resolve-config"] and seconds < REFUSED_WITHIN
    problem = "training.task: Input should be 'auto', 'binary', 'multiclass' or 'regression'"
    assert f"ConfigError: run config has 1 invalid setting(s): - {problem}" in message
    cli = _cli_error(tmp_path, {"name": "c", "sources": [
        {"name": "files", "kind": "folder", "path": str(form_data.parent)}],
        "training": {"dataset": "files/customers.parquet", "target": "churned", "task": "binar"}})
    assert f"has 1 invalid setting(s): - {problem}" in cli
